"""Figures of the stargazers report (matplotlib; each returns its Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from jaxssm.stargazers.imputation import LocationImputation, ShareForecast
from jaxssm.stargazers.windows import WindowedCounts, covering_set


def _plt():
    import matplotlib.pyplot as plt  # the user's backend (headless runs fall back to Agg)

    return plt


def _tick_every(labels: Sequence[str], ax, max_ticks: int = 12) -> None:
    step = max(1, int(np.ceil(len(labels) / max_ticks)))
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(labels[::step], rotation=45, ha="right")


def plot_growth(windows: WindowedCounts):
    """Stargazers per window, with and without a usable location, and the cumulative total."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(windows.num_windows)
    ax.bar(x, windows.located, color="#3b75af", label="with a location")
    ax.bar(x, windows.unlocated, bottom=windows.located, color="#c7c7c7", label="no location")
    ax.set_ylabel("stargazers per window")
    _tick_every(windows.labels, ax)
    twin = ax.twinx()
    twin.plot(x, np.cumsum(windows.located + windows.unlocated), color="#d62728", lw=2)
    twin.set_ylabel("cumulative", color="#d62728")
    ax.legend(loc="upper left", frameon=False)
    ax.set_title("Growth of the stargazers")
    fig.tight_layout()
    return fig


def plot_top_locations(windows: WindowedCounts, share: float = 0.8, names=None):
    """Figure 1 of the seed: stargazers by location for the smallest set covering ``share``."""
    plt = _plt()
    totals = windows.counts.sum(axis=0)
    top = covering_set(totals, share)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.22 * len(top) + 1)))
    labels = [names.get(c, c) if names else c for c in top]
    ax.barh(range(len(top)), totals[top].to_numpy(), color="#3b75af")
    ax.set_yticks(range(len(top)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("located stargazers")
    ax.set_title(
        f"{len(top)} of {int((totals > 0).sum())} {windows.level} locations cover "
        f"{share:.0%} of the located stargazers"
    )
    fig.tight_layout()
    return fig


def plot_heatmap(
    windows: WindowedCounts, locations: Sequence[str], drop_first: int = 0, names=None
):
    """Figure 2 of the seed: proportions $X_i(\\eta)/Y_i$ by location over time."""
    plt = _plt()
    counts = windows.counts.iloc[drop_first:]
    located = counts.sum(axis=1).replace(0, np.nan)
    props = counts[list(locations)].div(located, axis=0).to_numpy().T
    labels = windows.labels[drop_first:]
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.25 * len(locations) + 1.5)))
    image = ax.imshow(props, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(locations)))
    ax.set_yticklabels([names.get(c, c) if names else c for c in locations])
    _tick_every(labels, ax)
    fig.colorbar(image, ax=ax, label="share of the window's located stargazers")
    dropped = f" (first {drop_first} windows dropped)" if drop_first else ""
    ax.set_title(f"Proportions by location over time{dropped}")
    fig.tight_layout()
    return fig


def plot_imputed_totals(
    model: LocationImputation,
    baseline: LocationImputation,
    level: float = 0.9,
    top: int = 20,
    names=None,
):
    """Completed totals per location (observed + imputed) with intervals: the model beside the
    baseline, and the observed counts."""
    plt = _plt()
    tm, tb = model.totals(level), baseline.totals(level)
    locations = list(tm.index[:top])
    y = np.arange(len(locations))
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.3 * len(locations) + 1)))
    for table, dy, color, label in (
        (tm, -0.15, "#d62728", model.method),
        (tb, 0.15, "#7f7f7f", "baseline (one distribution)"),
    ):
        t = table.loc[locations]
        ax.errorbar(
            t["completed_mean"],
            y + dy,
            xerr=[
                t["completed_mean"] - t["completed_low"],
                t["completed_high"] - t["completed_mean"],
            ],
            fmt="o",
            ms=4,
            color=color,
            label=label,
            capsize=2,
        )
    ax.scatter(tm.loc[locations, "observed"], y, marker="|", s=80, color="black", label="located")
    ax.set_yticks(y)
    ax.set_yticklabels([names.get(c, c) if names else c for c in locations])
    ax.invert_yaxis()
    ax.set_xlabel(f"stargazers (mean and {level:.0%} interval)")
    ax.set_title("All stargazers by location, the missing ones imputed")
    ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def plot_share_forecast(
    windows: WindowedCounts,
    imputation: LocationImputation,
    forecast: ShareForecast,
    groups: Sequence[str],
    future_labels: Sequence[str],
    level: float = 0.9,
    highlight: str | None = None,
):
    """Shares of each group per window (completed counts, with intervals) and forecast ahead."""
    plt = _plt()
    tail = (1 - level) / 2
    completed = imputation.completed  # (S, N, g)
    total = completed.sum(axis=-1, keepdims=True)
    share = completed / np.maximum(total, 1)
    N, h = windows.num_windows, forecast.draws.shape[1]
    x, xf = np.arange(N), np.arange(N, N + h)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colors = plt.get_cmap("tab10")
    for k, g in enumerate(groups):
        j, jf = imputation.locations.index(g), forecast.locations.index(g)
        c = colors(k % 10)
        lw = 3 if g == highlight else 1.5
        ax.plot(x, share[:, :, j].mean(0), color=c, lw=lw, label=g)
        ax.fill_between(
            x,
            np.quantile(share[:, :, j], tail, 0),
            np.quantile(share[:, :, j], 1 - tail, 0),
            color=c,
            alpha=0.15,
        )
        d = forecast.draws[:, :, jf]
        ax.plot(xf, d.mean(0), color=c, lw=lw, ls="--")
        ax.fill_between(
            xf, np.quantile(d, tail, 0), np.quantile(d, 1 - tail, 0), color=c, alpha=0.25
        )
    ax.axvline(N - 0.5, color="black", lw=0.8, ls=":")
    _tick_every(list(windows.labels) + list(future_labels), ax)
    ax.set_ylabel("share of stargazers")
    ax.set_title(f"Shares by region (imputed, {level:.0%} intervals) and forecast (dashed)")
    if groups:
        ax.legend(frameon=False, fontsize=8, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def plot_model_selection(table: pd.DataFrame):
    """Held-out log-likelihood per cell against q, with standard errors, one line per emission."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    emissions = table["emission"] if "emission" in table else pd.Series("poisson", table.index)
    names = {"poisson": "Poisson", "negbin": "negative binomial"}
    for k, (emission, rows) in enumerate(table.groupby(emissions, sort=False)):
        ax.errorbar(
            rows["num_factors"] + 0.06 * k,  # side by side
            rows["heldout_loglik_per_cell"],
            yerr=rows["heldout_loglik_se"],
            fmt="o-",
            capsize=3,
            label=names.get(emission, emission),
        )
    ax.set_xlabel("number of factors q (0 = static proportions)")
    ax.set_ylabel("held-out log-lik per cell")
    ax.set_xticks(sorted(set(table["num_factors"])))
    if emissions.nunique() > 1:
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
