"""The dynamic factor model for counts (``jaxssm.fit_laplace_em``) against simple baselines on the
real count panels of ``../shared/data`` (issue 14): held-out log predictive per cell and scale-free
errors, over several random hold-outs, and a 2-window forecast.

Panels (``benchmarks/panels.py``; windows x locations, NaN = missing):

* ``seatbelts``: UK road casualties per month 1969-01..1984-12, N = 192, m = 4 (DriversKilled,
  front, rear, VanKilled). No offset.
* ``aus_arrivals``: arrivals to Australia per quarter 1981Q1..2012Q3, N = 127, m = 4 origins
  (9,321 to 330,812 per cell). No offset.
* ``hepatitis_a``, ``measles``, ``mumps``, ``pertussis``, ``polio``, ``rubella``, ``smallpox``:
  ``us_contagious_diseases.csv``, one disease = state x year. Offset
  log(population / 1e5 x weeks_reporting / 52): cases per 100,000 person-years of reporting, so
  a state that reported for half the year is expected to report half the cases.
  ``weeks_reporting = 0`` or an unknown population (Alaska, Hawaii before 1960) = missing. Years:
  the longest run of consecutive years in which at least half of the states report (measles
  1928-1997, pertussis 1974-2011 after the file's 1956-1973 gap, polio 1928-1964, rubella
  1966-1987, smallpox 1928-1948, hepatitis A and mumps all years); interior years with fewer
  reporting states stay as partly missing windows; states with fewer than 2 cells are dropped.
* ``ig_developers`` and ``ig_developers_div1000``: GitHub developers per economy per quarter
  (2020Q1-2025Q3, N = 23, m = 228, EU dropped), raw and divided by 1000 and rounded (cells under
  500 developers become 0); absent cells are missing. The factor model gets the chain-linked index
  offset of ``ssm_innovationgraph.py`` built from the training cells (extended at its recent
  growth for the forecast), so q = 0 is "fixed shares x index".

Designs (``--sections``):

* ``heldout``: per seed, 20 % of the present cells held out at random (a location keeps at least
  2 training cells); every method fitted on the rest.
* ``forecast``: the last 2 windows masked (locations with fewer than 2 training cells skipped).

Methods, each with a proper count predictive distribution scored on the same held-out cells:

* ``jaxssm q=K <emission>``: ``fit_laplace_em`` with q = K (q = 0 is the static model) and
  ``emission`` poisson / negbin (negbin rows are skipped, with a note, while ``fit_laplace_em`` has
  no ``emission`` argument). The score is the library's own predictive (Gauss-Hermite over the
  Laplace posterior of f and each location's (mu, Lambda), adaptive Gauss-Hermite); point
  prediction exp(E log rate).
* ``jaxssm CV choice``: ``select_num_factors`` (5-fold CV on the training cells, over the q's
  and, when the library supports it, the emissions); the chosen configuration refitted on all the
  training cells is the same fit as its row, so its scores are that row's; time = CV + that fit.
* ``interpolation`` (held-out design): per location, linear in z = log(x + 1/2) - o (o the
  exposure offset; 0 without one) between its nearest training cells before and after; the
  nearest one carried where only one side exists.
* ``last value`` and ``drift`` (forecast): the location's last training z, plus (drift) its mean
  log growth over its cells in the last 4 windows.
* ``DFMQ q=K``: statsmodels ``DynamicFactorMQ`` on log1p(x) - o (factor AR(1), no idiosyncratic
  AR), K = 1, 2; the predictive variance of a cell is its own smoothed signal + idiosyncratic
  variance. A panel where it fails is recorded with the error.

A baseline predicts the log rate y = z + o; its count predictive is Poisson-lognormal,
log rate ~ N(y, s_l^2), integrated by adaptive Gauss-Hermite (32 nodes), with s_l per location from
the baseline's own leave-one-out residuals on the training cells (interpolation) or backtest
residuals per horizon (carry-forward), shrunk toward the panel-wide value:
s_l^2 = (5 s^2 + sum r^2) / (5 + n_l).

Metrics per method: mean held-out log predictive per cell, its paired difference (and SE) against
the static model (q = 0 Poisson), the number of cells below -50 and the minimum cell score, RMSE of
log(x + 1/2) of the point prediction, median absolute percentage error on cells with x >= 10, fit
seconds, jaxssm status and EM iterations. Tables show the mean over seeds ± sd, except the fit
seconds: the minimum over seeds (the first fit of each shape and q includes compilation; the
per-seed times are in the JSON). The forecast design has one split (seed 0 only keys the CV).

Output: a table per panel and section, and JSON written atomically after every panel and seed to
``--out``; ``--resume`` skips panel sections already complete there with the same settings.

Usage (the ``bench`` extra: statsmodels; times on the 2-core CPU, Poisson only)::

    python benchmarks/ssm_real_panels.py                  # 11 panels, 3 seeds, q = 0..3
    python benchmarks/ssm_real_panels.py --quick          # 2 small panels, 1 seed, q <= 1 (~25 s)
    python benchmarks/ssm_real_panels.py --panels seatbelts,aus_arrivals,measles --seeds 2 \\
        --emissions poisson                               # ~2 minutes
    python benchmarks/ssm_real_panels.py --resume         # continue an interrupted run
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import inspect
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import panels as P  # noqa: E402

HOLDOUT = 0.2
HORIZON = 2
STATIC = "jaxssm q=0 poisson"
QUICK_PANELS = "seatbelts,aus_arrivals"


# ---------------------------------------------------------------------------------------------
# The adapter: every jaxssm call of the benchmark goes through these two functions


def jaxssm_api() -> dict:
    """What the installed jaxssm offers (the emission argument lands later)."""
    import jaxssm

    return {
        "emission": "emission" in inspect.signature(jaxssm.fit_laplace_em).parameters,
        "select_emissions": "emissions" in inspect.signature(jaxssm.select_num_factors).parameters,
    }


def jaxssm_source() -> dict:
    """Where jaxssm was imported from, and the commit (and uncommitted changes) of its checkout."""
    import jaxssm

    where = Path(jaxssm.__file__).resolve().parent

    def git(*cmd):
        run = subprocess.run(["git", "-C", str(where), *cmd], capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else None

    return {
        "path": str(where),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted": bool(git("status", "--porcelain", "--", ".")),
    }


def fit_and_score(counts, train, offset, q, emission, heldout, max_iterations) -> dict | None:
    """Fit q factors with ``emission`` on the ``train`` cells of ``counts`` and score the
    ``heldout`` cells: per-cell log predictive (1-d, in the order of ``counts[heldout]``), the
    point prediction of each count exp(E log rate), status, iterations, seconds. None when
    ``emission`` is not available."""
    import jax

    import jaxssm

    kwargs = {}
    if jaxssm_api()["emission"]:
        kwargs["emission"] = emission
    elif emission != "poisson":
        return None
    t0 = time.perf_counter()
    fit = jaxssm.fit_laplace_em(
        counts, q, mask=train, offset=offset, max_iterations=max_iterations, loop="jax", **kwargs
    )
    jax.block_until_ready(fit.params)
    seconds = time.perf_counter() - t0
    x = np.nan_to_num(counts)
    cov = fit.parameter_covariance()
    if hasattr(fit, "log_predictive"):
        cell = np.asarray(fit.log_predictive(x, heldout))
    else:
        cell = np.asarray(
            jaxssm.predictive_log_likelihood(
                fit.params, fit.posterior, x, heldout, fit.panel, parameter_cov=cov
            )
        )
    mean = np.asarray(
        jaxssm.log_rate_moments(fit.params, fit.posterior, fit.panel, parameter_cov=cov)[0]
    )
    out = {
        "cells": cell[heldout],
        "point": np.exp(mean[heldout]),
        "seconds": seconds,
        "status": str(fit.status),
        "converged": bool(fit.converged),
        "iterations": int(fit.num_iterations),
    }
    return out


def select_model(seed, counts, train, offset, candidates, emissions, folds, max_iterations):
    """``select_num_factors`` with K-fold CV on the training cells: the chosen (q, emission),
    its table and seconds."""
    import jax

    import jaxssm

    kwargs = {}
    supported = ("poisson",)
    if jaxssm_api()["select_emissions"]:
        supported = tuple(emissions)
        kwargs["emissions"] = supported
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = jaxssm.select_num_factors(
            jax.random.key(seed),
            counts,
            candidates=tuple(candidates),
            mask=train,
            offset=offset,
            folds=folds,
            max_iterations=max_iterations,
            loop="jax",
            **kwargs,
        )
    return {
        "q": int(sel.best),
        "emission": str(getattr(sel, "best_emission", "poisson")),
        "table": json.loads(sel.table.to_json(orient="records")),
        "seconds": time.perf_counter() - t0,
        "emissions_compared": list(supported),
    }


# ---------------------------------------------------------------------------------------------
# DynamicFactorMQ


def dfmq_predict(z, train, q: int, maxiter: int):
    """statsmodels DynamicFactorMQ (factor AR(1), no idiosyncratic AR) on the training cells of
    z (N, m): the smoothed mean and predictive variance of every cell (signal + idiosyncratic),
    seconds, iterations, and the locations it could not take (their training mean and
    variance are used)."""
    import pandas as pd
    from statsmodels.tsa.statespace.dynamic_factor_mq import DynamicFactorMQ

    N, m = z.shape
    endog = pd.DataFrame(
        np.where(train, z, np.nan),
        index=pd.period_range("2000-01", periods=N, freq="M"),
        columns=[f"loc{k}" for k in range(m)],
    )
    keep = ((endog.notna().sum() >= 2) & (endog.nunique() >= 2)).to_numpy()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = DynamicFactorMQ(
            endog.loc[:, keep], factors=q, factor_orders=1, idiosyncratic_ar1=False
        )
        res = mod.fit(maxiter=maxiter, disp=False)
    seconds = time.perf_counter() - t0
    smoother = res.smoother_results
    std, centre = np.asarray(mod._endog_std), np.asarray(mod._endog_mean)
    mean = np.full((N, m), np.nan)
    var = np.full((N, m), np.nan)
    mean[:, keep] = np.asarray(smoother.smoothed_forecasts).T * std + centre
    cov = np.asarray(smoother.smoothed_forecasts_error_cov)
    var[:, keep] = np.diagonal(cov, axis1=0, axis2=1) * std**2
    zt = np.where(train, z, np.nan)
    for j in np.flatnonzero(~keep):
        mean[:, j] = np.nanmean(zt[:, j]) if train[:, j].any() else np.nan
        var[:, j] = np.nanvar(zt[:, j]) if train[:, j].sum() > 1 else 1.0
    retvals = res.mle_retvals if isinstance(res.mle_retvals, dict) else {}
    return mean, var, seconds, retvals.get("iter"), int((~keep).sum())


# ---------------------------------------------------------------------------------------------
# Designs


def heldout_split(observed: np.ndarray, seed: int, fraction: float = HOLDOUT):
    """``fraction`` of the present cells at random; a location keeps at least 2 training cells."""
    rng = np.random.default_rng(seed)
    heldout = observed & (rng.uniform(size=observed.shape) < fraction)
    for j in range(observed.shape[1]):
        while (observed[:, j] & ~heldout[:, j]).sum() < 2 and heldout[:, j].any():
            heldout[np.flatnonzero(heldout[:, j])[0], j] = False
    return observed & ~heldout, heldout


def forecast_split(observed: np.ndarray, horizon: int = HORIZON):
    N = observed.shape[0]
    late = (np.arange(N) >= N - horizon)[:, None]
    train = observed & ~late
    heldout = observed & late & (train.sum(axis=0) >= 2)[None, :]
    return train, heldout


def baseline(y, sd, heldout, x) -> dict:
    """A log-rate prediction y (N, m) with a lognormal spread sd (N, m) at the held-out cells."""
    cells = P.poisson_lognormal_logpmf(x[heldout], y[heldout], sd[heldout])
    return {"cells": cells, "point": np.maximum(np.exp(y[heldout]) - 0.5, 0.0)}


def run_design(panel: P.CountPanel, train, heldout, seed: int, args, forecast: bool) -> dict:
    """Every method on one split: name -> record (per-cell arrays and fit facts)."""
    from ssm_innovationgraph import chain_offset

    x = panel.counts
    N, m = x.shape
    exposure = np.zeros((N, m)) if panel.offset is None else panel.offset
    if panel.index_offset:
        offset = chain_offset(np.nan_to_num(x), train, extend=HORIZON if forecast else 0)
    else:
        offset = panel.offset
    records: dict = {}
    for emission in args.emissions:
        for q in args.candidates:
            name = f"jaxssm q={q} {emission}"
            r = fit_and_score(x, train, offset, q, emission, heldout, args.max_iterations)
            if r is None:
                records[name] = {"note": "skipped: fit_laplace_em has no emission argument yet"}
                continue
            records[name] = r
            print(f"  {name}: {short(r, x[heldout])}", flush=True)
    if args.folds > 1:
        sel = select_model(
            seed, x, train, offset, args.candidates, args.emissions, args.folds, args.max_iterations
        )
        chosen = records[f"jaxssm q={sel['q']} {sel['emission']}"]
        records["jaxssm CV choice"] = {
            **chosen,
            "seconds": sel["seconds"] + chosen["seconds"],
            "choice": f"q={sel['q']} {sel['emission']}",
            "selection": sel,
        }
        print(f"  CV choice: q={sel['q']} {sel['emission']} ({sel['seconds']:.1f} s)", flush=True)
    z = P.log_scale(panel)
    t0 = time.perf_counter()
    if not forecast:
        y = P.interpolate(z, train) + exposure
        sd = P.shrunk_sd(P.interpolation_residuals(z, train))[None, :] + np.zeros((N, m))
        records["interpolation"] = {
            **baseline(y, sd, heldout, x),
            "seconds": time.perf_counter() - t0,
        }
    else:
        last = N - HORIZON - 1  # the last training window
        h = np.arange(N)[:, None] - last + np.zeros((N, m), int)
        for name, drift in (("last value", False), ("drift", True)):
            t0 = time.perf_counter()
            y = np.full((N, m), np.nan)
            for j in range(m):
                known = np.flatnonzero(train[:, j])
                y[:, j] = P.carry_forward(z[:, j], known, last, np.arange(N), drift)
            residuals = P.forecast_residuals(z, train, drift, range(1, HORIZON + 1))
            sd = np.ones((N, m))
            for k in range(1, HORIZON + 1):
                sd = np.where(h == k, P.shrunk_sd(residuals[k])[None, :], sd)
            records[name] = {
                **baseline(y + exposure, sd, heldout, x),
                "seconds": time.perf_counter() - t0,
            }
    for q in args.dfmq_factors:
        name = f"DFMQ q={q}"
        try:
            zz = np.log1p(x) - exposure
            mean, var, seconds, iters, dropped = dfmq_predict(zz, train, q, args.dfmq_maxiter)
            y = mean + exposure
            records[name] = {
                "cells": P.poisson_lognormal_logpmf(x[heldout], y[heldout], np.sqrt(var[heldout])),
                "point": np.maximum(np.expm1(y[heldout]), 0.0),
                "seconds": seconds,
                "iterations": iters,
                "note": f"{dropped} locations without variation took their training mean"
                if dropped
                else None,
            }
        except Exception as err:  # a panel DFMQ cannot take: say why
            records[name] = {"note": f"failed: {type(err).__name__}: {err}"[:300]}
        print(f"  {name}: {records[name].get('note') or 'ok'}", flush=True)
    return records


def score(records: dict, panel: P.CountPanel, heldout) -> dict:
    """Metrics of every method against the static model, and its three worst cells."""
    x = panel.counts[heldout]
    labels = np.array([[f"{r} {c}" for c in panel.columns] for r in panel.rows])[heldout]
    reference = records[STATIC]["cells"]
    out = {}
    for name, r in records.items():
        if "cells" not in r:
            out[name] = {"note": r.get("note")}
            continue
        row = P.metrics(r["cells"], r["point"], x, reference)
        worst = np.argsort(r["cells"])[:3]
        row["worst_cells"] = [
            [
                str(labels[k]),
                float(x[k]),
                round(float(r["point"][k]), 1),
                round(float(r["cells"][k]), 2),
            ]
            for k in worst
        ]
        for key in ("seconds", "status", "converged", "iterations", "note", "choice"):
            if r.get(key) is not None:
                row[key] = round(r[key], 3) if key == "seconds" else r[key]
        if "selection" in r:
            row["selection_table"] = r["selection"]["table"]
        out[name] = row
    return out


def summarize(per_seed: dict) -> dict:
    """Per method over seeds: mean and sd of the numeric metrics, the worst cell, statuses."""
    runs = list(per_seed.values())
    summary = {}
    for name in runs[0]["methods"]:
        rows = [s["methods"][name] for s in runs]
        if "log_pred" not in rows[0]:
            summary[name] = {"note": rows[0].get("note")}
            continue
        entry: dict = {}
        for key in (
            "log_pred",
            "diff_vs_static",
            "rmse_log",
            "median_ape_pct",
            "seconds",
            "below_minus50",
        ):
            v = [r[key] for r in rows if r.get(key) is not None]
            if v:
                v = np.asarray(v, float)
                entry[key] = [float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0]
        entry["seconds_min"] = float(min(r["seconds"] for r in rows))
        entry["diff_vs_static_se"] = float(np.mean([r["diff_vs_static_se"] for r in rows]))
        entry["min_cell"] = float(min(r["min_cell"] for r in rows))
        for key in ("status", "iterations", "choice", "note"):
            if any(key in r for r in rows):
                entry[key] = [r.get(key) for r in rows]
        summary[name] = entry
    return summary


# ---------------------------------------------------------------------------------------------
# Output


def fmt(v, digits=2):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}".replace("-", "−")


def print_table(name: str, section: str, entry: dict) -> None:
    s = entry["summary"]
    n = len(entry["seeds"])
    print(
        f"\n== {name} · {section} ({entry['heldout_cells']} held-out cells; {n} seed(s): mean ± sd)"
    )
    print(
        "| method | log pred / cell | Δ vs static (SE) | cells < −50 | min cell "
        "| RMSE log | median APE % (x ≥ 10) | fit s (min) | iterations · status |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for method, r in s.items():
        if "log_pred" not in r:
            print(f"| {method} | {r.get('note')} ||||||||")
            continue
        label = method + (f" → {'/'.join(r['choice'])}" if "choice" in r else "")
        lp, d = r["log_pred"], r["diff_vs_static"]
        ape = r.get("median_ape_pct")
        it = r.get("iterations")
        statuses = [str(x) for x in r.get("status", []) if x is not None]
        status = "; ".join(sorted({re.split("[;:]", x)[0] for x in statuses}))
        if any(";" in x or ":" in x for x in statuses):
            status += " (+ details in the JSON)"
        print(
            f"| {label} | {fmt(lp[0])} ± {fmt(lp[1])} "
            f"| {fmt(d[0])} ({fmt(r['diff_vs_static_se'])}) "
            f"| {fmt(r['below_minus50'][0], 1)} | {fmt(r['min_cell'], 1)} "
            f"| {r['rmse_log'][0]:.3f} ± {r['rmse_log'][1]:.3f} "
            f"| {fmt(ape[0], 1) if ape else '—'} | {fmt(r.get('seconds_min', r['seconds'][0]), 1)} "
            f"| {'/'.join(map(str, it)) if it else ''}{' · ' + status if status else ''} |"
        )


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(f.name, path)


def short(r: dict, x) -> str:
    c = r["cells"]
    return (
        f"log pred {c.mean():.3f} (min {c.min():.1f}, {int((c < -50).sum())} < −50) "
        f"rmse_log {np.sqrt(np.mean((np.log(r['point'] + 0.5) - np.log(x + 0.5)) ** 2)):.3f} "
        f"it {r['iterations']} ({r['status']}) {r['seconds']:.1f}s"
    )


# ---------------------------------------------------------------------------------------------
# Main


def run_panel(panel: P.CountPanel, section: str, args, save) -> dict:
    observed = ~np.isnan(panel.counts)
    seeds = args.seeds if section == "heldout" else [0]
    entry: dict = {"config": config(args, section), "seeds": {}, "complete": False}
    t_all = time.perf_counter()
    for seed in seeds:
        if section == "heldout":
            train, heldout = heldout_split(observed, seed)
        else:
            train, heldout = forecast_split(observed)
        print(
            f"{panel.name} · {section} · seed {seed}: {int(heldout.sum())} held-out cells",
            flush=True,
        )
        t0 = time.perf_counter()
        records = run_design(panel, train, heldout, seed, args, forecast=section == "forecast")
        entry["heldout_cells"] = int(heldout.sum())
        entry["seeds"][str(seed)] = {
            "heldout_cells": int(heldout.sum()),
            "seconds": round(time.perf_counter() - t0, 1),
            "methods": score(records, panel, heldout),
        }
        save(entry)
    entry["summary"] = summarize(entry["seeds"])
    entry["seconds"] = round(time.perf_counter() - t_all, 1)
    entry["complete"] = True
    save(entry)
    return entry


def config(args, section: str) -> dict:
    return {
        "seeds": args.seeds if section == "heldout" else [0],
        "candidates": args.candidates,
        "emissions": args.emissions,
        "folds": args.folds,
        "dfmq_factors": args.dfmq_factors,
        "max_iterations": args.max_iterations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", default=",".join(P.LOADERS))
    parser.add_argument("--seeds", type=int, default=3, help="random hold-outs per panel")
    parser.add_argument("--sections", default="heldout,forecast")
    parser.add_argument("--candidates", default="0,1,2,3", help="q values (must include 0)")
    parser.add_argument("--emissions", default="poisson,negbin")
    parser.add_argument(
        "--folds", type=int, default=5, help="CV folds of select_num_factors (<= 1: no CV choice)"
    )
    parser.add_argument("--dfmq-factors", default="1,2", help="'' for no DynamicFactorMQ")
    parser.add_argument("--dfmq-maxiter", type=int, default=500)
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument(
        "--quick", action="store_true", help=f"1 seed, q <= 1, panels {QUICK_PANELS}: a smoke run"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip panel sections complete in --out with the same settings",
    )
    parser.add_argument("--out", type=Path, default=HERE / "output" / "ssm_real_panels.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.candidates, args.dfmq_factors = 1, "0,1", "1"
        if args.panels == parser.get_default("panels"):
            args.panels = QUICK_PANELS
    args.seeds = list(range(args.seeds))
    args.candidates = [int(q) for q in args.candidates.split(",")]
    args.emissions = [e for e in args.emissions.split(",") if e]
    args.dfmq_factors = [int(q) for q in args.dfmq_factors.split(",") if q]
    if 0 not in args.candidates or "poisson" not in args.emissions:
        parser.error("the static model (q = 0, poisson) is the reference: keep it")
    names = args.panels.split(",")
    sections = [s for s in args.sections.split(",") if s]
    if unknown := [n for n in names if n not in P.LOADERS]:
        parser.error(f"unknown panels {unknown}; known: {', '.join(P.LOADERS)}")
    if unknown := [s for s in sections if s not in ("heldout", "forecast")]:
        parser.error(f"unknown sections {unknown}")
    try:
        loaded = {name: P.load(name) for name in names}
    except P.MissingData as err:
        sys.exit(f"ssm_real_panels: {err}")

    import jax

    jax.config.update("jax_enable_x64", True)
    out: dict = {}
    if args.resume and args.out.exists():
        out = json.loads(args.out.read_text())
    api = jaxssm_api()
    out.update(
        {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "jax": jax.__version__,
                "backend": jax.default_backend(),
            },
            "float": "float64",
            "jaxssm_api": api,
            "jaxssm_source": jaxssm_source(),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
    )
    out.setdefault("panels", {})
    if not api["emission"] and "negbin" in args.emissions:
        print("note: fit_laplace_em has no emission argument yet: negbin rows are skipped")
    t_all = time.perf_counter()
    for name, panel in loaded.items():
        x = panel.counts
        stored = out["panels"].setdefault(name, {})
        stored.update(
            {
                "description": panel.description,
                "N": int(x.shape[0]),
                "m": int(x.shape[1]),
                "windows": [str(panel.rows[0]), str(panel.rows[-1])],
                "present": int((~np.isnan(x)).sum()),
                "missing": int(np.isnan(x).sum()),
                "zeros": int((x == 0).sum()),
                "max": float(np.nanmax(x)),
                "median": float(np.nanmedian(x)),
                "offset": "chain index"
                if panel.index_offset
                else ("log exposure" if panel.offset is not None else "none"),
            }
        )
        for section in sections:
            done = stored.get(section, {})
            if args.resume and done.get("complete") and done.get("config") == config(args, section):
                print(f"{name} · {section}: in {args.out}, skipped (--resume)")
                continue

            def save(entry, name=name, section=section):
                out["panels"][name][section] = entry
                out["seconds"] = round(time.perf_counter() - t_all, 1)
                write_atomic(args.out, out)

            run_panel(panel, section, args, save)
            # every panel shape, q and emission compiles its own programs; dropping them keeps
            # the process under the kernel's limit on memory maps (a full run once died with
            # "LLVM compilation error: Cannot allocate memory" after ~6 panels)
            jax.clear_caches()
    for name in names:
        for section in sections:
            entry = out["panels"][name].get(section)
            if entry and entry.get("complete"):
                print_table(name, section, entry)
    print(f"\n{time.perf_counter() - t_all:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
