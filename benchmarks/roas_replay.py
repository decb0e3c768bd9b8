"""ROAS budget allocation, offline: the day-by-day replay of Thompson sampling on ROAS against a
fixed split, CPA-only Thompson sampling and ROAS-greedy, on simulated markets with the truth known
(:mod:`jaxrev.roas.market`); plus the funnel's speed on many ad sets, the funnel on the real Kaggle
Facebook-ads table, and the replay's conjugate revenue stand-in against a jaxrev SVI fit.

Scenarios (12 ad sets in 3 campaigns, budget 1,000 a day, floors 1%, caps 50% unless said):

* ``differs``: stationary; revenue per conversion differs between ad sets (log-sd 0.3,
  correlation -0.5 with conversions per spend);
* ``differs_no_bounds``: the same markets without floors or caps (pure Thompson shares =
  probability of being best; greedy has no forced exploration);
* ``same``: stationary; every ad set earns the same per conversion;
* ``drift``: revenue per conversion differs and every log/logit rate and log revenue per
  conversion drifts (a random walk, sd 0.05 a day); policies with and without a discount
  half-life of 7 or 14 days.

Regret is against the oracle that knows each day's true ROAS (same floors and caps); revenue is
expected revenue given the truth (noise-free), summed over the days; intervals are 95% normal
intervals of the mean over seeds; "2nd/1st half" is the regret over the second half of the days
over the regret in the first (1: linear; well below 1: sublinear).

Usage: ``python benchmarks/roas_replay.py [--seeds 200] [--days 90] [--quick]``; prints tables
and writes ``benchmarks/output/roas_replay.json`` and ``roas_replay.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from jaxrev.roas.daily import load_daily
from jaxrev.roas.funnel import funnel_statistics
from jaxrev.roas.funnel_fit import fit_funnel
from jaxrev.roas.market import (
    Policy,
    ReplayOptions,
    RevenueStats,
    observe_day,
    plot_replay,
    replay,
    revenue_mean_draws,
    revenue_statistics,
    simulate_market,
)

OUT = Path(__file__).resolve().parent / "output"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MARKET = {"adsets_per_campaign": (4, 4, 4)}
SETTINGS = ReplayOptions(budget=1000.0, min_share=0.01, max_share=0.5, num_draws=400)

STATIONARY = (
    Policy("fixed split", "fixed"),
    Policy("CPA Thompson", "cpa_thompson"),
    Policy("ROAS greedy", "roas_greedy"),
    Policy("ROAS Thompson", "roas_thompson"),
    Policy("ROAS ∝ P(best)", "roas_thompson", rule="proportional"),
    Policy("ROAS ∝ P(best)^0.5", "roas_thompson", rule="proportional", power=0.5),
)
DRIFTING = (
    Policy("fixed split", "fixed"),
    Policy("CPA Thompson, h=7", "cpa_thompson", half_life=7.0),
    Policy("ROAS greedy, h=7", "roas_greedy", half_life=7.0),
    Policy("ROAS Thompson, no discount", "roas_thompson"),
    Policy("ROAS Thompson, h=7", "roas_thompson", half_life=7.0),
    Policy("ROAS Thompson, h=14", "roas_thompson", half_life=14.0),
)
FREE = SETTINGS._replace(min_share=0.0, max_share=1.0)
SCENARIOS = {
    "differs": ({}, STATIONARY, SETTINGS, ("ROAS Thompson", "CPA Thompson")),
    "differs_no_bounds": ({}, STATIONARY[:4], FREE, ("ROAS Thompson", "CPA Thompson")),
    "same": ({"revenue_spread": 0.0}, STATIONARY, SETTINGS, ("ROAS Thompson", "CPA Thompson")),
    "drift": (
        {"drift": 0.05, "persistence": 1.0},
        DRIFTING,
        SETTINGS,
        ("ROAS Thompson, h=7", "CPA Thompson, h=7"),
    ),
}


def run_scenarios(seeds: int, days: int) -> tuple[dict, dict]:
    results, payload = {}, {}
    for i, (name, (market, policies, settings, pair)) in enumerate(SCENARIOS.items()):
        truth = simulate_market(100 + i, num_seeds=seeds, num_days=days, **MARKET, **market)
        result = replay(truth, policies, settings, seed=100 + i)
        table = result.table()
        comparisons = {f"{pair[0]} - {pair[1]}": result.compare(*pair)}
        if name == "drift":
            comparisons["h=7 - no discount"] = result.compare(
                "ROAS Thompson, h=7", "ROAS Thompson, no discount"
            )
        print(
            f"\n### {name}: {seeds} seeds x {days} days, floors {settings.min_share:g}, caps "
            f"{settings.max_share:g}; replay {result.seconds:.1f} s"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
        for label, c in comparisons.items():
            print(
                f"{label}: {c['mean']:+,.0f} [{c['low']:+,.0f}, {c['high']:+,.0f}] "
                f"({100 * c['relative']:+.2f}%)"
            )
        results[name] = result
        payload[name] = {
            "market": market,
            "min_share": settings.min_share,
            "max_share": settings.max_share,
            "seconds": result.seconds,
            "table": table.to_dict(orient="records"),
            "comparisons": comparisons,
            "oracle_revenue": float(result.oracle_revenue.sum(-1).mean()),
        }
    return results, payload


def funnel_speed(num_adsets: int = 10_000, num_days: int = 30) -> dict:
    """fit_funnel on num_adsets ad sets (200 campaigns) x num_days days."""
    rng = np.random.default_rng(0)
    campaign = rng.integers(0, 200, num_adsets)
    rows = num_adsets * num_days
    adset = np.repeat(np.arange(num_adsets), num_days)
    spend = rng.uniform(5, 200, rows)
    imp = rng.poisson(rng.gamma(20, 5, num_adsets)[adset] * spend)
    clicks = rng.binomial(imp, rng.beta(10, 990, num_adsets)[adset])
    conv = rng.binomial(clicks, rng.beta(3, 97, num_adsets)[adset])
    table = pd.DataFrame(
        {
            "campaign": campaign[adset].astype(str),
            "adset": adset.astype(str),
            "day": np.tile(np.arange(num_days), num_adsets),
            "spend": spend,
            "impressions": imp,
            "clicks": clicks,
            "conversions": conv,
        }
    )
    t0 = time.perf_counter()
    data = load_daily(table)
    t1 = time.perf_counter()
    funnel = fit_funnel(data, half_life=7)
    t2 = time.perf_counter()
    funnel.sample(0, 1000)
    t3 = time.perf_counter()
    stats = funnel_statistics(adset, num_adsets, spend, imp, clicks, conv)
    assert stats.spend.shape == (num_adsets,)
    out = {
        "adsets": num_adsets,
        "days": num_days,
        "rows": rows,
        "load_seconds": t1 - t0,
        "fit_seconds": t2 - t1,
        "draws_1000_seconds": t3 - t2,
        "converged": funnel.status.all_converged,
        "newton_steps": funnel.status.num_steps,
    }
    print(
        f"\n### funnel speed: {num_adsets:,} ad sets x {num_days} days ({rows:,} rows): "
        f"read+check {out['load_seconds']:.2f} s, empirical Bayes + posterior "
        f"{out['fit_seconds']:.2f} s, 1000 draws {out['draws_1000_seconds']:.2f} s; "
        f"converged {out['converged']}, Newton steps {out['newton_steps']}"
    )
    return out


def kaggle_funnel() -> dict | None:
    path = SHARED / "kag_conversion_data_fb_ads.csv"
    if not path.exists():
        print(f"\n(skipping the Kaggle funnel: {path} not found)")
        return None
    data = load_daily(path, conversions_per="impression")
    funnel = fit_funnel(data)
    priors = funnel.priors_table()
    print(f"\n### Kaggle Facebook ads (real): {data}")
    print(priors.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return {"report": data.report, "priors": priors.to_dict(orient="records")}


def stand_in_vs_jaxrev(days: int = 30) -> dict:
    """One simulated market, even split for ``days`` days: the replay's conjugate revenue
    posterior against a jaxrev SVI fit (multilevel) of the same daily revenue."""
    from jaxrev.inference import fit

    truth = simulate_market(7, num_seeds=1, num_days=days, **MARKET)
    rng = np.random.default_rng(7)
    spend = np.full((1, truth.num_adsets), 1000.0 / truth.num_adsets)
    prec = np.zeros((1, truth.num_adsets))
    weighted = np.zeros_like(prec)
    rows = []
    for t in range(days):
        obs = observe_day(rng, truth, t, spend)
        s = revenue_statistics(obs.conversions, obs.revenue, truth.revenue_sigma)
        prec, weighted = prec + s.precision, weighted + s.weighted
        for a in range(truth.num_adsets):
            rows.append(
                {
                    "campaign": f"c{truth.adset_campaign[a]}",
                    "adset": f"a{a:02d}",
                    "day": t,
                    "conversions": int(obs.conversions[0, a]),
                    "revenue": float(obs.revenue[0, a]),
                }
            )
    stand_in = revenue_mean_draws(rng, RevenueStats(prec, weighted), truth.revenue_sigma, 4000)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        svi = fit(pd.DataFrame(rows), "svi", seed=0, progress=False)
    jax_draws = svi.flat_draws("adset_mean")
    ours, theirs = stand_in.mean(0), jax_draws.mean(0)
    true = truth.revenue_per_conversion[0, 0]
    out = {
        "conversions": int(sum(r["conversions"] for r in rows)),
        "svi_converged": bool(svi.diagnostics.converged),
        "mean_abs_log_diff": float(np.mean(np.abs(np.log(ours / theirs)))),
        "sd_ratio_median": float(np.median(stand_in.std(0) / jax_draws.std(0))),
        "stand_in_mean_abs_log_error": float(np.mean(np.abs(np.log(ours / true)))),
        "jaxrev_mean_abs_log_error": float(np.mean(np.abs(np.log(theirs / true)))),
        "svi_sigma_mean": float(svi.flat_draws("revenue_sigma").mean()),
        "true_sigma": truth.revenue_sigma,
    }
    print(
        f"\n### revenue stand-in vs jaxrev SVI ({out['conversions']} conversions, {days} days): "
        f"mean |log ratio| of ad-set means {out['mean_abs_log_diff']:.3f}, median sd ratio "
        f"{out['sd_ratio_median']:.2f}; error vs truth: stand-in "
        f"{out['stand_in_mean_abs_log_error']:.3f}, jaxrev {out['jaxrev_mean_abs_log_error']:.3f}"
        f"; SVI sigma {out['svi_sigma_mean']:.3f} (true {out['true_sigma']})"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--quick", action="store_true", help="20 seeds x 30 days, small funnel")
    args = parser.parse_args()
    seeds, days = (20, 30) if args.quick else (args.seeds, args.days)
    OUT.mkdir(exist_ok=True)
    start = time.perf_counter()
    results, payload = run_scenarios(seeds, days)
    speed = funnel_speed(1_000 if args.quick else 10_000)
    kaggle = kaggle_funnel()
    check = stand_in_vs_jaxrev()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, result in results.items():
        fig = plot_replay(result, title=f"{name}: {seeds} seeds x {days} days")
        fig.savefig(OUT / f"roas_replay_{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    import jax

    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "jax": jax.__version__,
        },
        "seeds": seeds,
        "days": days,
        "settings": SETTINGS._asdict() | {"hyper": SETTINGS.hyper._asdict()},
        "scenarios": payload,
        "funnel_speed": speed,
        "kaggle": kaggle,
        "stand_in_vs_jaxrev": check,
        "seconds": time.perf_counter() - start,
    }
    (OUT / "roas_replay.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{result['seconds']:.0f} s; wrote {OUT / 'roas_replay.json'} and the plots")


if __name__ == "__main__":
    main()
