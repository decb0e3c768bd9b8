"""Imputation of missing stargazer locations on simulated repositories with the truth known:
the Poisson dynamic factor model against the seed's baseline (one distribution for all windows).

For each seed and each setting (drift / no drift), a repository is simulated
(:func:`jaxssm.stargazers.simulate_stargazers`: 36 monthly windows, ~300 stargazers a window,
hidden-location rate rising from 20% to 60%), the whole analysis runs (:func:`analyze`: the
homogeneity test, q by 5-fold cross-validation over q in 0..2, 500 imputations), and we score

* coverage: the share of countries whose true total is inside the 90% interval of the completed
  total (observed + imputed);
* error: sum over countries of |imputed mean − what the truth expects of the hidden stargazers|
  ($\\sum_i U_i p_i(\\ell)$ with the true $p_i$), per hidden stargazer;
* the homogeneity test's rejections at 5% and the q chosen.

Usage: ``python benchmarks/stargazers_imputation.py [--seeds 10] [--quick]``; prints a table
and writes ``benchmarks/output/stargazers_imputation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

jax.config.update("jax_enable_x64", True)

from jaxssm.stargazers.analysis import AnalysisOptions, analyze  # noqa: E402
from jaxssm.stargazers.simulate import imputation_scores, simulate_stargazers  # noqa: E402

OUT = Path(__file__).resolve().parent / "output"


def score(sim, analysis) -> dict:
    row = {}
    for name, imp in (("model", analysis.imputation), ("baseline", analysis.baseline)):
        scores = imputation_scores(sim, imp, 0.9)
        row[f"{name}_coverage"], row[f"{name}_error"] = scores["coverage"], scores["error"]
    row["homogeneity_p"] = float(analysis.homogeneity.p_value)
    row["q"] = int(analysis.selection.best)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 seeds, 200 imputations")
    args = parser.parse_args()
    seeds = 3 if args.quick else args.seeds
    settings = AnalysisOptions(
        candidates=(0, 1, 2),
        num_imputations=200 if args.quick else 500,
        homogeneity_draws=499,
        max_iterations=300,
        horizon=1,
    )
    rows = []
    OUT.mkdir(exist_ok=True)
    start = time.perf_counter()
    for drift in (True, False):
        for seed in range(seeds):
            t0 = time.perf_counter()
            sim = simulate_stargazers(
                seed, drift=drift, num_windows=36, mean_total=300.0, hidden_rate=(0.2, 0.6)
            )
            run = AnalysisOptions(**{**vars(settings), "seed": seed})
            analysis = analyze(sim.table, created_at=sim.created_at, settings=run)
            rows.append(
                {
                    "drift": drift,
                    "seed": seed,
                    **score(sim, analysis),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby("drift").agg(
        model_coverage=("model_coverage", "mean"),
        baseline_coverage=("baseline_coverage", "mean"),
        model_error=("model_error", "mean"),
        baseline_error=("baseline_error", "mean"),
        error_ratio=(
            "model_error",
            lambda s: float(np.mean(s / frame.loc[s.index, "baseline_error"])),
        ),
        rejections=("homogeneity_p", lambda p: float(np.mean(p < 0.05))),
        q_dynamic=("q", lambda q: float(np.mean(q > 0))),
    )
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "seconds": time.perf_counter() - start,
        "rows": rows,
        "summary": summary.reset_index().to_dict(orient="records"),
    }
    (OUT / "stargazers_imputation.json").write_text(json.dumps(result, indent=2))
    print(f"{time.perf_counter() - start:.0f} s; wrote {OUT / 'stargazers_imputation.json'}")


if __name__ == "__main__":
    main()
