r"""Parameters, data and priors of the Poisson dynamic factor model, as pytrees.

$$X_i(\ell) \mid f_i \sim \mathrm{Poisson}(\lambda_{i\ell}), \qquad
  \log \lambda_i = o_i + \mu + \Lambda f_i, \qquad
  f_i = \Phi f_{i-1} + \varepsilon_i,\ \varepsilon_i \sim N(0, Q), \qquad f_1 \sim N(a_1, P_1),$$

for windows $i = 1..N$, locations $\ell = 1..m$ and $q \ll m$ latent factors; $o_{i\ell}$ is an
optional known log-offset (exposure), zero by default.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxssm.types import CellMask, Counts, Loadings, Locations, Offset, Square, Vector


class Params(NamedTuple):
    r"""$\theta = (\mu, \Lambda, \Phi, Q, a_1, P_1)$ in the seed's symbols.

    ``mu`` (m,) base log-rates, ``Lambda`` (m, q) loadings, ``Phi`` (q, q) transition,
    ``Q`` (q, q) innovation covariance, ``a1`` (q,) and ``P1`` (q, q) the initial state's mean
    and covariance.
    """

    mu: Locations
    Lambda: Loadings
    Phi: Square
    Q: Square
    a1: Vector
    P1: Square

    @property
    def num_factors(self) -> int:
        return self.Lambda.shape[-1]

    @property
    def num_locations(self) -> int:
        return self.mu.shape[-1]


class Panel(NamedTuple):
    """One panel of counts: ``counts`` (N, m) with missing cells set to 0, ``mask`` (N, m) True
    where a cell is observed, ``offset`` (N, m) the known log-offset $o_{i\\ell}$."""

    counts: Counts
    mask: CellMask
    offset: Offset

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape[-2:]


class Priors(NamedTuple):
    r"""Weak Gaussian priors of MAP-EM (plain floats: settings, not leaves).

    $\mu_\ell \sim N(\bar\mu, s_\mu^2)$ with $\bar\mu$ the log of the pooled rate of all
    observed cells (so an all-zero location is shrunk toward the average one instead of running
    to $-\infty$), and $\Lambda_{\ell k} \sim N(0, s_\Lambda^2)$ (a ridge that keeps loadings finite
    when $m \gg N$). The latent scale is pinned by $Q = I$, which makes $s_\Lambda$ meaningful: it
    is the prior sd of a location's log-rate response to a one-sd move of a factor. Set a scale to
    ``inf`` for maximum likelihood.
    """

    mu_scale: float = 3.0
    loading_scale: float = 1.0


class MStepPrior(NamedTuple):
    """The priors as arrays for the jitted M-step: center and precisions."""

    mu_mean: jnp.ndarray
    mu_precision: jnp.ndarray
    loading_precision: jnp.ndarray


class DataError(ValueError):
    """Counts that cannot be fitted; the message names the window (row) and location (column)."""


def make_panel(
    counts,
    mask=None,
    offset=None,
    *,
    dtype=None,
    name: str = "counts",
    columns=None,
) -> Panel:
    """Validate and pack counts into a :class:`Panel`.

    Args:
        counts: (N, m) array-like (or (B, N, m) for a batch); NaN marks a missing cell.
        mask: optional boolean array of the same shape, True where observed (ANDed with not-NaN).
        offset: optional known log-offset, broadcastable to the counts' shape.
        dtype: float dtype of the packed arrays (default: JAX's default float).
        name: how error messages name the input.
        columns: location names for error messages (default: the column index).

    Raises:
        DataError: a negative, non-integer or infinite observed count, or a non-finite offset;
            the message names the window (row) and the location (column).
    """
    frame_columns = getattr(counts, "columns", None)
    if columns is None and frame_columns is not None:
        columns = list(frame_columns)
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise DataError(f"{name}: expected a (windows, locations) array, got shape {x.shape}")
    observed = ~np.isnan(x)
    if mask is not None:
        observed &= np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)
    bad = observed & (~np.isfinite(x) | (x < 0) | (np.abs(x - np.round(x)) > 1e-9))
    if bad.any():
        where = np.argwhere(bad)[0]
        col = where[-1] if columns is None else columns[where[-1]]
        batch = f"panel {where[0]}, " if x.ndim == 3 else ""
        raise DataError(
            f"{name}: {batch}window (row) {where[-2]}, location (column) {col!r}: count "
            f"{x[tuple(where)]!r} is not a non-negative integer ({int(bad.sum())} such cells)"
        )
    o = np.zeros_like(x) if offset is None else np.broadcast_to(np.asarray(offset, float), x.shape)
    bad = observed & ~np.isfinite(o)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise DataError(f"{name}: offset at window {where[-2]}, location {where[-1]} is not finite")
    dtype = dtype or jnp.zeros(()).dtype
    return Panel(
        counts=jnp.asarray(np.where(observed, x, 0.0), dtype),
        mask=jnp.asarray(observed),
        offset=jnp.asarray(np.where(observed | np.isfinite(o), o, 0.0), dtype),
    )
