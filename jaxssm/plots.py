"""Figures of a Laplace-EM fit: latent factors with bands, observed counts against fitted rates,
forecast fans, and the EM objective. Each function returns the matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxssm.forecast import Forecast, expected_rates, log_rate_moments
from jaxssm.result import LaplaceEMResult


def _plt():
    import matplotlib.pyplot as plt

    return plt


def plot_objective(fit: LaplaceEMResult):
    """The MAP-EM objective per iteration (it should rise and flatten)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    obj = np.asarray(fit.objective)
    ax.plot(np.arange(1, len(obj) + 1), obj, lw=1.5)
    ax.set(xlabel="EM iteration", ylabel="Laplace log p(X | θ) + log prior", title=fit.status)
    fig.tight_layout()
    return fig


def plot_factors(fit: LaplaceEMResult, truth: np.ndarray | None = None, level: float = 0.9):
    r"""Each factor's posterior mean $\hat f_{ik}$ with its central ``level`` band; ``truth``
    (N, q) overlays simulated factors, aligned to the fit by least squares (the factors are
    identified only up to rotation)."""
    from scipy.stats import norm

    plt = _plt()
    mean = np.asarray(fit.posterior.mean)
    sd = np.sqrt(np.diagonal(np.asarray(fit.posterior.V_diag), axis1=-2, axis2=-1))
    N, q = mean.shape
    z = norm.ppf(0.5 + level / 2)
    fig, axes = plt.subplots(q, 1, figsize=(7, 1.9 * q + 0.6), sharex=True, squeeze=False)
    aligned = None
    if truth is not None:
        coef, *_ = np.linalg.lstsq(truth, mean, rcond=None)
        aligned = truth @ coef
    for k, ax in enumerate(axes[:, 0]):
        t = np.arange(1, N + 1)
        ax.fill_between(t, mean[:, k] - z * sd[:, k], mean[:, k] + z * sd[:, k], alpha=0.3,
                        label=f"{level:.0%} band")  # fmt: skip
        ax.plot(t, mean[:, k], lw=1.5, label="posterior mean")
        if aligned is not None:
            ax.plot(t, aligned[:, k], "k--", lw=1, label="truth (rotated)")
        ax.set_ylabel(f"f[{k + 1}]")
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("window i")
    fig.suptitle("Latent factors (Laplace posterior)")
    fig.tight_layout()
    return fig


def plot_rates(
    fit: LaplaceEMResult,
    counts: np.ndarray,
    locations: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    level: float = 0.9,
):
    r"""Observed counts (dots; hollow where missing in the fit) against $E[\lambda_{i\ell}]$ and
    the central ``level`` band of $\lambda_{i\ell}$, for the ``locations`` given (default: the six
    with the most counts)."""
    from scipy.stats import norm

    plt = _plt()
    x = np.asarray(counts, float)
    observed = np.asarray(fit.panel.mask)
    if locations is None:
        locations = list(np.argsort(-np.nansum(x, axis=0))[:6])
    rates = np.asarray(expected_rates(fit.params, fit.posterior, fit.panel))
    mean, var = (np.asarray(a) for a in log_rate_moments(fit.params, fit.posterior, fit.panel))
    z = norm.ppf(0.5 + level / 2)
    cols = min(3, len(locations))
    rows = -(-len(locations) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    t = np.arange(1, x.shape[0] + 1)
    for ax, ell in zip(axes.ravel(), locations, strict=False):
        lo, hi = (
            np.exp(mean[:, ell] - z * np.sqrt(var[:, ell])),
            np.exp(mean[:, ell] + z * np.sqrt(var[:, ell])),
        )
        ax.fill_between(t, lo, hi, alpha=0.3)
        ax.plot(t, rates[:, ell], lw=1.5)
        seen = observed[:, ell]
        ax.plot(t[seen], x[seen, ell], "k.", ms=4)
        ax.plot(t[~seen], x[~seen, ell], "o", mfc="none", mec="C3", ms=4)
        ax.set_title(names[ell] if names is not None else f"location {ell}", fontsize=9)
    for ax in axes.ravel()[len(locations) :]:
        ax.axis("off")
    fig.suptitle(f"Counts (dots; red rings: not used in the fit) and rates, {level:.0%} bands")
    fig.tight_layout()
    return fig


def plot_forecast(
    fit: LaplaceEMResult,
    ahead: Forecast,
    counts: np.ndarray,
    locations: Sequence[int] | None = None,
    future: np.ndarray | None = None,
    level: float = 0.9,
):
    """Fitted rates and a forecast fan of counts ``h`` windows ahead per location; ``future``
    (h, m) overlays what happened."""
    plt = _plt()
    x = np.asarray(counts, float)
    if locations is None:
        locations = list(np.argsort(-np.nansum(x, axis=0))[:3])
    rates = np.asarray(expected_rates(fit.params, fit.posterior, fit.panel))
    mean, lo, hi = ahead.interval(level)
    N, h = x.shape[0], mean.shape[0]
    fig, axes = plt.subplots(1, len(locations), figsize=(4.2 * len(locations), 3), squeeze=False)
    for ax, ell in zip(axes[0], locations, strict=True):
        t, tf = np.arange(1, N + 1), np.arange(N + 1, N + h + 1)
        ax.plot(t, x[:, ell], "k.", ms=4)
        ax.plot(t, rates[:, ell], lw=1.5, label="fitted rate")
        ax.fill_between(tf, lo[:, ell], hi[:, ell], alpha=0.3, color="C1",
                        label=f"{level:.0%} forecast")  # fmt: skip
        ax.plot(tf, mean[:, ell], color="C1", lw=1.5)
        if future is not None:
            ax.plot(tf, future[:, ell], "kx", ms=5, label="actual")
        ax.set_title(f"location {ell}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
