r"""The user-facing Laplace-EM fit: initialisation, priors, the EM loop with a status, batches.

:func:`fit_laplace_em` runs the jitted EM iteration of :mod:`jaxssm.em` from a log-count PCA start
until the relative change of the MAP-EM objective falls below ``rtol``. ``loop="python"`` (the
default) runs the outer loop on the host with a progress bar and early stopping; ``loop="jax"``
runs it inside one ``lax.while_loop``. Counts with a leading batch axis (B, N, m) are fitted as
independent panels in one call, the whole loop vmapped over panels. The fit is a
:class:`~jaxssm.result.LaplaceEMResult`; :func:`check_fit` decides whether it is usable.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxssm import emissions
from jaxssm.diagnostics import concentrated_components, describe
from jaxssm.em import (
    STOP_CONVERGED,
    STOP_MAX_ITERATIONS,
    STOP_NAMES,
    STOP_NON_FINITE,
    STOP_PEAKED,
    EMOptions,
    e_step,
    em_loop,
    em_loop_batch,
    loop_step_jit,
    normalize_rotation,
    stop_rule,
)
from jaxssm.emissions import check_emission
from jaxssm.forecast import log_rate_moments
from jaxssm.laplace import CONVERGED, STALLED, STATUS_NAMES, LaplacePosterior
from jaxssm.params import LOADING_PRIORS, MStepPrior, Panel, Params, Priors, make_panel
from jaxssm.result import FitCheck, LaplaceEMResult

# ---------------------------------------------------------------------------------------------
# Start values and priors


def pooled_log_rate(panel: Panel) -> float:
    """$\\bar\\mu$: the log of the pooled rate of all observed cells (0.5 added to the count)."""
    x, M, o = (np.asarray(a, np.float64) for a in panel)
    return math.log((np.sum(M * x) + 0.5) / max(np.sum(M * np.exp(o)), 1e-300))


def make_prior(panel: Panel, priors: Priors, num_factors: int, log_dispersion=None) -> MStepPrior:
    """The priors of :class:`~jaxssm.params.Priors` as arrays for ``num_factors`` factors,
    centred on the pooled log-rate (and, for the negative binomial, on the mean of the start
    values ``log_dispersion``)."""
    if priors.loadings not in LOADING_PRIORS:
        raise ValueError(
            f"Priors.loadings must be one of {', '.join(map(repr, LOADING_PRIORS))}, "
            f"got {priors.loadings!r}"
        )
    for name in ("loading_scale", "scale_shape", "scale_rate", "dispersion_scale", "local_df"):
        if not getattr(priors, name) > 0:
            raise ValueError(f"Priors.{name} must be positive, got {getattr(priors, name)!r}")
    dtype = panel.counts.dtype
    m = panel.counts.shape[-1]
    q = num_factors
    precision = lambda s: 0.0 if math.isinf(s) else 1.0 / s**2  # noqa: E731
    learn = priors.loadings != "fixed"
    start_variance = 1.0 if math.isinf(priors.loading_scale) else priors.loading_scale**2
    local_df = priors.local_df if priors.loadings == "ard_local" else math.inf
    psi_mean = 0.0 if log_dispersion is None else float(np.mean(np.asarray(log_dispersion)))
    return MStepPrior(
        mu_mean=jnp.full((m,), pooled_log_rate(panel), dtype),
        mu_precision=jnp.asarray(precision(priors.mu_scale), dtype),
        loading_precision=jnp.full(
            (m, q), 1.0 / start_variance if learn else precision(priors.loading_scale), dtype
        ),
        loading_variance=jnp.full((q,), start_variance, dtype),
        location_weight=jnp.ones((m,), dtype),
        factor_scale=jnp.ones((q,), dtype),
        learn_scales=jnp.asarray(learn),
        local_df=jnp.asarray(local_df, dtype),
        scale_shape=jnp.asarray(priors.scale_shape, dtype),
        scale_rate=jnp.asarray(priors.scale_rate, dtype),
        dispersion_mean=jnp.asarray(psi_mean, dtype),
        dispersion_precision=jnp.asarray(precision(priors.dispersion_scale), dtype),
    )


def initial_params(
    panel: Panel, num_factors: int, emission: str = "poisson"
) -> tuple[Params, jax.Array]:
    r"""Start values from a PCA of log counts.

    $\mu_\ell$ = log of the location's rate shrunk toward the pooled one by one window's worth;
    $Z_{i\ell} = \log(X_i(\ell) + \tfrac12) - o_{i\ell}$ centred per location (missing cells 0);
    $Z \approx U S W^\top$ gives $f = \sqrt N U_q$, $\Lambda = W_q S_q / \sqrt N$; $\Phi$ from the
    least-squares regression of $f_i$ on $f_{i-1}$ (norm at most 0.95), then the
    linear change of variables that makes the residual covariance $Q = I$; $a_1 = 0$, $P_1 = I$.
    Negative binomial: $\phi_\ell$ by moments from the residual variance $v_\ell$ of the rank-q
    reconstruction, $\operatorname{Var}\log X \approx 1/\lambda + \phi$, so
    $\phi_\ell = \max(v_\ell - \overline{1/(X + 1/2)}, 10^{-4})$, $\psi_\ell$ clipped to
    $[-9, 2]$.
    """
    check_emission(emission)
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
    resid = z
    if q == 0:
        f = np.zeros((N, 0))
        Lambda, Phi = np.zeros((m, 0)), np.zeros((0, 0))
    else:
        U, S, Wt = np.linalg.svd(z, full_matrices=False)
        resid = z - (U[:, :q] * S[:q]) @ Wt[:q]
        f = U[:, :q] * math.sqrt(N)
        Lambda = Wt[:q].T * S[:q] / math.sqrt(N)
        if N >= 3:
            f0, f1 = f[:-1], f[1:]
            Phi = np.linalg.solve(f0.T @ f0 + 1e-6 * eye, f0.T @ f1).T
            Phi *= min(1.0, 0.95 / max(np.linalg.norm(Phi, 2), 1e-12))
            innovations = f1 - f0 @ Phi.T
            R = innovations.T @ innovations / len(innovations) + 1e-2 * eye
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
    if emission == "negbin":
        variance = np.sum(M * resid**2, axis=0) / count
        poisson_part = np.sum(M / (x + 0.5), axis=0) / count
        phi = np.maximum(variance - poisson_part, 1e-4)
        params = params._replace(log_dispersion=jnp.asarray(np.clip(np.log(phi), -9.0, 2.0), dtype))
    f = jnp.asarray(f, dtype)
    if q > 0:
        params, f = normalize_rotation(params, f)
    return params, f


# ---------------------------------------------------------------------------------------------
# The fit

_posterior_at = jax.jit(e_step, static_argnames="options")


def _e_step_batch(panel, params, f_init, options):
    return jax.vmap(lambda p, th, f: e_step(p, th, f, options))(panel, params, f_init)


_posterior_at_batch = jax.jit(_e_step_batch, static_argnames="options")


def posterior(
    params: Params,
    counts,
    *,
    mask=None,
    offset=None,
    f_init: jax.Array | None = None,
    options: EMOptions = EMOptions(),
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
    return _posterior_at(panel, params, f_init, options=options)


def _status(code: int, newton_status: int) -> str:
    if code == STOP_NON_FINITE:
        return "non_finite: an E-step or objective was not finite; the last finite parameters"
    return STOP_NAMES[code]


def _stop_messages(code: int, iterations: int) -> list[str]:
    """What the EM's stop says about convergence: nothing when it converged."""
    if code == STOP_NON_FINITE:
        return [
            "the EM stopped on a non-finite E-step or objective (the last finite parameters "
            "are returned)"
        ]
    if code == STOP_MAX_ITERATIONS:
        return [
            f"the EM reached max_iterations ({iterations} iterations) before the objective's "
            "relative change fell below rtol"
        ]
    return []


#: A cell whose log predictive density is below this is one the model cannot explain: the fit is
#: flagged (a sound fit of counts scores a cell at a few nats; -50 is e^-50).
WORST_CELL = -50.0


def _in_sample(params, posterior, panel) -> np.ndarray:
    mean, var = log_rate_moments(params, posterior, panel)
    value = np.asarray(
        emissions.predictive_log_pmf(panel.counts, mean, var, params.log_dispersion, 16)
    )
    return np.where(np.asarray(panel.mask), value, np.nan)


def check_fit(fit: LaplaceEMResult, static: LaplaceEMResult | None = None) -> FitCheck:
    """Whether a fit can be used: the final E-step converged, no observed cell has a log
    predictive below :data:`WORST_CELL`, and (given the ``static`` fit of the same data) its
    objective and in-sample fit are not worse than the static model's."""
    problems = []
    newton = int(fit.posterior.status)
    if newton not in (CONVERGED, STALLED):
        problems.append(
            f"the final E-step Newton did not converge ({STATUS_NAMES[newton]} after "
            f"{int(fit.posterior.num_steps)} steps)"
        )
    cells = _in_sample(fit.params, fit.posterior, fit.panel)
    observed = np.isfinite(cells) | np.asarray(fit.panel.mask)
    if observed.any() and np.all(np.isfinite(cells[observed])):
        flat = np.where(observed, cells, np.inf)
        i, j = np.unravel_index(np.argmin(flat), flat.shape)
        worst, below, mean = (
            float(flat[i, j]),
            int(np.sum(flat < WORST_CELL)),
            float(np.mean(cells[observed])),
        )
    else:
        i = j = -1
        worst, below, mean = -math.inf, int(observed.sum()), -math.inf
    if below:
        problems.append(
            f"{below} observed cell(s) have a log predictive below {WORST_CELL:g} (worst "
            f"{worst:,.1f} at window {i}, location {j}): the model cannot explain them"
            + (" — try emission='negbin'" if fit.params.log_dispersion is None else "")
        )
    objective = float(fit.objective[-1]) if len(fit.objective) else math.nan
    best_objective = (
        float(np.nanmax(fit.objective)) if np.isfinite(fit.objective).any() else objective
    )
    static_objective = static_in_sample = math.nan
    if static is not None:
        static_objective = float(np.nanmax(static.objective))
        static_cells = _in_sample(static.params, static.posterior, static.panel)
        static_in_sample = float(np.nanmean(static_cells))
        tolerance = 1.0 + 1e-6 * abs(static_objective)
        if best_objective < static_objective - tolerance:
            problems.append(
                f"its objective is below the static model's ({best_objective:,.2f} against "
                f"{static_objective:,.2f})"
            )
        if mean < static_in_sample - 1e-3:
            problems.append(
                f"it fits the observed cells worse than the static model ({mean:.4f} against "
                f"{static_in_sample:.4f} log predictive per cell)"
            )
    return FitCheck(
        STATUS_NAMES[newton], worst, int(i), int(j), below, mean, best_objective,
        static_objective, static_in_sample, tuple(problems),
    )  # fmt: skip


def fit_laplace_em(
    counts,
    num_factors: int,
    *,
    emission: str = "poisson",
    mask=None,
    offset=None,
    priors: Priors = Priors(),
    max_iterations: int = 1000,
    rtol: float = 1e-6,
    options: EMOptions = EMOptions(),
    init: tuple[Params, jax.Array] | None = None,
    loop: str = "python",
    progress: bool = False,
    check: bool = True,
    dtype=None,
) -> LaplaceEMResult:
    r"""Fit $X_i(\ell) \sim \mathrm{Poisson}$ or $\mathrm{NegBin}(\exp(o_{i\ell} + \mu_\ell +
    \Lambda_\ell^\top f_i), \phi_\ell)$, $f_i = \Phi f_{i-1} + \varepsilon_i$, by Laplace-EM
    (MAP-EM with weak priors and learned loading scales; see :mod:`jaxssm.em`).

    Args:
        counts: (N, m) counts, windows on the first axis (NaN = missing); or (B, N, m) for B
            independent panels fitted in one vmapped call.
        num_factors: q; 0 fits the static model $\log\lambda_{i\ell} = o_{i\ell} + \mu_\ell$.
        emission: ``"poisson"`` or ``"negbin"`` (negative binomial, a dispersion per location).
        mask: True where a cell is observed (ANDed with not-NaN); a row of False is a missing
            window.
        offset: known log-offset $o_{i\ell}$ (e.g. log exposure), broadcastable to counts.
        priors: priors and how the loading scales are set (:class:`~jaxssm.params.Priors`).
        max_iterations: iteration limit (an iteration is a SQUAREM cycle of three EM maps, or
            one EM map with ``options.accelerate="none"``).
        rtol: stop when $|\mathcal J_t - \mathcal J_{t-1}| \le$ ``rtol`` $|\mathcal J_t|$.
        options: Newton limits and options of one iteration (:class:`~jaxssm.em.EMOptions`).
        init: ``(params, f)`` start values (default: :func:`initial_params`).
        loop: ``"python"`` (host loop, progress bar) or ``"jax"`` (one ``lax.while_loop``).
            Batches always use ``"jax"``.
        progress: show a progress bar (python loop).
        check: check the fit (single fits; :func:`check_fit`): the final E-step converged, no
            observed cell below a log predictive of -50, and for q > 0 an objective and an
            in-sample fit not worse than the static model's (one more, cheap fit). A fit that
            fails a check is not ``converged`` and its status says why.
        dtype: float dtype (default JAX's: float32, or float64 with x64 enabled).

    Returns:
        A :class:`LaplaceEMResult`.

    Example:
        >>> fit = fit_laplace_em(counts, num_factors=3, emission="negbin")  # doctest: +SKIP
        >>> fit.status, fit.expected_counts()                               # doctest: +SKIP
    """
    check_emission(emission)
    if loop not in ("python", "jax"):
        raise ValueError(f"loop must be 'python' or 'jax', got {loop!r}")
    panel = counts if isinstance(counts, Panel) else make_panel(counts, mask, offset, dtype=dtype)
    if panel.counts.ndim == 3:
        return _fit_batch(panel, num_factors, emission, priors, max_iterations, rtol, options)
    params, f = init if init is not None else initial_params(panel, num_factors, emission)
    if params.emission != emission and init is not None:
        raise ValueError(f"init holds {params.emission} parameters, but emission={emission!r}")
    prior = make_prior(panel, priors, params.num_factors, params.log_dispersion)
    if loop == "jax":
        out = em_loop(
            panel, params, f, prior, options=options, max_iterations=max_iterations, rtol=rtol
        )
        fit = _result(
            panel, out.params, out.posterior,
            np.asarray(out.trace.objective)[: int(out.iterations)],
            int(out.iterations), int(out.evaluations), int(out.code), out.prior, options,
            int(out.newton_limit_hits),
        )  # fmt: skip
    else:
        fit = _fit_python(panel, params, f, prior, max_iterations, rtol, options, progress)
    if not check:
        return fit
    static = None
    if fit.num_factors > 0 and fit.converged:
        static = fit_laplace_em(
            panel, 0, emission=emission, priors=priors, max_iterations=max_iterations,
            rtol=rtol, options=options, check=False,
        )  # fmt: skip
    return with_checks(fit, static)


def with_checks(fit: LaplaceEMResult, static: LaplaceEMResult | None = None) -> LaplaceEMResult:
    """The fit with :func:`check_fit`'s verdict in its status and messages: a fit that fails a
    check is not ``converged``."""
    checked = check_fit(fit, static)
    status, converged = fit.status, fit.converged
    if checked.problems and converged:
        status = "not converged: " + "; ".join(checked.problems) + f" (EM: {status})"
        converged = False
    elif checked.problems:
        status = status + "; " + "; ".join(checked.problems)
    messages = [*fit.messages, *checked.problems]
    return fit._replace(status=status, converged=converged, check=checked, messages=messages)


def _limit_note(hits: int, options: EMOptions) -> str:
    if not hits:
        return ""
    return (
        f"; note: {hits} E-step(s) during the fit stopped at the Newton step limit "
        f"(max_newton_steps={options.max_newton_steps}; the EM continued from where they stopped)"
    )


def _result(
    panel, params, posterior, objective, iterations, evaluations, code, prior, options, hits=0
):
    status = (
        _status(code, int(posterior.status))
        + describe(concentrated_components(params, posterior))
        + _limit_note(hits, options)
    )
    if code == STOP_NON_FINITE:
        warnings.warn(f"Laplace-EM stopped: {status}", RuntimeWarning, stacklevel=4)
    converged = code in (STOP_CONVERGED, STOP_PEAKED)
    return LaplaceEMResult(
        params, posterior, objective, bool(converged), iterations, status, panel, prior, options,
        evaluations, None, hits, _stop_messages(code, iterations),
    )  # fmt: skip


def _fit_python(panel, params, f, prior, max_iterations, rtol, options, progress):
    trace: list[float] = []
    best = None
    best_objective, previous, below, hits = -math.inf, math.nan, 0, 0
    step_max = jnp.asarray(options.max_step_length, panel.counts.dtype)
    per = 3 if options.accelerate == "squarem" else 1
    code = STOP_MAX_ITERATIONS
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iterations, desc=f"Laplace-EM q={params.num_factors}", unit="it")
    try:
        for _ in range(max_iterations):
            cycle = loop_step_jit(panel, params, f, prior, options=options, step_max=step_max)
            objective = float(cycle.objective)
            hits += int(cycle.newton_limit_hits)
            trace.append(objective)
            stop, _, below = stop_rule(objective, previous, best_objective, rtol, below)
            candidate = float(cycle.best_objective)
            if math.isfinite(candidate) and candidate > best_objective:
                best = (cycle.best_params, cycle.best_prior, cycle.best_posterior)
                best_objective = candidate
            if bar is not None:
                bar.update(1)
                bar.set_postfix(objective=f"{objective:.6g}", newton=int(cycle.newton_steps))
            if int(stop) >= 0:
                code = int(stop)
                break
            params, prior, f = cycle.params, cycle.prior, cycle.f
            step_max, previous = cycle.step_max, objective
    finally:
        if bar is not None:
            bar.close()
    if best is None:  # not even the start values were finite
        best = (params, prior, _posterior_at(panel, params, f, options=options))
    params, prior, posterior = best
    return _result(
        panel, params, posterior, np.asarray(trace), len(trace), per * len(trace), code, prior,
        options, hits,
    )  # fmt: skip


def _fit_batch(
    panel, num_factors, emission, priors, max_iterations, rtol, options
) -> LaplaceEMResult:
    B = panel.counts.shape[0]
    singles = [Panel(*(a[b] for a in panel)) for b in range(B)]
    starts = [initial_params(p, num_factors, emission) for p in singles]
    priors_b = [
        make_prior(p, priors, num_factors, s[0].log_dispersion)
        for p, s in zip(singles, starts, strict=True)
    ]
    stack = lambda items: jax.tree.map(lambda *a: jnp.stack(a), *items)  # noqa: E731
    params = stack([s[0] for s in starts])
    f = stack([s[1] for s in starts])
    prior = stack(priors_b)
    out = em_loop_batch(
        panel, params, f, prior, options=options, max_iterations=max_iterations, rtol=rtol
    )
    params, posterior = out.params, out.posterior
    objective = np.asarray(out.trace.objective)
    iterations, codes = np.asarray(out.iterations), np.asarray(out.code)
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
        params, posterior, objective, converged, iterations, status, panel, out.prior, options,
        np.asarray(out.evaluations), None, np.asarray(out.newton_limit_hits),
        [_stop_messages(int(c), int(n)) for c, n in zip(codes, iterations, strict=True)],
    )  # fmt: skip
