"""The seed's figures: posterior predictive check, the partial-pooling picture, mean distributions.

Every function takes a :class:`~jaxrev.result.RevenueFit` and returns a matplotlib ``Figure``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import gaussian_kde

OBSERVED = "#2ca02c"  # the seed's green for data
REPLICATED = "#1f77b4"  # and blue for replicates


def _campaign_colors(campaigns) -> dict:
    cmap = plt.get_cmap("tab10" if len(campaigns) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(campaigns)}


def _density(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) == 0:
        return np.zeros_like(grid)
    return gaussian_kde(values)(grid)


def plot_ppc(fit, num_replicates: int = 50, seed: int = 0):
    """Observed log revenue (green) against ``num_replicates`` replicated data sets (blue)."""
    observed = np.asarray(fit.data.arrays.log_revenue)
    replicated = fit.flat_draws("log_revenue")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(replicated), size=min(num_replicates, len(replicated)), replace=False)
    lo = min(observed.min(), np.quantile(replicated, 0.001))
    hi = max(observed.max(), np.quantile(replicated, 0.999))
    grid = np.linspace(lo, hi, 300)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, k in enumerate(pick):
        label = "replicated" if i == 0 else None
        ax.plot(
            grid, _density(replicated[k], grid), color=REPLICATED, alpha=0.15, lw=1, label=label
        )
    ax.plot(grid, _density(observed, grid), color=OBSERVED, lw=2.5, label="observed")
    ax.set_xlabel("log revenue per observation, log $r_i$")
    ax.set_ylabel("density")
    ax.set_title(f"Posterior predictive check ({fit.model}, {fit.diagnostics.method})")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_pooling(fit, prob: float = 0.95):
    """Raw average revenue per conversion (open circles) and the model's ad-set mean with its
    ``prob`` interval (filled, coloured by campaign), on a log scale: the partial-pooling
    picture."""
    adsets = fit.data.adsets
    summary = fit.summary(probs=((1 - prob) / 2, 0.5, (1 + prob) / 2))
    rows = summary[summary["level"] == "adset"].reset_index(drop=True)
    lo_col, hi_col = rows.columns[-3], rows.columns[-1]
    colors = _campaign_colors(fit.data.campaigns["campaign"])
    x = np.arange(len(adsets))
    fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(adsets) + 2), 4.5))
    for campaign, group in rows.groupby("campaign", sort=False):
        idx = group.index.to_numpy()
        color = colors[campaign]
        ax.scatter(x[idx], group["raw_mean"], facecolors="none", edgecolors=color, s=30)
        if np.isfinite(group[lo_col]).all():
            err = np.vstack([group["mean"] - group[lo_col], group[hi_col] - group["mean"]])
            ax.errorbar(
                x[idx],
                group["mean"],
                yerr=err,
                fmt="o",
                color=color,
                ms=4,
                capsize=2,
                label=str(campaign),
            )
        else:
            ax.scatter(x[idx], group["mean"], color=color, s=16, label=str(campaign))
    ax.set_yscale("log")
    ax.set_xticks(x, adsets["adset"].astype(str), rotation=90, fontsize=7)
    ax.set_ylabel("revenue per conversion")
    ax.set_title(f"Raw average (open) vs model mean with {prob:.0%} interval (filled)")
    ax.legend(title="campaign", fontsize=7, ncols=2 if len(colors) > 6 else 1)
    fig.tight_layout()
    return fig


def plot_campaign_means(fit):
    """Posterior distributions of each ad set's mean (coloured by campaign) and of each
    campaign's mean revenue per conversion, on a log axis; each curve is scaled to peak 1 so
    that well- and poorly-measured ad sets are both visible."""
    colors = _campaign_colors(fit.data.campaigns["campaign"])
    adset_draws = np.log(fit.flat_draws("adset_mean"))
    campaign_draws = np.log(fit.flat_draws("campaign_mean"))
    both = np.concatenate([adset_draws.ravel(), campaign_draws.ravel()])
    grid = np.linspace(np.quantile(both, 0.002), np.quantile(both, 0.998), 300)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True)

    def curve(ax, draws, color, **kwargs):
        density = _density(draws, grid)
        peak = density.max()
        ax.plot(np.exp(grid), density / peak if peak > 0 else density, color=color, **kwargs)

    campaign_of = fit.data.adsets["campaign"].to_numpy()
    for j, campaign in enumerate(campaign_of):
        curve(left, adset_draws[:, j], colors[campaign], alpha=0.7)
    for j, campaign in enumerate(fit.data.campaigns["campaign"]):
        curve(right, campaign_draws[:, j], colors[campaign], lw=2, label=str(campaign))
    left.set_title("Ad set mean revenue per conversion")
    right.set_title("Campaign mean revenue per conversion")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("mean revenue per conversion")
    left.set_ylabel("posterior density (scaled to peak 1)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig
