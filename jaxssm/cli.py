"""Command line for jaxssm.

``jaxssm locations IN --column location --out OUT`` normalizes free-text locations;
``jaxssm stargazers fetch OWNER/REPO --out FILE`` downloads a repository's stargazers;
``jaxssm report STARGAZERS --out DIR`` runs the whole analysis and writes the report;
``jaxssm fit COUNTS --out DIR`` fits the model to a wide table of counts.

No logic lives here: arguments become calls into :mod:`jaxssm.locations`,
:mod:`jaxssm.stargazers` and :mod:`jaxssm.fitting_cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxssm",
        description="Poisson dynamic factor state-space model fitted by Laplace-EM (JAX).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    loc = sub.add_parser(
        "locations",
        help="normalize free-text locations to ISO countries (offline gazetteer; LLM optional)",
        description="Adds country, country_name, region, city, status, source and candidates "
        "columns. Offline by default; with --llm-base-url the gazetteer's unresolved strings go "
        "to an OpenAI-compatible endpoint (key from --api-key-env). The output is written "
        "atomically (CSV: RFC 4180 quoting and CRLF row ends). Status 'failed': the row's batch "
        "exhausted --max-attempts; 'pending': the run stopped first. Exit codes: 0 done; 1 the "
        "output or cache could not be written (disk full); 2 bad input or arguments; 3 rows "
        "failed or the LLM run stopped (quota, key, server down), the rows so far written; 130 "
        "Ctrl-C, the rows so far written. Run the same command again to resume.",
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
    from jaxssm.stargazers.fetch import add_fetch_arguments

    add_fetch_arguments(
        stars_sub.add_parser(
            "fetch",
            help="download stargazers (login, starred_at, location) over GitHub's GraphQL API",
            description="Token from $GITHUB_TOKEN. Writes after every page; an interrupted "
            "fetch resumes where it stopped when run again.",
        )
    )

    rep = sub.add_parser(
        "report",
        help="the stargazers analysis: windows, has the geography changed, imputation, forecasts",
        description="Reads a stargazers table (user, starred_at, location; CSV/TSV/Parquet, or "
        "'bundled:demo'), locates every stargazer (offline gazetteer; LLM optional), fits the "
        "Poisson dynamic factor model and writes report.html and CSV tables into --out.",
    )
    rep.add_argument("input", help="stargazers table, or bundled:demo")
    rep.add_argument("--out", required=True, type=Path, help="output folder")
    rep.add_argument("--repository", default=None, help="OWNER/REPO for the title")
    rep.add_argument("--created-at", default=None, help="T_0 (default: metadata or first star)")
    rep.add_argument("--freq", default="MS", help="window width (pandas frequency; default MS)")
    rep.add_argument("--level", default="country", help="country, subregion, region, ...")
    rep.add_argument("--region-level", default="subregion", help="grouping of region shares")
    rep.add_argument("--candidates", default="0,1,2,3", help="numbers of factors to compare")
    rep.add_argument("--horizon", type=int, default=6, help="windows to forecast")
    rep.add_argument("--num-imputations", type=int, default=1000)
    rep.add_argument("--drop-first", type=int, default=0, help="early windows left out")
    rep.add_argument("--seed", type=int, default=0)
    _add_llm_arguments(rep)
    rep.add_argument("--quiet", action="store_true", help="no progress lines")

    _add_fit_parser(sub)
    return parser


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, unless it has none (None) or is a flag."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _add_fit_parser(sub) -> None:
    fit = sub.add_parser(
        "fit",
        help="fit the model to a wide table of counts (windows x locations); tables and figures",
        description="COUNTS is a CSV, TSV or Parquet table: the first column the window label, "
        "one column per location, one row per window in time order, an empty cell = missing. "
        "Writes summary.json, params/, expected_counts.csv, imputation.csv, forecast.csv "
        "(--horizon), selection.csv (auto), heldout_scores.csv and heldout_score.json "
        "(--heldout) and figures/ into --out, each file as soon as it is computed. Exit codes: 0 "
        "done, 2 bad input, 3 not converged or a figure failed, 1 a file could not be written, "
        "130 interrupted. Computes in float64.",
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
    from jaxssm.locations.cli import normalizer_from_args
    from jaxssm.stargazers.analysis import AnalysisOptions
    from jaxssm.stargazers.ingest import StargazersError
    from jaxssm.stargazers.report import report_from_file

    try:
        candidates = tuple(int(q) for q in args.candidates.split(","))
    except ValueError:
        print(
            f"error: --candidates {args.candidates!r} is not a list like 0,1,2,3", file=sys.stderr
        )
        return 2
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
        path = report_from_file(
            args.input,
            args.out,
            settings=settings,
            normalizer=normalizer,
            created_at=args.created_at,
            repository=args.repository,
            progress=None if args.quiet else (lambda line: print(line, file=sys.stderr)),
        )
    except (StargazersError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "locations":
        from jaxssm.locations.cli import run_locations

        return run_locations(args)
    if args.command == "report":
        return run_report(args)
    if args.command == "fit":
        from jaxssm.fitting_cli import run_fit

        return run_fit(args)
    if args.command == "stargazers":
        from jaxssm.stargazers.fetch import run_fetch

        return run_fetch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
