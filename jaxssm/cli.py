"""Command line for jaxssm: ``jaxssm locations IN --column location --out OUT``.

No logic lives here: arguments become calls into :mod:`jaxssm.locations`.
"""

from __future__ import annotations

import argparse
import os
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
        "to an OpenAI-compatible endpoint (key from --api-key-env).",
    )
    loc.add_argument("input", type=Path, help="CSV, TSV or Parquet file")
    loc.add_argument("--column", default="location", help="the free-text column (default location)")
    loc.add_argument("--out", required=True, type=Path, help="output CSV or Parquet")
    loc.add_argument(
        "--backend",
        choices=("auto", "gazetteer", "llm", "cascade"),
        default="auto",
        help="auto = cascade with an LLM URL, else the gazetteer alone",
    )
    llm = loc.add_argument_group("LLM (any OpenAI-compatible /chat/completions endpoint)")
    llm.add_argument("--llm-base-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    llm.add_argument("--model", default=None)
    llm.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the key")
    llm.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    llm.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    llm.add_argument("--max-concurrency", type=int, default=4, help="requests in flight")
    llm.add_argument("--batch-size", type=int, default=50, help="locations per request")
    llm.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="SQLite cache of LLM answers (default: $XDG_CACHE_HOME/jaxssm/locations.sqlite)",
    )
    loc.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def default_cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxssm" / "locations.sqlite"


def run_locations(args) -> int:
    from jaxssm.locations.cascade import make_normalizer
    from jaxssm.locations.table import (
        LocationTableError,
        ProgressPrinter,
        location_texts,
        read_table,
        results_frame,
        summarize,
    )

    try:
        frame = read_table(args.input)
        texts = location_texts(frame, args.column, str(args.input))
    except LocationTableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    printer = None if args.quiet else ProgressPrinter()
    llm_options = {}
    if args.llm_base_url:
        cache = args.cache or default_cache_path()
        cache.parent.mkdir(parents=True, exist_ok=True)
        llm_options = dict(
            api_key_env=args.api_key_env,
            rpm=args.rpm,
            tpm=args.tpm,
            max_concurrency=args.max_concurrency,
            batch_size=args.batch_size,
            cache=cache,
        )
    try:
        normalizer = make_normalizer(
            args.backend,
            base_url=args.llm_base_url,
            model=args.model,
            on_progress=printer,
            **llm_options,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    code = 0
    try:
        results = normalizer.normalize(texts)
    except Exception as err:
        results = getattr(err, "results", None)
        if results is None:
            raise
        print(
            f"error: {err}\nThe rows resolved so far are written (unresolved ones have status "
            "'failed') and cached; run the same command again to resume.",
            file=sys.stderr,
        )
        code = 3
    import pandas as pd

    answers = results_frame(results, taken=list(map(str, frame.columns)))
    out = pd.concat([frame.reset_index(drop=True), answers], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix.lower() in (".parquet", ".pq"):
        out.to_parquet(args.out, index=False)
    else:
        out.to_csv(args.out, index=False)
    print(summarize(results))
    print(f"wrote {args.out}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "locations":
        return run_locations(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
