"""The revenue model against the seed's Stan program: agreement and speed.

Runs the seed's multilevel program (``benchmarks/stan/multilevel.stan``, ported to current
Stan) with pystan's NUTS 4 x (1000 warm-up + 1000), and this package's NUTS (same settings) and
SVI (three guides) on the same simulated accounts:

* ``medium``: the bundled simulated account (5 campaigns, 19 ad sets, 282 hourly rows);
* ``heavy_tail``: the seed's example: one ad set with nine $10 purchases and one $1000, one
  with ten purchases near $20, beside two simulated campaigns.

Reported per quantity (every ``adset_mean`` and ``campaign_mean``): |Δ posterior mean| / Stan sd
and the sd ratio (ours / Stan), plus build/compile and sampling times. Times are wall-clock on
this machine, in one run; compare ratios, not absolute numbers.

Usage (needs the ``stan`` extra, ~1 minute and ~2 GB for Stan's first compile)::

    python benchmarks/revenue_vs_stan.py [--out benchmarks/output/revenue_vs_stan.json]
"""

from __future__ import annotations

import os

# Four CPU devices so that NumPyro can also run its 4 chains in parallel (pmap); must be set
# before JAX starts. The vectorized runs use one device.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
STAN_PROGRAM = (HERE / "stan" / "multilevel.stan").read_text()
WARMUP, SAMPLES, CHAINS = 1000, 1000, 4


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def medium_case() -> pd.DataFrame:
    from jaxrev.datasets import load_simulated_account

    return load_simulated_account()


def heavy_tail_case() -> pd.DataFrame:
    from jaxrev.simulate import simulate_account

    rng = np.random.default_rng(5)
    rows = []
    for h, value in enumerate([10.0] * 9 + [1000.0]):
        rows.append(("seed_example", "nine_10_one_1000", h, 1, value))
    for h in range(10):
        rows.append(("seed_example", "ten_near_20", h, 1, float(20 * np.exp(0.1 * rng.normal()))))
    sim = simulate_account(
        8,
        (3, 3),
        num_hours=16,
        account_mu=np.log(20.0),
        account_mu_sd=0.2,
        campaign_mu_sd=0.1,
        revenue_sigma=1.0,
    )
    rest = sim.table[["campaign", "adset", "hour", "conversions", "revenue"]]
    extra = pd.DataFrame(rows, columns=["campaign", "adset", "hour", "conversions", "revenue"])
    return pd.concat([extra, rest], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Stan (pystan 3)
# ---------------------------------------------------------------------------------------------


def stan_data(data) -> dict:
    a = data.arrays
    return {
        "adsets": data.num_adsets,
        "campaigns": data.num_campaigns,
        "adset2campaign": (np.asarray(a.adset_campaign) + 1).tolist(),
        "observations": data.num_observations,
        "observation_adset": (np.asarray(a.adset) + 1).tolist(),
        "observation_conversion_count": np.asarray(a.conversions).tolist(),
        "observation_conversion_revenue": np.exp(np.asarray(a.log_revenue)).tolist(),
    }


def run_stan(data, seed: int) -> dict:
    import stan  # pystan 3

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:  # pystan writes build/ into the working dir
        os.chdir(tmp)
        try:
            t0 = time.perf_counter()
            posterior = stan.build(STAN_PROGRAM, data=stan_data(data), random_seed=seed)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            fit = posterior.sample(num_chains=CHAINS, num_warmup=WARMUP, num_samples=SAMPLES)
            sample = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
    frame = fit.to_frame()
    draws = {
        "adset_mean": np.asarray(fit["adset_mean"]).T,  # (draws, adsets)
        "campaign_mean": np.asarray(fit["campaign_mean"]).T,
    }
    return {
        "draws": draws,
        "build_seconds": build,
        "sample_seconds": sample,
        "divergences": int(frame["divergent__"].sum()),
    }


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def compare(result, stan: dict, labels: dict) -> pd.DataFrame:
    rows = []
    for name in ("campaign_mean", "adset_mean"):
        ours = result.flat_draws(name)
        ref = stan["draws"][name]
        for j, label in enumerate(labels[name]):
            sd = ref[:, j].std(ddof=1)
            rows.append(
                {
                    "quantity": f"{name}[{label}]",
                    "stan_mean": ref[:, j].mean(),
                    "stan_sd": sd,
                    "mean": ours[:, j].mean(),
                    "sd": ours[:, j].std(ddof=1),
                    "z": abs(ours[:, j].mean() - ref[:, j].mean()) / sd,
                    "sd_ratio": ours[:, j].std(ddof=1) / sd,
                }
            )
    return pd.DataFrame(rows)


def summarize(name: str, table: pd.DataFrame, seconds: dict, extra: dict) -> dict:
    return {
        "method": name,
        "median_z": float(table["z"].median()),
        "max_z": float(table["z"].max()),
        "p95_z": float(table["z"].quantile(0.95)),
        "min_sd_ratio": float(table["sd_ratio"].min()),
        "max_sd_ratio": float(table["sd_ratio"].max()),
        **{k: round(v, 2) for k, v in seconds.items()},
        **extra,
    }


def run_case(case: str, frame: pd.DataFrame, seed: int) -> tuple[list[dict], dict]:
    from jaxrev import fit, load_revenue_data

    data = load_revenue_data(frame)
    labels = {
        "adset_mean": data.adsets["adset"].tolist(),
        "campaign_mean": data.campaigns["campaign"].tolist(),
    }
    print(
        f"\n== {case}: {data.num_observations} rows, {data.num_adsets} ad sets, "
        f"{data.num_campaigns} campaigns ==",
        flush=True,
    )
    stan = run_stan(data, seed)
    print(
        f"stan: build {stan['build_seconds']:.1f} s, sample {stan['sample_seconds']:.1f} s, "
        f"{stan['divergences']} divergences",
        flush=True,
    )
    rows, tables = [], {}
    rows.append(
        {
            "method": "stan NUTS (pystan)",
            "first_call_s": round(stan["build_seconds"] + stan["sample_seconds"], 2),
            "steady_s": round(stan["sample_seconds"], 2),
            "divergences": stan["divergences"],
        }
    )
    common = dict(num_warmup=WARMUP, num_samples=SAMPLES, num_chains=CHAINS, progress=False)
    for chain_method in ("vectorized", "parallel"):
        timings = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for k in range(2):  # first call compiles; the second is steady state
                t0 = time.perf_counter()
                result = fit(data, "nuts", seed=seed + k, chain_method=chain_method, **common)
                timings.append(time.perf_counter() - t0)
        table = compare(result, stan, labels)
        name = f"numpyro NUTS ({chain_method})"
        tables[name] = table
        d = result.diagnostics.details
        rows.append(
            summarize(
                name,
                table,
                {"first_call_s": timings[0], "steady_s": timings[1]},
                {"divergences": d["num_divergent"], "max_rhat": round(d["max_rhat"], 4)},
            )
        )
        print(rows[-1], flush=True)
    for guide in ("meanfield", "fullrank", "lowrank"):
        timings = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for k in range(2):
                t0 = time.perf_counter()
                result = fit(data, "svi", guide=guide, seed=seed + k, progress=False)
                timings.append(time.perf_counter() - t0)
        table = compare(result, stan, labels)
        name = f"numpyro SVI ({guide})"
        tables[name] = table
        rows.append(
            summarize(
                name,
                table,
                {"first_call_s": timings[0], "steady_s": timings[1]},
                {"steps": result.diagnostics.num_steps, "converged": result.diagnostics.converged},
            )
        )
        print(rows[-1], flush=True)
    return rows, {k: v.to_dict(orient="records") for k, v in tables.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "output" / "revenue_vs_stan.json")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--cases", default="medium,heavy_tail")
    args = parser.parse_args()
    import jax

    makers = {"medium": medium_case, "heavy_tail": heavy_tail_case}
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(),
            "jax_devices": jax.device_count(),
            "jax": jax.__version__,
        },
        "settings": {"warmup": WARMUP, "samples": SAMPLES, "chains": CHAINS, "seed": args.seed},
        "cases": {},
    }
    for case in args.cases.split(","):
        rows, tables = run_case(case, makers[case](), args.seed)
        results["cases"][case] = {"summary": rows, "per_quantity": tables}
        frame = pd.DataFrame(rows).set_index("method")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(f"\n{case}\n{frame.round(3).to_string()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
