r"""Laplace-EM for the dynamic factor model of counts: one iteration, SQUAREM, the loops.

One EM iteration at $\theta_t$:

* **E-step** (:mod:`jaxssm.laplace`): Newton for $\hat f_{1:N}$, warm-started from the previous
  mode, then $\hat V_{ii}$, $\hat V_{i,i-1}$ and the Laplace objective
  $\mathcal J(\theta_t) = \log \hat p(X \mid \theta_t) + \log p(\mu, \Lambda, \ldots)$ (MAP-EM;
  :func:`jaxssm.mstep.log_prior`).
* **M-step** (:mod:`jaxssm.mstep`): per location $(\mu_\ell, \Lambda_\ell)$ by damped Newton on the
  expected log likelihood plus the log prior; the negative binomial's $\psi_\ell$; the learned
  loading scales; $\Phi$ in closed form with $Q = I$; then the normalisation that removes the
  rotations the objective does not see.

**Identifiability.** For any invertible $T$, $(\Lambda T^{-1}, T\Phi T^{-1}, TQT^\top, T f)$
gives the same likelihood. $Q = I$ pins the scale; with an isotropic (fixed) loading prior the
remaining rotations are removed by rotating to orthogonal loading columns of decreasing norm,
and with learned per-factor scales (which the rotations do change) by ordering the factors by
scale and fixing signs: a pure reparametrisation, so fits are reproducible and comparable.

**What is integrated and what is a point estimate.** $f_{1:N}$ is integrated (Laplace). The
emission parameters $(\mu_\ell, \Lambda_\ell)$, $\psi_\ell$, $\Phi$ are MAP point estimates; the
loadings' Laplace covariance given $\hat f$ enters the scale updates (the evidence
approximation) and, on request, the predictive distributions
(:meth:`~jaxssm.result.LaplaceEMResult.parameter_covariance`); the local scales $t_\ell$ are
integrated by EM; the scales $s_k$ and $\bar\psi$ are empirical-Bayes point estimates.

**Acceleration.** ``EMOptions(accelerate="squarem")`` runs SQUAREM (Varadhan & Roland 2008,
scheme S3): two EM maps $\theta_1 = F(\theta_0)$, $\theta_2 = F(\theta_1)$, the extrapolation
$\theta' = \theta_0 - 2\alpha r + \alpha^2 v$ with $r = \theta_1 - \theta_0$,
$v = \theta_2 - 2\theta_1 + \theta_0$, $\alpha = -\lVert r\rVert / \lVert v\rVert$ clipped to
$[-\alpha_{\max}, -1]$, and a stabilising map $F(\theta')$; when the objective at $\theta'$ falls
below that at $\theta_1$ the cycle falls back to $\theta_2$ (plain EM) and $\alpha_{\max}$ shrinks,
when the step hits $\alpha_{\max}$ and succeeds it grows fourfold.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssm import block_tridiag as bt
from jaxssm.emissions import LOG_DISPERSION_MAX, LOG_DISPERSION_MIN
from jaxssm.laplace import (
    CONVERGED,
    MAX_STEPS,
    NON_FINITE,
    LaplacePosterior,
    check_solver,
    dense_laplace_posterior,
    laplace_posterior,
)
from jaxssm.model import emission_constant, emission_kernel
from jaxssm.mstep import (
    emission_newton_terms,
    emission_parameter_covariance,
    expected_emission_objective,
    log_prior,
    normalize,
    normalize_rotation,
    refresh_loading_precision,
    spd_inverse,
    spectral_radius,
    transition_size,
    update_dispersion,
    update_emission,
    update_loading_prior,
    update_transition,
)
from jaxssm.params import MStepPrior, Panel, Params

__all__ = [
    "EMOptions",
    "emission_newton_terms",
    "emission_parameter_covariance",
    "expected_emission_objective",
    "log_prior",
    "normalize_rotation",
    "spectral_radius",
    "update_emission",
    "update_transition",
]

ACCELERATIONS = ("none", "squarem")


class EMOptions(NamedTuple):
    """Static options of one EM iteration (plain Python values; hashable for ``jit``)."""

    max_newton_steps: int = 50
    newton_tol: float | None = None
    mstep_newton_steps: int = 2  # damped Newton steps per M-step (warm-started)
    update_initial: bool = False
    normalize: bool = True
    max_transition_norm: float = 1.0  # bound on ||Phi||_2 (see update_transition)
    transition_bound: str = "norm"  # "norm" (largest singular value) or "radius" (spectral)
    dense_reference: bool = False  # E-step with a dense (Nq)x(Nq) Hessian: benchmarks only
    linear_solver: str = "sequential"  # "sequential" (scans) or "parallel" (cyclic reduction)
    dispersion_newton_steps: int = 2  # safeguarded Newton steps on psi per M-step (negbin)
    accelerate: str = "squarem"  # "squarem" or "none" (plain EM)
    max_step_length: float = 4.0  # SQUAREM's starting alpha_max


# ---------------------------------------------------------------------------------------------
# One EM iteration


def static_posterior(panel: Panel, params: Params) -> LaplacePosterior:
    """The q = 0 model (no latent factors): the 'posterior' is empty and the objective exact."""
    N = panel.counts.shape[0]
    dtype = panel.counts.dtype
    empty = jnp.zeros((N, 0, 0), dtype)
    f = jnp.zeros((N, 0), dtype)
    kernel = jax.vmap(emission_kernel, in_axes=(0, 0, 0, 0, None))(
        f, panel.counts, panel.mask, panel.offset, params
    )
    value = jnp.sum(kernel) + emission_constant(panel, params)
    return _unfactored_posterior(f, empty, empty, value)


def _unfactored_posterior(mean, V_diag, V_sub, objective) -> LaplacePosterior:
    """A :class:`LaplacePosterior` computed without the block Cholesky (the static model and the
    dense reference): the factor is left empty, so it cannot be used for draws."""
    empty = jnp.zeros_like(V_diag)
    return LaplacePosterior(
        mean=mean,
        V_diag=V_diag,
        V_sub=V_sub,
        chol=bt.BlockCholesky(empty, empty),
        log_joint=objective,
        logdet=jnp.zeros((), mean.dtype),
        objective=objective,
        num_steps=jnp.asarray(0),
        status=jnp.where(jnp.isfinite(objective), CONVERGED, NON_FINITE),
    )


def dense_posterior(panel: Panel, params: Params, f_init: jax.Array, options: EMOptions):
    """The E-step the seed describes — Newton with the dense (Nq)x(Nq) Hessian and its inverse —
    packed like :func:`~jaxssm.laplace.laplace_posterior`'s result (no block Cholesky)."""
    f, V, objective = dense_laplace_posterior(
        panel, params, f_init, max_steps=options.max_newton_steps, tol=options.newton_tol
    )
    N, q = f.shape
    W = V.reshape(N, q, N, q)
    idx = jnp.arange(N)
    V_diag = W[idx, :, idx, :]
    V_sub = jnp.concatenate([jnp.zeros((1, q, q), f.dtype), W[idx[1:], :, idx[1:] - 1, :]])
    return _unfactored_posterior(f, V_diag, V_sub, objective)


def e_step(panel: Panel, params: Params, f_init: jax.Array, options: EMOptions):
    """The Laplace posterior at ``params`` (pure; q = 0 handled statically). An unknown
    ``options.linear_solver`` is a ValueError."""
    check_solver(options.linear_solver)
    if params.num_factors == 0:
        return static_posterior(panel, params)
    if options.dense_reference:
        return dense_posterior(panel, params, f_init, options)
    return laplace_posterior(
        panel,
        params,
        f_init,
        max_steps=options.max_newton_steps,
        tol=options.newton_tol,
        solver=options.linear_solver,
    )


class EMStep(NamedTuple):
    """One EM map $\\theta_{t+1} = F(\\theta_t)$: ``params`` and ``prior`` (its learned parts)
    at $t + 1$, ``f`` the warm start of the next E-step, and the E-step's ``posterior`` and the
    MAP-EM ``objective``, both at $\\theta_t$."""

    params: Params
    f: jax.Array
    posterior: LaplacePosterior
    objective: jax.Array
    prior: MStepPrior


def em_iteration(
    panel: Panel, params: Params, f_init: jax.Array, prior: MStepPrior, options: EMOptions
) -> EMStep:
    """One Laplace-EM iteration (pure): E-step at ``params``, the objective there, then every
    M-step update."""
    posterior = e_step(panel, params, f_init, options)
    prior = refresh_loading_precision(prior, posterior)
    start_terms = emission_newton_terms(
        params.mu, params.Lambda, panel, posterior, prior, params.log_dispersion
    )
    objective = posterior.objective + log_prior(params, prior, start_terms[1])
    mu, Lambda = update_emission(
        panel, posterior, params, prior, options.mstep_newton_steps, start_terms=start_terms
    )
    new = params._replace(mu=mu, Lambda=Lambda)
    if params.log_dispersion is not None:
        psi, psi_mean = update_dispersion(
            panel, posterior, new, prior, options.dispersion_newton_steps
        )
        new = new._replace(log_dispersion=psi)
        prior = prior._replace(dispersion_mean=psi_mean)
    prior = update_loading_prior(Lambda, spd_inverse(start_terms[1]), prior)
    f_next = posterior.mean
    if params.num_factors > 0:
        new = new._replace(
            Phi=update_transition(
                posterior, params, options.max_transition_norm, options.transition_bound
            )
        )
        if options.update_initial:
            q = params.num_factors
            floor = 1e-3 * jnp.eye(q, dtype=mu.dtype)
            new = new._replace(a1=posterior.mean[0], P1=posterior.V_diag[0] + floor)
        if options.normalize:
            new, f_next, prior = normalize(new, f_next, prior)
    return EMStep(new, f_next, posterior, objective, prior)


em_step = jax.jit(em_iteration, static_argnames="options")
"""One jitted EM iteration; compiled once per (shapes, dtype, options)."""


# ---------------------------------------------------------------------------------------------
# SQUAREM


def _safe_log(a: jax.Array) -> jax.Array:
    return jnp.log(jnp.maximum(a, jnp.finfo(a.dtype).tiny))


def _unconstrained(params: Params, prior: MStepPrior) -> dict:
    """The coordinates SQUAREM extrapolates (positive ones on the log scale)."""
    return {
        "mu": params.mu,
        "Lambda": params.Lambda,
        "Phi": params.Phi,
        "a1": params.a1,
        "log_dispersion": params.log_dispersion,
        "log_loading_variance": _safe_log(prior.loading_variance),
        "log_location_weight": _safe_log(prior.location_weight),
        "log_loading_precision": _safe_log(prior.loading_precision),
        "dispersion_mean": prior.dispersion_mean,
    }


def _constrained(x: dict, params: Params, prior: MStepPrior, options: EMOptions):
    Phi = x["Phi"]
    if Phi.shape[-1]:
        size = transition_size(Phi, options.transition_bound)
        Phi = Phi * jnp.minimum(1.0, options.max_transition_norm / jnp.maximum(size, 1e-30))
    psi = x["log_dispersion"]
    if psi is not None:
        psi = jnp.clip(psi, LOG_DISPERSION_MIN, LOG_DISPERSION_MAX)
    new_params = params._replace(mu=x["mu"], Lambda=x["Lambda"], Phi=Phi, a1=x["a1"],
                                 log_dispersion=psi)  # fmt: skip
    s2 = jnp.exp(x["log_loading_variance"])
    w = jnp.exp(x["log_location_weight"])
    precision = jnp.where(
        prior.learn_scales, w[:, None] / s2[None, :], jnp.exp(x["log_loading_precision"])
    )
    new_prior = prior._replace(
        loading_variance=s2,
        location_weight=w,
        loading_precision=precision,
        dispersion_mean=x["dispersion_mean"],
    )
    return new_params, new_prior


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(tree)))


class Cycle(NamedTuple):
    """One SQUAREM cycle (three EM maps): the next point ``params``, ``prior``, ``f``; the best
    point evaluated in the cycle (``best_params``, ``best_prior``, ``best_f``, its E-step
    ``best_posterior``, ``best_objective``); ``objective`` the last objective evaluated; the
    E-steps' Newton
    ``newton_steps`` (sum), ``newton_status`` (worst) and ``newton_limit_hits`` (how many stopped
    at the step limit); ``step_max`` for the next cycle;
    ``accepted`` whether the extrapolation was kept; ``alpha`` the step length used."""

    params: Params
    prior: MStepPrior
    f: jax.Array
    best_params: Params
    best_prior: MStepPrior
    best_f: jax.Array
    best_posterior: LaplacePosterior
    best_objective: jax.Array
    objective: jax.Array
    newton_steps: jax.Array
    newton_status: jax.Array
    newton_limit_hits: jax.Array
    step_max: jax.Array
    accepted: jax.Array
    alpha: jax.Array


def _finite_objective(step: EMStep) -> jax.Array:
    return jnp.where(step.posterior.status == NON_FINITE, jnp.nan, step.objective)


def _extrapolate(theta0, theta1, theta2, options: EMOptions, step_max):
    """SQUAREM's point $\theta' = \theta_0 - 2\alpha r + \alpha^2 v$ and $\alpha$."""
    x0, x1, x2 = (_unconstrained(*t) for t in (theta0, theta1, theta2))
    r = jax.tree.map(lambda a, b: b - a, x0, x1)
    v = jax.tree.map(lambda a, b, c: c - 2.0 * b + a, x0, x1, x2)
    r_norm, v_norm = _norm(r), _norm(v)
    alpha = jnp.where(v_norm > 0, -r_norm / jnp.where(v_norm > 0, v_norm, 1.0), -1.0)
    alpha = jnp.clip(alpha, -step_max, -1.0)
    x = jax.tree.map(lambda a, b, c: a - 2.0 * alpha * b + alpha**2 * c, x0, r, v)
    params, prior = _constrained(x, *theta2, options)
    return params, prior, alpha


def squarem_cycle(
    panel: Panel,
    params: Params,
    f: jax.Array,
    prior: MStepPrior,
    options: EMOptions,
    step_max: jax.Array,
) -> Cycle:
    """One SQUAREM cycle from ``(params, prior)`` (pure; see the module docstring). The three EM
    maps run as one ``lax.scan`` over a single traced EM iteration (compiled once)."""
    where = lambda c, a, b: jax.tree.map(lambda u, w: jnp.where(c, u, w), a, b)  # noqa: E731

    def body(carry, k):
        theta_in, f_in, theta0, theta1 = carry
        extrapolated = _extrapolate(theta0, theta1, theta_in, options, step_max)
        theta_eval = where(k == 2, extrapolated[:2], theta_in)
        s = em_iteration(panel, *theta_eval[:1], f_in, theta_eval[1], options)
        theta0 = where(k == 0, theta_in, theta0)
        theta1 = where(k == 1, theta_in, theta1)
        out = (_finite_objective(s), s.posterior, theta_eval, (s.params, s.prior), s.f)
        return ((s.params, s.prior), s.f, theta0, theta1), (out, extrapolated[2])

    theta = (params, prior)
    _, (outs, alphas) = jax.lax.scan(body, (theta, f, theta, theta), jnp.arange(3))
    objectives, posteriors, evaluated, mapped, fs = outs
    j1, jx = objectives[1], objectives[2]
    accepted = jnp.isfinite(jx) & ~(jx < j1)  # NaN-safe: a failed objective is rejected
    at = lambda tree, i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
    nxt = jnp.where(accepted, 2, 1)  # F(theta'), or theta_2 = F(theta_1): plain EM
    scores = objectives.at[2].set(jnp.where(accepted, jx, -jnp.inf))
    scores = jnp.where(jnp.isfinite(scores), scores, -jnp.inf)
    best = jnp.argmax(scores)
    alpha = alphas[2]
    at_max = alpha <= -step_max + 1e-12
    new_step_max = jnp.where(accepted, jnp.where(at_max, 4.0 * step_max, step_max),
                             jnp.maximum(1.0, step_max / 4.0))  # fmt: skip
    best_posterior = at(posteriors, best)
    return Cycle(
        params=at(mapped[0], nxt),
        prior=at(mapped[1], nxt),
        f=fs[nxt],
        best_params=at(evaluated[0], best),
        best_prior=at(evaluated[1], best),
        best_f=best_posterior.mean,
        best_posterior=best_posterior,
        best_objective=jnp.where(jnp.isfinite(scores[best]), scores[best], jnp.nan),
        objective=jnp.where(accepted, jx, j1),
        newton_steps=jnp.sum(posteriors.num_steps),
        newton_status=jnp.max(posteriors.status),
        newton_limit_hits=jnp.sum(posteriors.status == MAX_STEPS),
        step_max=new_step_max,
        accepted=accepted,
        alpha=alpha,
    )


squarem_step = jax.jit(squarem_cycle, static_argnames="options")
"""One jitted SQUAREM cycle; compiled once per (shapes, dtype, options)."""


# ---------------------------------------------------------------------------------------------
# The loops


class EMTrace(NamedTuple):
    """Per-iteration traces of a whole-loop fit (NaN past the last iteration); an iteration is
    one EM map, or one SQUAREM cycle of three."""

    objective: jax.Array
    newton_steps: jax.Array
    newton_status: jax.Array


#: Why an EM loop stopped.
STOP_CONVERGED, STOP_PEAKED, STOP_NON_FINITE, STOP_MAX_ITERATIONS = 0, 1, 2, 3
STOP_NAMES = {
    STOP_CONVERGED: "converged",
    STOP_PEAKED: "converged (objective peaked)",
    STOP_NON_FINITE: "non_finite",
    STOP_MAX_ITERATIONS: "max_iterations",
}


#: Consecutive iterations below the best objective before the loop stops as ``peaked``.
PATIENCE = 2


def stop_rule(objective, previous, best, rtol, below=0, patience: int = PATIENCE):
    r"""The loop's stopping rule, shared by the host and the ``while_loop`` versions.

    Laplace-EM is not an exact EM: its M-step maximises the expected complete log likelihood
    under the Laplace posterior and ignores how the curvature term $-\tfrac12\log\det J$ of the
    objective moves with $\theta$, so the objective can rise to a peak and then drift down slowly
    (loadings shrinking while $\Phi$ creeps toward a unit root; with learned loading scales the
    drift is faster and the peak is where held-out cells are predicted best). The rule stops on a
    relative change below ``rtol`` (``converged``) or once the objective has stayed more than
    ``rtol`` relative below the best value so far for ``patience`` consecutive iterations
    (``peaked``); the caller returns the best iterate, so the reported objective never decreases
    beyond tolerance. ``below`` is the count of such iterations before this one.

    Returns ``(stop code or -1 to go on, is_new_best, below)``.
    """
    finite = jnp.isfinite(objective)
    new_best = finite & ~(objective <= best)  # best starts at -inf
    converged = jnp.abs(objective - previous) <= rtol * jnp.abs(objective)
    under = objective < best - rtol * jnp.abs(best)
    below = jnp.where(under, below + 1, 0)
    peaked = below >= patience
    code = jnp.where(
        ~finite,
        STOP_NON_FINITE,
        jnp.where(peaked, STOP_PEAKED, jnp.where(converged & ~under, STOP_CONVERGED, -1)),
    )
    return code, new_best, below


class LoopResult(NamedTuple):
    """What a whole-loop fit returns: the best ``params`` and ``prior``, their E-step's
    ``posterior``, ``iterations`` (loop iterations), ``evaluations`` (EM maps, three per SQUAREM
    cycle), the stop ``code`` and the ``trace``."""

    params: Params
    prior: MStepPrior
    posterior: LaplacePosterior
    iterations: jax.Array
    evaluations: jax.Array
    code: jax.Array
    trace: EMTrace
    newton_limit_hits: jax.Array


def loop_step(panel, params, f, prior, options, step_max):
    """One iteration of either loop, as a :class:`Cycle`: a SQUAREM cycle, or one plain EM map
    packed the same way (pure)."""
    if options.accelerate == "squarem":
        return squarem_cycle(panel, params, f, prior, options, step_max)
    if options.accelerate != "none":
        raise ValueError(f"accelerate must be one of {ACCELERATIONS}, got {options.accelerate!r}")
    s = em_iteration(panel, params, f, prior, options)
    objective = _finite_objective(s)
    return Cycle(
        params=s.params, prior=s.prior, f=s.f, best_params=params, best_prior=prior,
        best_f=s.posterior.mean, best_posterior=s.posterior, best_objective=objective,
        objective=objective,
        newton_steps=s.posterior.num_steps, newton_status=s.posterior.status,
        newton_limit_hits=(s.posterior.status == MAX_STEPS).astype(jnp.int32),
        step_max=step_max, accepted=jnp.asarray(False), alpha=jnp.zeros((), objective.dtype),
    )  # fmt: skip


loop_step_jit = jax.jit(loop_step, static_argnames="options")


def _em_loop(panel, params, f_init, prior, options, max_iterations: int, rtol: float):
    """The whole EM loop in ``lax.while_loop`` (for batches under ``vmap`` and benchmarks).

    Returns a :class:`LoopResult`."""
    dtype = panel.counts.dtype
    trace0 = EMTrace(
        objective=jnp.full((max_iterations,), jnp.nan, dtype),
        newton_steps=jnp.zeros((max_iterations,), jnp.int32),
        newton_status=jnp.zeros((max_iterations,), jnp.int32),
    )

    class Carry(NamedTuple):
        params: Params
        prior: MStepPrior
        f: jax.Array
        best: Params
        best_prior: MStepPrior
        best_posterior: LaplacePosterior
        best_objective: jax.Array
        previous: jax.Array
        iteration: jax.Array
        step_max: jax.Array
        below: jax.Array
        hits: jax.Array
        code: jax.Array
        trace: EMTrace

    def cond(c):
        return (c.code < 0) & (c.iteration < max_iterations)

    def body(c):
        cycle = loop_step(panel, c.params, c.f, c.prior, options, c.step_max)
        objective = cycle.objective
        k = c.iteration
        trace = EMTrace(
            c.trace.objective.at[k].set(objective),
            c.trace.newton_steps.at[k].set(cycle.newton_steps.astype(jnp.int32)),
            c.trace.newton_status.at[k].set(cycle.newton_status.astype(jnp.int32)),
        )
        code, _, below = stop_rule(objective, c.previous, c.best_objective, rtol, c.below)
        new_best = jnp.isfinite(cycle.best_objective) & ~(cycle.best_objective <= c.best_objective)
        pick = lambda a, b: jax.tree.map(lambda u, w: jnp.where(new_best, u, w), a, b)  # noqa: E731
        return Carry(
            params=cycle.params,
            prior=cycle.prior,
            f=cycle.f,
            best=pick(cycle.best_params, c.best),
            best_prior=pick(cycle.best_prior, c.best_prior),
            best_posterior=pick(cycle.best_posterior, c.best_posterior),
            best_objective=pick(cycle.best_objective, c.best_objective),
            previous=objective,
            iteration=k + 1,
            step_max=cycle.step_max,
            below=below,
            hits=c.hits + cycle.newton_limit_hits.astype(jnp.int32),
            code=code,
            trace=trace,
        )

    shapes = jax.eval_shape(lambda: e_step(panel, params, f_init, options))
    empty_posterior = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    init = Carry(
        params, prior, f_init, params, prior, empty_posterior, jnp.asarray(-jnp.inf, dtype),
        jnp.asarray(jnp.nan, dtype), jnp.asarray(0), jnp.asarray(options.max_step_length, dtype),
        jnp.asarray(0), jnp.asarray(0, jnp.int32), jnp.asarray(-1), trace0,
    )  # fmt: skip
    out = jax.lax.while_loop(cond, body, init)
    code = jnp.where(out.code < 0, STOP_MAX_ITERATIONS, out.code)
    per = 3 if options.accelerate == "squarem" else 1
    return LoopResult(
        out.best, out.best_prior, out.best_posterior, out.iteration, per * out.iteration, code,
        out.trace, out.hits,
    )  # fmt: skip


em_loop = jax.jit(_em_loop, static_argnames=("options", "max_iterations", "rtol"))


def _em_loop_batch(panel, params, f_init, prior, options, max_iterations: int, rtol: float):
    """:func:`_em_loop` vmapped over a leading panel axis (each panel stops on its own)."""

    def one(panel, params, f_init, prior):
        return _em_loop(panel, params, f_init, prior, options, max_iterations, rtol)

    return jax.vmap(one)(panel, params, f_init, prior)


em_loop_batch = jax.jit(_em_loop_batch, static_argnames=("options", "max_iterations", "rtol"))
