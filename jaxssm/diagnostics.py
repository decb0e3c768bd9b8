r"""Fit diagnostics that a converged objective does not show.

**A factor spent on one window.** With large counts the Poisson likelihood is very sharp, and a
shock common to many locations in a single window (a reporting change, the first quarter of a
series) is worth more to the likelihood than its cost under the AR(1) prior on $f$. Laplace-EM
then dedicates a latent direction to that window: its trajectory is near zero everywhere else,
the loadings on it are fitted to noise, and held-out cells of that window can be off by orders of
magnitude while the fit reports ``converged`` (seen on the GitHub Innovation Graph panel at
$q \ge 3$; ``benchmarks/RESULTS.md``).

The check is rotation invariant: it takes the singular value decomposition of the fitted signal
$S = \hat F \Lambda^\top = U \Sigma W^\top$ ((N, m); $\hat F$ the posterior mode) and, for each
component $k$ carrying a non-negligible part $\sigma_k^2 / \sum_j \sigma_j^2$ of the signal, the
largest share $\max_i U_{ik}^2$ of the component's energy that a single window holds. A smooth
factor spreads it (a linear trend over N windows puts at most about $3/N$ in one); a factor spent
on one window puts nearly all of it there.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxssm.laplace import LaplacePosterior
from jaxssm.params import Params


class ConcentratedComponent(NamedTuple):
    """A latent component whose energy sits in one window: its rank ``component`` (0 = the
    largest singular value), the ``window`` (row), the ``share`` of the component's energy there,
    and ``signal_share``, the component's part of the whole fitted signal."""

    component: int
    window: int
    share: float
    signal_share: float


def concentrated_components(
    params: Params,
    posterior: LaplacePosterior,
    *,
    threshold: float = 0.5,
    min_windows: int = 6,
    min_signal_share: float = 1e-4,
) -> list[ConcentratedComponent]:
    """The components of $\\hat F \\Lambda^\\top$ with more than ``threshold`` of their energy in
    one window (single fits; none for q = 0 or fewer than ``min_windows`` windows)."""
    F = np.asarray(posterior.mean, np.float64)
    Lambda = np.asarray(params.Lambda, np.float64)
    if F.ndim != 2:
        raise ValueError("concentrated_components takes a single fit; index the batch first")
    N, q = F.shape
    if q == 0 or N < min_windows or not np.all(np.isfinite(F)) or not np.all(np.isfinite(Lambda)):
        return []
    U, s, _ = np.linalg.svd(F @ Lambda.T, full_matrices=False)
    energy = s[:q] ** 2
    total = energy.sum()
    if total <= 0:
        return []
    found = []
    for k in range(q):
        part = float(energy[k] / total)
        window = int(np.argmax(U[:, k] ** 2))
        share = float(U[window, k] ** 2)
        if part >= min_signal_share and share > threshold:
            found.append(ConcentratedComponent(k, window, share, part))
    return found


def describe(found: list[ConcentratedComponent]) -> str:
    """A status suffix: empty when nothing was found."""
    if not found:
        return ""
    parts = ", ".join(f"#{c.component + 1}: {c.share:.0%} in window {c.window}" for c in found)
    return (
        f"; warning: {len(found)} latent component(s) concentrated in one window ({parts}) — "
        "a factor spent on a single window; check that window's data or use fewer factors"
    )
