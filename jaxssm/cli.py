"""Command line for jaxssm.

``jaxssm locations IN --column location --out OUT`` normalizes free-text locations;
``jaxssm stargazers fetch OWNER/REPO --out FILE`` downloads a repository's stargazers;
``jaxssm report STARGAZERS --out DIR`` runs the whole analysis and writes the report;
``jaxssm fit COUNTS --out DIR`` fits the model to a wide table of counts.

No logic lives here: arguments become calls into :mod:`jaxssm.locations`,
:mod:`jaxssm.stargazers` and :mod:`jaxssm.fitting`. Building the parser imports nothing heavy
(JAX, pandas and httpx are imported by the command that runs), so ``--help`` is fast. Every
command exits 0 when done, 2 on bad input or usage or an output that cannot be written, 3 when
its outputs are written but the fit is not converged or a part failed (``--allow-unconverged``),
130 when interrupted (the files so far kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: The exit codes of every jaxssm command.
EXIT_OK, EXIT_BAD_INPUT, EXIT_UNCONVERGED, EXIT_INTERRUPTED = 0, 2, 3, 130

EXIT_CODES = (
    "Exit codes: 0 done; 2 bad input or usage, or an output that cannot be written (nothing "
    "torn: every file is written atomically); 3 written, but the fit is not converged or a part "
    "failed (--allow-unconverged accepts an unconverged fit); 130 interrupted (the files so far "
    "are kept)."
)

#: Defaults of ``jaxssm stargazers fetch``, the same as :mod:`jaxssm.stargazers.github`'s (a
#: test checks it): written out here so that building the parser imports nothing heavy.
GITHUB_GRAPHQL_URL, MAX_PAGE_SIZE, WAIT_CAP_S = "https://api.github.com/graphql", 100, 900.0


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless it has none (None) or is a flag."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.help is None:
            return action.help
        if "%(default)" in action.help or "(default" in action.help:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxmodels")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Imports nothing heavy (no JAX, pandas or httpx), so ``--help``
    is fast; each command imports what it needs when it runs."""
    parser = argparse.ArgumentParser(
        prog="jaxssm",
        description="Poisson dynamic factor state-space model fitted by Laplace-EM (JAX).",
        epilog=EXIT_CODES,
        formatter_class=_ShowDefaults,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    loc = sub.add_parser(
        "locations",
        help="normalize free-text locations to ISO countries (offline gazetteer; LLM optional)",
        description="Adds country, country_name, region, city, status, source and candidates "
        "columns. Offline by default; with --llm-base-url the gazetteer's unresolved strings go "
        "to an OpenAI-compatible endpoint (key from --api-key-env). The output is written "
        "atomically (CSV: RFC 4180 quoting and CRLF row ends). Status 'failed': the row's batch "
        "exhausted --max-attempts; 'pending': the run stopped first. Exit codes: 0 done; 2 bad "
        "input or arguments, or an output or cache that cannot be written (disk full); 3 rows "
        "failed or the LLM run stopped (quota, key, server down), the rows so far written; 130 "
        "Ctrl-C, the rows so far written. Run the same command again to resume.",
        formatter_class=_ShowDefaults,
    )
    loc.add_argument("input", type=Path, help="CSV, TSV or Parquet file")
    loc.add_argument("--column", default="location", help="the free-text column (default location)")
    loc.add_argument("--out", required=True, type=Path, help="output CSV, TSV or Parquet")
    _add_llm_arguments(loc)
    loc.add_argument(
        "--allow-failed", action="store_true", help="exit 0 even if some rows have status failed"
    )
    loc.add_argument("--quiet", action="store_true", help="no progress lines")

    stars = sub.add_parser("stargazers", help="get a repository's stargazers")
    stars_sub = stars.add_subparsers(dest="stargazers_command", metavar="COMMAND", required=True)
    add_fetch_arguments(
        stars_sub.add_parser(
            "fetch",
            help="download stargazers (login, starred_at, location) over GitHub's GraphQL API",
            description="Token from $GITHUB_TOKEN. Writes after every page; an interrupted "
            "fetch resumes where it stopped when run again.",
            epilog="Exit codes: 0 complete; 2 bad arguments, a file this fetcher did not write, "
            "or an output that cannot be written; 3 the fetch stopped (the rows so far are "
            "kept); 130 interrupted (the rows so far are kept; run the same command again to "
            "resume).",
            formatter_class=_ShowDefaults,
        )
    )

    rep = sub.add_parser(
        "report",
        help="the stargazers analysis: windows, has the geography changed, imputation, forecasts",
        description="Reads a stargazers table (user, starred_at, location; CSV/TSV/Parquet, or "
        "'bundled:demo'), locates every stargazer (offline gazetteer; LLM optional), fits the "
        "Poisson dynamic factor model and writes report.html and CSV tables into --out. A table "
        "spanning fewer than 3 windows is refused (exit 2: pass a shorter --freq); numbers of "
        "factors above min(windows - 1, locations) are left out of --candidates (q = 0, the "
        "static model, when none is left).",
        epilog=EXIT_CODES,
        formatter_class=_ShowDefaults,
    )
    rep.add_argument("input", help="stargazers table, or bundled:demo")
    rep.add_argument("--out", required=True, type=Path, help="output folder")
    rep.add_argument("--repository", default=None, help="OWNER/REPO for the title")
    rep.add_argument("--created-at", default=None, help="T_0 (default: metadata or first star)")
    rep.add_argument("--freq", default="MS", help="window width (a pandas frequency)")
    rep.add_argument("--level", default="country", help="country, subregion, region, ...")
    rep.add_argument("--region-level", default="subregion", help="grouping of region shares")
    rep.add_argument("--candidates", default="0,1,2,3", help="numbers of factors to compare")
    rep.add_argument("--horizon", type=int, default=6, help="windows to forecast")
    rep.add_argument("--num-imputations", type=int, default=1000, help="draws of the imputation")
    rep.add_argument("--drop-first", type=int, default=0, help="early windows left out")
    rep.add_argument("--seed", type=int, default=0, help="random seed")
    _add_llm_arguments(rep)
    rep.add_argument(
        "--allow-unconverged", action="store_true", help="exit 0 even if the fit is not converged"
    )
    rep.add_argument("--quiet", action="store_true", help="no progress lines")

    _add_fit_parser(sub)
    return parser


def add_fetch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``jaxssm stargazers fetch OWNER/REPO --out FILE``."""
    parser.add_argument("repository", help="OWNER/REPO or https://github.com/OWNER/REPO")
    parser.add_argument(
        "--out", required=True, type=Path, help="output table, .csv or .parquet (resumable)"
    )
    parser.add_argument("--token-env", default="GITHUB_TOKEN", help="env var holding the token")
    parser.add_argument("--api-url", default=GITHUB_GRAPHQL_URL, help="GraphQL endpoint")
    parser.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE, help="1 to 100")
    parser.add_argument("--max-attempts", type=int, default=6, help="attempts of one request")
    parser.add_argument(
        "--wait-cap",
        type=float,
        default=WAIT_CAP_S,
        help="longest single sleep in seconds before a progress line",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="fetch again even if a complete fetch is on disk"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _add_fit_parser(sub) -> None:
    fit = sub.add_parser(
        "fit",
        help="fit the model to a wide table of counts (windows x locations); tables and figures",
        description="COUNTS is a CSV, TSV or Parquet table: the first column the window label, "
        "one column per location, one row per window in time order, an empty cell = missing. "
        "Writes summary.json, params/, expected_counts.csv, imputation.csv, forecast.csv "
        "(--horizon), selection.csv (auto), heldout_scores.csv and heldout_score.json "
        "(--heldout) and figures/ into --out, each file as soon as it is computed (atomically). "
        "Computes in float64.",
        epilog=EXIT_CODES,
        formatter_class=_ShowDefaults,
    )
    fit.add_argument("counts", type=Path, metavar="COUNTS", help="wide table of counts")
    fit.add_argument("--out", required=True, type=Path, help="output folder")
    fit.add_argument(
        "--factors",
        default="auto",
        help="number of factors q, or auto: chosen by cross-validation over --candidates",
    )
    fit.add_argument("--candidates", default="0,1,2,3", help="the q compared by --factors auto")
    fit.add_argument(
        "--emission",
        default="auto",
        choices=("auto", "poisson", "negbin"),
        help="count distribution; auto compares both in the cross-validation",
    )
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds of auto")
    fit.add_argument("--horizon", type=int, default=0, help="windows to forecast (0: none)")
    fit.add_argument(
        "--heldout",
        type=Path,
        default=None,
        help="table like COUNTS with counts in the cells to score, empty elsewhere; those cells "
        "are left out of the fit (COUNTS may leave them empty or hold the same counts)",
    )
    fit.add_argument(
        "--offset",
        type=Path,
        default=None,
        help="table like COUNTS of known log-offsets (log exposure), every cell filled; "
        "forecasts hold the last window's offset",
    )
    fit.add_argument("--draws", type=int, default=1000, help="draws for imputation and forecast")
    fit.add_argument("--seed", type=int, default=0, help="random seed")
    fit.add_argument("--max-iterations", type=int, default=1000, help="EM iteration limit")
    fit.add_argument(
        "--allow-unconverged", action="store_true", help="exit 0 even if the fit is not converged"
    )
    fit.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("auto", "gazetteer", "llm", "cascade"),
        default="auto",
        help="location normalizer: auto = cascade with an LLM URL, else the gazetteer alone",
    )
    llm = parser.add_argument_group("LLM (any OpenAI-compatible /chat/completions endpoint)")
    llm.add_argument("--llm-base-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    llm.add_argument("--model", default=None)
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the key")
    llm.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    llm.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    llm.add_argument("--max-concurrency", type=int, default=4, help="requests in flight")
    llm.add_argument("--batch-size", type=int, default=50, help="locations per request")
    llm.add_argument(
        "--max-attempts",
        type=int,
        default=6,
        help="tries per request on 429, 5xx, timeouts and dropped connections (default 6); a "
        "batch that exhausts them has its rows marked failed and the run goes on",
    )
    llm.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="SQLite cache of LLM answers (default: $XDG_CACHE_HOME/jaxssm/locations.sqlite)",
    )


def run_report(args) -> int:
    """``jaxssm report`` on parsed arguments; the exit code (:data:`EXIT_CODES`)."""
    from jaxssm.locations.cli import normalizer_from_args
    from jaxssm.stargazers.analysis import AnalysisOptions
    from jaxssm.stargazers.report import analyze_and_report

    try:
        candidates = tuple(int(q) for q in args.candidates.split(","))
    except ValueError:
        print(
            f"error: --candidates {args.candidates!r} is not a list like 0,1,2,3", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    settings = AnalysisOptions(
        freq=args.freq,
        level=args.level,
        region_level=args.region_level,
        candidates=candidates,
        horizon=args.horizon,
        num_imputations=args.num_imputations,
        drop_first=args.drop_first,
        seed=args.seed,
    )
    try:
        normalizer = normalizer_from_args(args)
        analysis, path = analyze_and_report(
            args.input,
            args.out,
            settings=settings,
            normalizer=normalizer,
            created_at=args.created_at,
            repository=args.repository,
            progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
        )
    except KeyboardInterrupt:
        from jaxssm.stargazers.report import OUTPUTS

        kept = [name for name in OUTPUTS if (args.out / name).is_file()]
        print(
            f"interrupted: {len(kept)} of the report's files are in {args.out} (report.html is "
            "written last); run the same command again to redo the report",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as err:  # OutputError; DataError, InputError, bad settings
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {path}")
    print(f"model: q = {analysis.fit.num_factors}, {analysis.fit.emission}; {analysis.fit.status}")
    if not analysis.fit.converged and not args.allow_unconverged:
        print(
            "warning: the fit is not converged (see its status); the report is written. Pass "
            "--allow-unconverged to accept it (exit 0), or try fewer --candidates.",
            file=sys.stderr,
        )
        return EXIT_UNCONVERGED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; the exit code (:data:`EXIT_CODES`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        if args.command == "locations":
            from jaxssm.locations.cli import run_locations

            return run_locations(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "fit":
            from jaxssm.fitting.cli import run_fit

            return run_fit(args)
        from jaxssm.stargazers.fetch import run_fetch

        return run_fetch(args)
    except KeyboardInterrupt:  # before a command had anything to keep (e.g. importing JAX)
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
