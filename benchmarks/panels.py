"""Real count panels and per-location baselines shared by the real-panel benchmarks.

A panel is a :class:`CountPanel`: counts (N windows x m locations, NaN = missing), an optional
known log-exposure offset (N, m), the row (window) and column (location) labels, and whether the
benchmark should build a chain-linked index offset from its training cells
(``ssm_innovationgraph.chain_offset``) for the factor model. Loaders read ``shared/data`` next to
the repository root (``../shared/data``); :func:`load` raises :class:`MissingData` with the path
when a file is absent.

Baselines work per location on $z = \\log(x + \\tfrac12) - o$ (o the exposure offset, 0 without
one) and predict $\\hat y = \\hat z + o$, the log of the rate (the +1/2 stays as a floor for
zeros). Their count predictive is Poisson-lognormal:
$\\log\\lambda \\sim N(\\hat y, \\sigma_\\ell^2)$ integrated by adaptive Gauss-Hermite
(:func:`poisson_lognormal_logpmf`), with $\\sigma_\\ell$ from the baseline's own leave-one-out
(interpolation) or backtest (carry-forward) residuals on the training cells, shrunk toward the
panel-wide value (:func:`shrunk_sd`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent.parent / "shared" / "data"
DRIFT_WINDOWS = 4  # the drift baseline's mean log growth over the location's last 4 windows

DISEASES = {
    "hepatitis_a": "Hepatitis A",
    "measles": "Measles",
    "mumps": "Mumps",
    "pertussis": "Pertussis",
    "polio": "Polio",
    "rubella": "Rubella",
    "smallpox": "Smallpox",
}


class MissingData(FileNotFoundError):
    """A data file of ``shared/data`` is not there."""


class CountPanel(NamedTuple):
    """``counts`` (N, m) float, NaN = missing; ``offset`` (N, m) known log-exposure or None;
    ``rows`` / ``columns`` labels; ``description`` one line; ``index_offset``: the factor model
    gets a chain-linked index offset built from the training cells (no known exposure)."""

    name: str
    counts: np.ndarray
    offset: np.ndarray | None
    rows: list
    columns: list
    description: str
    index_offset: bool = False


def data_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        raise MissingData(
            f"{path} not found: this benchmark reads the real panels in "
            "../shared/data relative to the repository root"
        )
    return path


# ---------------------------------------------------------------------------------------------
# Loaders


def load_innovationgraph(scale: int = 1) -> CountPanel:
    """GitHub developers per economy per quarter (EU dropped; absent = fewer than 100 developers,
    missing), divided by ``scale`` and rounded."""
    sys.path.insert(0, str(HERE))
    from ssm_innovationgraph import load_panel

    wide = load_panel(data_file("innovationgraph_developers.csv"))
    x = wide.to_numpy(float)
    if scale != 1:
        x = np.round(x / scale)
    name = "ig_developers" if scale == 1 else f"ig_developers_div{scale}"
    unit = "" if scale == 1 else f" / {scale} (rounded)"
    return CountPanel(
        name,
        x,
        None,
        list(wide.index),
        list(wide.columns),
        f"GitHub developers per economy{unit}, quarters 2020Q1-2025Q3; absent = missing; "
        "chain-linked index offset from the training cells",
        index_offset=True,
    )


def reporting_years(ok_per_year, num_states: int) -> tuple[int, int]:
    """The longest run of consecutive years (``ok_per_year`` has every year) in which at least
    half of the states report."""
    best, start = None, None
    for year, n in ok_per_year.items():
        if n >= num_states / 2:
            start = year if start is None else start
            if best is None or year - start > best[1] - best[0]:
                best = (start, year)
        else:
            start = None
    return best


def load_disease(key: str) -> CountPanel:
    """One disease of ``us_contagious_diseases.csv`` as state x year: offset
    log(population / 1e5 x weeks_reporting / 52); ``weeks_reporting = 0`` or no population =
    missing; years restricted to the longest run of consecutive years in which at least half of
    the states report (interior years with fewer stay, as partly missing windows)."""
    import pandas as pd

    disease = DISEASES[key]
    frame = pd.read_csv(data_file("us_contagious_diseases.csv"))
    frame = frame[frame["disease"] == disease]
    frame = frame.assign(ok=(frame["weeks_reporting"] > 0) & frame["population"].notna())
    states = sorted(frame["state"].unique())
    per_year = (
        frame.groupby("year")["ok"]
        .sum()
        .reindex(range(frame["year"].min(), frame["year"].max() + 1), fill_value=0)
    )
    first, last = reporting_years(per_year, len(states))
    frame = frame[frame["ok"] & frame["year"].between(first, last)]
    years = list(range(first, last + 1))
    counts = frame.pivot(index="year", columns="state", values="count").reindex(years)
    exposure = (
        frame.assign(e=np.log(frame["population"] / 1e5 * frame["weeks_reporting"] / 52.0))
        .pivot(index="year", columns="state", values="e")
        .reindex(years)
    )
    keep = counts.notna().sum() >= 2
    counts, exposure = counts.loc[:, keep], exposure.loc[:, keep]
    return CountPanel(
        key,
        counts.to_numpy(float),
        exposure.to_numpy(float),
        years,
        list(counts.columns),
        f"{disease} cases per US state per year {first}-{last}; offset log(population/1e5 "
        "x weeks reporting/52); weeks_reporting = 0 = missing",
    )


def load_seatbelts() -> CountPanel:
    """UK road casualties 1969-01..1984-12: DriversKilled, front, rear, VanKilled (m = 4)."""
    import pandas as pd

    frame = pd.read_csv(data_file("seatbelts.csv"))
    columns = ["DriversKilled", "front", "rear", "VanKilled"]
    rows = [f"{1969 + k // 12}-{k % 12 + 1:02d}" for k in range(len(frame))]
    return CountPanel(
        "seatbelts",
        frame[columns].to_numpy(float),
        None,
        rows,
        columns,
        "UK road casualties per month 1969-01..1984-12 (drivers killed, front and rear "
        "passengers killed or seriously injured, van drivers killed)",
    )


def load_aus_arrivals() -> CountPanel:
    """International arrivals to Australia per quarter 1981Q1..2012Q3 from 4 origins."""
    import pandas as pd

    frame = pd.read_csv(data_file("aus_arrivals.csv"))
    wide = frame.pivot(index="Quarter", columns="Origin", values="Arrivals").sort_index()
    return CountPanel(
        "aus_arrivals",
        wide.to_numpy(float),
        None,
        list(wide.index),
        list(wide.columns),
        "arrivals to Australia per quarter 1981Q1-2012Q3 from Japan, NZ, UK, US",
    )


LOADERS = {
    "seatbelts": load_seatbelts,
    "aus_arrivals": load_aus_arrivals,
    **{key: (lambda key=key: load_disease(key)) for key in DISEASES},
    "ig_developers_div1000": lambda: load_innovationgraph(1000),
    "ig_developers": lambda: load_innovationgraph(1),
}


def load(name: str) -> CountPanel:
    if name not in LOADERS:
        raise KeyError(f"unknown panel {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name]()


# ---------------------------------------------------------------------------------------------
# Baselines on z = log(x + 1/2) - o


def log_scale(panel: CountPanel) -> np.ndarray:
    """$z = \\log(x + 1/2) - o$ (o the exposure offset), NaN where missing."""
    z = np.log(panel.counts + 0.5)
    return z if panel.offset is None else z - panel.offset


def interpolate(z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per location, linear in time between its nearest training cells before and after; the
    nearest one carried where only one side exists. (N, m); NaN for a location with no training
    cell."""
    N, m = z.shape
    out = np.full((N, m), np.nan)
    t = np.arange(N)
    for j in range(m):
        known = np.flatnonzero(train[:, j])
        if known.size:
            out[:, j] = np.interp(t, known, z[known, j])
    return out


def interpolation_residuals(z: np.ndarray, train: np.ndarray) -> list[np.ndarray]:
    """Per location, the leave-one-out residuals of :func:`interpolate` on its training cells
    (each predicted from the others)."""
    out = []
    for j in range(z.shape[1]):
        known = np.flatnonzero(train[:, j])
        r = []
        if known.size >= 2:
            for k, i in enumerate(known):
                rest = np.delete(known, k)
                r.append(np.interp(i, rest, z[rest, j]) - z[i, j])
        out.append(np.asarray(r))
    return out


def carry_forward(z: np.ndarray, known: np.ndarray, origin: int, targets, drift: bool):
    """One location: the value of its last cell in ``known`` (window indices, sorted) at or
    before ``origin``, plus (``drift``) (t - t_last) times its mean log growth over its cells in
    the last ``DRIFT_WINDOWS`` windows up to t_last (0 with fewer than two). NaN without a cell."""
    before = known[known <= origin]
    targets = np.asarray(targets)
    if not before.size:
        return np.full(targets.shape, np.nan)
    last = before[-1]
    slope = 0.0
    if drift:
        recent = before[before > last - DRIFT_WINDOWS]
        if recent.size >= 2:
            slope = (z[last] - z[recent[0]]) / (last - recent[0])
    return z[last] + slope * (targets - last)


def forecast_residuals(z: np.ndarray, train: np.ndarray, drift: bool, horizons) -> dict:
    """Backtest of :func:`carry_forward` on the training cells: per horizon h, per location, the
    residuals at every origin whose window origin + h is a training cell."""
    out = {h: [] for h in horizons}
    N = z.shape[0]
    for j in range(z.shape[1]):
        known = np.flatnonzero(train[:, j])
        for h in horizons:
            r = []
            for origin in range(N - h):
                if train[origin + h, j] and known.size and known[0] <= origin:
                    pred = carry_forward(z[:, j], known, origin, [origin + h], drift)[0]
                    r.append(pred - z[origin + h, j])
            out[h].append(np.asarray(r))
    return out


def shrunk_sd(residuals: list[np.ndarray], k: float = 5.0) -> np.ndarray:
    """Per location $\\sigma_\\ell^2 = (k\\sigma^2 + \\sum r^2) / (k + n_\\ell)$, $\\sigma^2$ the
    panel-wide mean square of all residuals."""
    everything = np.concatenate([r for r in residuals if r.size] or [np.zeros(1)])
    pooled = float(np.mean(everything**2))
    return np.array([np.sqrt((k * pooled + np.sum(r**2)) / (k + r.size)) for r in residuals])


# ---------------------------------------------------------------------------------------------
# Predictive and metrics


def poisson_lognormal_logpmf(x, mean, sd, num_nodes: int = 32) -> np.ndarray:
    """$\\log \\int \\mathrm{Poisson}(x \\mid e^\\eta) N(\\eta; m, s^2) d\\eta$ by Gauss-Hermite
    centred at the integrand's mode with its curvature (adaptive: accurate also when the Poisson
    term is far narrower than the normal, i.e. large counts)."""
    from scipy.special import gammaln, logsumexp

    x, mean = np.asarray(x, float), np.asarray(mean, float)
    s2 = np.maximum(np.asarray(sd, float), 1e-6) ** 2 + np.zeros_like(mean)
    # the mode of x eta - e^eta - (eta - m)^2 / (2 s^2): Newton from the right converges
    # monotonically (the gradient is concave and decreasing)
    eta = np.maximum(mean, np.log(x + 1.0))
    for _ in range(100):
        grad = x - np.exp(eta) - (eta - mean) / s2
        eta = eta + grad / (np.exp(eta) + 1.0 / s2)
    tau = np.sqrt(1.0 / (np.exp(eta) + 1.0 / s2))
    nodes, weights = np.polynomial.hermite.hermgauss(num_nodes)
    e = eta[..., None] + np.sqrt(2.0) * tau[..., None] * nodes
    log_f = (
        x[..., None] * e
        - np.exp(e)
        - gammaln(x + 1.0)[..., None]
        - 0.5 * (e - mean[..., None]) ** 2 / s2[..., None]
        - 0.5 * np.log(2 * np.pi * s2)[..., None]
    )
    log_w = np.log(weights) + nodes**2 + np.log(np.sqrt(2.0) * tau)[..., None]
    return logsumexp(log_f + log_w, axis=-1)


def metrics(cells: np.ndarray, point: np.ndarray, x: np.ndarray, reference: np.ndarray) -> dict:
    """Held-out scores of one method on the same cells as ``reference`` (the static model's
    per-cell log predictive): mean log predictive per cell, its paired difference and SE against
    the reference, cells below -50, the minimum, RMSE of log(x + 1/2) of the point prediction
    (a count), median absolute percentage error on cells with x >= 10."""
    d = cells - reference
    big = x >= 10
    ape = np.abs(point[big] - x[big]) / x[big]
    return {
        "cells": int(x.size),
        "log_pred": float(cells.mean()),
        "diff_vs_static": float(d.mean()),
        "diff_vs_static_se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0,
        "below_minus50": int((cells < -50).sum()),
        "min_cell": float(cells.min()),
        "rmse_log": float(np.sqrt(np.mean((np.log(point + 0.5) - np.log(x + 0.5)) ** 2))),
        "median_ape_pct": float(100 * np.median(ape)) if ape.size else None,
    }
