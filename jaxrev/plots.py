"""Figures for choosing a model (:func:`plot_model_checks`); the seed's figures of one fit are in
:mod:`jaxrev.figures` (drawn by :class:`~jaxrev.result.RevenueFit`'s ``plot_*`` methods)."""

from __future__ import annotations

import numpy as np

from jaxrev.checks import Calibration, in_sample_pit
from jaxrev.figures import OBSERVED, REPLICATED
from jaxrev.result import RevenueFit


def plot_model_checks(
    fit: RevenueFit,
    calibration: Calibration | None = None,
    pit: np.ndarray | None = None,
    prob: float = 0.9,
):
    """Three panels for choosing a model: observed vs predicted log revenue per conversion per ad
    set (posterior predictive mean and ``prob`` interval of an hour's $\\log(r_i/n_i)$, averaged
    over the ad set's rows), a PIT histogram (held-out rows of ``calibration`` when given, else
    ``pit`` values, else in-sample), and the partial-pooling picture (raw mean against the
    model's ad-set mean, arrows toward the pooled value)."""
    import matplotlib.pyplot as plt

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
