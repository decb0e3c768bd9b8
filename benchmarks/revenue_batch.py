"""The batch job at scale: throughput, padding, memory, fallbacks; against a loop of compiled
single-account fits and against Stan (pystan) fitting accounts one after another.

Sections (each prints a table; everything lands in one JSON file):

* ``skewed``: accounts with a realistic skew of sizes (most small; ~1% with hundreds of ad sets
  and thousands of hourly rows). ``fit_accounts`` in this fresh process (compilation included),
  then again over the same shapes (steady state): accounts/s, padding efficiency, peak memory,
  the fraction of accounts at each rung of the fallback ladder.
* ``loop``: the same model and options, one account at a time through compiled single-account
  programs (``fit_bucket`` on one account: one compile per bucket shape), on a subset.
* ``stan``: the seed's Stan program with NUTS 4 x (1000 + 1000), one account after another with
  the compiled model reused, on a subset of small accounts; agreement of the batch's ad-set means
  with Stan's (|Δmean| / Stan sd) on those accounts.
* ``small``: N small accounts (default 10,000) end to end in this process, compilation included.

Usage::

    python benchmarks/revenue_batch.py                      # all sections (~20 minutes)
    python benchmarks/revenue_batch.py --sections small --small 10000
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def fresh_start() -> None:
    """Drop every compiled program so a section starts like a fresh process (and the process's
    memory-map guard does not fire in the middle of a timed run)."""
    from jaxrev.compile_cache import release_compiled_programs

    release_compiled_programs(force=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_accounts(count: int, seed: int, large_fraction: float = 0.01) -> pd.DataFrame:
    """Accounts with a skew of sizes: campaigns 1 + Poisson(0.8), ad sets per campaign
    1 + Poisson(1.5), 1-14 days of hours at 0.05-2 conversions/hour (most accounts tens to a few
    hundred rows); ``large_fraction`` of them with 10-30 campaigns of 8-16 ad sets over 3-7
    days (hundreds of ad sets, thousands of rows)."""
    from jaxrev.simulate import simulate_account

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        if rng.uniform() < large_fraction:
            campaigns = tuple(rng.integers(8, 17, size=rng.integers(10, 31)))
            hours = int(rng.integers(72, 169))
            rates = (0.02, 0.5)
        else:
            campaigns = tuple(1 + rng.poisson(1.5, size=1 + rng.poisson(0.8)))
            hours = int(np.exp(rng.uniform(np.log(24), np.log(336))))
            rates = (0.05, 2.0)
        sim = simulate_account(
            int(rng.integers(2**31)), campaigns, num_hours=hours, conversions_per_hour=rates
        )
        frames.append(sim.table.assign(account=f"acct-{k:05d}"))
    return pd.concat(frames, ignore_index=True)


def small_accounts(count: int, seed: int) -> pd.DataFrame:
    """Small accounts only: 1-3 campaigns of 1-4 ad sets, 1-7 days at 0.05-1 conversions/hour."""
    from jaxrev.simulate import simulate_account

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        campaigns = tuple(rng.integers(1, 5, size=rng.integers(1, 4)))
        hours = int(rng.integers(24, 169))
        sim = simulate_account(
            int(rng.integers(2**31)), campaigns, num_hours=hours, conversions_per_hour=(0.05, 1.0)
        )
        frames.append(sim.table.assign(account=f"small-{k:05d}"))
    return pd.concat(frames, ignore_index=True)


def describe(table: pd.DataFrame) -> dict:
    used = table[table["conversions"] > 0]
    per = used.groupby("account").agg(rows=("revenue", "size"), adsets=("adset", "nunique"))
    return {
        "accounts": int(per.shape[0]),
        "rows_median": float(per["rows"].median()),
        "rows_max": int(per["rows"].max()),
        "adsets_median": float(per["adsets"].median()),
        "adsets_max": int(per["adsets"].max()),
        "rows_total": int(per["rows"].sum()),
    }


def ladder(status: pd.DataFrame) -> dict:
    kind = status["status"].str.split(":").str[0]
    empty = status["status"].str.startswith("failed: no observations")
    rung = status["rung"].fillna("none")
    return {
        "converged_first": float(((kind == "converged") & (rung == "svi")).mean()),
        "more_steps": float((rung == "svi_more_steps").mean()),
        "fallback_fullrank": float((kind == "fallback_fullrank").mean()),
        "fallback_nuts": float((kind == "fallback_nuts").mean()),
        "failed_no_observations": float(empty.mean()),
        "failed_other": float(((kind == "failed") & ~empty).mean()),
    }


def run_skewed(args, out: dict) -> pd.DataFrame:
    from jaxrev.batch import fit_accounts

    table = simulate_accounts(args.accounts, args.seed)
    info = describe(table)
    print(f"\n== skewed: {info}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        first = fit_accounts(table, out_dir=tmp, progress=args.progress)
        cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    steady_run = fit_accounts(table, progress=args.progress)
    steady = time.perf_counter() - t0
    row = {
        **info,
        "buckets": first.report["buckets"],
        "seconds_with_compile": round(cold, 1),
        "accounts_per_s_with_compile": round(info["accounts"] / cold, 2),
        "seconds_steady": round(steady, 1),
        "accounts_per_s_steady": round(info["accounts"] / steady, 2),
        "padding_efficiency": first.report["padding_efficiency"],
        "compilations_first": first.report["compilations"]["backend_compiles"],
        "compilations_second": steady_run.report["compilations"]["backend_compiles"],
        "peak_rss_mb": round(peak_rss_mb()),
        "ladder": ladder(first.status),
    }
    out["skewed"] = row
    print(json.dumps(row, indent=1), flush=True)
    return table, first


def run_loop(args, table: pd.DataFrame, out: dict) -> None:
    from jaxrev.batch import BatchOptions, fit_bucket, load_accounts, make_specs
    from jaxrev.data import Columns
    from jaxrev.models import MultilevelPriors

    fresh_start()
    ids = sorted(table["account"].unique())[: args.loop_subset]
    subset = table[table["account"].isin(ids)]
    options = BatchOptions()
    accounts, _ = load_accounts(
        {k: g.drop(columns="account") for k, g in subset.groupby("account")},
        Columns(), "multilevel", MultilevelPriors(), options,
    )  # fmt: skip
    specs = [
        s._replace(accounts=(a,))
        for s in make_specs(accounts, "multilevel", MultilevelPriors(), options, None)
        for a in s.accounts
    ]
    t0 = time.perf_counter()
    for spec in specs:  # first pass: compiles each bucket shape at batch size 1
        fit_bucket(spec)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for spec in specs:
        fit_bucket(spec)
    steady = time.perf_counter() - t0
    from jaxrev.batch import fit_accounts

    fit_accounts(subset, progress=False)  # the batch on the same subset: compile its shapes,
    t0 = time.perf_counter()
    steady_batch = fit_accounts(subset, progress=False)  # then time it steady
    batch = time.perf_counter() - t0
    row = {
        "accounts": len(specs),
        "loop_seconds_first": round(cold, 1),
        "loop_seconds_steady": round(steady, 1),
        "loop_accounts_per_s_steady": round(len(specs) / steady, 2),
        "batch_seconds_steady_same_subset": round(batch, 1),
        "batch_accounts_per_s_steady_same_subset": round(len(specs) / batch, 2),
        "speedup_steady_vs_loop": round(steady / batch, 1),
        "batch_compiles_steady": steady_batch.report["compilations"]["backend_compiles"],
    }
    out["loop"] = row
    print(f"\n== loop of compiled single-account fits\n{json.dumps(row, indent=1)}", flush=True)


def run_stan(args, table: pd.DataFrame, batch_summary: pd.DataFrame, out: dict) -> None:
    import stan
    from revenue_vs_stan import STAN_PROGRAM, stan_data

    from jaxrev.batch import fit_accounts
    from jaxrev.data import load_revenue_data

    per = table[table["conversions"] > 0].groupby("account")["adset"].nunique()
    small = per[per <= 12].index.tolist()
    rng = np.random.default_rng(args.seed)
    ids = sorted(rng.choice(small, size=min(args.stan_subset, len(small)), replace=False))
    cwd = os.getcwd()
    zs, times, divergences = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for k, account in enumerate(ids):
                rows = table[table["account"] == account].drop(columns="account")
                data = load_revenue_data(rows)
                t0 = time.perf_counter()
                post = stan.build(STAN_PROGRAM, data=stan_data(data), random_seed=args.seed + k)
                fit = post.sample(num_chains=4, num_warmup=1000, num_samples=1000)
                times.append(time.perf_counter() - t0)
                divergences += int(fit.to_frame()["divergent__"].sum())
                stan_draws = np.asarray(fit["adset_mean"]).T
                ours = batch_summary.query("account == @account and level == 'adset'")
                sd = stan_draws.std(0, ddof=1)
                zs.extend(np.abs(ours["mean"].to_numpy() - stan_draws.mean(0)) / sd)
        finally:
            os.chdir(cwd)
    subset = table[table["account"].isin(ids)]
    t0 = time.perf_counter()
    fit_accounts(subset, progress=False)
    ours_seconds = time.perf_counter() - t0
    # Like for like: the batch's steady throughput over the population the Stan subset is drawn
    # from (every account of the skewed set with <= 12 ad sets), shapes already compiled.
    population = table[table["account"].isin(small)]
    fresh_start()
    fit_accounts(population, progress=False)
    t0 = time.perf_counter()
    steady_run = fit_accounts(population, progress=False)
    population_seconds = time.perf_counter() - t0
    population_compiles = steady_run.report["compilations"]["backend_compiles"]
    population_rate = len(small) / population_seconds
    stan_rate = len(ids) / sum(times)
    zs = np.asarray(zs)
    row = {
        "accounts": len(ids),
        "stan_seconds_total": round(sum(times), 1),
        "stan_accounts_per_s": round(len(ids) / sum(times), 3),
        "stan_first_account_s": round(times[0], 1),
        "stan_divergences": divergences,
        "batch_seconds_same_accounts": round(ours_seconds, 2),
        "batch_accounts_per_s_same_accounts": round(len(ids) / ours_seconds, 2),
        "batch_population_accounts": len(small),
        "batch_population_accounts_per_s_steady": round(population_rate, 2),
        "batch_population_compiles_steady": population_compiles,
        "speedup_steady_vs_stan": round(population_rate / stan_rate, 1),
        "adset_z_median": round(float(np.median(zs)), 3),
        "adset_z_p90": round(float(np.quantile(zs, 0.9)), 3),
        "adset_z_max": round(float(zs.max()), 3),
        "adsets_compared": len(zs),
    }
    out["stan"] = row
    print(f"\n== Stan loop\n{json.dumps(row, indent=1)}", flush=True)


def run_small(args, out: dict) -> None:
    from jaxrev.batch import fit_accounts

    fresh_start()
    table = small_accounts(args.small, args.seed + 1)
    info = describe(table)
    print(f"\n== small: {info}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = fit_accounts(table, out_dir=tmp, progress=args.progress)
        seconds = time.perf_counter() - t0
    row = {
        **info,
        "seconds_with_compile": round(seconds, 1),
        "accounts_per_s_with_compile": round(info["accounts"] / seconds, 2),
        "buckets": result.report["buckets"],
        "padding_efficiency": result.report["padding_efficiency"],
        "compilations": result.report["compilations"]["backend_compiles"],
        "peak_rss_mb": round(peak_rss_mb()),
        "ladder": ladder(result.status),
    }
    out["small"] = row
    print(json.dumps(row, indent=1), flush=True)


def run_steps(args, out: dict) -> None:
    """Cost of one vectorised SVI step against the batch size B for one bucket shape (the
    measured basis of the GPU estimate): if a step's time grows ~linearly in B the CPU is
    compute-bound, and the B = 1 time is the fixed per-step overhead."""
    import jax

    from jaxrev.batch import BatchOptions, load_accounts, stage_init, vectorised
    from jaxrev.batch.buckets import BucketShape, pad_account, stack_lanes
    from jaxrev.data import Columns
    from jaxrev.inference import svi_chunk
    from jaxrev.models import MultilevelPriors

    fresh_start()
    table = small_accounts(64, args.seed + 2)
    options = BatchOptions()
    priors = MultilevelPriors()
    accounts, _ = load_accounts(table, Columns(account="account"), "multilevel", priors, options)
    shape = BucketShape(128, 8, 4)
    lanes = []
    for a in accounts:
        d = a.data
        if d.num_observations <= 128 and d.num_adsets <= 8 and d.num_campaigns <= 4:
            lanes.append(pad_account(d.arrays, shape))
    svi = options.svi
    rows = []
    for size in (1, 8, 64, 256):
        arrays = stack_lanes(lanes[: min(size, len(lanes))], size)
        arrays = jax.tree.map(
            lambda x: np.asarray(x, np.float32) if np.asarray(x).dtype == np.float64 else x,
            arrays,
        )
        init = vectorised(stage_init, "multilevel", priors, svi, 0)
        chunk = vectorised(svi_chunk, "multilevel", priors, svi)
        state, _ = init(np.arange(size, dtype=np.uint32), arrays)
        state, losses = chunk(state, arrays)  # compile
        jax.block_until_ready(losses)
        t0 = time.perf_counter()
        repeats = 5
        for _ in range(repeats):
            state, losses = chunk(state, arrays)
        jax.block_until_ready(losses)
        per_step = (time.perf_counter() - t0) / (repeats * svi.window)
        rows.append(
            {"batch": size, "ms_per_step": round(1e3 * per_step, 4),
             "us_per_lane_step": round(1e6 * per_step / size, 2)}
        )  # fmt: skip
        print(rows[-1], flush=True)
    out["steps"] = {"shape": "128 obs x 8 adsets x 4 campaigns", "window": svi.window, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="skewed,loop,stan,small,steps")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--loop-subset", type=int, default=100)
    parser.add_argument("--stan-subset", type=int, default=30)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "output" / "revenue_batch.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    import jax

    sections = args.sections.split(",")
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "devices": jax.device_count(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every section, so a failure later loses nothing
        args.out.write_text(json.dumps(out, indent=2, default=str))

    table = summary = None
    if "skewed" in sections or "loop" in sections or "stan" in sections:
        table, first = run_skewed(args, out)
        summary = first.summary
        save()
    if "loop" in sections:
        run_loop(args, table, out)
        save()
    if "stan" in sections:
        run_stan(args, table, summary, out)
        save()
    if "small" in sections:
        run_small(args, out)
        save()
    if "steps" in sections:
        run_steps(args, out)
    save()
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
