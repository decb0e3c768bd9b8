r"""Symmetric positive-definite block-tridiagonal matrices: Cholesky, solves, log-determinant,
the blocks of the inverse, and Gaussian draws — all in $O(N q^3)$ scans.

A matrix $J \in \mathbb R^{Nq \times Nq}$ is given by its diagonal blocks $A_i$ ($i = 1..N$) and
its sub-diagonal blocks $C_i = J_{i,i-1}$ ($i = 2..N$; ``C[0]`` is ignored). Its Cholesky factor
$J = L L^\top$ is lower block-bidiagonal with diagonal blocks $D_i$ and sub-diagonal blocks
$E_i = L_{i,i-1}$:

$$D_1 D_1^\top = A_1, \qquad E_i = C_i D_{i-1}^{-\top}, \qquad
  D_i D_i^\top = A_i - E_i E_i^\top .$$

In the Laplace E-step $J$ is the negative Hessian of $\log p(X, f_{1:N})$ (the posterior
precision), and its inverse $V = J^{-1}$ is the posterior covariance. Only the blocks the
M-step needs are formed, by the backward recursion (from $L^\top V = L^{-1}$)

$$V_{NN} = D_N^{-\top} D_N^{-1}, \quad K_i = E_{i+1} D_i^{-1}, \quad
  V_{i+1,i} = -V_{i+1,i+1} K_i, \quad V_{ii} = D_i^{-\top} D_i^{-1} + K_i^\top V_{i+1,i+1} K_i .$$

Everything here is pure and un-jitted; it composes under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssm import small_linalg
from jaxssm.types import Blocks, Latent, LatentDraws, Scalar


class BlockCholesky(NamedTuple):
    """The lower block-bidiagonal Cholesky factor of $J$: diagonal ``D`` and sub-diagonal ``E``
    blocks, both (N, q, q); ``E[0]`` is zero."""

    D: Blocks
    E: Blocks


def _tril_solve(D, b, trans: bool = False):
    # unrolled for small q (see jaxssm.small_linalg): LAPACK's per-call overhead dominates here
    return small_linalg.solve_upper_t(D, b) if trans else small_linalg.solve_lower(D, b)


def cholesky(A: Blocks, C: Blocks) -> BlockCholesky:
    """Factor $J = LL^\\top$ from its diagonal blocks ``A`` and sub-diagonal blocks ``C``.

    A non-positive-definite $J$ gives NaN blocks (as ``jnp.linalg.cholesky`` does); callers
    check ``is_finite``.
    """
    q = A.shape[-1]
    D1 = small_linalg.cholesky(A[0])

    def step(D_prev, AC):
        A_i, C_i = AC
        # E_i = C_i D_{i-1}^{-T}  <=>  D_{i-1} E_i^T = C_i^T
        E_i = _tril_solve(D_prev, C_i.T).T
        D_i = small_linalg.cholesky(A_i - E_i @ E_i.T)
        return D_i, (D_i, E_i)

    _, (D_rest, E_rest) = jax.lax.scan(step, D1, (A[1:], C[1:]))
    D = jnp.concatenate([D1[None], D_rest])
    E = jnp.concatenate([jnp.zeros((1, q, q), A.dtype), E_rest])
    return BlockCholesky(D, E)


def logdet(chol: BlockCholesky) -> Scalar:
    """$\\log\\det J = 2 \\sum_i \\sum_k \\log (D_i)_{kk}$."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol.D, axis1=-2, axis2=-1)))


def solve_lower(chol: BlockCholesky, b: Latent) -> Latent:
    """$y = L^{-1} b$ (forward substitution)."""

    def step(y_prev, args):
        D_i, E_i, b_i = args
        y_i = _tril_solve(D_i, b_i - E_i @ y_prev)
        return y_i, y_i

    _, y = jax.lax.scan(step, jnp.zeros_like(b[0]), (chol.D, chol.E, b))
    return y


def solve_upper(chol: BlockCholesky, y: Latent) -> Latent:
    """$x = L^{-\\top} y$ (backward substitution over the upper block-bidiagonal $L^\\top$)."""
    E_next = jnp.concatenate([chol.E[1:], jnp.zeros_like(chol.E[:1])])

    def step(x_next, args):
        D_i, E_n, y_i = args
        x_i = _tril_solve(D_i, y_i - E_n.T @ x_next, trans=True)
        return x_i, x_i

    _, x = jax.lax.scan(step, jnp.zeros_like(y[0]), (chol.D, E_next, y), reverse=True)
    return x


def solve(chol: BlockCholesky, b: Latent) -> Latent:
    """$x = J^{-1} b$ for a right-hand side shaped like the trajectory, (N, q)."""
    return solve_upper(chol, solve_lower(chol, b))


def inverse_blocks(chol: BlockCholesky) -> tuple[Blocks, Blocks]:
    """The diagonal blocks $V_{ii}$ and sub-diagonal blocks $V_{i,i-1}$ of $V = J^{-1}$.

    Returns ``(V_diag, V_sub)``, both (N, q, q); ``V_sub[0]`` is zero.
    """
    q = chol.D.shape[-1]
    eye = jnp.eye(q, dtype=chol.D.dtype)
    D_inv = _tril_solve(chol.D, jnp.broadcast_to(eye, chol.D.shape))  # D_i^{-1}, batched
    own = jnp.einsum("nki,nkj->nij", D_inv, D_inv)  # D_i^{-T} D_i^{-1}
    K = jnp.einsum("nij,njk->nik", chol.E[1:], D_inv[:-1])  # K_i = E_{i+1} D_i^{-1}

    def step(V_next, args):
        own_i, K_i = args
        V_ii = own_i + K_i.T @ V_next @ K_i
        V_ii = 0.5 * (V_ii + V_ii.T)
        return V_ii, (V_ii, -V_next @ K_i)

    V_last = own[-1]
    _, (V_head, V_sub_tail) = jax.lax.scan(step, V_last, (own[:-1], K), reverse=True)
    V_diag = jnp.concatenate([V_head, V_last[None]])
    V_sub = jnp.concatenate([jnp.zeros((1, q, q), chol.D.dtype), V_sub_tail])
    return V_diag, V_sub


def sample(key: jax.Array, chol: BlockCholesky, num_draws: int) -> LatentDraws:
    """Draws of $\\delta \\sim N(0, J^{-1})$: $\\delta = L^{-\\top} z$, $z \\sim N(0, I)$.

    Returns (num_draws, N, q).
    """
    z = jax.random.normal(key, (num_draws, *chol.D.shape[:2]), chol.D.dtype)
    return jax.vmap(lambda zz: solve_upper(chol, zz))(z)


def to_dense(A: Blocks, C: Blocks) -> jax.Array:
    """The dense (Nq)x(Nq) matrix from its blocks — a test and benchmark reference only."""
    N, q, _ = A.shape
    J = jnp.zeros((N * q, N * q), A.dtype)
    for i in range(N):
        J = J.at[i * q : (i + 1) * q, i * q : (i + 1) * q].set(A[i])
        if i > 0:
            J = J.at[i * q : (i + 1) * q, (i - 1) * q : i * q].set(C[i])
            J = J.at[(i - 1) * q : i * q, i * q : (i + 1) * q].set(C[i].T)
    return J
