"""``jaxrev`` command line: ``jaxrev fit DATA --method svi|nuts|map --out DIR``.

DATA is a CSV/TSV/Parquet file or ``bundled:NAME`` (``jaxrev datasets`` lists them). No model
logic lives here: arguments become a call to :func:`jaxrev.fit` and :meth:`RevenueFit.save`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BUNDLED_PREFIX = "bundled:"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrev",
        description="Multilevel log-normal revenue-per-conversion model (NumPyro, JAX).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    f = sub.add_parser("fit", help="fit one account and write summary, InferenceData and plots")
    f.add_argument("data", help="CSV/TSV/Parquet file, or bundled:NAME")
    f.add_argument("--out", required=True, type=Path, help="output directory")
    f.add_argument("--method", choices=("svi", "nuts", "map"), default="svi")
    f.add_argument("--model", choices=("multilevel", "no_pooling"), default="multilevel")
    f.add_argument(
        "--guide",
        choices=("meanfield", "fullrank", "lowrank"),
        default=None,
        help="SVI guide (default meanfield)",
    )
    f.add_argument("--seed", type=int, default=0)
    cols = f.add_argument_group("columns")
    cols.add_argument("--adset-col", default="adset")
    cols.add_argument("--campaign-col", default="campaign")
    cols.add_argument("--conversions-col", default="conversions")
    cols.add_argument("--revenue-col", default="revenue")
    cols.add_argument("--account-col", default=None, help="account column, if any")
    cols.add_argument("--time-col", default=None, help="time column, if any (kept in outputs)")
    cols.add_argument("--account", default=None, help="fit only this account")
    f.add_argument(
        "--on-invalid",
        choices=("raise", "drop"),
        default="raise",
        help="stop on invalid rows (default) or drop and list them",
    )
    nuts = f.add_argument_group("NUTS")
    nuts.add_argument("--num-chains", type=int, default=None)
    nuts.add_argument("--num-warmup", type=int, default=None)
    nuts.add_argument("--num-samples", type=int, default=None)
    nuts.add_argument("--target-accept", type=float, default=None, dest="target_accept_prob")
    svi = f.add_argument_group("SVI / MAP")
    svi.add_argument("--max-steps", type=int, default=None)
    svi.add_argument("--num-draws", type=int, default=1000, help="draws from the SVI guide")
    f.add_argument("--no-plots", action="store_true")
    f.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("datasets", help="list the bundled data sets")
    return parser


def _load(spec: str):
    if spec.startswith(BUNDLED_PREFIX):
        from jaxrev.datasets import load_bundled

        return load_bundled(spec[len(BUNDLED_PREFIX) :])
    return Path(spec)


def _overrides(args) -> dict:
    names = {
        "nuts": ("num_chains", "num_warmup", "num_samples", "target_accept_prob"),
        "svi": ("max_steps",),
        "map": ("max_steps",),
    }[args.method]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    ignored = [
        n
        for n in ("num_chains", "num_warmup", "num_samples", "target_accept_prob", "max_steps")
        if n not in names and getattr(args, n) is not None
    ]
    if ignored:
        print(f"note: {', '.join(ignored)} do not apply to --method {args.method}", file=sys.stderr)
    return given


def _cpu_devices_for_chains(args) -> None:
    """Let NUTS run its chains in parallel on CPU cores: ask XLA for one host device per chain
    (only before JAX starts; no effect on GPU, where the chains are vectorised on the device).
    Measured on 2 cores, 4 chains: 1.8 s in parallel vs 4.3 s vectorised (benchmarks/RESULTS.md)."""
    if args.method != "nuts" or "xla_force_host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    ):
        return
    import numpyro

    numpyro.set_host_device_count(args.num_chains or 4)


def _fit(args) -> int:
    _cpu_devices_for_chains(args)
    from jaxrev.data import Columns, InvalidDataError, load_revenue_data
    from jaxrev.inference import fit

    columns = Columns(
        adset=args.adset_col,
        campaign=args.campaign_col,
        conversions=args.conversions_col,
        revenue=args.revenue_col,
        account=args.account_col,
        time=args.time_col,
    )
    try:
        data = load_revenue_data(
            _load(args.data), columns, account=args.account, on_invalid=args.on_invalid
        )
    except (InvalidDataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(data.report)
    print(
        f"{data.num_observations} observations, {data.num_adsets} ad sets, "
        f"{data.num_campaigns} campaigns; fitting {args.model} with {args.method}..."
    )
    result = fit(
        data,
        args.method,
        model=args.model,
        guide=args.guide,
        seed=args.seed,
        num_draws=args.num_draws,
        progress=not args.quiet,
        **_overrides(args),
    )
    written = result.save(args.out, plots=not args.no_plots)
    d = result.diagnostics
    status = "converged" if d.converged else "NOT converged"
    print(f"{d.method}: {status} in {d.seconds:.1f} s ({d.num_steps} steps)")
    for message in d.messages:
        print(f"  - {message}")
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_columns", 20):
        table = result.summary()
        shown = ["level", "campaign", "adset", "n_obs", "raw_mean", "mean", "q2.5", "q97.5"]
        print(table[shown].round(2).to_string(index=False, max_rows=40))
    for name, path in written.items():
        print(f"wrote {name}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "datasets":
        from jaxrev.datasets import DESCRIPTIONS

        for name, description in DESCRIPTIONS.items():
            print(f"bundled:{name:20s} {description}")
        return 0
    return _fit(args)


if __name__ == "__main__":
    raise SystemExit(main())
