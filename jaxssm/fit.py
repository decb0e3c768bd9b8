r"""The user-facing Laplace-EM fit: initialisation, priors, the EM loop with a status, batches.

:func:`fit_laplace_em` runs the jitted EM iteration of :mod:`jaxssm.em` from a log-count PCA start
until the relative change of the MAP-EM objective falls below ``rtol``. ``loop="python"`` (the
default) runs the outer loop on the host with a progress bar and early stopping; ``loop="jax"``
runs it inside one ``lax.while_loop``. Counts with a leading batch axis (B, N, m) are fitted as
independent panels in one call, the whole loop vmapped over panels.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxssm.diagnostics import concentrated_components, describe
from jaxssm.em import (
    STOP_CONVERGED,
    STOP_MAX_ITERATIONS,
    STOP_NAMES,
    STOP_NON_FINITE,
    STOP_PEAKED,
    EMSettings,
    e_step,
    em_loop,
    em_loop_batch,
    em_step,
    emission_parameter_covariance,
    normalize_rotation,
    stop_rule,
)
from jaxssm.laplace import CONVERGED, NON_FINITE, STALLED, STATUS_NAMES, LaplacePosterior
from jaxssm.params import MStepPrior, Panel, Params, Priors, make_panel


class LaplaceEMResult(NamedTuple):
    """A Laplace-EM fit.

    ``params`` the MAP-EM estimate; ``posterior`` the Laplace posterior of $f_{1:N}$ at
    ``params``; ``objective`` (num_iterations,) the MAP-EM objective per iteration (the Laplace
    $\\log p(X \\mid \\theta_t)$ plus the log prior); ``converged``; ``num_iterations``; ``status``
    in words (``converged``, ``converged (objective peaked)``, ``max_iterations``,
    ``non_finite: ...``; see :func:`jaxssm.em.stop_rule`), followed by ``; warning: ...`` when
    a latent component sits in a single window (:mod:`jaxssm.diagnostics`); ``panel`` and ``prior``
    as fitted. For a batch every field has a leading panel axis and ``status`` is a list.
    """

    params: Params
    posterior: LaplacePosterior
    objective: np.ndarray
    converged: bool | np.ndarray
    num_iterations: int | np.ndarray
    status: str | list[str]
    panel: Panel
    prior: MStepPrior
    settings: EMSettings

    @property
    def num_factors(self) -> int:
        return self.params.Lambda.shape[-1]

    def parameter_covariance(self) -> jax.Array:
        r"""Per-location covariance of $(\mu_\ell, \Lambda_\ell)$, (m, q+1, q+1) (see
        :func:`jaxssm.em.emission_parameter_covariance`); pass it as ``parameter_cov`` to the
        predictive functions. Single fits only."""
        if self.params.mu.ndim != 1:
            raise ValueError("parameter_covariance() takes a single fit; index the batch first")
        return emission_parameter_covariance(self.params, self.posterior, self.panel, self.prior)


# ---------------------------------------------------------------------------------------------
# Start values and priors


def pooled_log_rate(panel: Panel) -> float:
    """$\\bar\\mu$: the log of the pooled rate of all observed cells (0.5 added to the count)."""
    x, M, o = (np.asarray(a, np.float64) for a in panel)
    return math.log((np.sum(M * x) + 0.5) / max(np.sum(M * np.exp(o)), 1e-300))


def make_prior(panel: Panel, priors: Priors) -> MStepPrior:
    """The priors of :class:`~jaxssm.params.Priors` as arrays, centred on the pooled log-rate."""
    dtype = panel.counts.dtype
    m = panel.counts.shape[-1]
    precision = lambda s: 0.0 if math.isinf(s) else 1.0 / s**2  # noqa: E731
    return MStepPrior(
        mu_mean=jnp.full((m,), pooled_log_rate(panel), dtype),
        mu_precision=jnp.asarray(precision(priors.mu_scale), dtype),
        loading_precision=jnp.asarray(precision(priors.loading_scale), dtype),
    )


def initial_params(panel: Panel, num_factors: int) -> tuple[Params, jax.Array]:
    r"""Start values from a PCA of log counts.

    $\mu_\ell$ = log of the location's rate shrunk toward the pooled one by one window's worth;
    $Z_{i\ell} = \log(X_i(\ell) + \tfrac12) - o_{i\ell}$ centred per location (missing cells 0);
    $Z \approx U S W^\top$ gives $f = \sqrt N U_q$, $\Lambda = W_q S_q / \sqrt N$; $\Phi$ from the
    least-squares regression of $f_i$ on $f_{i-1}$ (norm at most 0.95), then the
    linear change of variables that makes the residual covariance $Q = I$; $a_1 = 0$, $P_1 = I$.
    """
    x, M, o = (np.asarray(a, np.float64) for a in panel)
    N, m = x.shape
    q = num_factors
    if q > min(N, m):
        raise ValueError(f"num_factors={q} exceeds min(windows, locations) = {min(N, m)}")
    dtype = panel.counts.dtype
    pooled = math.exp(pooled_log_rate(panel))
    exposure = np.sum(M * np.exp(o), axis=0)
    mu = np.log((np.sum(M * x, axis=0) + pooled) / (exposure + 1.0))
    z = np.log(x + 0.5) - o
    count = np.maximum(M.sum(0), 1)
    z = np.where(M, z - np.sum(M * z, axis=0) / count, 0.0)
    eye = np.eye(q)
    if q == 0:
        f = np.zeros((N, 0))
        Lambda, Phi = np.zeros((m, 0)), np.zeros((0, 0))
    else:
        U, S, Wt = np.linalg.svd(z, full_matrices=False)
        f = U[:, :q] * math.sqrt(N)
        Lambda = Wt[:q].T * S[:q] / math.sqrt(N)
        if N >= 3:
            f0, f1 = f[:-1], f[1:]
            Phi = np.linalg.solve(f0.T @ f0 + 1e-6 * eye, f0.T @ f1).T
            Phi *= min(1.0, 0.95 / max(np.linalg.norm(Phi, 2), 1e-12))
            resid = f1 - f0 @ Phi.T
            R = resid.T @ resid / len(resid) + 1e-2 * eye
        else:
            Phi, R = 0.5 * eye, eye
        T = np.linalg.cholesky(R)  # f = T f'  with  cov(f') innovations = I
        f = np.linalg.solve(T, f.T).T
        Lambda = Lambda @ T
        Phi = np.linalg.solve(T, Phi @ T)
    params = Params(
        mu=jnp.asarray(mu, dtype),
        Lambda=jnp.asarray(Lambda, dtype),
        Phi=jnp.asarray(Phi, dtype),
        Q=jnp.asarray(eye, dtype),
        a1=jnp.zeros((q,), dtype),
        P1=jnp.asarray(eye, dtype),
    )
    f = jnp.asarray(f, dtype)
    if q > 0:
        params, f = normalize_rotation(params, f)
    return params, f


# ---------------------------------------------------------------------------------------------
# The fit

_posterior_at = jax.jit(e_step, static_argnames="settings")


def _e_step_batch(panel, params, f_init, settings):
    return jax.vmap(lambda p, th, f: e_step(p, th, f, settings))(panel, params, f_init)


_posterior_at_batch = jax.jit(_e_step_batch, static_argnames="settings")


def posterior(
    params: Params,
    counts,
    *,
    mask=None,
    offset=None,
    f_init: jax.Array | None = None,
    settings: EMSettings = EMSettings(),
) -> LaplacePosterior:
    r"""The Laplace posterior $N(\hat f_{1:N}, J^{-1})$ of the latent factors for given
    parameters and counts (e.g. new data, or parameters fitted elsewhere).

    Means and covariances of the log-rates per cell follow from
    :func:`~jaxssm.forecast.log_rate_moments`, rates from :func:`~jaxssm.forecast.expected_rates`.
    """
    panel = (
        counts
        if isinstance(counts, Panel)
        else make_panel(counts, mask, offset, dtype=params.mu.dtype)
    )
    if f_init is None:
        f_init = jnp.zeros((panel.counts.shape[0], params.num_factors), params.mu.dtype)
    return _posterior_at(panel, params, f_init, settings=settings)


def _status(code: int, newton_status: int) -> str:
    if code == STOP_NON_FINITE:
        return "non_finite: an E-step or objective was not finite; the last finite parameters"
    text = STOP_NAMES[code]
    if newton_status not in (CONVERGED, STALLED):
        text += f" (final E-step Newton: {STATUS_NAMES[int(newton_status)]})"
    return text


def fit_laplace_em(
    counts,
    num_factors: int,
    *,
    mask=None,
    offset=None,
    priors: Priors = Priors(),
    max_iterations: int = 1000,
    rtol: float = 1e-6,
    settings: EMSettings = EMSettings(),
    init: tuple[Params, jax.Array] | None = None,
    loop: str = "python",
    progress: bool = False,
    dtype=None,
) -> LaplaceEMResult:
    r"""Fit $X_i(\ell) \sim \mathrm{Poisson}(\exp(o_{i\ell} + \mu_\ell + \Lambda_\ell^\top f_i))$,
    $f_i = \Phi f_{i-1} + \varepsilon_i$, by Laplace-EM (MAP-EM with weak priors).

    Args:
        counts: (N, m) counts, windows on the first axis (NaN = missing); or (B, N, m) for B
            independent panels fitted in one vmapped call.
        num_factors: q; 0 fits the static model $\log\lambda_{i\ell} = o_{i\ell} + \mu_\ell$.
        mask: True where a cell is observed (ANDed with not-NaN); a row of False is a missing
            window.
        offset: known log-offset $o_{i\ell}$ (e.g. log exposure), broadcastable to counts.
        priors: prior scales (:class:`~jaxssm.params.Priors`); ``inf`` for maximum likelihood.
        max_iterations: EM iteration limit.
        rtol: stop when $|\mathcal J_t - \mathcal J_{t-1}| \le$ ``rtol`` $|\mathcal J_t|$.
        settings: Newton limits and options of one iteration (:class:`~jaxssm.em.EMSettings`).
        init: ``(params, f)`` start values (default: :func:`initial_params`).
        loop: ``"python"`` (host loop, progress bar) or ``"jax"`` (one ``lax.while_loop``).
            Batches always use ``"jax"``.
        progress: show a progress bar (python loop).
        dtype: float dtype (default JAX's: float32, or float64 with x64 enabled).

    Returns:
        A :class:`LaplaceEMResult`.

    Example:
        >>> fit = fit_laplace_em(counts, num_factors=3)          # doctest: +SKIP
        >>> rates = expected_rates(fit.params, fit.posterior, fit.panel)  # doctest: +SKIP
    """
    panel = counts if isinstance(counts, Panel) else make_panel(counts, mask, offset, dtype=dtype)
    if panel.counts.ndim == 3:
        return _fit_batch(panel, num_factors, priors, max_iterations, rtol, settings)
    prior = make_prior(panel, priors)
    params, f = init if init is not None else initial_params(panel, num_factors)
    if loop == "jax":
        params, f, iterations, code, trace = em_loop(
            panel, params, f, prior, settings=settings, max_iterations=max_iterations, rtol=rtol
        )
        posterior = _posterior_at(panel, params, f, settings=settings)
        objective = np.asarray(trace.objective)[: int(iterations)]
        return _result(
            panel, params, posterior, objective, int(iterations), int(code), prior, settings
        )
    return _fit_python(panel, params, f, prior, max_iterations, rtol, settings, progress)


def _result(panel, params, posterior, objective, iterations, code, prior, settings):
    status = _status(code, int(posterior.status)) + describe(
        concentrated_components(params, posterior)
    )
    if code == STOP_NON_FINITE:
        warnings.warn(f"Laplace-EM stopped: {status}", RuntimeWarning, stacklevel=4)
    converged = code in (STOP_CONVERGED, STOP_PEAKED)
    return LaplaceEMResult(
        params, posterior, objective, bool(converged), iterations, status, panel, prior, settings
    )


def _fit_python(panel, params, f, prior, max_iterations, rtol, settings, progress):
    trace: list[float] = []
    best = (params, f, None)
    best_objective, previous = -math.inf, math.nan
    code = STOP_MAX_ITERATIONS
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iterations, desc=f"Laplace-EM q={params.num_factors}", unit="it")
    try:
        for _ in range(max_iterations):
            new, f_next, post, objective = em_step(panel, params, f, prior, settings=settings)
            objective = math.nan if int(post.status) == NON_FINITE else float(objective)
            trace.append(objective)
            stop, new_best = stop_rule(objective, previous, best_objective, rtol)
            if bool(new_best):
                best, best_objective = (params, post.mean, post), objective
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{objective:.6g}", newton=int(post.num_steps))
            if int(stop) >= 0:
                code = int(stop)
                break
            params, f, previous = new, f_next, objective
    finally:
        if bar is not None:
            bar.close()
    params, f, posterior = best
    if posterior is None:  # not even the start values were finite
        posterior = _posterior_at(panel, params, f, settings=settings)
    return _result(panel, params, posterior, np.asarray(trace), len(trace), code, prior, settings)


def _fit_batch(panel, num_factors, priors, max_iterations, rtol, settings) -> LaplaceEMResult:
    B = panel.counts.shape[0]
    singles = [Panel(*(a[b] for a in panel)) for b in range(B)]
    starts = [initial_params(p, num_factors) for p in singles]
    priors_b = [make_prior(p, priors) for p in singles]
    stack = lambda items: jax.tree.map(lambda *a: jnp.stack(a), *items)  # noqa: E731
    params = stack([s[0] for s in starts])
    f = stack([s[1] for s in starts])
    prior = stack(priors_b)
    params, f, iterations, codes, trace = em_loop_batch(
        panel, params, f, prior, settings=settings, max_iterations=max_iterations, rtol=rtol
    )
    posterior = _posterior_at_batch(panel, params, f, settings=settings)
    objective = np.asarray(trace.objective)
    iterations, codes = np.asarray(iterations), np.asarray(codes)
    newton = np.asarray(posterior.status)
    status = [
        _status(int(c), int(n))
        + describe(concentrated_components(*jax.tree.map(lambda a, b=b: a[b], (params, posterior))))
        for b, (c, n) in enumerate(zip(codes, newton, strict=True))
    ]
    converged = np.isin(codes, (STOP_CONVERGED, STOP_PEAKED))
    if np.any(codes == STOP_NON_FINITE):
        warnings.warn(
            f"Laplace-EM: {int(np.sum(codes == STOP_NON_FINITE))} of {B} panels stopped on a "
            "non-finite objective (their last finite parameters are returned)",
            RuntimeWarning,
            stacklevel=3,
        )
    return LaplaceEMResult(
        params, posterior, objective, converged, iterations, status, panel, prior, settings,
    )  # fmt: skip
