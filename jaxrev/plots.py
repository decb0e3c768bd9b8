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


def plot_model_checks(fit, calibration=None, pit=None, prob: float = 0.9):
    """Three panels for choosing a model: observed vs predicted log revenue per conversion per ad
    set (posterior predictive mean and ``prob`` interval of an hour's $\\log(r_i/n_i)$, averaged
    over the ad set's rows), a PIT histogram (held-out rows of ``calibration`` when given, else
    ``pit`` values, else in-sample), and the partial-pooling picture (raw mean against the
    model's ad-set mean, arrows toward the pooled value)."""
    from jaxrev.compare import in_sample_pit

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    arrays = fit.data.arrays
    mask = np.asarray(arrays.obs_mask)
    adset = np.asarray(arrays.adset)[mask]
    log_n = np.log(np.asarray(arrays.conversions))[mask]
    observed = np.asarray(arrays.log_revenue)[mask] - log_n
    replicated = fit.flat_draws("log_revenue")[:, mask] - log_n
    A = fit.data.num_adsets
    counts = np.bincount(adset, minlength=A)
    has = counts > 0
    obs_mean = np.bincount(adset, weights=observed, minlength=A)[has] / counts[has]
    rep_mean = np.stack([np.bincount(adset, weights=r, minlength=A)[has] for r in replicated])
    rep_mean = rep_mean / counts[has]
    tail = (1 - prob) / 2
    lo, hi = np.quantile(rep_mean, [tail, 1 - tail], axis=0)
    mid = rep_mean.mean(axis=0)
    inside = (obs_mean >= lo) & (obs_mean <= hi)
    left.errorbar(obs_mean, mid, yerr=[mid - lo, hi - mid], fmt="none", ecolor="#999", lw=1)
    left.scatter(
        obs_mean,
        mid,
        c=np.where(inside, REPLICATED, "#d62728"),
        s=14 + 3 * np.sqrt(counts[has]),
        zorder=3,
    )
    edge = [min(obs_mean.min(), lo.min()), max(obs_mean.max(), hi.max())]
    left.plot(edge, edge, color="black", lw=0.8)
    left.set_xlabel("observed mean of log(revenue / conversion) per ad set")
    left.set_ylabel(f"predicted (mean, {prob:.0%} interval)")
    left.set_title(f"{inside.mean():.0%} of ad sets inside their {prob:.0%} interval")

    if calibration is not None:
        values, what = calibration.rows["pit"].to_numpy(), "held-out later hours"
    elif pit is not None:
        values, what = np.asarray(pit), "PIT"
    else:
        values, what = in_sample_pit(fit), "in-sample rows"
    bins = 10
    middle.hist(values, bins=bins, range=(0, 1), color=REPLICATED, alpha=0.8, edgecolor="white")
    expected = len(values) / bins
    band = 2 * np.sqrt(expected * (1 - 1 / bins))
    middle.axhspan(expected - band, expected + band, color="#bbb", alpha=0.4, zorder=0)
    middle.axhline(expected, color="black", lw=0.8)
    middle.set_xlabel("PIT = P(replicated ≤ observed)")
    middle.set_title(f"PIT histogram ({what}; uniform if calibrated)")

    summary = fit.summary()
    rows = summary[summary["level"] == "adset"].reset_index(drop=True)
    pooled = float(np.exp(np.log(rows["mean"]).mean()))
    sizes = 10 + 2 * np.sqrt(rows["n_obs"].to_numpy())
    for raw, post in zip(rows["raw_mean"], rows["mean"], strict=True):
        right.annotate(
            "",
            xy=(1, post),
            xytext=(0, raw),
            arrowprops={"arrowstyle": "->", "color": "#888", "lw": 0.8},
        )
    right.scatter(
        np.zeros(len(rows)),
        rows["raw_mean"],
        s=sizes,
        facecolors="none",
        edgecolors=OBSERVED,
        label="raw mean",
    )
    right.scatter(np.ones(len(rows)), rows["mean"], s=sizes, color=REPLICATED, label="model")
    right.axhline(pooled, color="black", ls=":", lw=0.8, label="geometric mean of ad sets")
    right.set_yscale("log")
    right.set_xticks([0, 1], ["raw revenue / conversion", "model ad-set mean"])
    right.set_xlim(-0.3, 1.3)
    right.set_title("Partial pooling (marker size ~ rows)")
    right.legend(fontsize=7, loc="best")
    fig.suptitle(f"{fit.model} ({fit.diagnostics.method})")
    fig.tight_layout()
    return fig
