"""Block-tridiagonal Cholesky, solves, log-determinant, inverse blocks and draws against dense
``numpy.linalg`` at small sizes (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssm import block_tridiag as bt


def random_spd_blocks(rng, N, q):
    """A random SPD block-tridiagonal J = B^T B + I from a random lower block-bidiagonal B."""
    D = rng.normal(size=(N, q, q))
    E = rng.normal(size=(N, q, q))
    E[0] = 0
    L = np.zeros((N * q, N * q))
    for i in range(N):
        L[i * q : (i + 1) * q, i * q : (i + 1) * q] = D[i]
        if i:
            L[i * q : (i + 1) * q, (i - 1) * q : i * q] = E[i]
    J = L @ L.T + np.eye(N * q)
    A = np.stack([J[i * q : (i + 1) * q, i * q : (i + 1) * q] for i in range(N)])
    C = np.stack(
        [np.zeros((q, q))] + [J[i * q : (i + 1) * q, (i - 1) * q : i * q] for i in range(1, N)]
    )
    return J, jnp.asarray(A), jnp.asarray(C)


@pytest.mark.parametrize("N,q", [(1, 2), (2, 1), (7, 3)])
def test_against_dense(rng, N, q, dense_blocks):
    J, A, C = random_spd_blocks(rng, N, q)
    np.testing.assert_allclose(bt.to_dense(A, C), J, atol=1e-12)
    chol = bt.cholesky(A, C)

    L = np.zeros_like(J)
    for i in range(N):
        L[i * q : (i + 1) * q, i * q : (i + 1) * q] = chol.D[i]
        if i:
            L[i * q : (i + 1) * q, (i - 1) * q : i * q] = chol.E[i]
    np.testing.assert_allclose(L @ L.T, J, atol=1e-10)
    np.testing.assert_allclose(L, np.linalg.cholesky(J), atol=1e-10)

    _, logdet = np.linalg.slogdet(J)
    np.testing.assert_allclose(bt.logdet(chol), logdet, rtol=1e-12)

    b = rng.normal(size=(N, q))
    np.testing.assert_allclose(
        bt.solve(chol, jnp.asarray(b)).reshape(-1), np.linalg.solve(J, b.reshape(-1)), atol=1e-10
    )

    V = np.linalg.inv(J)
    V_diag, V_sub = dense_blocks(V, N, q)
    got_diag, got_sub = bt.inverse_blocks(chol)
    np.testing.assert_allclose(got_diag, V_diag, atol=1e-10)
    np.testing.assert_allclose(got_sub, V_sub, atol=1e-10)

    # Draws are L^{-T} z: check the linear map exactly, then the covariance it implies.
    z = rng.normal(size=(N, q))
    np.testing.assert_allclose(
        bt.solve_upper(chol, jnp.asarray(z)).reshape(-1),
        np.linalg.solve(L.T, z.reshape(-1)),
        atol=1e-10,
    )


def test_draws_have_the_inverse_as_covariance(rng):
    N, q = 4, 2
    J, A, C = random_spd_blocks(rng, N, q)
    draws = bt.sample(jax.random.key(0), bt.cholesky(A, C), 40_000).reshape(40_000, -1)
    V = np.linalg.inv(J)
    empirical = np.cov(np.asarray(draws), rowvar=False)
    # Monte Carlo sd of a covariance entry ~ sqrt((V_ii V_jj + V_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(V), np.diag(V)) + V**2) / 40_000)
    assert np.all(np.abs(empirical - V) < 5 * se)


def test_not_positive_definite_gives_nan(rng):
    _, A, C = random_spd_blocks(rng, 3, 2)
    A = A.at[1].set(-jnp.eye(2))
    assert not np.isfinite(bt.logdet(bt.cholesky(A, C)))
