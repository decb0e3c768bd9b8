"""The seed's next models on the real UCI Online Retail account: PSIS-LOO, held-out calibration
on the later hours, and what the choice changes in the ranking of countries.

Usage: ``python benchmarks/revenue_models_uci.py [--method svi|nuts] [--guide fullrank]``;
prints the tables and writes ``benchmarks/output/revenue_models_uci_<method>/`` (the CSVs and
the model-check figures of :func:`jaxrev.compare.write_comparison`) and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats

from jaxrev.compare import compare_models, write_comparison
from jaxrev.data import Columns, load_revenue_data
from jaxrev.datasets import load_bundled

OUT = Path(__file__).resolve().parent / "output"
MODELS = ("multilevel", "hier_sigma", "student_t", "local_level")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("svi", "nuts"), default="svi")
    parser.add_argument("--guide", default="fullrank")
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args()
    data = load_revenue_data(load_bundled("uci_online_retail"), Columns(time="hour"))
    options = (
        {"guide": args.guide}
        if args.method == "svi"
        else {"num_chains": 4, "num_warmup": 1000, "num_samples": args.num_samples}
    )
    t0 = time.perf_counter()
    report = compare_models(data, MODELS, args.method, progress=print, **options)
    seconds = time.perf_counter() - t0
    tag = f"{args.method}" + (f"_{args.guide}" if args.method == "svi" else "")
    written = write_comparison(report, OUT / f"revenue_models_uci_{tag}")
    print(report.loo)
    calibration = report.calibration_table()
    print(calibration.to_string(float_format=lambda v: f"{v:.3f}"))
    ranking = report.ranking()
    big = ranking[ranking["n_obs"] >= 40]
    rho = {
        m: float(stats.spearmanr(big["rank_multilevel"], big[f"rank_{m}"]).statistic)
        for m in MODELS
    }
    print("Spearman rank correlation with multilevel (countries with >= 40 hours):", rho)
    cols = ["campaign", "n_obs", "raw_mean"] + [f"mean_{m}" for m in MODELS]
    print(ranking[cols].head(15).to_string(float_format=lambda v: f"{v:,.0f}"))
    inside = {}
    for name, fit in report.fits.items():
        s = fit.summary()
        s = s[(s["level"] == "adset")].set_index("adset").loc[big.index]
        inside[name] = float(np.mean((s["raw_mean"] >= s["q2.5"]) & (s["raw_mean"] <= s["q97.5"])))
    print("share of countries (>= 40 hours) whose raw mean is inside the 95% interval:", inside)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "method": args.method,
        "options": options,
        "seconds": seconds,
        "loo": report.loo.table.reset_index().to_dict(orient="records"),
        "calibration": calibration.reset_index().to_dict(orient="records"),
        "rank_correlation": rho,
        "raw_mean_inside_95": inside,
        "files": {k: str(v) for k, v in written.items()},
    }
    (OUT / f"revenue_models_uci_{tag}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"{seconds:.0f} s")


if __name__ == "__main__":
    main()
