r"""Block cyclic reduction (odd-even elimination) for symmetric positive-definite block-tridiagonal
matrices: the API of :mod:`jaxssm.block_tridiag` (factor, log-determinant, solves, the blocks of
the inverse, Gaussian draws) with depth $O(\log N)$ instead of $O(N)$.

$J$ is given as in :mod:`jaxssm.block_tridiag`: diagonal blocks $A_i$ and sub-diagonal blocks
$C_i = J_{i,i-1}$ (``C[0]`` ignored), $i = 0..n-1$. One **level** eliminates the blocks at even
positions $e = 2k$ at once. They are pairwise uncoupled ($J_{EE} = \mathrm{diag}(A_{2k})$), so
their pivots are independent $q \times q$ Cholesky factors, and the Schur complement on the kept
odd positions $2k+1$ is again block tridiagonal:

$$D_k D_k^\top = A_{2k}, \qquad R_k = C_{2k+1} D_k^{-\top} = L_{2k+1,2k}, \qquad
  U_k = C_{2k}^\top D_k^{-\top} = L_{2k-1,2k} \ (U_0 = 0),$$

$$A'_k = A_{2k+1} - R_k R_k^\top - U_{k+1} U_{k+1}^\top, \qquad C'_k = -R_k U_k^\top .$$

Recursing on $(A', C')$ with $n' = \lfloor n/2 \rfloor$ blocks until none are left takes
$\lfloor \log_2 N \rfloor + 1$ levels. Each level is one batched (``vmap``-style) operation over
all its pivots, so the critical path is $O(\log N)$ small-matrix operations, while the total work
stays $O(N q^3)$ (about twice the sequential scan's). This is exactly a Cholesky factorisation
$P J P^\top = L L^\top$ under the permutation $P$ that lists the level-0 pivots first, then the
level-1 pivots, and so on: column $e$ of $L$ holds $D_k$ on the diagonal and $R_k$, $U_k$ in the
rows of its two kept neighbours. Odd $n$ is handled statically (the last eliminated block has no
right neighbour: its $R$ is stored as zero and a missing $U_{k+1}$ is a zero block), so nothing is
padded with dummy blocks and every shape is fixed at trace time; the Python loop over levels is
unrolled by ``jit``.

**Solves.** Forward, level by level: $y_k = D_k^{-1} b_{2k}$, then
$b'_k = b_{2k+1} - R_k y_k - U_{k+1} y_{k+1}$. Backward, from the last level down:
$x_{2k} = D_k^{-\top}(y_k - R_k^\top x_{2k+1} - U_k^\top x_{2k-1})$.

**Selected inverse.** $V = J^{-1}$ restricted to the kept blocks is the inverse of the Schur
complement, so the recursion runs backward from the last level. With
$W_k = D_k^{-\top} R_k^\top$, $Y_k = D_k^{-\top} U_k^\top$ (the row of $J_{EE}^{-1} J_{EK}$ of
pivot $k$) and the kept blocks $V_{2k+1,2k+1}$, $V_{2k+1,2k-1}$ known from the level above
(Takahashi's recurrences in this ordering, from $V_{EK} = -J_{EE}^{-1} J_{EK} V_{KK}$ and
$V_{EE} = J_{EE}^{-1} - V_{EK} (J_{EE}^{-1} J_{EK})^\top$):

$$V_{2k,2k+1} = -(W_k V_{2k+1,2k+1} + Y_k V_{2k-1,2k+1}), \qquad
  V_{2k,2k-1} = -(W_k V_{2k+1,2k-1} + Y_k V_{2k-1,2k-1}),$$

$$V_{2k,2k} = D_k^{-\top} D_k^{-1} - V_{2k,2k+1} W_k^\top - V_{2k,2k-1} Y_k^\top .$$

Only the blocks on the tridiagonal band are ever formed. A non-positive-definite $J$ gives NaN
(some pivot of any ordering's Cholesky fails), as :func:`jaxssm.block_tridiag.cholesky` does.
Everything here is pure and un-jitted; it composes under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssm import small_linalg
from jaxssm.types import Blocks, Latent, LatentDraws, Scalar


class CyclicReductionFactor(NamedTuple):
    r"""The Cholesky factor of $P J P^\top$ in the odd-even ordering, one entry per level
    (level $l$ eliminates $n_l - \lfloor n_l/2 \rfloor$ pivots, $n_0 = N$,
    $n_{l+1} = \lfloor n_l/2 \rfloor$): ``D[l]`` the pivots' Cholesky factors $D_k$, ``R[l]`` the
    couplings $R_k = L_{2k+1,2k}$ to the right kept neighbour (zero where there is none) and
    ``U[l]`` the couplings $U_k = L_{2k-1,2k}$ to the left one (``U[l][0]`` = 0), each
    (n_e, q, q)."""

    D: tuple[Blocks, ...]
    R: tuple[Blocks, ...]
    U: tuple[Blocks, ...]


def _t(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


def _pad(x: jax.Array, n: int) -> jax.Array:
    """``x`` cut or padded with zero rows to length ``n`` along its first axis."""
    if x.shape[0] >= n:
        return x[:n]
    return jnp.concatenate([x, jnp.zeros((n - x.shape[0], *x.shape[1:]), x.dtype)])


def _shift(x: jax.Array, n: int) -> jax.Array:
    """``x[k-1]`` for k = 0..n-1 (zero at k = 0)."""
    return _pad(jnp.concatenate([jnp.zeros((1, *x.shape[1:]), x.dtype), x]), n)


def _interleave(even: jax.Array, odd: jax.Array) -> jax.Array:
    """The inverse of ``(x[0::2], x[1::2])``: ``len(even)`` is ``len(odd)`` or one more."""
    nk = odd.shape[0]
    pairs = jnp.stack([even[:nk], odd], axis=1).reshape(2 * nk, *even.shape[1:])
    return jnp.concatenate([pairs, even[nk:]]) if even.shape[0] > nk else pairs


def _split(b: jax.Array) -> list[jax.Array]:
    """The rows of each level's pivots, in elimination order (the permutation $P$)."""
    parts = []
    while b.shape[0] > 0:
        parts.append(b[0::2])
        b = b[1::2]
    return parts


def _merge(parts: list[jax.Array]) -> jax.Array:
    """The inverse of :func:`_split` ($P^\\top$)."""
    x = parts[-1]
    for part in reversed(parts[:-1]):
        x = _interleave(part, x)
    return x


def num_levels(N: int) -> int:
    """$\\lfloor \\log_2 N \\rfloor + 1$ levels of elimination for N blocks."""
    return max(int(N).bit_length(), 1)


def factor(A: Blocks, C: Blocks) -> CyclicReductionFactor:
    """Factor $J$ from its diagonal blocks ``A`` and sub-diagonal blocks ``C`` (N, q, q) by odd-even
    elimination; the loop over the $\\lfloor\\log_2 N\\rfloor + 1$ levels is unrolled at trace time.

    A non-positive-definite $J$ gives NaN blocks; callers check ``is_finite``.
    """
    A = jnp.asarray(A)
    C = jnp.asarray(C).at[0].set(0.0)  # C[0] is ignored
    Ds, Rs, Us = [], [], []
    while A.shape[0] > 0:
        A_e, C_e = A[0::2], C[0::2]  # pivots 2k and their left couplings J_{2k,2k-1}
        A_k, C_k = A[1::2], C[1::2]  # kept 2k+1 and their left couplings J_{2k+1,2k}
        ne, nk, q = A_e.shape[0], A_k.shape[0], A.shape[-1]
        D = small_linalg.cholesky(A_e)
        # U_k^T = D_k^{-1} C_{2k} and R_k^T = D_k^{-1} C_{2k+1}^T, in one batched solve
        # (R_k = 0 for a last pivot without a right neighbour)
        rhs = jnp.concatenate([C_e, _t(_pad(C_k, ne))], axis=-1)
        X = small_linalg.solve_lower(D, rhs)
        U, R = _t(X[..., :q]), _t(X[..., q:])
        R_k, U_next = R[:nk], _pad(U[1:], nk)  # R_k and U_{k+1} of kept block k
        A = A_k - R_k @ _t(R_k) - U_next @ _t(U_next)
        C = -R_k @ _t(U[:nk])
        Ds.append(D)
        Rs.append(R)
        Us.append(U)
    return CyclicReductionFactor(tuple(Ds), tuple(Rs), tuple(Us))


def logdet(fac: CyclicReductionFactor) -> Scalar:
    """$\\log\\det J = 2 \\sum_{\\text{levels}} \\sum_k \\sum_j \\log (D_k)_{jj}$."""
    return 2.0 * sum(jnp.sum(jnp.log(jnp.diagonal(D, axis1=-2, axis2=-1))) for D in fac.D)


def _forward(fac: CyclicReductionFactor, b: jax.Array) -> list[jax.Array]:
    """$y = L^{-1} P b$, one part per level; ``b`` (N, q) or (N, q, k)."""
    ys = []
    for D, R, U in zip(fac.D, fac.R, fac.U, strict=True):
        b_e, b_k = b[0::2], b[1::2]
        nk = b_k.shape[0]
        y = small_linalg.solve_lower(D, b_e)
        Ry = jnp.einsum("kij,kj...->ki...", R[:nk], y[:nk])  # R_k y_k
        Uy = jnp.einsum("kij,kj...->ki...", U, y)  # U_k y_k, needed at kept k - 1
        b = b_k - Ry - _pad(Uy[1:], nk)
        ys.append(y)
    return ys


def _backward(fac: CyclicReductionFactor, ys: list[jax.Array]) -> jax.Array:
    """$P^\\top L^{-\\top} y$ from the per-level parts of $y$."""
    x = ys[-1][:0]  # the kept blocks above the last level: none
    for D, R, U, y in reversed(list(zip(fac.D, fac.R, fac.U, ys, strict=True))):
        ne = D.shape[0]
        rhs = (
            y
            - jnp.einsum("kji,kj...->ki...", R, _pad(x, ne))  # R_k^T x_{2k+1}
            - jnp.einsum("kji,kj...->ki...", U, _shift(x, ne))  # U_k^T x_{2k-1}
        )
        x = _interleave(small_linalg.solve_upper_t(D, rhs), x)
    return x


def solve_lower(fac: CyclicReductionFactor, b: Latent) -> Latent:
    """$P^\\top L^{-1} P b$: forward substitution through the levels, returned in the original
    block order (so that :func:`solve_upper` of it is $J^{-1} b$). ``b`` is (N, q), or (N, q, k)
    for k right-hand sides at once (as in :func:`solve` and :func:`solve_upper`)."""
    return _merge(_forward(fac, b))


def solve_upper(fac: CyclicReductionFactor, y: Latent) -> Latent:
    """$P^\\top L^{-\\top} P y$: backward substitution from the last level down."""
    return _backward(fac, _split(y))


def solve(fac: CyclicReductionFactor, b: Latent) -> Latent:
    """$x = J^{-1} b$ for a right-hand side shaped like the trajectory, (N, q)."""
    return _backward(fac, _forward(fac, b))


def inverse_blocks(fac: CyclicReductionFactor) -> tuple[Blocks, Blocks]:
    """The diagonal blocks $V_{ii}$ and sub-diagonal blocks $V_{i,i-1}$ of $V = J^{-1}$, by the
    selected-inverse recursion backward through the levels.

    Returns ``(V_diag, V_sub)``, both (N, q, q); ``V_sub[0]`` is zero.
    """
    D0 = fac.D[-1]
    V_diag = V_sub = jnp.zeros((0, *D0.shape[1:]), D0.dtype)  # the kept blocks: none yet
    for D, R, U in reversed(list(zip(fac.D, fac.R, fac.U, strict=True))):
        ne, nk, q = D.shape[0], V_diag.shape[0], D.shape[-1]
        eye = jnp.broadcast_to(jnp.eye(q, dtype=D.dtype), D.shape)
        D_inv = small_linalg.solve_lower(D, eye)
        # D_k^{-T} [D_k^{-1}, R_k^T, U_k^T] in one batched solve: A_{2k}^{-1}, W_k and Y_k
        Z = small_linalg.solve_upper_t(D, jnp.concatenate([D_inv, _t(R), _t(U)], axis=-1))
        own, W, Y = Z[..., :q], Z[..., q : 2 * q], Z[..., 2 * q :]
        V_right = _pad(V_diag, ne)  # V_{2k+1,2k+1}
        V_left = _shift(V_diag, ne)  # V_{2k-1,2k-1}
        V_cross = _pad(V_sub, ne)  # V_{2k+1,2k-1} (zero at k = 0)
        X_right = -(W @ V_right + Y @ _t(V_cross))  # V_{2k,2k+1}
        X_left = -(W @ V_cross + Y @ V_left)  # V_{2k,2k-1}
        V_ee = own - X_right @ _t(W) - X_left @ _t(Y)
        V_ee = 0.5 * (V_ee + _t(V_ee))
        V_sub = _interleave(X_left, _t(X_right[:nk]))  # V_{2k,2k-1} and V_{2k+1,2k}
        V_diag = _interleave(V_ee, V_diag)
    return V_diag, V_sub


def sample(key: jax.Array, fac: CyclicReductionFactor, num_draws: int) -> LatentDraws:
    """Draws of $\\delta \\sim N(0, J^{-1})$: $\\delta = P^\\top L^{-\\top} z$, $z \\sim N(0, I)$
    (the covariance is $P^\\top L^{-\\top} L^{-1} P = J^{-1}$).

    Returns (num_draws, N, q).
    """
    N = sum(D.shape[0] for D in fac.D)
    q = fac.D[0].shape[-1]
    z = jax.random.normal(key, (num_draws, N, q), fac.D[0].dtype)
    return jnp.moveaxis(solve_upper(fac, jnp.moveaxis(z, 0, -1)), -1, 0)  # k = num_draws
