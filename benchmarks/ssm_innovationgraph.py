"""The Poisson dynamic factor model on a real panel: GitHub developers per economy per quarter
(GitHub Innovation Graph), held-out predictive log-likelihood of q = 1, 2, ... against the static
model q = 0, with scale-free errors and simple per-economy baselines.

Data: ``shared/data/innovationgraph_developers.csv`` (github/innovationgraph, CC0): windows =
quarters 2020Q1-2025Q3 (N = 23), locations = economies (m = 228 after dropping the aggregate
``EU``, whose members are in the panel too). A value is absent when fewer than 100 developers
were active: it is treated as missing (not zero) — missing *not* at random, since only small
economies (and mostly early quarters) are absent.

Sections:

* ``random``: 10 % of the observed cells held out at random (``jaxssm.selection.holdout_cells``),
  per seed; each q fitted on the other cells, with two offsets: ``none`` (the factors must carry
  the global growth) and ``chain`` (a per-quarter log-offset from the training cells alone: a
  chain-linked index whose growth from quarter i-1 to i is the ratio of the totals of the
  economies in training in both quarters; then the factors carry changes in composition).
  The window total itself is not used as the offset: with one cell in ten held out it drops by
  up to a fifth whenever a large economy is held out, and the total *with* the held-out cells
  would leak them. Baseline: linear interpolation in log counts along time within each economy,
  between its nearest training cells before and after (only where both exist).
* ``forecast``: the last 2 quarters held out entirely; each q fitted with those windows masked
  (the posterior of a masked window is the forecast through the dynamics; q = 0 predicts
  exp(o + mu)). Offsets ``none`` and ``extrapolated`` (the chain index of the training quarters,
  extended by its mean growth over the last 4 of them). Baselines: last value carried forward,
  and the last value with the economy's mean log growth over its last 4 training quarters (drift).

Metrics on the held-out cells: the mean log predictive density per cell (Gauss-Hermite over the
Laplace posterior of f, "+θ unc." also over each economy's (mu, Lambda)); the paired mean
difference against q = 0 and its standard error (``FactorSelection.difference``); and, because
counts reach tens of millions and Poisson noise is then far below the real error, scale-free
errors of the point prediction exp(E log-rate): RMSE of log counts and the mean and median
absolute percentage error. Baselines get a plug-in Poisson log-likelihood at their prediction
and one with a lognormal spread (one sd: their own RMS log error on the training cells, leave-one-
out for the interpolation, a backtest per horizon for the forecasts); "ceiling" is the Poisson
log-likelihood of predicting each held-out count exactly.

Usage::

    python benchmarks/ssm_innovationgraph.py            # 3 seeds, q = 0..6 (~1.5 minutes)
    python benchmarks/ssm_innovationgraph.py --quick    # 1 seed, q = 0..2 (~20 s)

(The paired SE printed over seeds is the mean of the within-seed SEs.)
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "innovationgraph_developers.csv"
HOLDOUT = 0.1
HORIZON = 2
DRIFT_QUARTERS = 4


# ---------------------------------------------------------------------------------------------
# Data, offsets, metrics


def load_panel(path: Path = DATA):
    """Quarters x economies (NaN = absent, i.e. fewer than 100 active developers), EU dropped."""
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)  # Namibia is "NA"
    frame = frame[frame["iso2_code"] != "EU"]
    frame = frame.assign(quarter=frame["year"].astype(str) + "Q" + frame["quarter"].astype(str))
    wide = frame.pivot(index="quarter", columns="iso2_code", values="developers").sort_index()
    return wide.astype(float)


def chain_offset(x: np.ndarray, train: np.ndarray, extend: int = 0) -> np.ndarray:
    """A per-window log-offset from training cells only: o_1 = 0 and
    o_i - o_{i-1} = log(sum of x_i / sum of x_{i-1}) over the economies in training in both.
    Windows with no training cells (the last ``extend``) continue at the mean growth of the last
    ``DRIFT_QUARTERS`` steps. Returns (N, 1)."""
    N = x.shape[0]
    fitted = N - extend
    growth = np.zeros(fitted)
    for i in range(1, fitted):
        both = train[i] & train[i - 1]
        growth[i] = np.log(x[i, both].sum() / x[i - 1, both].sum())
    o = np.cumsum(growth)
    if extend:
        step = growth[-DRIFT_QUARTERS:].mean()
        o = np.concatenate([o, o[-1] + step * np.arange(1, extend + 1)])
    return o[:, None]


def poisson_loglik(x, rate):
    from scipy.special import gammaln

    rate = np.maximum(rate, 1e-12)
    return x * np.log(rate) - rate - gammaln(x + 1)


def errors(log_pred: np.ndarray, x: np.ndarray) -> dict:
    """Scale-free errors of a point prediction exp(log_pred) of counts x (1-d arrays)."""
    ape = np.abs(np.exp(log_pred) - x) / x
    return {
        "cells": int(x.size),
        "rmse_log": float(np.sqrt(np.mean((log_pred - np.log(x)) ** 2))),
        "mape_pct": float(100 * ape.mean()),
        "median_ape_pct": float(100 * np.median(ape)),
    }


def lognormal_poisson_loglik(x, log_pred, sd, num_nodes: int = 48):
    """log of the integral of Poisson(x | e^eta) N(eta; log_pred, sd^2) (Gauss-Hermite)."""
    from scipy.special import gammaln, logsumexp

    nodes, weights = np.polynomial.hermite.hermgauss(num_nodes)
    eta = log_pred[..., None] + np.sqrt(2.0) * np.asarray(sd)[..., None] * nodes
    logp = x[..., None] * eta - np.exp(eta) - gammaln(x + 1.0)[..., None]
    return logsumexp(logp + np.log(weights) - 0.5 * np.log(np.pi), axis=-1)


def baseline_row(log_pred: np.ndarray, x: np.ndarray, sd) -> dict:
    """A baseline's plug-in Poisson log-likelihood, its log-likelihood with a lognormal spread
    ``sd`` (its own RMS log error on the training cells), and its scale-free errors."""
    return {
        "heldout_loglik_plugin": float(poisson_loglik(x, np.exp(log_pred)).mean()),
        "heldout_loglik": float(lognormal_poisson_loglik(x, log_pred, sd).mean()),
        "spread_sd": np.unique(np.round(np.asarray(sd, float), 5)).tolist(),
        **errors(log_pred, x),
    }


def interpolation_spread(x: np.ndarray, train: np.ndarray) -> float:
    """RMS log error of the interpolation on the training cells, each left out in turn (from its
    nearest training cells before and after)."""
    err = []
    for j in range(x.shape[1]):
        k = np.flatnonzero(train[:, j])
        if k.size < 3:
            continue
        a, i, b = k[:-2], k[1:-1], k[2:]
        w = (i - a) / (b - a)
        pred = (1 - w) * np.log(x[a, j]) + w * np.log(x[b, j])
        err.append(pred - np.log(x[i, j]))
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))


def carry_forward_spread(x: np.ndarray, train: np.ndarray, drift: bool) -> dict:
    """RMS log error per horizon of :func:`carry_forward_log` backtested on the training
    quarters (every origin with ``DRIFT_QUARTERS`` quarters before it and h after it)."""
    last = int(np.flatnonzero(train.any(axis=1))[-1])
    rows = np.arange(x.shape[0])[:, None]
    out = {}
    for h in range(1, HORIZON + 1):
        err = []
        for origin in range(DRIFT_QUARTERS, last - h + 1):
            pred = carry_forward_log(x, train & (rows <= origin), drift)[origin + h]
            keep = train[origin + h] & ~np.isnan(pred)
            err.append(pred[keep] - np.log(x[origin + h, keep]))
        out[h] = float(np.sqrt(np.mean(np.concatenate(err) ** 2)))
    return out


def interpolate_log(x: np.ndarray, train: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Linear interpolation in log counts along time within each economy between its nearest
    training cells before and after; NaN where either is missing. (N, m), at ``cells``."""
    N, m = x.shape
    out = np.full((N, m), np.nan)
    t = np.arange(N)
    for j in range(m):
        known = np.flatnonzero(train[:, j])
        for i in np.flatnonzero(cells[:, j]):
            before, after = known[known < i], known[known > i]
            if before.size and after.size:
                a, b = before[-1], after[0]
                w = (t[i] - a) / (b - a)
                out[i, j] = (1 - w) * np.log(x[a, j]) + w * np.log(x[b, j])
    return out


def carry_forward_log(x: np.ndarray, train: np.ndarray, drift: bool) -> np.ndarray:
    """Per economy: its last training log count, plus (``drift``) h times its mean log growth
    over the last ``DRIFT_QUARTERS`` training steps (consecutive quarters only). (N, m)."""
    N, m = x.shape
    out = np.full((N, m), np.nan)
    for j in range(m):
        known = np.flatnonzero(train[:, j])
        if not known.size:
            continue
        last = known[-1]
        step = 0.0
        if drift:
            recent = known[known > last - DRIFT_QUARTERS - 1]
            if recent.size < 2 or np.any(np.diff(recent) != 1):
                continue
            step = np.diff(np.log(x[recent, j])).mean()
        h = np.arange(N) - last
        out[last + 1 :, j] = np.log(x[last, j]) + step * h[last + 1 :]
    return out


# ---------------------------------------------------------------------------------------------
# Fits


def fit_and_score(x, q, train, heldout, offset, max_iterations):
    """Fit q on the training cells and score the held-out cells: a row, and at the held-out cells
    the log predictive densities (+θ unc., plug-in) and the point predictions (log scale)."""
    import jax

    from jaxssm import fit_laplace_em, log_rate_moments, predictive_log_likelihood

    t0 = time.perf_counter()
    fit = fit_laplace_em(x, q, mask=train, offset=offset, max_iterations=max_iterations, loop="jax")
    jax.block_until_ready(fit.params)
    seconds = time.perf_counter() - t0
    cov = fit.parameter_covariance()
    plug = np.asarray(predictive_log_likelihood(fit.params, fit.posterior, x, heldout, fit.panel))
    unc = np.asarray(
        predictive_log_likelihood(fit.params, fit.posterior, x, heldout, fit.panel,
                                  parameter_cov=cov)
    )  # fmt: skip
    mean, _ = log_rate_moments(fit.params, fit.posterior, fit.panel)
    log_pred = np.asarray(mean)[heldout]
    row = {
        "q": q,
        "heldout_loglik": float(unc[heldout].mean()),
        "heldout_loglik_plugin": float(plug[heldout].mean()),
        "heldout_loglik_median": float(np.median(unc[heldout])),
        **errors(log_pred, x[heldout]),
        "iterations": int(fit.num_iterations),
        "status": fit.status,
        "fit_s": round(seconds, 2),
        "Phi_norm": float(np.linalg.norm(np.asarray(fit.params.Phi), 2)) if q else None,
    }
    return row, unc[heldout], plug[heldout], log_pred


def paired(rows, cells, heldout, candidates):
    """Paired differences against q = 0 through ``FactorSelection.difference``."""
    import pandas as pd

    from jaxssm import FactorSelection

    table = pd.DataFrame(
        [{"num_factors": r["q"], "heldout_loglik_per_cell": r["heldout_loglik"]} for r in rows]
    )
    best = int(table.loc[table["heldout_loglik_per_cell"].idxmax(), "num_factors"])
    selection = FactorSelection(table, best, heldout, np.stack(cells))
    for r in rows:
        d, se = selection.difference(r["q"], 0) if r["q"] else (0.0, 0.0)
        r["diff_vs_q0"], r["diff_vs_q0_se"] = d, se
    return best


# ---------------------------------------------------------------------------------------------
# Sections


def run_random(args, wide, out: dict, save) -> None:
    import jax

    from jaxssm.selection import holdout_cells

    x, observed, labels = arrays(wide)
    section: dict = {"holdout_fraction": HOLDOUT, "seeds": {}}
    out["random"] = section
    for seed in args.seeds:
        heldout = holdout_cells(jax.random.key(seed), observed, HOLDOUT)
        train = observed & ~heldout
        xs = x[heldout]
        per_seed: dict = {"heldout_cells": int(heldout.sum())}
        interp = interpolate_log(x, train, heldout)[heldout]
        has = ~np.isnan(interp)
        per_seed["interp_cells"] = int(has.sum())
        per_seed["ceiling_loglik"] = float(poisson_loglik(xs, xs).mean())
        per_seed["ceiling_loglik_interp_cells"] = float(poisson_loglik(xs[has], xs[has]).mean())
        per_seed["interpolation"] = baseline_row(interp[has], xs[has],
                                                 interpolation_spread(x, train))  # fmt: skip
        for name in ("none", "chain"):
            offset = None if name == "none" else chain_offset(x, train)
            rows, cells = [], []
            for q in args.candidates:
                row, cell, plug, log_pred = fit_and_score(x, q, train, heldout, offset,
                                                          args.max_iterations)  # fmt: skip
                # the same model on the cells the interpolation covers
                row["on_interp_cells"] = {
                    "heldout_loglik": float(cell[has].mean()),
                    "heldout_loglik_plugin": float(plug[has].mean()),
                    **errors(log_pred[has], xs[has]),
                }
                row["worst_cells"] = worst(log_pred, xs, labels[heldout])
                rows.append(row)
                cells.append(cell)
                print(f"random seed={seed} offset={name} q={q}: {short(row)}", flush=True)
            per_seed[name] = {"best_q": paired(rows, cells, heldout, args.candidates),
                              "fits": rows}  # fmt: skip
        section["seeds"][str(seed)] = per_seed
        save()
    section["summary"] = summarize_random(section, args.candidates)
    save()


def summarize_random(section: dict, candidates) -> dict:
    seeds = list(section["seeds"].values())
    summary: dict = {}

    def agg(values):
        v = np.asarray(values, float)
        return [float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0]

    for name in ("none", "chain"):
        summary[name] = {}
        for k, q in enumerate(candidates):
            rows = [s[name]["fits"][k] for s in seeds]
            summary[name][str(q)] = {
                key: agg([r[key] for r in rows])
                for key in ("heldout_loglik", "heldout_loglik_plugin", "diff_vs_q0",
                            "diff_vs_q0_se", "rmse_log", "mape_pct", "median_ape_pct")
            }  # fmt: skip
            summary[name][str(q)]["interp_cells"] = {
                key: agg([r["on_interp_cells"][key] for r in rows])
                for key in ("heldout_loglik", "heldout_loglik_plugin", "rmse_log", "mape_pct",
                            "median_ape_pct")
            }  # fmt: skip
            summary[name][str(q)]["status"] = sorted({r["status"] for r in rows})
            summary[name][str(q)]["iterations"] = [r["iterations"] for r in rows]
        summary[name]["best_q"] = [s[name]["best_q"] for s in seeds]
    summary["interpolation"] = {
        key: agg([s["interpolation"][key] for s in seeds])
        for key in ("heldout_loglik", "heldout_loglik_plugin", "rmse_log", "mape_pct",
                    "median_ape_pct")
    }  # fmt: skip
    summary["interpolation"]["spread_sd"] = [s["interpolation"]["spread_sd"] for s in seeds]
    summary["ceiling_loglik"] = agg([s["ceiling_loglik"] for s in seeds])
    summary["ceiling_loglik_interp_cells"] = agg([s["ceiling_loglik_interp_cells"] for s in seeds])
    summary["interp_cells_fraction"] = agg([s["interp_cells"] / s["heldout_cells"] for s in seeds])
    return summary


def run_forecast(args, wide, out: dict, save) -> None:
    x, observed, labels = arrays(wide)
    N = x.shape[0]
    late = np.arange(N)[:, None] >= N - HORIZON
    train = observed & ~late
    # an economy with no training quarter has nothing to forecast from (its mu is the prior's)
    untrained = observed & late & ~train.any(axis=0)
    heldout = observed & late & ~untrained
    xs = x[heldout]
    horizon = (np.arange(N)[:, None] - (N - HORIZON - 1) + np.zeros_like(x))[heldout].astype(int)
    section: dict = {
        "horizon": HORIZON,
        "heldout_cells": int(heldout.sum()),
        "excluded_no_training_quarter": [str(c) for c in wide.columns[untrained.any(0)]],
    }
    out["forecast"] = section
    lvcf = carry_forward_log(x, train, drift=False)[heldout]
    drift = carry_forward_log(x, train, drift=True)[heldout]
    common = ~np.isnan(lvcf) & ~np.isnan(drift)
    section["common_cells"] = int(common.sum())
    section["ceiling_loglik"] = float(poisson_loglik(xs, xs).mean())
    section["ceiling_loglik_common"] = float(poisson_loglik(xs[common], xs[common]).mean())

    def by_horizon(log_pred, keep):
        return {str(h): errors(log_pred[keep & (horizon == h)], xs[keep & (horizon == h)])
                for h in range(1, HORIZON + 1)}  # fmt: skip

    for name, pred in (("last_value", lvcf), ("drift", drift)):
        spread = carry_forward_spread(x, train, drift=name == "drift")
        sd = np.array([spread[h] for h in horizon[common]])
        section[name] = {**baseline_row(pred[common], xs[common], sd),
                         "by_horizon": by_horizon(pred, common)}  # fmt: skip
    for name in ("none", "extrapolated"):
        offset = None if name == "none" else chain_offset(x, train, extend=HORIZON)
        rows, cells = [], []
        for q in args.candidates:
            row, cell, plug, log_pred = fit_and_score(
                x, q, train, heldout, offset, args.max_iterations
            )
            row["on_common_cells"] = {
                "heldout_loglik": float(cell[common].mean()),
                "heldout_loglik_plugin": float(plug[common].mean()),
                **errors(log_pred[common], xs[common]),
            }
            row["by_horizon"] = by_horizon(log_pred, common)
            row["worst_cells"] = worst(log_pred, xs, labels[heldout])
            rows.append(row)
            cells.append(cell)
            print(f"forecast offset={name} q={q}: {short(row)}", flush=True)
        section[name] = {"best_q": paired(rows, cells, heldout, args.candidates), "fits": rows}
        save()


def arrays(wide):
    """Counts (NaN = absent), the observed mask and an (N, m) array of "quarter economy" labels."""
    x = wide.to_numpy()
    labels = np.array([[f"{i} {c}" for c in wide.columns] for i in wide.index])
    return x, ~np.isnan(x), labels


def worst(log_pred, x, labels, k: int = 3) -> list:
    """The k held-out cells with the largest |log error|: (label, count, log error)."""
    err = log_pred - np.log(x)
    return [[str(labels[j]), float(x[j]), round(float(err[j]), 3)]
            for j in np.argsort(-np.abs(err))[:k]]  # fmt: skip


def short(row: dict) -> str:
    return (
        f"loglik {row['heldout_loglik']:.1f} rmse_log {row['rmse_log']:.4f} "
        f"MAPE {row['mape_pct']:.2f}% it {row['iterations']} ({row['status']}) "
        f"{row['fit_s']:.1f}s"
    )


# ---------------------------------------------------------------------------------------------
# Tables


def fmt(x, digits=1):
    return "—" if x is None else f"{x:,.{digits}f}".replace("-", "−")


def print_tables(out: dict) -> None:
    """The two sections as markdown tables (numbers over seeds: the mean, ± the sd)."""
    if "random" in out and "summary" in out["random"]:
        s = out["random"]["summary"]
        n = len(out["random"]["seeds"])
        print(f"\n== random 10 % of observed cells held out ({n} seed(s): mean ± sd over seeds)")
        print("| offset | q | loglik / cell +θ unc. | plug-in | Δ vs q = 0 (paired SE) "
              "| RMSE log | MAPE % | median APE % "
              "| interp. cells: plug-in · RMSE log · MAPE % | iterations · status |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for name in ("none", "chain"):
            for q, r in s[name].items():
                if q == "best_q":
                    continue
                ll, d, se = r["heldout_loglik"], r["diff_vs_q0"], r["diff_vs_q0_se"]
                ic = r["interp_cells"]
                print(
                    f"| {name} | {q} | {fmt(ll[0])} ± {fmt(ll[1])} "
                    f"| {fmt(r['heldout_loglik_plugin'][0])} | {fmt(d[0])} ({fmt(se[0])}) "
                    f"| {r['rmse_log'][0]:.4f} ± {r['rmse_log'][1]:.4f} "
                    f"| {r['mape_pct'][0]:.2f} | {r['median_ape_pct'][0]:.2f} "
                    f"| {fmt(ic['heldout_loglik_plugin'][0])} · {ic['rmse_log'][0]:.4f} "
                    f"· {ic['mape_pct'][0]:.2f} "
                    f"| {'/'.join(map(str, r['iterations']))} · {', '.join(r['status'])} |"
                )
        b = s["interpolation"]
        print(
            f"| log-linear interpolation | — | {fmt(b['heldout_loglik'][0])} (lognormal spread, "
            f"on its cells) | | | | | | {fmt(b['heldout_loglik_plugin'][0])} "
            f"· {b['rmse_log'][0]:.4f} · {b['mape_pct'][0]:.2f} "
            f"(median APE {b['median_ape_pct'][0]:.2f}) | — |"
        )
        print(f"ceiling (rate = the count): {fmt(s['ceiling_loglik'][0])} per cell "
              f"({fmt(s['ceiling_loglik_interp_cells'][0])} on the interpolation's cells); "
              f"interpolation covers {100 * s['interp_cells_fraction'][0]:.1f} % of held-out "
              f"cells; best q per seed: none {s['none']['best_q']}, "
              f"chain {s['chain']['best_q']}")  # fmt: skip
    if "forecast" in out and "extrapolated" in out["forecast"]:
        f = out["forecast"]
        print(f"\n== forecast: last {f['horizon']} quarters held out ({f['heldout_cells']} cells, "
              f"excluded for want of a training quarter: {f['excluded_no_training_quarter']}; "
              f"baselines and the h columns on the {f['common_cells']} cells every baseline "
              "covers)")  # fmt: skip
        print("| offset | q | loglik / cell +θ unc. | plug-in | Δ vs q = 0 (paired SE) "
              "| RMSE log | MAPE % | median APE % | median APE % h = 1 · h = 2 "
              "| iterations · status |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for name in ("none", "extrapolated"):
            for r in f[name]["fits"]:
                h = r["by_horizon"]
                print(
                    f"| {name} | {r['q']} | {fmt(r['heldout_loglik'])} "
                    f"| {fmt(r['heldout_loglik_plugin'])} "
                    f"| {fmt(r['diff_vs_q0'])} ({fmt(r['diff_vs_q0_se'])}) "
                    f"| {r['rmse_log']:.4f} | {r['mape_pct']:.2f} | {r['median_ape_pct']:.2f} "
                    f"| {h['1']['median_ape_pct']:.2f} · {h['2']['median_ape_pct']:.2f} "
                    f"| {r['iterations']} · {r['status']} |"
                )
        for name in ("last_value", "drift"):
            b = f[name]
            h1, h2 = (b["by_horizon"][k]["median_ape_pct"] for k in ("1", "2"))
            print(f"| {name} | — | {fmt(b['heldout_loglik'])} (lognormal spread) "
                  f"| {fmt(b['heldout_loglik_plugin'])} | | "
                  f"{b['rmse_log']:.4f} | {b['mape_pct']:.2f} | {b['median_ape_pct']:.2f} "
                  f"| {h1:.2f} · {h2:.2f} | — |")  # fmt: skip
        print(f"ceiling (rate = the count): {fmt(f['ceiling_loglik'])} per cell")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="random,forecast")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--candidates", default="0,1,2,3,4,5,6")
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="one seed, q = 0..2: a smoke run")
    parser.add_argument("--out", type=Path, default=HERE / "output" / "ssm_innovationgraph.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.candidates = "0", "0,1,2"
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.candidates = [int(q) for q in args.candidates.split(",")]
    if args.candidates[0] != 0:
        parser.error("--candidates must start with 0 (the static baseline)")
    import jax

    jax.config.update("jax_enable_x64", True)
    wide = load_panel()
    x, observed, _ = arrays(wide)
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "float": "float64",
        "data": {
            "file": DATA.name,
            "quarters": [str(wide.index[0]), str(wide.index[-1])],
            "N": int(x.shape[0]),
            "m": int(x.shape[1]),
            "observed_cells": int(observed.sum()),
            "absent_cells": int((~observed).sum()),
            "max_count": float(np.nanmax(x)),
            "median_count": float(np.nanmedian(x)),
        },
        "seconds": {},
    }
    print(json.dumps(out["data"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2, default=str))

    t_all = time.perf_counter()
    for name, run in (("random", run_random), ("forecast", run_forecast)):
        if name in args.sections.split(","):
            t0 = time.perf_counter()
            run(args, wide, out, save)
            out["seconds"][name] = round(time.perf_counter() - t0, 1)
            save()
    out["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
    save()
    print_tables(out)
    print(f"\ntimes (s): {out['seconds']}\nwrote {args.out}")


if __name__ == "__main__":
    main()
