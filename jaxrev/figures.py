"""The seed's figures of one fit, from plain inputs: the posterior predictive check, the
partial-pooling picture and the distributions of the means.

Each function takes arrays and tables (not a fit object) and returns a matplotlib ``Figure``;
:class:`~jaxrev.result.RevenueFit` draws them (``plot_ppc``, ``plot_pooling``,
``plot_campaign_means``, ``save``) and :mod:`jaxrev.plots` builds the model-checking figure on
the same helpers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from jaxrev.data import RevenueData

OBSERVED = "#2ca02c"  # the seed's green for data
REPLICATED = "#1f77b4"  # and blue for replicates


def campaign_colors(campaigns) -> dict:
    """One colour per campaign (tab10, or tab20 beyond ten campaigns)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(campaigns) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(campaigns)}


def density(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE of the finite ``values`` on ``grid`` (zeros when it is degenerate)."""
    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) == 0:
        return np.zeros_like(grid)
    return gaussian_kde(values)(grid)


def ppc_figure(
    observed: np.ndarray,
    replicated: np.ndarray,
    title: str,
    num_replicates: int = 50,
    seed: int = 0,
):
    """Observed log revenue ``(obs,)`` (green) against ``num_replicates`` of the replicated data
    sets ``(draw, obs)`` (blue)."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(replicated), size=min(num_replicates, len(replicated)), replace=False)
    lo = min(observed.min(), np.quantile(replicated, 0.001))
    hi = max(observed.max(), np.quantile(replicated, 0.999))
    grid = np.linspace(lo, hi, 300)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, k in enumerate(pick):
        label = "replicated" if i == 0 else None
        ax.plot(grid, density(replicated[k], grid), color=REPLICATED, alpha=0.15, lw=1, label=label)
    ax.plot(grid, density(observed, grid), color=OBSERVED, lw=2.5, label="observed")
    ax.set_xlabel("log revenue per observation, log $r_i$")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def pooling_figure(data: RevenueData, summary: pd.DataFrame, prob: float = 0.95):
    """Raw average revenue per conversion (open circles) and the model's ad-set mean with its
    ``prob`` interval (filled, coloured by campaign), on a log scale: the partial-pooling
    picture. ``summary``: the fit's summary table with the quantiles
    ``((1 - prob) / 2, 0.5, (1 + prob) / 2)``."""
    import matplotlib.pyplot as plt

    adsets = data.adsets
    rows = summary[summary["level"] == "adset"].reset_index(drop=True)
    lo_col, hi_col = rows.columns[-3], rows.columns[-1]
    colors = campaign_colors(data.campaigns["campaign"])
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


def campaign_means_figure(data: RevenueData, adset_means: np.ndarray, campaign_means: np.ndarray):
    """Posterior distributions of each ad set's mean ``(draw, adset)`` (coloured by campaign)
    and of each campaign's mean revenue per conversion ``(draw, campaign)``, on a log axis; each
    curve is scaled to peak 1 so that well- and poorly-measured ad sets are both visible."""
    import matplotlib.pyplot as plt

    colors = campaign_colors(data.campaigns["campaign"])
    adset_draws = np.log(adset_means)
    campaign_draws = np.log(campaign_means)
    both = np.concatenate([adset_draws.ravel(), campaign_draws.ravel()])
    grid = np.linspace(np.quantile(both, 0.002), np.quantile(both, 0.998), 300)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True)

    def curve(ax, draws, color, **kwargs):
        values = density(draws, grid)
        peak = values.max()
        ax.plot(np.exp(grid), values / peak if peak > 0 else values, color=color, **kwargs)

    campaign_of = data.adsets["campaign"].to_numpy()
    for j, campaign in enumerate(campaign_of):
        curve(left, adset_draws[:, j], colors[campaign], alpha=0.7)
    for j, campaign in enumerate(data.campaigns["campaign"]):
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
