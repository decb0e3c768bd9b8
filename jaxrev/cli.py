"""``jaxrev`` command line: ``jaxrev fit DATA --method svi|nuts|map --out DIR``, ``jaxrev batch``,
``jaxrev allocate DAILY --revenue-fit DIR --budget B --out DIR``,
``jaxrev compare DATA --models ...``.

DATA is a CSV/TSV/Parquet file or ``bundled:NAME`` (``jaxrev datasets`` lists them). No model
logic lives here: arguments become a call to :func:`jaxrev.fit` and :meth:`RevenueFit.save`, to
:func:`jaxrev.batch.fit_accounts`, :func:`jaxrev.roas.cli.run_allocate` or
:func:`jaxrev.compare.compare_models`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxrev.models import DEFAULT_MODEL, MODELS

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
    f.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL)
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

    b = sub.add_parser(
        "batch", help="fit many accounts (vectorised SVI, fallbacks, resumable output)"
    )
    b.add_argument(
        "data", help="long table with an account column, or a folder of per-account files"
    )
    b.add_argument("--out", required=True, type=Path, help="output directory (resumes from it)")
    b.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL)
    b.add_argument("--seed", type=int, default=0)
    bcols = b.add_argument_group("columns")
    bcols.add_argument("--account-col", default="account")
    bcols.add_argument("--adset-col", default="adset")
    bcols.add_argument("--campaign-col", default="campaign")
    bcols.add_argument("--conversions-col", default="conversions")
    bcols.add_argument("--revenue-col", default="revenue")
    b.add_argument(
        "--on-invalid",
        choices=("raise", "drop"),
        default="raise",
        help="an account with invalid rows fails (default) or loses those rows",
    )
    b.add_argument("--max-steps", type=int, default=None, help="SVI steps before fallbacks")
    b.add_argument("--max-batch", type=int, default=None, help="most accounts per batch")
    b.add_argument("--no-nuts", action="store_true", help="skip the NUTS fallback")
    b.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address (tcp://host:8786), or 'local' / 'local:N' for "
        "a local cluster of N worker processes",
    )
    b.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="persistent compilation cache (default ~/.cache/jaxrev/xla)",
    )
    b.add_argument("--no-cache", action="store_true", help="no persistent compilation cache")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    from jaxrev.roas.cli import add_allocate_parser

    add_allocate_parser(sub)
    _add_compare(
        sub.add_parser(
            "compare",
            help="compare revenue models: PSIS-LOO, calibration on later hours, model checks",
            description="Fits each model on all rows (PSIS-LOO, with Pareto-k and the standard "
            "error of each difference) and on the rows up to a time quantile (coverage of the "
            "later hours' predictive intervals, PIT); writes the tables and one figure per model.",
        )
    )
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
    from jaxrev.data import Columns, load_revenue_data
    from jaxrev.errors import InvalidDataError
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
    status = "converged" if result.converged else "NOT converged"
    print(f"{d.method}: {status} in {d.seconds:.1f} s ({d.num_steps} steps)")
    for message in result.messages:
        print(f"  - {message}")
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_columns", 20):
        table = result.summary()
        shown = ["level", "campaign", "adset", "n_obs", "raw_mean", "mean", "q2.5", "q97.5"]
        print(table[shown].round(2).to_string(index=False, max_rows=40))
    for name, path in written.items():
        print(f"wrote {name}: {path}")
    return 0


def _batch(args) -> int:
    from dataclasses import replace

    from jaxrev.batch import BatchOptions, fit_accounts
    from jaxrev.compile_cache import enable_compilation_cache, hash_seed_is_fixed
    from jaxrev.data import Columns

    if not args.no_cache:
        path = enable_compilation_cache(args.cache_dir)
        print(f"compilation cache: {path}")
        if not hash_seed_is_fixed():
            print(
                "note: PYTHONHASHSEED is not fixed; the cache will miss across processes",
                file=sys.stderr,
            )
    options = BatchOptions(seed=args.seed, nuts=not args.no_nuts)
    if args.max_steps is not None:
        options = replace(options, svi=replace(options.svi, max_steps=args.max_steps))
    if args.max_batch is not None:
        options = replace(options, max_batch=args.max_batch)
    columns = Columns(
        adset=args.adset_col,
        campaign=args.campaign_col,
        conversions=args.conversions_col,
        revenue=args.revenue_col,
        account=args.account_col,
    )
    executor, cluster = None, None
    if args.scheduler:
        from distributed import Client, LocalCluster

        if args.scheduler.startswith("local"):
            workers = int(args.scheduler.split(":")[1]) if ":" in args.scheduler else None
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
            executor = Client(cluster)
        else:
            executor = Client(args.scheduler)
        print(f"dask: {executor}")
    try:
        result = fit_accounts(
            args.data if Path(args.data).exists() else _load(args.data),
            out_dir=args.out,
            columns=columns,
            model=args.model,
            options=options,
            executor=executor,
            progress=not args.quiet,
            on_invalid=args.on_invalid,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if executor is not None:
            executor.close()
        if cluster is not None:
            cluster.close()
    r = result.report
    print(
        f"{r['accounts']} accounts ({r['fitted_now']} fitted now, {r['skipped_done']} already "
        f"done, {r['invalid']} invalid) in {r['seconds']:.1f} s; statuses: {r['status_counts']}"
    )
    print(f"compilations: {r['compilations']}; padding efficiency {r['padding_efficiency']}")
    print(f"wrote {args.out / 'status.csv'}, {args.out / 'summary.csv'}, {args.out / 'run.json'}")
    return 0


def _add_compare(parser) -> None:
    """The ``jaxrev compare`` arguments (see :func:`_compare`)."""
    parser.add_argument("data", help="CSV/TSV/Parquet file with a time column, or bundled:NAME")
    parser.add_argument(
        "--models",
        default=",".join(name for name, spec in MODELS.items() if spec.has_campaign_level),
        help=f"comma-separated, from {', '.join(MODELS)} (default: those with a campaign level)",
    )
    parser.add_argument("--method", choices=("nuts", "svi"), default="nuts")
    parser.add_argument("--guide", choices=("meanfield", "fullrank", "lowrank"), default=None)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--time-col", default="hour", help="time column (default hour)")
    parser.add_argument("--split", type=float, default=0.75, help="time quantile of the split")
    parser.add_argument("--level", type=float, default=0.9, help="interval probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-chains", type=int, default=None)
    parser.add_argument("--num-warmup", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")


def _compare(args) -> int:
    """Fit the models, print the PSIS-LOO and calibration tables, write the files."""
    from jaxrev.checks import time_split
    from jaxrev.compare import compare_models, write_comparison
    from jaxrev.data import Columns, load_revenue_data
    from jaxrev.errors import InvalidDataError

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        print(f"error: unknown model(s) {unknown}; choose from {sorted(MODELS)}", file=sys.stderr)
        return 2
    try:
        data = load_revenue_data(_load(args.data), Columns(time=args.time_col))
        time_split(data, args.split)
    except (InvalidDataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = {}
    if args.method == "nuts":
        options = {
            k: getattr(args, k)
            for k in ("num_chains", "num_warmup", "num_samples")
            if getattr(args, k) is not None
        }
    elif args.guide:
        options["guide"] = args.guide
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    report = compare_models(
        data,
        models,
        args.method,
        split=args.split,
        level=args.level,
        seed=args.seed,
        progress=say,
        **options,
    )
    written = write_comparison(report, args.out)
    print("PSIS-LOO (higher elpd is better; dse = standard error of the difference from the best)")
    print(report.loo)
    print(
        f"\nCalibration on the hours after the {args.split:.0%} time quantile "
        f"(fitted on the earlier ones), {args.level:.0%} intervals:"
    )
    print(report.calibration_table().to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {len(written)} files to {args.out}")
    return 0


def _reexec_with_fixed_hash_seed(argv: list[str] | None) -> None:
    """NumPyro programs hit JAX's persistent compilation cache across processes only with a
    fixed ``PYTHONHASHSEED``; a batch run restarts itself with one (once)."""
    if os.environ.get("PYTHONHASHSEED") not in (None, "random"):
        return
    args = sys.argv[1:] if argv is None else list(argv)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    os.execve(sys.executable, [sys.executable, "-m", "jaxrev.cli", *args], env)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        if not args.no_cache and argv is None:
            _reexec_with_fixed_hash_seed(argv)
        return _batch(args)
    if args.command == "datasets":
        from jaxrev.datasets import DESCRIPTIONS
        from jaxrev.datasets.daily import DAILY_DESCRIPTIONS

        for name, description in {**DESCRIPTIONS, **DAILY_DESCRIPTIONS}.items():
            print(f"bundled:{name:20s} {description}")
        return 0
    if args.command == "allocate":
        from jaxrev.roas.cli import allocate_command

        return allocate_command(args)
    if args.command == "compare":
        return _compare(args)
    return _fit(args)


if __name__ == "__main__":
    raise SystemExit(main())
