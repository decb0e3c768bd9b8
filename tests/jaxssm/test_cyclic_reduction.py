"""Block cyclic reduction (the parallel-in-time solver) against dense ``numpy.linalg`` and the
sequential scans of ``block_tridiag`` at small sizes (float64), including odd N; NaN on a
non-positive-definite input; the same Laplace-EM fit with either solver.

Each compile of the unrolled levels costs seconds here, so each case runs as one jitted program.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_block_tridiag import random_spd_blocks

from jaxssm import EMOptions, fit_laplace_em, random_params, sample_posterior, simulate_panel
from jaxssm import block_tridiag as bt
from jaxssm import cyclic_reduction as cr
from jaxssm.em import e_step
from jaxssm.fit import initial_params


@jax.jit
def _both(A, C, b):
    """One case in one program: for cyclic reduction log det J, the inverse blocks, and the
    triangular maps on [b, I] (all 1 + Nq columns at once): Y = P^T L^{-1} P [b, I] and
    X = P^T L^{-T} P [Y, I], i.e. J^{-1} b, J^{-1} and the draw map M = P^T L^{-T} P; and the
    sequential results."""
    N, q = b.shape
    fac = cr.factor(A, C)
    eye = jnp.eye(N * q, dtype=A.dtype).reshape(N, q, N * q)
    Y = cr.solve_lower(fac, jnp.concatenate([b[..., None], eye], axis=-1))
    X = cr.solve_upper(fac, jnp.concatenate([Y, eye], axis=-1))
    chol = bt.cholesky(A, C)
    parallel = cr.logdet(fac), cr.inverse_blocks(fac), X, Y
    sequential = bt.logdet(chol), bt.solve(chol, b), bt.inverse_blocks(chol)
    return parallel, sequential


# odd tails (3, 5, 13), powers of two (2, 8), a single block, q = 1 and q = 3: each case is a
# separate compile of the unrolled levels, so not every product
@pytest.mark.parametrize("N,q", [(1, 3), (2, 1), (3, 3), (5, 3), (8, 1), (13, 3)])
def test_against_dense_and_sequential(rng, N, q, dense_blocks):
    J, A, C = random_spd_blocks(rng, N, q)
    fac = jax.eval_shape(cr.factor, A, C)
    assert len(fac.D) == cr.num_levels(N) == int(np.floor(np.log2(N))) + 1
    assert [D.shape[0] for D in fac.D] == [(N >> k) - (N >> (k + 1)) for k in range(len(fac.D))]

    b = rng.normal(size=(N, q))
    parallel, sequential = _both(A, C, jnp.asarray(b))
    logdet, (V_diag, V_sub), X, Y = parallel
    Nq = N * q
    X, Y = np.asarray(X).reshape(Nq, -1), np.asarray(Y).reshape(Nq, -1)
    x, J_inv, M, L_inv = X[:, 0], X[:, 1 : Nq + 1], X[:, Nq + 1 :], Y[:, 1:]

    np.testing.assert_allclose(logdet, np.linalg.slogdet(J)[1], rtol=1e-10)
    V = np.linalg.inv(J)
    np.testing.assert_allclose(x, np.linalg.solve(J, b.reshape(-1)), atol=1e-9)
    np.testing.assert_allclose(J_inv, V, atol=1e-9)
    want_diag, want_sub = dense_blocks(V, N, q)
    np.testing.assert_allclose(V_diag, want_diag, atol=1e-9)
    np.testing.assert_allclose(V_sub, want_sub, atol=1e-9)
    # Draws are z -> M z (checked below): the covariance M M^T must be J^{-1} exactly; the
    # forward map whitens J.
    np.testing.assert_allclose(M @ M.T, V, atol=1e-9)
    np.testing.assert_allclose(L_inv @ J @ L_inv.T, np.eye(Nq), atol=1e-9)

    seq_logdet, seq_x, (seq_diag, seq_sub) = sequential
    np.testing.assert_allclose(logdet, seq_logdet, rtol=1e-10)
    np.testing.assert_allclose(x, np.asarray(seq_x).reshape(-1), atol=1e-9)
    np.testing.assert_allclose(V_diag, seq_diag, atol=1e-9)
    np.testing.assert_allclose(V_sub, seq_sub, atol=1e-9)


def test_depth_is_logarithmic_and_draws_are_the_map_with_the_inverse_as_covariance(rng):
    N, q = 5, 3  # a shape _both has compiled already
    J, A, C = random_spd_blocks(rng, N, q)

    def everything(A, C):
        fac = cr.factor(A, C)
        draws = cr.sample(jax.random.key(0), fac, 2)
        return cr.logdet(fac), cr.solve(fac, A[:, :, 0]), cr.inverse_blocks(fac), draws

    # no loop over time in the program: each level is one batched operation
    jaxpr = str(jax.make_jaxpr(everything)(A, C))
    assert "scan" not in jaxpr and "while" not in jaxpr

    S = 40_000
    draws = jax.jit(cr.sample, static_argnums=2)(jax.random.key(0), cr.factor(A, C), S)
    draws = np.asarray(draws).reshape(S, -1)
    (_, _, X, _), _ = _both(A, C, A[:, :, 0])
    M = np.asarray(X).reshape(N * q, -1)[:, N * q + 1 :]
    z = np.asarray(jax.random.normal(jax.random.key(0), (S, N, q), jnp.float64)).reshape(S, -1)
    np.testing.assert_allclose(draws[:5], z[:5] @ M.T, atol=1e-12)
    V = np.linalg.inv(J)
    empirical = np.cov(draws, rowvar=False)
    # Monte Carlo sd of a covariance entry ~ sqrt((V_ii V_jj + V_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(V), np.diag(V)) + V**2) / S)
    assert np.all(np.abs(empirical - V) < 5 * se)


def test_solve_and_nan_when_not_positive_definite(rng, dense_blocks):
    J, A, C = random_spd_blocks(rng, 3, 2)

    @jax.jit
    def everything(A, C, b):
        fac = cr.factor(A, C)
        return cr.logdet(fac), cr.solve(fac, b), cr.inverse_blocks(fac)[0]

    b = rng.normal(size=(3, 2))
    logdet, x, V_diag = everything(A, C, jnp.asarray(b))
    np.testing.assert_allclose(logdet, np.linalg.slogdet(J)[1], rtol=1e-10)
    np.testing.assert_allclose(x.reshape(-1), np.linalg.solve(J, b.reshape(-1)), atol=1e-9)
    np.testing.assert_allclose(V_diag, dense_blocks(np.linalg.inv(J), 3, 2)[0], atol=1e-9)

    logdet, x, V_diag = everything(A.at[1].set(-jnp.eye(2)), C, jnp.asarray(b))  # no exception
    assert not np.isfinite(logdet)
    assert not np.all(np.isfinite(x))
    assert not np.all(np.isfinite(V_diag))


M, Q, N = 8, 2, 13
EXACT = dict(newton_tol=1e-18, max_newton_steps=30)  # Newton to machine precision in both


@pytest.fixture(scope="module")
def sim():
    return simulate_panel(3, random_params(2, M, Q, loading_scale=0.5), N)


def test_laplace_em_is_the_same_with_the_parallel_solver(sim):
    def fit(solver):
        options = EMOptions(linear_solver=solver, **EXACT)
        return fit_laplace_em(sim.counts, Q, max_iterations=6, rtol=1e-12, options=options)

    sequential, parallel = fit("sequential"), fit("parallel")
    assert isinstance(parallel.posterior.chol, cr.CyclicReductionFactor)
    assert isinstance(sequential.posterior.chol, bt.BlockCholesky)
    assert sequential.num_iterations == parallel.num_iterations == 6
    np.testing.assert_allclose(parallel.objective, sequential.objective, rtol=1e-12, atol=1e-8)
    for a, b in zip(parallel.params, sequential.params, strict=True):
        if a is not None:
            np.testing.assert_allclose(a, b, atol=1e-8)
    for name in ("mean", "V_diag", "V_sub", "logdet"):
        a, b = getattr(parallel.posterior, name), getattr(sequential.posterior, name)
        np.testing.assert_allclose(a, b, atol=1e-8)

    # draws go through the factor the posterior carries
    key = jax.random.key(4)
    draws = sample_posterior(key, parallel.posterior, 5)
    expected = parallel.posterior.mean + cr.sample(key, parallel.posterior.chol, 5)
    np.testing.assert_allclose(draws, expected, atol=1e-12)
    assert draws.shape == (5, N, Q)


def test_unknown_solver_is_a_value_error(sim):
    from jaxssm.params import make_panel

    panel = make_panel(sim.counts)
    params, f = initial_params(panel, Q)
    options = EMOptions(linear_solver="gpu")
    with pytest.raises(ValueError, match="linear_solver must be one of"):
        e_step(panel, params, f, options)
    with pytest.raises(ValueError, match="linear_solver must be one of"):
        jax.jit(e_step, static_argnames="options")(panel, params, f, options=options)
