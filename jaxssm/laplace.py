r"""The Laplace E-step: the mode $\hat f_{1:N}$ of $\log p(X, f_{1:N} \mid \theta)$ by Newton's
method over the whole trajectory, and the Gaussian approximation
$p(f_{1:N} \mid X) \approx N(\hat f_{1:N}, \hat V)$ with $\hat V = J^{-1}$,
$J = -\nabla^2 \log p(X, f)$.

$J$ is block tridiagonal: window $i$'s emission touches only $f_i$ and each transition only
$(f_{i-1}, f_i)$. Its blocks come from autodiff of those local terms,
``vmap(jax.hessian(...))``, so for the Poisson emission the diagonal blocks are
$\Lambda^\top \mathrm{diag}(M_i \odot \lambda_i) \Lambda$ plus the transition precisions — a masked
(missing) cell adds nothing. Every Newton step, $\log\det J$, the posterior blocks $\hat V_{ii}$ and
$\hat V_{i,i-1}$ and posterior draws use the block Cholesky of :mod:`jaxssm.block_tridiag`:
$O(N q^3)$ time, never a dense $(Nq) \times (Nq)$ matrix. With ``solver="parallel"`` the same
quantities come from the block cyclic reduction of :mod:`jaxssm.cyclic_reduction` (depth
$O(\log N)$ instead of $O(N)$, for accelerators; the same results to rounding).

The Laplace approximation of the marginal likelihood (the EM objective) is

$$\log p(X \mid \theta) \approx \log p(X, \hat f \mid \theta) + \tfrac{Nq}{2}\log 2\pi
  - \tfrac12 \log\det J.$$

Newton steps $f \leftarrow f + \alpha (J + \lambda D)^{-1}\nabla$ use Armijo backtracking on the
log joint (a trial point that is not finite is rejected) and Levenberg-Marquardt damping
$\lambda D$ ($D$ the diagonal of $J$): zero while full steps are accepted, so the iteration is
Newton's with its quadratic convergence near the mode; raised when the line search has to
shorten a step, which turns the direction toward the gradient far from the mode (the Poisson
log joint is very curved where a rate is too high, and a full Newton step from there
overshoots). It stops on the undamped Newton decrement
$\nabla^\top J^{-1} \nabla / 2 \le \mathrm{tol}\,(1 + |\log p|)$ or at a static step limit;
jitted code never raises: the result carries a status code, and a fit whose final E-step did not
converge says so in its status (:func:`jaxssm.fit.check_fit`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssm import block_tridiag as bt
from jaxssm import cyclic_reduction as cr
from jaxssm import emissions
from jaxssm.model import (
    Emission,
    emission_constant,
    initial_log_density,
    log_joint,
    log_joint_kernel,
    transition_log_density,
)
from jaxssm.params import Panel, Params
from jaxssm.types import Blocks, Latent, Scalar

#: Newton status codes.
CONVERGED, MAX_STEPS, NON_FINITE, STALLED = 0, 1, 2, 3
STATUS_NAMES = {
    CONVERGED: "converged",
    MAX_STEPS: "max_steps",
    NON_FINITE: "non_finite",
    STALLED: "stalled at numerical precision",
}

#: Levenberg-Marquardt damping of the Newton steps, relative to the diagonal of $J$: raised
#: tenfold from at least ``DAMPING_MIN`` when a full step is not accepted, lowered tenfold (to 0
#: below ``DAMPING_MIN``) after a full step; a step that fails with damping ``DAMPING_MAX`` means
#: the mode is found to working precision.
DAMPING_MIN, DAMPING_MAX = 1e-3, 1e6

#: The block-tridiagonal linear algebra of the E-step: the sequential scans of
#: :mod:`jaxssm.block_tridiag` or the cyclic reduction of :mod:`jaxssm.cyclic_reduction`.
SOLVERS = ("sequential", "parallel")

#: The factor of $J$ a :class:`LaplacePosterior` carries, by solver.
Factor = bt.BlockCholesky | cr.CyclicReductionFactor


def check_solver(solver: str) -> str:
    """``solver`` if it is one of :data:`SOLVERS`, else a ValueError (a static setting: raised
    while tracing, never inside compiled code)."""
    if solver not in SOLVERS:
        raise ValueError(
            f"linear_solver must be one of {', '.join(map(repr, SOLVERS))}, got {solver!r}"
        )
    return solver


class LaplacePosterior(NamedTuple):
    r"""$N(\hat f_{1:N}, J^{-1})$ and what the M-step and the objective need.

    ``mean`` (N, q) the mode $\hat f$; ``V_diag`` (N, q, q) $\hat V_{ii}$; ``V_sub`` (N, q, q)
    $\hat V_{i,i-1}$ (``V_sub[0]`` = 0); ``chol`` the factor of $J$ (for draws): a
    :class:`~jaxssm.block_tridiag.BlockCholesky`, or with the parallel solver a
    :class:`~jaxssm.cyclic_reduction.CyclicReductionFactor`;
    ``log_joint`` $\log p(X, \hat f)$; ``logdet`` $\log\det J$; ``objective`` the Laplace
    $\log p(X \mid \theta)$; ``num_steps`` Newton steps taken; ``status`` a Newton status code.
    """

    mean: Latent
    V_diag: Blocks
    V_sub: Blocks
    chol: Factor
    log_joint: Scalar
    logdet: Scalar
    objective: Scalar
    num_steps: jax.Array
    status: jax.Array


def precision_blocks(
    f: Latent, panel: Panel, params: Params, emission: Emission | None = None
) -> tuple[Blocks, Blocks]:
    r"""Blocks of $J = -\nabla^2_f \log p(X, f)$.

    For the model's own emissions in closed form: window $i$'s emission adds
    $\Lambda^\top \mathrm{diag}(M_i \odot w_i)\Lambda$ with $w_{i\ell} = -g''(\eta_{i\ell})$
    ($e^\eta$ for the Poisson, $(x + r)\,r\lambda/(r + \lambda)^2$ for the negative binomial;
    :mod:`jaxssm.emissions`), the transitions $Q^{-1}$ and $\Phi^\top Q^{-1}\Phi$ on the
    diagonal and $-Q^{-1}\Phi$ below it, the initial state $P_1^{-1}$. For a plug-in
    ``emission``, by autodiff of the local terms (``vmap(jax.hessian(...))``); the tests check the
    closed form against that and against the dense Hessian of the flattened joint.

    Returns ``(A, C)``: diagonal blocks (N, q, q) and sub-diagonal blocks $J_{i,i-1}$ (N, q, q),
    ``C[0]`` = 0.
    """
    q = f.shape[-1]
    zeros = jnp.zeros((1, q, q), f.dtype)
    if emission is None:
        eta = panel.offset + params.mu + f @ params.Lambda.T
        _, w = emissions.kernel_derivatives(panel.counts, eta, params.log_dispersion)
        w = jnp.where(panel.mask, w, 0.0)
        A = jnp.einsum("nl,lk,lj->nkj", w, params.Lambda, params.Lambda)
        eye = jnp.eye(q, dtype=f.dtype)
        Q_inv = jnp.linalg.solve(params.Q, eye)
        A = A.at[0].add(jnp.linalg.solve(params.P1, eye))
        A = A.at[1:].add(Q_inv)
        A = A.at[:-1].add(params.Phi.T @ Q_inv @ params.Phi)
        C = jnp.concatenate([zeros, jnp.broadcast_to(-Q_inv @ params.Phi, (f.shape[0] - 1, q, q))])
        return A, C
    H_emit = jax.vmap(jax.hessian(emission), in_axes=(0, 0, 0, 0, None))(
        f, panel.counts, panel.mask, panel.offset, params
    )
    H_init = jax.hessian(initial_log_density)(f[0], params)

    def pair_term(z):
        return transition_log_density(z[:q], z[q:], params)

    pairs = jnp.concatenate([f[:-1], f[1:]], axis=-1)
    H_pair = jax.vmap(jax.hessian(pair_term))(pairs)  # (N-1, 2q, 2q) over (f_{i-1}, f_i)
    A = -H_emit
    A = A.at[0].add(-H_init)
    A = A.at[1:].add(-H_pair[:, q:, q:])  # transition into i
    A = A.at[:-1].add(-H_pair[:, :q, :q])  # transition out of i
    C = jnp.concatenate([zeros, -H_pair[:, q:, :q]])
    return A, C


def _decrement_tol(value, tol):
    return tol * (1.0 + jnp.abs(value))


def _laplace_posterior(
    panel: Panel,
    params: Params,
    f_init: Latent,
    *,
    emission: Emission | None = None,
    max_steps: int = 50,
    tol: float | None = None,
    max_halvings: int = 30,
    solver: str = "sequential",
) -> LaplacePosterior:
    """Newton's method for the mode of the log joint, then the Gaussian approximation.

    Args:
        panel: the counts, mask and offset.
        params: model parameters.
        f_init: (N, q) starting trajectory (the previous EM iteration's mode: a warm start
            leaves a few Newton steps).
        emission: a plug-in log density of one window; None (the default) is the family of
            ``params`` (Poisson, or negative binomial when ``params.log_dispersion`` is set).
        max_steps: static limit on Newton steps.
        tol: stop when the Newton decrement $g^\\top J^{-1} g / 2 \\le$ ``tol`` $(1 + |\\log p|)$;
            default 1e-11 in float64, 1e-6 in float32.
        max_halvings: static limit on backtracking halvings per step.
        solver: ``"sequential"`` (:mod:`jaxssm.block_tridiag`, the default) or ``"parallel"``
            (:mod:`jaxssm.cyclic_reduction`) for the factor of $J$, the Newton direction,
            $\\log\\det J$ and the posterior blocks.
    """
    la = cr if check_solver(solver) == "parallel" else bt
    factorize = cr.factor if la is cr else bt.cholesky
    dtype = f_init.dtype
    if tol is None:
        tol = 1e-11 if dtype == jnp.float64 else 1e-6

    def objective(f):
        return log_joint_kernel(f, panel, params, emission)

    value_and_grad = jax.value_and_grad(objective)
    eye = jnp.eye(f_init.shape[-1], dtype=dtype)

    def linearise(f, damping):
        value, g = value_and_grad(f)
        A, C = precision_blocks(f, panel, params, emission)
        scale = jnp.diagonal(A, axis1=1, axis2=2)[:, :, None] * eye  # Marquardt: diag(A_i)
        chol = factorize(A + damping * scale, C)
        return value, g, A, C, chol

    class State(NamedTuple):
        f: Latent
        value: Scalar
        g: Latent
        A: Blocks
        C: Blocks
        chol: Factor  # of J + damping * diag(J)
        decrement: Scalar
        damping: Scalar
        step: jax.Array
        status: jax.Array

    def make_state(f, damping, step, status):
        value, g, A, C, chol = linearise(f, damping)
        direction = la.solve(chol, g)
        decrement = jnp.sum(g * direction)
        finite = jnp.isfinite(value) & jnp.isfinite(decrement)
        status = jnp.where(finite, status, NON_FINITE)
        return State(f, value, g, A, C, chol, decrement, damping, step, status), direction

    def running(carry):
        state, _ = carry
        small = 0.5 * state.decrement <= _decrement_tol(state.value, tol)
        return (
            (state.status == MAX_STEPS) & (state.step < max_steps) & (~small | (state.damping > 0))
        )

    def newton_step(carry):
        state, direction = carry
        slope = state.decrement  # g^T d > 0 for a positive-definite J

        def search_cond(args):
            alpha, value, k = args
            ok = jnp.isfinite(value) & (value >= state.value + 1e-4 * alpha * slope)
            return ~ok & (k < max_halvings)

        def search_body(args):
            alpha, _, k = args
            alpha = 0.5 * alpha
            return alpha, objective(state.f + alpha * direction), k + 1

        alpha0 = jnp.asarray(1.0, dtype)
        alpha, value, _ = jax.lax.while_loop(
            search_cond, search_body, (alpha0, objective(state.f + direction), 0)
        )
        accepted = jnp.isfinite(value) & (value >= state.value)
        f_new = jnp.where(accepted, state.f + alpha * direction, state.f)
        # Levenberg-Marquardt: a full step relaxes the damping, a shortened or failed one raises it
        full = accepted & (alpha == 1.0)
        damping = jnp.where(
            full,
            jnp.where(state.damping < DAMPING_MIN, 0.0, 0.1 * state.damping),
            jnp.maximum(10.0 * state.damping, DAMPING_MIN),
        )
        new_state, new_direction = make_state(f_new, damping, state.step + 1, MAX_STEPS)
        # No improvement even with heavy damping: the mode is found to working precision.
        stalled = ~accepted & (state.damping >= DAMPING_MAX)
        new_state = new_state._replace(
            status=jnp.where(stalled & (new_state.status != NON_FINITE), STALLED, new_state.status)
        )
        return new_state, new_direction

    zero = jnp.zeros((), dtype)
    state, direction = make_state(f_init, zero, jnp.asarray(0), MAX_STEPS)
    state, _ = jax.lax.while_loop(running, newton_step, (state, direction))
    converged = (0.5 * state.decrement <= _decrement_tol(state.value, tol)) & (state.damping == 0)
    status = jnp.where(
        state.status == NON_FINITE,
        NON_FINITE,
        jnp.where(converged, CONVERGED, state.status),
    )
    # The posterior at the final point: J itself (the state's factor when it is undamped).
    chol = jax.lax.cond(state.damping == 0, lambda: state.chol, lambda: factorize(state.A, state.C))
    V_diag, V_sub = la.inverse_blocks(chol)
    logdet = la.logdet(chol)
    N, q = state.f.shape
    value = state.value + (emission_constant(panel, params) if emission is None else 0.0)
    laplace = value + 0.5 * N * q * jnp.log(2 * jnp.pi) - 0.5 * logdet
    return LaplacePosterior(
        mean=state.f,
        V_diag=V_diag,
        V_sub=V_sub,
        chol=chol,
        log_joint=value,
        logdet=logdet,
        objective=laplace,
        num_steps=state.step,
        status=status,
    )


laplace_posterior = jax.jit(
    _laplace_posterior,
    static_argnames=("emission", "max_steps", "tol", "max_halvings", "solver"),
)
laplace_posterior.__doc__ = _laplace_posterior.__doc__


def dense_precision(
    f: Latent, panel: Panel, params: Params, emission: Emission | None = None
) -> jax.Array:
    """$J$ as a dense (Nq)x(Nq) matrix by ``jax.hessian`` of the flattened log joint — the
    brute-force reference (tests, and the seed's "inverting large matrices" in benchmarks)."""
    N, q = f.shape
    flat = lambda v: log_joint(v.reshape(N, q), panel, params, emission)  # noqa: E731
    return -jax.hessian(flat)(f.reshape(-1))


def _dense_laplace_posterior(
    panel: Panel,
    params: Params,
    f_init: Latent,
    *,
    emission: Emission | None = None,
    max_steps: int = 50,
    tol: float | None = None,
) -> tuple[Latent, jax.Array, Scalar]:
    """The same Newton iteration with a dense Hessian and dense solves (reference only).

    Returns ``(mode (N, q), V dense (Nq, Nq), Laplace objective)``. Full Newton steps with
    halving on failure; O((Nq)^3) per step.
    """
    N, q = f_init.shape
    dtype = f_init.dtype
    if tol is None:
        tol = 1e-11 if dtype == jnp.float64 else 1e-6
    objective = lambda f: log_joint(f, panel, params, emission)  # noqa: E731

    def body(carry):
        f, k, _ = carry
        g = jax.grad(objective)(f).reshape(-1)
        J = dense_precision(f, panel, params, emission)
        d = jnp.linalg.solve(J, g).reshape(N, q)
        value = objective(f)

        def halve(args):
            a, _ = args
            return 0.5 * a, objective(f + 0.5 * a * d)

        alpha, _ = jax.lax.while_loop(
            lambda args: ~(args[1] >= value) & (args[0] > 1e-9),
            halve,
            (jnp.asarray(1.0, dtype), objective(f + d)),
        )
        return f + alpha * d, k + 1, 0.5 * jnp.sum(g * d.reshape(-1))

    def cond(carry):
        f, k, dec = carry
        return (k < max_steps) & (dec > _decrement_tol(objective(f), tol))

    f, _, _ = jax.lax.while_loop(cond, body, (f_init, 0, jnp.asarray(jnp.inf, dtype)))
    J = dense_precision(f, panel, params, emission)
    V = jnp.linalg.inv(J)
    _, logdet = jnp.linalg.slogdet(J)
    laplace = objective(f) + 0.5 * N * q * jnp.log(2 * jnp.pi) - 0.5 * logdet
    return f, V, laplace


dense_laplace_posterior = jax.jit(
    _dense_laplace_posterior, static_argnames=("emission", "max_steps", "tol")
)
dense_laplace_posterior.__doc__ = _dense_laplace_posterior.__doc__
