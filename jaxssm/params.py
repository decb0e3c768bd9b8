r"""Parameters, data and priors of the dynamic factor model for counts, as pytrees.

$$X_i(\ell) \mid f_i \sim \mathrm{Poisson}(\lambda_{i\ell}) \ \text{or}\
  \mathrm{NegBin}(\lambda_{i\ell}, \phi_\ell), \qquad
  \log \lambda_i = o_i + \mu + \Lambda f_i, \qquad
  f_i = \Phi f_{i-1} + \varepsilon_i,\ \varepsilon_i \sim N(0, Q), \qquad f_1 \sim N(a_1, P_1),$$

for windows $i = 1..N$, locations $\ell = 1..m$ and $q \ll m$ latent factors; $o_{i\ell}$ is an
optional known log-offset (exposure), zero by default. The negative binomial has mean
$\lambda$ and variance $\lambda + \phi_\ell\lambda^2$ (:mod:`jaxssm.emissions`); the Poisson is its
limit $\phi_\ell \to 0$.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxssm.errors import DataError
from jaxssm.types import CellMask, Counts, Loadings, Locations, Offset, Square, Vector


class Params(NamedTuple):
    r"""$\theta = (\mu, \Lambda, \Phi, Q, a_1, P_1)$ in the seed's symbols.

    ``mu`` (m,) base log-rates, ``Lambda`` (m, q) loadings, ``Phi`` (q, q) transition,
    ``Q`` (q, q) innovation covariance, ``a1`` (q,) and ``P1`` (q, q) the initial state's mean
    and covariance; ``log_dispersion`` (m,) $\psi_\ell = \log\phi_\ell$ of the negative
    binomial emission, or ``None`` for the Poisson emission. The emission family is the
    structure of the pytree, so every function of a fit knows it from ``params``.
    """

    mu: Locations
    Lambda: Loadings
    Phi: Square
    Q: Square
    a1: Vector
    P1: Square
    log_dispersion: Locations | None = None

    @property
    def emission(self) -> str:
        """``"poisson"`` or ``"negbin"``."""
        return "poisson" if self.log_dispersion is None else "negbin"

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


#: How the loadings' prior scales are set (:class:`Priors`).
LOADING_PRIORS = ("fixed", "ard", "ard_local")


class Priors(NamedTuple):
    r"""Priors of MAP-EM (plain values: settings, not leaves).

    * $\mu_\ell \sim N(\bar\mu, s_\mu^2)$ with $\bar\mu$ the log of the pooled rate of all
      observed cells (an all-zero location is shrunk toward the average one instead of running to
      $-\infty$).
    * Loadings, by ``loadings``:

      - ``"fixed"``: $\Lambda_{\ell k} \sim N(0, s_\Lambda^2)$ with $s_\Lambda$ = ``loading_scale``
        (a ridge that keeps loadings finite when $m \gg N$).
      - ``"ard"`` (automatic relevance determination, Bishop's Bayesian PCA): one scale per
        factor, $\Lambda_{\ell k}\sqrt{u_k} \sim N(0, s_k^2)$, $s_k^2 \sim \mathrm{InvGamma}(a, b)$
        (weak), learned from the data: a factor the data do not support gets $s_k \to 0$ and
        switches off, so a panel without dynamics fits like the static model. $u_k$ is the
        factor's mean posterior second moment: the prior is on a location's response to a
        typical move of the factor, which is what the data identify (with $Q = I$ alone a
        factor could grow toward a random walk while its loadings shrink at no cost to the
        likelihood, and a prior on the raw loadings would reward exactly that).
      - ``"ard_local"`` (the default; global-local): per factor and per location,
        $\Lambda_{\ell k}\sqrt{u_k} \mid t_\ell \sim N(0, t_\ell^2 s_k^2)$,
        $t_\ell^2 \sim \mathrm{InvGamma}(\nu/2, \nu/2)$ with $\nu$ = ``local_df``: each location's
        loading vector is multivariate $t_\nu$, so most locations are shrunk hard while a few
        that move get loadings of their own.

      The latent scale is pinned by $Q = I$, which makes the scales meaningful: $s_k$ is the sd of
      a location's log-rate response to a one-sd move of factor $k$. ``loading_scale`` is the
      fixed scale, or the starting scale when learned.
    * Negative binomial only: $\psi_\ell = \log\phi_\ell \sim N(\bar\psi, s_\psi^2)$ with
      $\bar\psi$ learned (the mean of the $\psi_\ell$), so a location with few counts gets the
      pooled dispersion.

    Set ``mu_scale`` or a fixed ``loading_scale`` to ``inf`` for maximum likelihood.
    """

    mu_scale: float = 3.0
    loading_scale: float = 1.0
    loadings: str = "ard_local"
    local_df: float = 3.0
    scale_shape: float = 1.0
    scale_rate: float = 1e-3
    dispersion_scale: float = 1.5


class MStepPrior(NamedTuple):
    r"""The priors as arrays for the jitted M-step, learned parts included (they change from
    one EM iteration to the next and are returned with the fit).

    ``mu_mean`` (m,) $\bar\mu$; ``mu_precision`` $1/s_\mu^2$; ``loading_precision`` (m, q) the
    current precision of each loading, $u_k / (t_\ell^2 s_k^2)$ (where $1/t_\ell^2$ is its
    conditional expectation $w_\ell$); ``loading_variance`` (q,) $s_k^2$; ``location_weight``
    (m,) $w_\ell$; ``factor_scale`` (q,) $u_k = \frac1N\sum_i E[f_{ik}^2]$ under the latest
    posterior (the prior is on $\Lambda_{\ell k}\sqrt{u_k}$, a location's response to a typical
    move of factor k, so rescaling a factor and its loadings leaves it unchanged);
    ``learn_scales`` whether $s_k^2$ (and $w_\ell$) are learned; ``local_df``
    $\nu$ (``inf``: no local scales); ``scale_shape``, ``scale_rate`` the $\mathrm{InvGamma}(a, b)$
    hyperprior of $s_k^2$; ``dispersion_mean`` $\bar\psi$ and ``dispersion_precision``
    $1/s_\psi^2$ (negative binomial).
    """

    mu_mean: jnp.ndarray
    mu_precision: jnp.ndarray
    loading_precision: jnp.ndarray
    loading_variance: jnp.ndarray
    location_weight: jnp.ndarray
    factor_scale: jnp.ndarray
    learn_scales: jnp.ndarray
    local_df: jnp.ndarray
    scale_shape: jnp.ndarray
    scale_rate: jnp.ndarray
    dispersion_mean: jnp.ndarray
    dispersion_precision: jnp.ndarray


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
            the message (and the error's ``row`` and ``column``) names the window (row) and the
            location (column).
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
        col = int(where[-1]) if columns is None else columns[where[-1]]
        batch = f"panel {where[0]}, " if x.ndim == 3 else ""
        raise DataError(
            f"{name}: {batch}window (row) {where[-2]}, location (column) {col!r}: count "
            f"{x[tuple(where)]!r} is not a non-negative integer ({int(bad.sum())} such cells)",
            row=int(where[-2]),
            column=col,
        )
    o = np.zeros_like(x) if offset is None else np.broadcast_to(np.asarray(offset, float), x.shape)
    bad = observed & ~np.isfinite(o)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise DataError(
            f"{name}: offset at window {where[-2]}, location {where[-1]} is not finite",
            row=int(where[-2]),
            column=int(where[-1]),
        )
    dtype = dtype or jnp.zeros(()).dtype
    return Panel(
        counts=jnp.asarray(np.where(observed, x, 0.0), dtype),
        mask=jnp.asarray(observed),
        offset=jnp.asarray(np.where(observed | np.isfinite(o), o, 0.0), dtype),
    )
