r"""Full Bayes for the Poisson dynamic factor model: NUTS over every parameter and the whole
trajectory, started at a Laplace-EM fit.

Laplace-EM returns a point estimate $\hat\theta$ and integrates only over $f_{1:N}$ (and, with
``parameter_cov``, over each location's $(\mu_\ell, \Lambda_\ell)$ given $\hat f$). Full Bayes
integrates over $(\mu, \Lambda, \Phi, f_{1:N})$ jointly — what the reference Stan program
(``benchmarks/stan/ssm_full.stan``) does — and is the yardstick for held-out prediction. The
target density is the MAP-EM objective's own model, with a prior on $\Phi$ added:

$$\log p(\mu, \Lambda, \Phi, f_{1:N} \mid X) = \sum_{i,\ell} M_{i\ell}\,
  \log p(X_i(\ell) \mid \eta_{i\ell}) - \tfrac{\tau_\mu}{2}\lVert\mu - \bar\mu\rVert^2
  - \tfrac12\sum_{\ell k} P_{\ell k}\Lambda_{\ell k}^2 - \frac{\lVert\Phi\rVert_F^2}{2 s_\Phi^2}
  - \tfrac12\sum_i \lVert z_i\rVert^2 + \text{const},$$

with the innovations $z_1 = L_1^{-1}(f_1 - a_1)$, $z_i = L_Q^{-1}(f_i - \Phi f_{i-1})$
($L_1 L_1^\top = P_1$, $L_Q L_Q^\top = Q$; $a_1, P_1, Q$ stay at the fit's values, $Q = I$ by
default; the map $f \mapsto z$ has a constant Jacobian, so the same expression is the density of
the non-centred coordinates $(\mu, \Lambda, \Phi, z)$), $\eta_i = o_i + \mu + \Lambda f_i$,
and the precisions $\tau_\mu$, $P_{\ell k}$ those of the fit's
:class:`~jaxssm.params.MStepPrior` (0 for a flat prior; learned loading scales stay at their
empirical-Bayes values). With the negative binomial emission the dispersions
$\psi_\ell = \log\phi_\ell$ are sampled too, under the fit's
$N(\bar\psi, s_\psi^2)$ prior. Without a prior on $\Phi$ the warm-up
can wander into explosive transitions where the rates overflow (Laplace-EM bounds
$\lVert\Phi\rVert_2 \le 1$ instead).

The rotations of $(\Lambda, f, \Phi)$ leave the likelihood and the isotropic priors unchanged, so
draws of $\Lambda$ or $f$ are not comparable across chains; the rates $\eta_{i\ell}$ are, and the
convergence diagnostics are computed on them. Chains start at the Laplace-EM estimate, which
spares the warm-up the search for the typical set and its overflowing random starts.

Example:
    >>> fit = fit_laplace_em(counts, 3)                                   # doctest: +SKIP
    >>> full = sample_full_posterior(jax.random.key(0), fit)              # doctest: +SKIP
    >>> full.predictive_log_likelihood(counts_all, heldout_mask)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from jaxssm import emissions
from jaxssm.emissions import ETA_MAX
from jaxssm.params import MStepPrior, Panel, Params


class Unconstrained(NamedTuple):
    """The sampled coordinates: ``mu`` (m,), ``Lambda`` (m, q), ``Phi`` (q, q) and ``latent``
    (N, q) — the trajectory $f_{1:N}$ itself (centred) or its standardised innovations $z$
    (non-centred); ``log_dispersion`` (m,) for the negative binomial, else None."""

    mu: jax.Array
    Lambda: jax.Array
    Phi: jax.Array
    latent: jax.Array
    log_dispersion: jax.Array | None = None


PARAMETRIZATIONS = ("centered", "noncentered")


def trajectory(theta: Unconstrained, params: Params, centered: bool = True) -> jax.Array:
    r"""$f_{1:N}$ (N, q): ``latent`` itself when centred; else from the innovations,
    $f_1 = a_1 + L_1 z_1$, $f_i = \Phi f_{i-1} + L_Q z_i$ (``params`` supplies $a_1, P_1, Q$)."""
    q = theta.latent.shape[-1]
    if centered or q == 0:
        return theta.latent
    L1 = jnp.linalg.cholesky(params.P1)
    LQ = jnp.linalg.cholesky(params.Q)
    f1 = params.a1 + L1 @ theta.latent[0]

    def step(f_prev, z_i):
        f_i = theta.Phi @ f_prev + LQ @ z_i
        return f_i, f_i

    _, rest = jax.lax.scan(step, f1, theta.latent[1:])
    return jnp.concatenate([f1[None], rest])


def _innovations(f: jax.Array, Phi: jax.Array, params: Params) -> jax.Array:
    """$z$ from $f$: the inverse of the non-centred map, (N, q)."""
    L1 = jnp.linalg.cholesky(params.P1)
    LQ = jnp.linalg.cholesky(params.Q)
    z1 = jax.scipy.linalg.solve_triangular(L1, f[0] - params.a1, lower=True)
    resid = f[1:] - f[:-1] @ Phi.T
    z = jax.scipy.linalg.solve_triangular(LQ, resid.T, lower=True).T
    return jnp.concatenate([z1[None], z])


def log_density(
    theta: Unconstrained,
    panel: Panel,
    prior: MStepPrior,
    params: Params,
    transition_scale: float = 1.0,
    centered: bool = True,
) -> jax.Array:
    r"""The log posterior density of the module docstring (up to a constant), a scalar, in the
    centred or the non-centred coordinates (the map $z \mapsto f$ has unit Jacobian up to the
    constant $\log\det L_1 L_Q^{N-1}$)."""
    f = trajectory(theta, params, centered)
    eta = panel.offset + theta.mu + f @ theta.Lambda.T
    psi = theta.log_dispersion
    value = emissions.log_density(panel.counts, eta, psi)
    loglik = jnp.sum(jnp.where(panel.mask, value, 0.0))
    z = _innovations(f, theta.Phi, params) if centered and f.shape[-1] else theta.latent
    log_prior = (
        -0.5 * jnp.sum(prior.mu_precision * (theta.mu - prior.mu_mean) ** 2)
        - 0.5 * jnp.sum(prior.loading_precision * theta.Lambda**2)
        - 0.5 * jnp.sum(theta.Phi**2) / transition_scale**2
        - 0.5 * jnp.sum(z**2)
    )
    if psi is not None:
        log_prior = log_prior - 0.5 * prior.dispersion_precision * jnp.sum(
            (psi - prior.dispersion_mean) ** 2
        )
    return loglik + log_prior


class FullPosterior(NamedTuple):
    """Draws of the full posterior, chains concatenated: ``mu`` (S, m), ``Lambda`` (S, m, q),
    ``Phi`` (S, q, q), ``f`` (S, N, q); ``diverging`` (S,) and ``num_steps`` (S,) (leapfrog
    steps) per draw; ``offset`` (N, m) the fit's log-offset; ``num_chains``; ``seconds`` of
    warm-up plus sampling; ``log_dispersion`` (S, m) for the negative binomial, else None."""

    mu: np.ndarray
    Lambda: np.ndarray
    Phi: np.ndarray
    f: np.ndarray
    diverging: np.ndarray
    num_steps: np.ndarray
    offset: np.ndarray
    num_chains: int
    seconds: float
    log_dispersion: np.ndarray | None = None

    @property
    def num_draws(self) -> int:
        return self.mu.shape[0]

    def log_rates(self) -> np.ndarray:
        r"""Draws of $\eta_{i\ell} = o_{i\ell} + \mu_\ell + \Lambda_\ell^\top f_i$, (S, N, m)."""
        return self.offset + self.mu[:, None, :] + np.einsum("sik,slk->sil", self.f, self.Lambda)

    def expected_rates(self) -> np.ndarray:
        r"""$E[\lambda_{i\ell} \mid X]$ (N, m), the posterior mean of the rate of every cell."""
        return np.exp(np.minimum(self.log_rates(), ETA_MAX)).mean(axis=0)

    def predictive_log_likelihood(self, counts, heldout_mask) -> np.ndarray:
        r"""$\log \frac1S \sum_s p(X_i(\ell) \mid \eta^{(s)}_{i\ell}, \psi^{(s)}_\ell)$ per
        held-out cell (Poisson or negative binomial), (N, m); NaN where ``heldout_mask`` is
        False."""
        eta = self.log_rates()
        x = np.nan_to_num(np.asarray(counts, float))
        psi = None if self.log_dispersion is None else self.log_dispersion[:, None, :]
        logp = np.asarray(emissions.log_density(x, eta, psi))
        value = np.asarray(logsumexp(logp, axis=0)) - np.log(self.num_draws)
        return np.where(np.asarray(heldout_mask, bool), value, np.nan)

    def diagnostics(self) -> dict:
        r"""Divergences, mean leapfrog steps, and the smallest effective sample size and worst
        split R-hat (R-hat needs 2+ chains) over the cells' log-rates, which are rotation
        invariant. NUTS draws can be antithetic, where the autocorrelation estimate of the ESS
        degenerates; as Stan does, the ESS is capped at $S \log_{10} S$."""
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        eta = self.log_rates().reshape(self.num_chains, -1, *self.offset.shape)
        S = self.num_draws
        cap = S * np.log10(max(S, 10))
        ess = np.asarray(effective_sample_size(eta))
        ess = np.where((ess < 0) | (ess > cap) | ~np.isfinite(ess), cap, ess)
        out = {
            "draws": S,
            "chains": self.num_chains,
            "divergences": int(self.diverging.sum()),
            "mean_leapfrog_steps": float(self.num_steps.mean()),
            "min_ess_log_rate": float(np.min(ess)),
            "seconds": round(self.seconds, 2),
        }
        if self.num_chains > 1:
            out["max_rhat_log_rate"] = float(np.max(split_gelman_rubin(eta)))
        return out


def _start(fit, centered: bool = True) -> Unconstrained:
    """The Laplace-EM estimate in the sampled coordinates (the mode, or its innovations)."""
    p = fit.params
    f = jnp.asarray(fit.posterior.mean)
    latent = f if centered or p.num_factors == 0 else _innovations(f, p.Phi, p)
    return Unconstrained(p.mu, p.Lambda, p.Phi, latent, p.log_dispersion)


def sample_full_posterior(
    key: jax.Array,
    fit,
    *,
    num_warmup: int = 200,
    num_samples: int = 200,
    num_chains: int = 1,
    transition_scale: float = 1.0,
    max_tree_depth: int = 10,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    parametrization: str = "centered",
    chain_method: str = "sequential",
    progress: bool = False,
) -> FullPosterior:
    r"""NUTS (NumPyro) over $(\mu, \Lambda, \Phi, f_{1:N})$ with the fit's priors, every chain
    started at the Laplace-EM estimate.

    Args:
        key: PRNG key.
        fit: a single :class:`~jaxssm.result.LaplaceEMResult` (its panel, priors, start values;
            its $a_1, P_1, Q$ stay fixed).
        num_warmup, num_samples: per chain.
        num_chains: chains (R-hat needs 2+).
        transition_scale: $s_\Phi$, the prior sd of each entry of $\Phi$.
        max_tree_depth: NUTS tree depth limit.
        target_accept_prob: the step-size adaptation's target (raise it toward 0.95 when
            :meth:`FullPosterior.diagnostics` reports divergences: smaller steps, longer trees).
        dense_mass: adapt a dense mass matrix (costly when $m(q+1) + q^2 + Nq$ is large).
        parametrization: ``"centered"`` samples $f_{1:N}$ (the default: with many locations
            the counts pin $f$ down and the non-centred geometry diverges); ``"noncentered"``
            samples the innovations $z$ as the reference Stan program does.
        chain_method: NumPyro's ``"sequential"``, ``"parallel"`` or ``"vectorized"``
            (``"vectorized"`` suits an accelerator).
        progress: NumPyro's progress bar.

    Returns:
        A :class:`FullPosterior`.
    """
    import time

    from numpyro.infer import MCMC, NUTS

    if fit.params.mu.ndim != 1:
        raise ValueError("sample_full_posterior takes a single fit; index the batch first")
    if num_warmup < 1 or num_samples < 1 or num_chains < 1:
        raise ValueError("num_warmup, num_samples and num_chains must be positive")
    if not transition_scale > 0:
        raise ValueError(f"transition_scale must be positive, got {transition_scale!r}")
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
        )
    centered = parametrization == "centered"
    panel, prior, params = fit.panel, fit.prior, fit.params

    def potential(theta):
        theta = Unconstrained(**theta)
        return -log_density(theta, panel, prior, params, transition_scale, centered)

    start = {k: v for k, v in _start(fit, centered)._asdict().items() if v is not None}
    if num_chains > 1:
        start = jax.tree.map(lambda a: jnp.broadcast_to(a, (num_chains, *a.shape)), start)
    kernel = NUTS(
        potential_fn=potential,
        max_tree_depth=max_tree_depth,
        target_accept_prob=target_accept_prob,
        dense_mass=dense_mass,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    t0 = time.perf_counter()
    mcmc.run(key, init_params=start, extra_fields=("diverging", "num_steps"))
    draws = jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - t0
    extra = mcmc.get_extra_fields()
    theta = Unconstrained(**draws)
    f = jax.vmap(trajectory, in_axes=(0, None, None))(theta, params, centered)
    return FullPosterior(
        mu=np.asarray(theta.mu),
        Lambda=np.asarray(theta.Lambda),
        Phi=np.asarray(theta.Phi),
        f=np.asarray(f),
        diverging=np.asarray(extra["diverging"]),
        num_steps=np.asarray(extra["num_steps"]),
        offset=np.asarray(panel.offset),
        num_chains=num_chains,
        seconds=seconds,
        log_dispersion=None if theta.log_dispersion is None else np.asarray(theta.log_dispersion),
    )
