r"""Laplace-EM for the Poisson dynamic factor model: :func:`fit_laplace_em`.

One EM iteration at $\theta_t$:

* **E-step** (:mod:`jaxssm.laplace`): Newton for $\hat f_{1:N}$, warm-started from the previous
  mode, then $\hat V_{ii}$, $\hat V_{i,i-1}$ and the Laplace objective
  $\mathcal J(\theta_t) = \log \hat p(X \mid \theta_t) + \log p(\mu, \Lambda)$ (MAP-EM).
* **M-step, emission** — per location $\ell$ (vmapped), Newton on the concave expected log
  likelihood plus the log prior, in $(\mu_\ell, \Lambda_\ell)$ jointly:

  $$\sum_i M_{i\ell}\Big[X_i(\ell)\big(o_{i\ell} + \mu_\ell + \Lambda_\ell^\top \hat f_i\big)
    - \exp\big(o_{i\ell} + \mu_\ell + \Lambda_\ell^\top \hat f_i
    + \tfrac12 \Lambda_\ell^\top \hat V_{ii} \Lambda_\ell\big)\Big]
    - \frac{(\mu_\ell - \bar\mu)^2}{2 s_\mu^2} - \frac{\lVert\Lambda_\ell\rVert^2}{2 s_\Lambda^2}.$$

  (The seed's version drops $\mu$ from the first term and writes $\Lambda$ for $\Lambda_\ell$ in the
  $\mu$-gradient; the gradient in $\Lambda_\ell$ is
  $\sum_i M_{i\ell}[X_i(\ell)\hat f_i - \hat\lambda_{i\ell}(\hat f_i + \hat V_{ii}\Lambda_\ell)]$.)
* **M-step, transition** — closed form with $Q = I$ fixed:
  $\Phi = \big(\sum_{i\ge2} \hat f_i \hat f_{i-1}^\top + \hat V_{i,i-1}\big)
  \big(\sum_{i\ge2} \hat f_{i-1}\hat f_{i-1}^\top + \hat V_{i-1,i-1}\big)^{-1}$;
  $a_1 = \hat f_1$, $P_1 = \hat V_{11}$ (floored) when ``update_initial``.

**Identifiability.** For any invertible $T$, $(\Lambda T^{-1}, T\Phi T^{-1}, TQT^\top, T f)$
gives the same likelihood. $Q = I$ pins the scale (every model has an equivalent one with
$Q = I$); the remaining rotations are removed after each M-step by rotating to orthogonal
loading columns of decreasing norm ($\Lambda = U S W^\top \to U S$), each with a positive sum of
cubes. This is a pure reparametrisation (the isotropic prior on $\Lambda_\ell$ is rotation
invariant), so the objective is unchanged and fits are reproducible and comparable.

**Priors (MAP-EM, on by default).** $\mu_\ell \sim N(\bar\mu, s_\mu^2)$ around the pooled log-rate
and $\Lambda_{\ell k} \sim N(0, s_\Lambda^2)$: an all-zero location keeps a finite $\mu_\ell$ and
loadings cannot blow up when $m \gg N$. See :class:`jaxssm.params.Priors`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssm import block_tridiag as bt
from jaxssm import small_linalg
from jaxssm.laplace import (
    CONVERGED,
    NON_FINITE,
    LaplacePosterior,
    check_solver,
    dense_laplace_posterior,
    laplace_posterior,
)
from jaxssm.model import ETA_MAX, poisson_emission
from jaxssm.params import MStepPrior, Panel, Params


class EMSettings(NamedTuple):
    """Static settings of one EM iteration (plain Python values; hashable for ``jit``)."""

    max_newton_steps: int = 50
    newton_tol: float | None = None
    mstep_newton_steps: int = 2  # damped Newton steps per M-step (warm-started)
    update_initial: bool = False
    normalize: bool = True
    max_transition_norm: float = 1.0  # bound on ||Phi||_2 (see update_transition)
    transition_bound: str = "norm"  # "norm" (largest singular value) or "radius" (spectral)
    dense_reference: bool = False  # E-step with a dense (Nq)x(Nq) Hessian: benchmarks only
    linear_solver: str = "sequential"  # "sequential" (scans) or "parallel" (cyclic reduction)


# ---------------------------------------------------------------------------------------------
# M-step


def expected_emission_objective(
    mu: jax.Array,
    Lambda: jax.Array,
    panel: Panel,
    mean: jax.Array,
    V_diag: jax.Array,
    prior: MStepPrior,
) -> jax.Array:
    r"""The emission M-step objective of every location at once, (m,):
    $\sum_i M_{i\ell}[X_i(\ell)\,\eta_{i\ell} - \exp(\eta_{i\ell} + \tfrac12
    \Lambda_\ell^\top \hat V_{ii} \Lambda_\ell)] + \log p(\mu_\ell, \Lambda_\ell)$ with
    $\eta_{i\ell} = o_{i\ell} + \mu_\ell + \Lambda_\ell^\top \hat f_i$."""
    eta = panel.offset + mu + mean @ Lambda.T  # (N, m)
    var = jnp.einsum("lk,nkj,lj->nl", Lambda, V_diag, Lambda)
    rate = jnp.exp(jnp.minimum(eta + 0.5 * var, ETA_MAX))
    loglik = jnp.sum(jnp.where(panel.mask, panel.counts * eta - rate, 0.0), axis=0)
    log_prior = -0.5 * prior.mu_precision * (mu - prior.mu_mean) ** 2
    return loglik + log_prior - 0.5 * prior.loading_precision * jnp.sum(Lambda**2, axis=1)


def emission_newton_terms(
    mu: jax.Array, Lambda: jax.Array, panel: Panel, posterior: LaplacePosterior, prior: MStepPrior
) -> tuple[jax.Array, jax.Array]:
    """Gradient (m, q+1) and negative Hessian (m, q+1, q+1) of every location's M-step objective
    in $\theta_\\ell = (\\mu_\\ell, \\Lambda_\\ell)$ (formulas in :func:`update_emission`)."""
    f, V = posterior.mean, posterior.V_diag
    x = jnp.where(panel.mask, panel.counts, 0.0)
    q = Lambda.shape[-1]
    dtype = mu.dtype
    eye = jnp.eye(q + 1, dtype=dtype)
    corner = jnp.zeros((q + 1, q + 1), dtype).at[0, 0].set(prior.mu_precision)
    ridge = prior.loading_precision * (eye - jnp.zeros_like(eye).at[0, 0].set(1.0))
    VL = jnp.einsum("nkj,lj->lnk", V, Lambda)  # (m, N, q): V_ii Lambda_l
    g = f[None] + VL  # (m, N, q)
    a = panel.offset.T + mu[:, None] + Lambda @ f.T + 0.5 * jnp.einsum("lnk,lk->ln", VL, Lambda)
    r = jnp.where(panel.mask.T, jnp.exp(jnp.minimum(a, ETA_MAX)), 0.0)  # (m, N)
    grad_mu = jnp.sum(x, axis=0) - r.sum(1) - prior.mu_precision * (mu - prior.mu_mean)
    grad_L = x.T @ f - jnp.einsum("ln,lnk->lk", r, g) - prior.loading_precision * Lambda
    h_mm = r.sum(1)
    h_ml = jnp.einsum("ln,lnk->lk", r, g)
    h_ll = jnp.einsum("ln,lnk,lnj->lkj", r, g, g) + jnp.einsum("ln,nkj->lkj", r, V)
    top = jnp.concatenate([h_mm[:, None, None], h_ml[:, None, :]], axis=2)
    bottom = jnp.concatenate([h_ml[:, :, None], h_ll], axis=2)
    neg_hess = jnp.concatenate([top, bottom], axis=1) + corner + ridge
    scale = jnp.max(jnp.abs(jnp.diagonal(neg_hess, axis1=1, axis2=2)), axis=1)
    neg_hess = neg_hess + 1e-10 * (1.0 + scale)[:, None, None] * eye
    grad = jnp.concatenate([grad_mu[:, None], grad_L], axis=1)
    return grad, neg_hess


def emission_parameter_covariance(
    params: Params, posterior: LaplacePosterior, panel: Panel, prior: MStepPrior
) -> jax.Array:
    r"""Approximate posterior covariance of each location's $(\mu_\ell, \Lambda_\ell)$, (m, q+1,
    q+1): the inverse negative Hessian of its M-step objective at the fit (a Laplace
    approximation over the emission parameters given the latent posterior). Adding it to the
    predictive variance of $\eta_{i\ell}$ accounts for how well each location's rate is known —
    little, for rare locations."""
    _, neg_hess = emission_newton_terms(params.mu, params.Lambda, panel, posterior, prior)
    eye = jnp.broadcast_to(jnp.eye(neg_hess.shape[-1], dtype=neg_hess.dtype), neg_hess.shape)
    return small_linalg.spd_solve(neg_hess, eye)


def update_emission(
    panel: Panel, posterior: LaplacePosterior, params: Params, prior: MStepPrior, steps: int
) -> tuple[jax.Array, jax.Array]:
    r"""New $(\mu, \Lambda)$: ``steps`` damped Newton steps on each location's concave objective,
    all locations at once, warm-started at the current values.

    With $a_{i\ell} = \eta_{i\ell} + \tfrac12\Lambda_\ell^\top\hat V_{ii}\Lambda_\ell$,
    $r_{i\ell} = M_{i\ell} e^{a_{i\ell}}$ and $g_{i\ell} = \hat f_i + \hat V_{ii}\Lambda_\ell$
    (the gradient of $a$ in $\Lambda_\ell$), the gradient is
    $(\sum_i M x - r - p_\mu(\mu_\ell - \bar\mu),\
    \sum_i M x \hat f_i - r g - p_\Lambda\Lambda_\ell)$
    and the negative Hessian
    $\begin{pmatrix}\sum r & \sum r g^\top \\ \sum r g & \sum r(g g^\top + \hat V_{ii})
    + p_\Lambda I\end{pmatrix}$ (plus $p_\mu$ in the corner) — positive definite, so each step
    is an ascent direction; a location whose full step does not increase its objective halves
    it (up to 10 times, else keeps its values): a generalised M-step, the objective never
    decreases.
    """
    f, V = posterior.mean, posterior.V_diag
    tiny = 1e-12 if params.mu.dtype == jnp.float64 else 1e-6

    def objective(mu, Lambda):
        return expected_emission_objective(mu, Lambda, panel, f, V, prior)

    def newton(_, carry):
        mu, Lambda, value = carry
        grad, neg_hess = emission_newton_terms(mu, Lambda, panel, posterior, prior)
        step = small_linalg.spd_solve(neg_hess, grad)  # (m, q+1)

        def value_at(alpha):
            return objective(mu + alpha * step[:, 0], Lambda + alpha[:, None] * step[:, 1:])

        def halve(args):  # only locations whose step did not increase their objective
            alpha, _, k = args
            alpha = jnp.where(ok_at(args), alpha, 0.5 * alpha)
            return alpha, value_at(alpha), k + 1

        # at the optimum the gain of a step is below rounding: take it without the test
        negligible = jnp.sum(grad * step, axis=1) <= tiny * (1.0 + jnp.abs(value))

        def ok_at(args):
            _, trial, _ = args
            return jnp.isfinite(trial) & ((trial >= value) | negligible)

        alpha0 = jnp.ones_like(mu)
        alpha, trial, _ = jax.lax.while_loop(
            lambda args: ~jnp.all(ok_at(args)) & (args[2] < 10), halve,
            (alpha0, value_at(alpha0), 0),
        )  # fmt: skip
        alpha = jnp.where(ok_at((alpha, trial, 0)), alpha, 0.0)
        new_value = jnp.where(alpha > 0, trial, value)
        return mu + alpha * step[:, 0], Lambda + alpha[:, None] * step[:, 1:], new_value

    start = (params.mu, params.Lambda, objective(params.mu, params.Lambda))
    mu, Lambda, _ = jax.lax.fori_loop(0, steps, newton, start)
    return mu, Lambda


def spectral_radius(A: jax.Array, squarings: int = 12) -> jax.Array:
    r"""$\rho(A) = \lim_k \lVert A^k\rVert^{1/k}$ by repeated squaring with rescaling
    ($k = 2^{12}$): no eigendecomposition, so it runs on every backend (``jnp.linalg.eig`` is
    CPU-only) and stays finite in float32."""
    tiny = jnp.finfo(A.dtype).tiny
    log_scale = jnp.zeros((), A.dtype)
    M = A
    for _ in range(squarings):
        norm = jnp.maximum(jnp.linalg.norm(M), tiny)
        M = M / norm
        log_scale = 2.0 * (log_scale + jnp.log(norm))
        M = M @ M
    log_norm = log_scale + jnp.log(jnp.maximum(jnp.linalg.norm(M), tiny))
    return jnp.exp(log_norm / 2.0**squarings)


def _bound_measure(Phi: jax.Array, bound: str) -> jax.Array:
    if bound == "norm":
        return jnp.linalg.norm(Phi, ord=2)  # largest singular value
    return spectral_radius(Phi)


def update_transition(
    posterior: LaplacePosterior, params: Params, max_norm: float = 1.0, bound: str = "norm"
) -> jax.Array:
    r"""$\Phi$ with $Q$ fixed: the regression of $f_i$ on $f_{i-1}$,
    $\Phi^* = S_{10} S_{00}^{-1}$, kept from letting the factors blow up.

    If $\lVert\Phi^*\rVert_2$ (``bound="norm"``, the default) or its spectral radius
    (``"radius"``) exceeds ``max_norm``, the step goes from the current $\Phi$ toward $\Phi^*$ only
    as far as the bound allows (bisection on the segment). The M-step objective is a concave
    quadratic in $\Phi$, so this still increases it (a generalised EM step). Without a bound,
    sparse panels find a degenerate optimum: a runaway factor with small loadings drives the
    log-rates of all-zero locations toward $-\infty$. The spectral radius is not enough: a
    non-normal $\Phi$ with radius 0.65 and entries of 13 was measured to amplify $f$ to 265 within a
    few windows (log-rates of -250 on a sparse panel); the norm bound keeps $\lVert f_i\rVert$ from
    growing faster than the innovations allow.
    """
    f, V, V_sub = posterior.mean, posterior.V_diag, posterior.V_sub
    S10 = jnp.einsum("ni,nj->ij", f[1:], f[:-1]) + jnp.sum(V_sub[1:], axis=0)
    S00 = jnp.einsum("ni,nj->ij", f[:-1], f[:-1]) + jnp.sum(V[:-1], axis=0)
    q = f.shape[-1]
    ridge = 1e-8 * (1.0 + jnp.trace(S00)) * jnp.eye(q, dtype=f.dtype)
    target = jnp.linalg.solve(S00 + ridge, S10.T).T
    current = params.Phi
    # start inside the bound (start values or a changed bound may lie outside it)
    current = current * jnp.minimum(1.0, max_norm / jnp.maximum(_bound_measure(current, bound),
                                                                 1e-30))  # fmt: skip

    def radius_at(t):
        return _bound_measure(current + t * (target - current), bound)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = radius_at(mid) <= max_norm
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    one = jnp.ones((), f.dtype)
    lo, _ = jax.lax.fori_loop(0, 40, bisect, (0.0 * one, one))
    t = jnp.where(radius_at(one) <= max_norm, one, lo)
    return current + t * (target - current)


def normalize_rotation(params: Params, f: jax.Array) -> tuple[Params, jax.Array]:
    r"""Rotate to orthogonal loading columns of decreasing norm, signs fixed by the sum of cubes.

    $R = \mathrm{diag}(s) W^\top$ from $\Lambda = U S W^\top$: $\Lambda \to \Lambda R^\top$,
    $\Phi \to R \Phi R^\top$, $Q \to R Q R^\top$, $a_1 \to R a_1$, $P_1 \to R P_1 R^\top$,
    $f_i \to R f_i$.
    """
    _, _, Wt = jnp.linalg.svd(params.Lambda, full_matrices=False)
    rotated = params.Lambda @ Wt.T
    signs = jnp.where(jnp.sum(rotated**3, axis=0) < 0, -1.0, 1.0).astype(rotated.dtype)
    R = signs[:, None] * Wt
    new = Params(
        mu=params.mu,
        Lambda=params.Lambda @ R.T,
        Phi=R @ params.Phi @ R.T,
        Q=R @ params.Q @ R.T,
        a1=R @ params.a1,
        P1=R @ params.P1 @ R.T,
    )
    return new, f @ R.T


def log_prior(params: Params, prior: MStepPrior) -> jax.Array:
    """$\\log p(\\mu, \\Lambda)$ up to a constant."""
    return -0.5 * (
        prior.mu_precision * jnp.sum((params.mu - prior.mu_mean) ** 2)
        + prior.loading_precision * jnp.sum(params.Lambda**2)
    )


# ---------------------------------------------------------------------------------------------
# One EM iteration


def static_posterior(panel: Panel, params: Params) -> LaplacePosterior:
    """The q = 0 model (no latent factors): the 'posterior' is empty and the objective exact."""
    N = panel.counts.shape[0]
    dtype = panel.counts.dtype
    empty = jnp.zeros((N, 0, 0), dtype)
    f = jnp.zeros((N, 0), dtype)
    value = jnp.sum(
        jax.vmap(poisson_emission, in_axes=(0, 0, 0, 0, None))(
            f, panel.counts, panel.mask, panel.offset, params
        )
    )
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


def dense_posterior(panel: Panel, params: Params, f_init: jax.Array, settings: EMSettings):
    """The E-step the seed describes — Newton with the dense (Nq)x(Nq) Hessian and its inverse —
    packed like :func:`~jaxssm.laplace.laplace_posterior`'s result (no block Cholesky)."""
    f, V, objective = dense_laplace_posterior(
        panel, params, f_init, max_steps=settings.max_newton_steps, tol=settings.newton_tol
    )
    N, q = f.shape
    W = V.reshape(N, q, N, q)
    idx = jnp.arange(N)
    V_diag = W[idx, :, idx, :]
    V_sub = jnp.concatenate([jnp.zeros((1, q, q), f.dtype), W[idx[1:], :, idx[1:] - 1, :]])
    return _unfactored_posterior(f, V_diag, V_sub, objective)


def e_step(panel: Panel, params: Params, f_init: jax.Array, settings: EMSettings):
    """The Laplace posterior at ``params`` (pure; q = 0 handled statically). An unknown
    ``settings.linear_solver`` is a ValueError."""
    check_solver(settings.linear_solver)
    if params.num_factors == 0:
        return static_posterior(panel, params)
    if settings.dense_reference:
        return dense_posterior(panel, params, f_init, settings)
    return laplace_posterior(
        panel,
        params,
        f_init,
        max_steps=settings.max_newton_steps,
        tol=settings.newton_tol,
        solver=settings.linear_solver,
    )


def em_iteration(
    panel: Panel, params: Params, f_init: jax.Array, prior: MStepPrior, settings: EMSettings
) -> tuple[Params, jax.Array, LaplacePosterior, jax.Array]:
    """One Laplace-EM iteration (pure). Returns ``(new params, warm start for the next E-step,
    the posterior at the old params, the MAP-EM objective at the old params)``."""
    posterior = e_step(panel, params, f_init, settings)
    objective = posterior.objective + log_prior(params, prior)
    mu, Lambda = update_emission(panel, posterior, params, prior, settings.mstep_newton_steps)
    new = params._replace(mu=mu, Lambda=Lambda)
    f_next = posterior.mean
    if params.num_factors > 0:
        new = new._replace(
            Phi=update_transition(
                posterior, params, settings.max_transition_norm, settings.transition_bound
            )
        )
        if settings.update_initial:
            q = params.num_factors
            floor = 1e-3 * jnp.eye(q, dtype=mu.dtype)
            new = new._replace(a1=posterior.mean[0], P1=posterior.V_diag[0] + floor)
        if settings.normalize:
            new, f_next = normalize_rotation(new, f_next)
    return new, f_next, posterior, objective


em_step = jax.jit(em_iteration, static_argnames="settings")
"""One jitted EM iteration; compiled once per (shapes, dtype, settings)."""


class EMTrace(NamedTuple):
    """Per-iteration traces of a whole-loop fit (NaN past the last iteration)."""

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


def stop_rule(objective, previous, best, rtol):
    r"""The loop's stopping rule, shared by the host and the ``while_loop`` versions.

    Laplace-EM is not an exact EM: its M-step maximises the expected complete log likelihood
    under the Laplace posterior and ignores how the curvature term $-\tfrac12\log\det J$ of the
    objective moves with $\theta$, so the objective can rise to a peak and then drift down slowly.
    The rule stops on a relative change below ``rtol`` (``converged``) or on a decrease of more
    than ``rtol`` relative below the best value so far (``peaked``); the caller returns the best
    iterate, so the reported objective never decreases beyond tolerance.

    Returns ``(stop code or -1 to go on, is_new_best)``.
    """
    finite = jnp.isfinite(objective)
    new_best = finite & ~(objective <= best)  # best starts at -inf
    converged = jnp.abs(objective - previous) <= rtol * jnp.abs(objective)
    peaked = objective < best - rtol * jnp.abs(best)
    code = jnp.where(
        ~finite,
        STOP_NON_FINITE,
        jnp.where(peaked, STOP_PEAKED, jnp.where(converged, STOP_CONVERGED, -1)),
    )
    return code, new_best


def _em_loop(panel, params, f_init, prior, settings, max_iterations: int, rtol: float):
    """The whole EM loop in ``lax.while_loop`` (for batches under ``vmap`` and benchmarks).

    Returns ``(best params, warm start for their E-step, iterations, stop code, trace)``.
    """
    dtype = panel.counts.dtype
    trace0 = EMTrace(
        objective=jnp.full((max_iterations,), jnp.nan, dtype),
        newton_steps=jnp.zeros((max_iterations,), jnp.int32),
        newton_status=jnp.zeros((max_iterations,), jnp.int32),
    )

    class Carry(NamedTuple):
        params: Params
        f: jax.Array
        best: Params
        f_best: jax.Array
        best_objective: jax.Array
        previous: jax.Array
        iteration: jax.Array
        code: jax.Array
        trace: EMTrace

    def cond(c):
        return (c.code < 0) & (c.iteration < max_iterations)

    def body(c):
        new, f_next, post, objective = em_iteration(panel, c.params, c.f, prior, settings)
        objective = jnp.where(post.status == NON_FINITE, jnp.nan, objective)
        k = c.iteration
        trace = EMTrace(
            c.trace.objective.at[k].set(objective),
            c.trace.newton_steps.at[k].set(post.num_steps.astype(jnp.int32)),
            c.trace.newton_status.at[k].set(post.status.astype(jnp.int32)),
        )
        code, new_best = stop_rule(objective, c.previous, c.best_objective, rtol)
        pick = lambda a, b: jnp.where(new_best, a, b)  # noqa: E731
        return Carry(
            params=new,
            f=f_next,
            best=jax.tree.map(pick, c.params, c.best),
            f_best=pick(post.mean, c.f_best),
            best_objective=pick(objective, c.best_objective),
            previous=objective,
            iteration=k + 1,
            code=code,
            trace=trace,
        )

    init = Carry(
        params, f_init, params, f_init, jnp.asarray(-jnp.inf, dtype), jnp.asarray(jnp.nan, dtype),
        jnp.asarray(0), jnp.asarray(-1), trace0,
    )  # fmt: skip
    out = jax.lax.while_loop(cond, body, init)
    code = jnp.where(out.code < 0, STOP_MAX_ITERATIONS, out.code)
    return out.best, out.f_best, out.iteration, code, out.trace


em_loop = jax.jit(_em_loop, static_argnames=("settings", "max_iterations", "rtol"))


def _em_loop_batch(panel, params, f_init, prior, settings, max_iterations: int, rtol: float):
    """:func:`_em_loop` vmapped over a leading panel axis (each panel stops on its own)."""

    def one(panel, params, f_init, prior):
        return _em_loop(panel, params, f_init, prior, settings, max_iterations, rtol)

    return jax.vmap(one)(panel, params, f_init, prior)


em_loop_batch = jax.jit(_em_loop_batch, static_argnames=("settings", "max_iterations", "rtol"))
