r"""Cholesky factorisation and triangular solves for batches of *small* matrices, written as
unrolled array expressions.

For the $q \times q$ blocks of the latent trajectory and the $(q+1) \times (q+1)$ per-location
M-step systems, LAPACK calls (one per matrix, or per scan step) cost microseconds each in
overhead on CPU, far more than the arithmetic; unrolled over the static size, the same algorithm
becomes a few fused elementwise kernels over the whole batch, on every backend. Matrices larger
than :data:`UNROLL_MAX` use ``jnp.linalg``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

UNROLL_MAX = 8


def cholesky(A: jax.Array) -> jax.Array:
    """Lower Cholesky factor of symmetric positive-definite matrices (..., n, n); NaN where a
    matrix is not positive definite (like ``jnp.linalg.cholesky``)."""
    n = A.shape[-1]
    if n > UNROLL_MAX:
        return jnp.linalg.cholesky(A)
    L = [[None] * n for _ in range(n)]
    zero = jnp.zeros(A.shape[:-2], A.dtype)
    for j in range(n):
        s = A[..., j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        d = jnp.sqrt(s)  # NaN if s < 0
        L[j][j] = d
        for i in range(j + 1, n):
            t = A[..., i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / d
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(n)], -1) for i in range(n)]
    return jnp.stack(rows, -2)


def solve_lower(L: jax.Array, b: jax.Array) -> jax.Array:
    """$x = L^{-1} b$ for lower-triangular L (..., n, n) and b (..., n) or (..., n, k)."""
    n = L.shape[-1]
    if n > UNROLL_MAX:
        return solve_triangular(L, b, lower=True)
    vector = b.ndim == L.ndim - 1
    B = b[..., None] if vector else b
    x = []
    for i in range(n):
        t = B[..., i, :]
        for k in range(i):
            t = t - L[..., i, k, None] * x[k]
        x.append(t / L[..., i, i, None])
    X = jnp.stack(x, -2)
    return X[..., 0] if vector else X


def solve_upper_t(L: jax.Array, b: jax.Array) -> jax.Array:
    """$x = L^{-\\top} b$ for lower-triangular L (..., n, n) and b (..., n) or (..., n, k)."""
    n = L.shape[-1]
    if n > UNROLL_MAX:
        return solve_triangular(L, b, lower=True, trans=1)
    vector = b.ndim == L.ndim - 1
    B = b[..., None] if vector else b
    x = [None] * n
    for i in reversed(range(n)):
        t = B[..., i, :]
        for k in range(i + 1, n):
            t = t - L[..., k, i, None] * x[k]
        x[i] = t / L[..., i, i, None]
    X = jnp.stack(x, -2)
    return X[..., 0] if vector else X


def spd_solve(A: jax.Array, b: jax.Array) -> jax.Array:
    """$x = A^{-1} b$ for symmetric positive-definite A (..., n, n), b (..., n) or (..., n, k)."""
    L = cholesky(A)
    return solve_upper_t(L, solve_lower(L, b))
