"""``jaxrev`` command line: ``jaxrev fit DATA --method svi|nuts|map --out DIR``, ``jaxrev batch``,
``jaxrev allocate DAILY --revenue-fit DIR --budget B --out DIR``,
``jaxrev compare DATA --models ...``.

DATA is a CSV/TSV/Parquet file or ``bundled:NAME`` (``jaxrev datasets`` lists them). No model
logic lives here: arguments become a call to :func:`jaxrev.fit` and :meth:`RevenueFit.save`, to
:func:`jaxrev.batch.fit_accounts`, :func:`jaxrev.roas.run.run_allocate` or
:func:`jaxrev.compare.compare_models`. JAX, NumPyro, pandas and ArviZ are imported when a command
runs, not to build the parser, so ``--help`` is fast.

Exit status: 0 done; 2 bad input or usage, or an output that cannot be written (one line naming
the file); 3 fitted but not converged, or some accounts failed (``--allow-unconverged`` makes it
0); 130 interrupted (Ctrl-C), with what was finished written and a hint to resume.
"""

from __future__ import annotations

import _thread
import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path

BUNDLED_PREFIX = "bundled:"
EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_CONVERGED, EXIT_INTERRUPTED = 0, 2, 3, 130

# The registered models (jaxrev.models.MODELS, in registration order), named here so that the
# parser is built without importing JAX; a test checks that they agree with the registry.
MODEL_NAMES = ("multilevel", "no_pooling", "hier_sigma", "student_t", "local_level")
DEFAULT_MODEL = "multilevel"
CAMPAIGN_LEVEL_MODELS = ("multilevel", "hier_sigma", "student_t", "local_level")
GUIDES = ("meanfield", "fullrank", "lowrank")

# What each command writes into --out (an input among them is refused).
FIT_FILES = (
    "summary.csv",
    "parameters.csv",
    "inference_data.nc",
    "diagnostics.json",
    "invalid_rows.csv",
    "ppc.png",
    "pooling.png",
    "campaign_means.png",
)
BATCH_FILES = ("status.csv", "summary.csv", "summary.parquet", "run.json", "parts")
COMPARE_FILES = ("loo.csv", "calibration.csv", "calibration_by_adset.csv", "ranking.csv")
COLUMN_FLAGS = {
    "adset": "--adset-col",
    "campaign": "--campaign-col",
    "conversions": "--conversions-col",
    "revenue": "--revenue-col",
    "account": "--account-col",
    "time": "--time-col",
}


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default (when it has one worth showing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" in text
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("jaxmodels")
    except PackageNotFoundError:
        return "unknown"


def _add_columns(parser, *, account: str | None, time: bool) -> None:
    cols = parser.add_argument_group("columns")
    cols.add_argument(
        "--account-col", default=account, help="account column" + ("" if account else ", if any")
    )
    cols.add_argument("--adset-col", default="adset", help="ad set column")
    cols.add_argument("--campaign-col", default="campaign", help="campaign column")
    cols.add_argument("--conversions-col", default="conversions", help="conversions column")
    cols.add_argument("--revenue-col", default="revenue", help="revenue column")
    if time:
        cols.add_argument("--time-col", default=None, help="time column, if any (kept in outputs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrev",
        description="Multilevel log-normal revenue-per-conversion model (NumPyro, JAX).",
        epilog="Exit status: 0 done; 2 bad input or usage, or an output that cannot be written; "
        "3 not converged or some accounts failed (see --allow-unconverged); 130 interrupted.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxrev {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, **kwargs):
        return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)

    f = command("fit", help="fit one account and write summary, InferenceData and plots")
    f.add_argument("data", help="CSV/TSV/Parquet file, or bundled:NAME")
    f.add_argument("--out", required=True, type=Path, help="output directory")
    f.add_argument("--method", choices=("svi", "nuts", "map"), default="svi", help="inference")
    f.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL, help="revenue model")
    f.add_argument("--guide", choices=GUIDES, default=None, help="SVI guide (meanfield if unset)")
    f.add_argument("--seed", type=int, default=0, help="random seed")
    _add_columns(f, account=None, time=True)
    f.add_argument("--account", default=None, help="fit only this account")
    f.add_argument(
        "--on-invalid",
        choices=("raise", "drop"),
        default="raise",
        help="stop on invalid rows, or drop and list them",
    )
    nuts = f.add_argument_group("NUTS (defaults: jaxrev.NUTSOptions)")
    nuts.add_argument("--num-chains", type=int, default=None, help="chains (default: 4)")
    nuts.add_argument(
        "--num-warmup", type=int, default=None, help="warmup steps per chain (default: 1000)"
    )
    nuts.add_argument(
        "--num-samples", type=int, default=None, help="draws per chain (default: 1000)"
    )
    nuts.add_argument(
        "--target-accept",
        type=float,
        default=None,
        dest="target_accept_prob",
        help="target acceptance probability; raise it (e.g. 0.95) against divergences "
        "(default: 0.8)",
    )
    svi = f.add_argument_group("SVI / MAP (defaults: jaxrev.SVIOptions, jaxrev.MAPOptions)")
    svi.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="optimisation steps at most (default: 30000 for SVI, 5000 for MAP)",
    )
    svi.add_argument("--num-draws", type=int, default=1000, help="draws from the SVI guide")
    f.add_argument("--no-plots", action="store_true", help="write no PNG figures")
    f.add_argument(
        "--allow-unconverged", action="store_true", help="exit 0 even when the fit did not converge"
    )
    f.add_argument("--quiet", action="store_true", help="no progress bars")

    b = command("batch", help="fit many accounts (vectorised SVI, fallbacks, resumable output)")
    b.add_argument(
        "data", help="long table with an account column, or a folder of per-account files"
    )
    b.add_argument("--out", required=True, type=Path, help="output directory (resumes from it)")
    b.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL, help="revenue model")
    b.add_argument("--seed", type=int, default=0, help="random seed")
    _add_columns(b, account="account", time=False)
    b.add_argument(
        "--on-invalid",
        choices=("raise", "drop"),
        default="raise",
        help="an account with invalid rows fails, or loses those rows",
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
    b.add_argument("--wait", action="store_true", help="wait for another run on --out to finish")
    b.add_argument(
        "--repair",
        action="store_true",
        help="delete unreadable part files in --out and refit their accounts",
    )
    b.add_argument(
        "--allow-unconverged", action="store_true", help="exit 0 even when some accounts failed"
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    from jaxrev.roas.cli import add_allocate_parser

    add_allocate_parser(sub, formatter_class=HelpFormatter)
    _add_compare(
        command(
            "compare",
            help="compare revenue models: PSIS-LOO, calibration on later hours, model checks",
            description="Fits each model on all rows (PSIS-LOO, with Pareto-k and the standard "
            "error of each difference) and on the rows up to a time quantile (coverage of the "
            "later hours' predictive intervals, PIT); writes the tables and one figure per model.",
        )
    )
    command("datasets", help="list the bundled data sets")
    return parser


def _add_compare(parser) -> None:
    """The ``jaxrev compare`` arguments (see :func:`_compare`)."""
    parser.add_argument("data", help="CSV/TSV/Parquet file with a time column, or bundled:NAME")
    parser.add_argument(
        "--models",
        default=",".join(CAMPAIGN_LEVEL_MODELS),
        help=f"comma-separated, from {', '.join(MODEL_NAMES)}",
    )
    parser.add_argument("--method", choices=("nuts", "svi"), default="nuts", help="inference")
    parser.add_argument("--guide", choices=GUIDES, default=None, help="SVI guide")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--time-col", default="hour", help="time column")
    parser.add_argument("--split", type=float, default=0.75, help="time quantile of the split")
    parser.add_argument("--level", type=float, default=0.9, help="interval probability")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--num-chains", type=int, default=None, help="NUTS chains")
    parser.add_argument("--num-warmup", type=int, default=None, help="NUTS warmup steps")
    parser.add_argument("--num-samples", type=int, default=None, help="NUTS draws per chain")
    parser.add_argument(
        "--allow-unconverged", action="store_true", help="exit 0 even when a fit did not converge"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


# ---- shared steps ------------------------------------------------------------------------------


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _source(spec: str):
    """``(table or path, name)``: a bundled table by name, else the path."""
    if spec.startswith(BUNDLED_PREFIX):
        from jaxrev.datasets import load_bundled

        return load_bundled(spec[len(BUNDLED_PREFIX) :]), spec
    return Path(spec), None


def _refuse_overwrite(out: Path, data: str, written) -> str | None:
    from jaxrev.files import overlapping_input

    source = None if data.startswith(BUNDLED_PREFIX) else data
    clash = overlapping_input(out, [source], written)
    if clash is None:
        return None
    return f"--out {out} would overwrite or mix with the input {clash}; choose another folder"


def _column_hint(err, columns) -> str:
    """For a missing column: the flags that name the columns (``--campaign-col NAME``)."""
    missing = set(err.problems["column"])
    flags = [
        f"{COLUMN_FLAGS[field]} NAME"
        for field, name in columns._asdict().items()
        if name in missing and field in COLUMN_FLAGS
    ]
    return "\nhint: give the columns' names with " + ", ".join(flags) if flags else ""


def _load_data(args, columns, **kwargs):
    """Read and check the input (exit 2 on any problem); returns ``(data, None)`` or
    ``(None, exit status)``."""
    from jaxrev.data import load_revenue_data
    from jaxrev.errors import InputFileError, InvalidDataError, MissingColumnError

    try:
        source, name = _source(args.data)
        return load_revenue_data(source, columns, name=name, **kwargs), None
    except MissingColumnError as err:
        return None, _error(f"{err}{_column_hint(err, columns)}")
    except (InvalidDataError, InputFileError, ValueError, FileNotFoundError) as err:
        return None, _error(str(err))


# ---- fit -------------------------------------------------------------------------------------


def _overrides(args) -> dict:
    names = {
        "nuts": ("num_chains", "num_warmup", "num_samples", "target_accept_prob"),
        "svi": ("max_steps",),
        "map": ("max_steps",),
    }[args.method]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    flags = {
        "num_chains": "--num-chains",
        "num_warmup": "--num-warmup",
        "num_samples": "--num-samples",
        "target_accept_prob": "--target-accept",
        "max_steps": "--max-steps",
    }
    ignored = [f for n, f in flags.items() if n not in names and getattr(args, n) is not None]
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
    if "jax" in sys.modules:  # too late to change the devices (e.g. main() called from Python)
        return
    import numpyro

    numpyro.set_host_device_count(args.num_chains or 4)


def _fit(args) -> int:
    refused = _refuse_overwrite(args.out, args.data, FIT_FILES)
    if refused:
        return _error(refused)
    _cpu_devices_for_chains(args)
    from jaxrev.data import Columns
    from jaxrev.files import make_dir

    columns = Columns(
        adset=args.adset_col,
        campaign=args.campaign_col,
        conversions=args.conversions_col,
        revenue=args.revenue_col,
        account=args.account_col,
        time=args.time_col,
    )
    data, status = _load_data(args, columns, account=args.account, on_invalid=args.on_invalid)
    if data is None:
        return status
    from jaxrev.inference import fit

    print(data.report)
    make_dir(args.out)  # before fitting: a folder that cannot be written fails fast
    print(
        f"{data.num_observations} observations, {data.num_adsets} ad sets, "
        f"{data.num_campaigns} campaigns; fitting {args.model} with {args.method}...",
        flush=True,
    )
    try:
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
    except KeyboardInterrupt:
        print(
            f"interrupted: nothing was written to {args.out}; rerun the same command to fit again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    written = result.save(args.out, plots=not args.no_plots)
    _print_fit(result)
    for name, path in written.items():
        print(f"wrote {name}: {path}")
    if not result.converged:
        if args.allow_unconverged:
            print("the fit did not converge (accepted: --allow-unconverged)", file=sys.stderr)
            return EXIT_OK
        print(
            "error: the fit did not converge (see the messages above); its files are written. "
            "Pass --allow-unconverged to accept it (exit 0).",
            file=sys.stderr,
        )
        return EXIT_NOT_CONVERGED
    return EXIT_OK


def _print_fit(result) -> None:
    import pandas as pd

    d = result.diagnostics
    status = "converged" if result.converged else "NOT converged"
    print(f"{d.method}: {status} in {d.seconds:.1f} s ({d.num_steps} steps)")
    for message in result.messages:
        print(f"  - {message}")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        table = result.summary()
        shown = ["level", "campaign", "adset", "n_obs", "raw_mean", "mean", "q2.5", "q97.5"]
        print(table[shown].to_string(index=False, max_rows=40, float_format=_number))
        print(result.parameters().to_string(index=False, float_format=_number))


def _number(value: float) -> str:
    """A table cell without float noise: 2 decimals, 2 significant digits below 0.01, none from
    1000 up (``886.16``, not ``886.159973``)."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2g}" if 0 < abs(value) < 0.01 else f"{value:.2f}"


# ---- batch -----------------------------------------------------------------------------------


def _batch(args) -> int:
    refused = _refuse_overwrite(args.out, args.data, BATCH_FILES)
    if refused:
        return _error(refused)
    from dataclasses import replace

    from jaxrev.batch import BatchOptions, fit_accounts
    from jaxrev.batch.lock import FolderLockedError
    from jaxrev.batch.store import CorruptPartError
    from jaxrev.compile_cache import enable_compilation_cache, hash_seed_is_fixed
    from jaxrev.data import Columns
    from jaxrev.errors import InputFileError, InvalidDataError, MissingColumnError

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
    if not args.data.startswith(BUNDLED_PREFIX) and not Path(args.data).exists():
        return _error(f"{args.data}: no such file or folder")
    try:
        source, name = _source(args.data)
        if args.scheduler:
            executor, cluster = _dask(args.scheduler)
        result = fit_accounts(
            source,
            out_dir=args.out,
            columns=columns,
            model=args.model,
            options=options,
            executor=executor,
            progress=not args.quiet,
            on_invalid=args.on_invalid,
            wait=args.wait,
            repair=args.repair,
            name=name,
        )
    except MissingColumnError as err:
        return _error(f"{err}{_column_hint(err, columns)}")
    except (
        InvalidDataError,
        InputFileError,
        CorruptPartError,
        FolderLockedError,
        ValueError,
        FileNotFoundError,
    ) as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print(
            f"interrupted: the accounts finished so far are in {args.out} (status.csv, "
            "summary.csv); rerun the same command to resume (finished accounts are skipped)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
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
    failed = int(r["status_counts"].get("failed", 0))
    if failed:
        print(
            f"{'note' if args.allow_unconverged else 'error'}: {failed} of {r['accounts']} "
            f"accounts failed (their reasons are in {args.out / 'status.csv'})"
            + ("" if args.allow_unconverged else "; pass --allow-unconverged to exit 0"),
            file=sys.stderr,
        )
        return EXIT_OK if args.allow_unconverged else EXIT_NOT_CONVERGED
    return EXIT_OK


def _dask(scheduler: str):
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler.startswith("local"):
        workers = int(scheduler.split(":")[1]) if ":" in scheduler else None
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
        executor = Client(cluster)
    else:
        executor = Client(scheduler)
    print(f"dask: {executor}")
    return executor, cluster


# ---- compare ---------------------------------------------------------------------------------


def _compare(args) -> int:
    """Fit the models, print the PSIS-LOO and calibration tables, write the files."""
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        return _error(f"unknown model(s) {unknown}; choose from {sorted(MODEL_NAMES)}")
    written_names = (*COMPARE_FILES, *(f"checks_{m}.png" for m in models))
    refused = _refuse_overwrite(args.out, args.data, written_names)
    if refused:
        return _error(refused)
    from jaxrev.checks import time_split
    from jaxrev.compare import compare_models, write_comparison
    from jaxrev.data import Columns
    from jaxrev.files import make_dir

    data, status = _load_data(args, Columns(time=args.time_col))
    if data is None:
        return status
    try:
        time_split(data, args.split)
    except ValueError as err:
        return _error(str(err))
    make_dir(args.out)
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
    try:
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
    except KeyboardInterrupt:
        print(f"interrupted: nothing was written to {args.out}; rerun the command", file=sys.stderr)
        return EXIT_INTERRUPTED
    written = write_comparison(report, args.out)
    print("PSIS-LOO (higher elpd is better; dse = standard error of the difference from the best)")
    print(report.loo)
    print(
        f"\nCalibration on the hours after the {args.split:.0%} time quantile "
        f"(fitted on the earlier ones), {args.level:.0%} intervals:"
    )
    print(report.calibration_table().to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {len(written)} files to {args.out}")
    unconverged = [name for name, result in report.fits.items() if not result.converged]
    if unconverged:
        print(f"note: not converged: {', '.join(unconverged)}", file=sys.stderr)
        if not args.allow_unconverged:
            print("error: pass --allow-unconverged to accept them (exit 0)", file=sys.stderr)
            return EXIT_NOT_CONVERGED
    return EXIT_OK


# ---- entry point -----------------------------------------------------------------------------


def _reexec_with_fixed_hash_seed(argv: list[str] | None) -> None:
    """NumPyro programs hit JAX's persistent compilation cache across processes only with a
    fixed ``PYTHONHASHSEED``; a batch run restarts itself with one (once)."""
    if os.environ.get("PYTHONHASHSEED") not in (None, "random"):
        return
    args = sys.argv[1:] if argv is None else list(argv)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    os.execve(sys.executable, [sys.executable, "-m", "jaxrev.cli", *args], env)


def _datasets() -> int:
    from jaxrev.datasets import DESCRIPTIONS
    from jaxrev.datasets.daily import DAILY_DESCRIPTIONS

    for name, description in {**DESCRIPTIONS, **DAILY_DESCRIPTIONS}.items():
        print(f"bundled:{name:20s} {description}")
    return EXIT_OK


def _run(args) -> int:
    if args.command == "batch":
        return _batch(args)
    if args.command == "datasets":
        return _datasets()
    if args.command == "allocate":
        from jaxrev.roas.cli import allocate_command

        return allocate_command(args)
    if args.command == "compare":
        return _compare(args)
    return _fit(args)


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: raise ``KeyboardInterrupt``, but not inside a garbage-collector callback or a
    ``__del__`` (Python prints and drops exceptions raised there, and the run would go on):
    there, raise it again 50 ms later."""
    code = getattr(frame, "f_code", None)
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    if code is not None and (code in callbacks or code.co_name == "__del__"):
        threading.Timer(0.05, _thread.interrupt_main).start()
        return
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "batch" and not args.no_cache and argv is None:
        _reexec_with_fixed_hash_seed(argv)
    from jaxrev.errors import OutputError

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_interrupt) if in_main_thread else None
    try:
        return _run(args)
    except OutputError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); files already written are complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())
