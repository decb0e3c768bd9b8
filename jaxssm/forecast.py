r"""Uses of a fit: expected rates, posterior draws, forecasts, imputation and the held-out
predictive likelihood (the choice of q and of the emission by it is :mod:`jaxssm.selection`).

Under the Laplace posterior $f_{1:N} \sim N(\hat f, \hat V)$ the log-rate of a cell is Gaussian,
$\eta_{i\ell} \sim N(o_{i\ell} + \mu_\ell + \Lambda_\ell^\top \hat f_i,\
\Lambda_\ell^\top \hat V_{ii} \Lambda_\ell)$, so $E[\lambda_{i\ell}] = \exp(E\eta + \tfrac12
\mathrm{Var}\,\eta)$ and the predictive probability of a held-out count is the one-dimensional
integral $\int p(x \mid \eta)\, N(\eta)\,d\eta$ (Gauss-Hermite quadrature), with $p$ the
Poisson or negative binomial of the fit (:mod:`jaxssm.emissions`; the family is
``params.log_dispersion``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxssm import block_tridiag as bt
from jaxssm import cyclic_reduction as cr
from jaxssm import emissions, small_linalg
from jaxssm.laplace import LaplacePosterior
from jaxssm.params import Panel, Params


def _offset_like(params: Params, posterior: LaplacePosterior, offset) -> jax.Array:
    N = posterior.mean.shape[-2]
    m = params.mu.shape[-1]
    if offset is None:
        return jnp.zeros((N, m), params.mu.dtype)
    if isinstance(offset, Panel):
        return offset.offset
    return jnp.broadcast_to(jnp.asarray(offset, params.mu.dtype), (N, m))


def log_rate_moments(params: Params, posterior: LaplacePosterior, offset=None, parameter_cov=None):
    r"""Mean and variance of $\eta_{i\ell} = \log\lambda_{i\ell}$ under the Laplace posterior,
    both (N, m). ``offset`` is the fit's :class:`~jaxssm.params.Panel` or an offset array.

    With ``parameter_cov`` (m, q+1, q+1) — the fit's
    :meth:`~jaxssm.result.LaplaceEMResult.parameter_covariance` — the variance also carries the
    uncertainty of $(\mu_\ell, \Lambda_\ell)$, taken independent of $f$:
    $+\, z_i^\top C_\ell z_i + \mathrm{tr}(C_\ell^{\Lambda\Lambda} \hat V_{ii})$,
    $z_i = (1, \hat f_i)$ — exactly the variance of $\mu_\ell + \Lambda_\ell^\top f_i$ under the
    product of the two Gaussians — and the mean is shifted by minus half of that added variance
    (on average over $f$, what :func:`parameter_shift` subtracts from each draw), so that the
    parameter uncertainty does not move the expected rate:
    the Laplace approximation of a rate's log is centred at its mode, and $e^{\text{mode}}$ is the
    posterior mean of the rate (exactly so for a Poisson count's Gamma posterior), so a plain
    lognormal around the mode overstates the rate of a rare location by $e^{z^\top C z/2}$
    (measured: shifting improves held-out cells on every simulated panel, by 0.003 per cell on a
    sparse one, and removes a 2 % excess error of imputed country totals against the Dirichlet
    baseline on static histories). The shift is per cell, not on $\mu_\ell$ alone: where the
    factors are far from 0, $\mu_\ell$ and $\Lambda_\ell$ are strongly correlated and
    $C_{\ell,\mu\mu}$ alone can be orders of magnitude above the variance of the cell's
    log-rate.
    """
    o = _offset_like(params, posterior, offset)
    mean = o + params.mu + posterior.mean @ params.Lambda.T
    var = jnp.einsum("lk,nkj,lj->nl", params.Lambda, posterior.V_diag, params.Lambda)
    if parameter_cov is not None:
        # z_i^T C z_i (z_i = (1, f_i), also when q = 0) + tr(C_Lambda V_ii): the parameters' part
        parameter_var = 2.0 * parameter_shift(parameter_cov, posterior.mean) + jnp.einsum(
            "lkj,njk->nl", parameter_cov[:, 1:, 1:], posterior.V_diag
        )
        var = var + parameter_var
        mean = mean - 0.5 * parameter_var  # mean-preserving (see the docstring)
    return mean, var


def parameter_shift(parameter_cov: jax.Array, f: jax.Array) -> jax.Array:
    r"""$\tfrac12 z^\top C_\ell z$ with $z = (1, f)$: half the variance that the uncertainty of
    $(\mu_\ell, \Lambda_\ell)$ gives a log-rate, subtracted from its mean so that this
    uncertainty does not move the expected rate (:func:`log_rate_moments`). ``parameter_cov``
    (m, q+1, q+1), ``f`` (..., q) → (..., m)."""
    z = jnp.concatenate([jnp.ones((*f.shape[:-1], 1), f.dtype), f], axis=-1)
    return 0.5 * jnp.einsum("...k,lkj,...j->...l", z, parameter_cov, z)


def _draw_parameters(key, params: Params, parameter_cov, num_draws: int):
    r"""Draws of $(\mu, \Lambda)$ from $N(\hat\theta_\ell, C_\ell)$ per location, or the point
    estimate repeated when ``parameter_cov`` is None: (S, m) and (S, m, q). The log-rates built
    from them subtract :func:`parameter_shift` (mean-preserving; see :func:`log_rate_moments`)."""
    if parameter_cov is None:
        return params.mu[None], params.Lambda[None]
    chol = small_linalg.cholesky(parameter_cov)  # (m, q+1, q+1)
    z = jax.random.normal(key, (num_draws, *params.mu.shape, chol.shape[-1]), params.mu.dtype)
    theta = jnp.concatenate([params.mu[:, None], params.Lambda], axis=1)
    draws = theta + jnp.einsum("lkj,slj->slk", chol, z)
    return draws[..., 0], draws[..., 1:]


def expected_rates(params: Params, posterior: LaplacePosterior, offset=None) -> jax.Array:
    r"""$E[\lambda_{i\ell}] = \exp(E\eta_{i\ell} + \tfrac12 \mathrm{Var}\,\eta_{i\ell})$, (N, m),
    for every cell, observed or not.

    Example:
        >>> rates = expected_rates(fit.params, fit.posterior, fit.panel)  # doctest: +SKIP
    """
    mean, var = log_rate_moments(params, posterior, offset)
    return jnp.exp(mean + 0.5 * var)


def sample_posterior(key: jax.Array, posterior: LaplacePosterior, num_draws: int) -> jax.Array:
    r"""Draws of $f_{1:N}$ from $N(\hat f, J^{-1})$ via the factor of $J$ the posterior carries
    (the block Cholesky, or the cyclic reduction of the parallel solver; $O(N q^3)$ each):
    (num_draws, N, q); for q = 0 (the static model) an empty (num_draws, N, 0)."""
    if posterior.mean.shape[-1] == 0:
        return jnp.broadcast_to(posterior.mean, (num_draws, *posterior.mean.shape))
    if isinstance(posterior.chol, cr.CyclicReductionFactor):
        return posterior.mean + cr.sample(key, posterior.chol, num_draws)
    return posterior.mean + bt.sample(key, posterior.chol, num_draws)


class Forecast(NamedTuple):
    """Draws ``h`` windows past the last: ``f`` (S, h, q), ``log_rate`` (S, h, m) and
    ``counts`` (S, h, m) (Poisson or negative binomial draws: the predictive distribution of new
    counts)."""

    f: jax.Array
    log_rate: jax.Array
    counts: jax.Array

    def interval(self, level: float = 0.9, of: str = "counts"):
        """Mean and the central ``level`` interval of ``of`` over draws: three (h, m) arrays."""
        draws = np.asarray(getattr(self, of) if of != "rates" else jnp.exp(self.log_rate))
        tail = (1 - level) / 2
        return draws.mean(0), np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0)


def forecast(
    key: jax.Array,
    params: Params,
    posterior: LaplacePosterior,
    horizon: int,
    num_draws: int = 1000,
    offset=None,
    parameter_cov=None,
) -> Forecast:
    r"""Forecast $h$ windows ahead: $f_N \sim N(\hat f_N, \hat V_{NN})$, then
    $f_{N+k} = \Phi f_{N+k-1} + \varepsilon$, $\lambda = \exp(o + \mu + \Lambda f)$, counts from
    the emission.

    ``offset`` is the known log-offset of the future windows, broadcastable to (h, m) (default 0);
    with ``parameter_cov`` each draw also draws $(\mu_\ell, \Lambda_\ell)$ (see
    :func:`log_rate_moments`).
    """
    k_last, k_noise, k_counts, k_theta = jax.random.split(key, 4)
    q = params.Lambda.shape[-1]
    m = params.mu.shape[-1]
    dtype = params.mu.dtype
    o = jnp.zeros((horizon, m), dtype) if offset is None else jnp.broadcast_to(offset, (horizon, m))
    if q > 0:
        chol_last = jnp.linalg.cholesky(posterior.V_diag[-1])
        z = jax.random.normal(k_last, (num_draws, q), dtype)
        f_last = posterior.mean[-1] + z @ chol_last.T
        chol_Q = jnp.linalg.cholesky(params.Q)
        eps = jax.random.normal(k_noise, (horizon, num_draws, q), dtype) @ chol_Q.T

        def step(f_prev, e):
            f_next = f_prev @ params.Phi.T + e
            return f_next, f_next

        _, f = jax.lax.scan(step, f_last, eps)
        f = jnp.swapaxes(f, 0, 1)  # (S, h, q)
    else:
        f = jnp.zeros((num_draws, horizon, 0), dtype)
    mu, Lambda = _draw_parameters(k_theta, params, parameter_cov, num_draws)
    log_rate = (
        o
        + mu[:, None, :]
        + jnp.einsum("shk,slk->shl", f, jnp.broadcast_to(Lambda, (num_draws, *params.Lambda.shape)))
    )
    if parameter_cov is not None:
        log_rate = log_rate - parameter_shift(parameter_cov, f)
    counts = emissions.sample_counts(k_counts, log_rate, params.log_dispersion)
    return Forecast(f, log_rate, counts)


class Imputation(NamedTuple):
    """Posterior draws for a fitted panel: ``f`` (S, N, q); ``counts`` (S, N, m) with observed
    cells as observed and missing cells drawn from the emission (Poisson or negative binomial
    with mean $\\lambda$); ``proportions``
    (S, N, m) $p_i = \\mathrm{softmax}(o_i + \\mu + \\Lambda f_i)$ over locations."""

    f: jax.Array
    counts: jax.Array
    proportions: jax.Array


def impute(
    key: jax.Array,
    params: Params,
    posterior: LaplacePosterior,
    panel: Panel,
    num_draws: int = 1000,
    parameter_cov=None,
) -> Imputation:
    r"""Draws of the missing cells and of the location proportions from the Laplace posterior
    (and, with ``parameter_cov``, of each location's $(\mu_\ell, \Lambda_\ell)$)."""
    k_f, k_x, k_theta = jax.random.split(key, 3)
    f = sample_posterior(k_f, posterior, num_draws)
    mu, Lambda = _draw_parameters(k_theta, params, parameter_cov, num_draws)
    Lambda = jnp.broadcast_to(Lambda, (num_draws, *params.Lambda.shape))
    log_rate = panel.offset + mu[:, None, :] + jnp.einsum("snk,slk->snl", f, Lambda)
    if parameter_cov is not None:
        log_rate = log_rate - parameter_shift(parameter_cov, f)
    drawn = emissions.sample_counts(k_x, log_rate, params.log_dispersion)
    counts = jnp.where(panel.mask, panel.counts, drawn)
    proportions = jax.nn.softmax(log_rate, axis=-1)
    return Imputation(f, counts, proportions)


def predictive_log_likelihood(
    params: Params,
    posterior: LaplacePosterior,
    counts,
    heldout_mask,
    offset=None,
    num_nodes: int = 48,
    parameter_cov=None,
) -> jax.Array:
    r"""$\log \int p(X_i(\ell) \mid \eta)\, N(\eta; E\eta_{i\ell},
    \mathrm{Var}\,\eta_{i\ell})\, d\eta$ per held-out cell by Gauss-Hermite quadrature, $p$ the
    fit's emission; NaN where ``heldout_mask`` is False. (N, m). ``offset``: the fit's
    :class:`~jaxssm.params.Panel` or its offset array (a fit's own
    :meth:`~jaxssm.result.LaplaceEMResult.log_predictive` passes both for you).
    ``parameter_cov``: see :func:`log_rate_moments`."""
    mean, var = log_rate_moments(params, posterior, offset, parameter_cov)
    x = jnp.nan_to_num(jnp.asarray(counts, mean.dtype))
    value = emissions.predictive_log_pmf(x, mean, var, params.log_dispersion, num_nodes)
    return jnp.where(jnp.asarray(heldout_mask), value, jnp.nan)
