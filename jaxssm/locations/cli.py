"""``jaxssm locations``: arguments in, one table out, an exit code that says how it went.

Exit codes: 0 every row answered (or some ``failed`` with ``--allow-failed``); 2 unusable input
or arguments (named, before anything is asked), or the output or the cache could not be written
while running (disk full: the target is left as it was, the cache keeps what it had);
3 some rows ``failed`` (their batch exhausted ``--max-attempts``) or the run stopped (quota, a
refused key, the server down), the output written with the rows answered so far; 130 Ctrl-C,
the output written with the rows not reached marked ``pending``. Every stop prints how to resume:
the same command again, with the same ``--cache``, asks only for what is not cached.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from jaxssm.errors import OutputError
from jaxssm.locations.base import LocationResult, NormalizeInterrupted, Progress
from jaxssm.locations.cache import LocationCacheError
from jaxssm.locations.cascade import make_normalizer
from jaxssm.locations.files import check_writable
from jaxssm.locations.llm import LLMError
from jaxssm.locations.table import (
    LocationTableError,
    ProgressPrinter,
    location_texts,
    read_table,
    results_frame,
    summarize,
    write_table,
)


class LocationsUsageError(ValueError):
    """Arguments that cannot work (a cache path under a file, ``--out`` over the input)."""


def default_cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxssm" / "locations.sqlite"


def cache_path(args: argparse.Namespace) -> Path | None:
    """The LLM answer cache the arguments ask for (None without an LLM)."""
    if not args.llm_base_url:
        return None
    return args.cache or default_cache_path()


def normalizer_from_args(
    args: argparse.Namespace, on_progress: Callable[[Progress], None] | None = None
):
    """The normalizer the LLM arguments ask for.

    Raises:
        ValueError: a bad combination; :class:`LocationsUsageError` naming the cache path when
            its folder cannot be created or the file cannot be opened as a cache.
    """
    llm_options = {}
    cache = cache_path(args)
    if cache is not None:
        origin = "" if args.cache else " ($XDG_CACHE_HOME or ~/.cache; or give --cache)"
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LocationsUsageError(
                f"cannot create the folder {cache.parent} of the location cache{origin}: "
                f"{err.strerror or err}"
            ) from None
        llm_options = dict(
            api_key_env=args.api_key_env,
            rpm=args.rpm,
            tpm=args.tpm,
            max_concurrency=args.max_concurrency,
            batch_size=args.batch_size,
            max_attempts=getattr(args, "max_attempts", 6),
            cache=cache,
        )
    try:
        return make_normalizer(
            args.backend,
            base_url=args.llm_base_url,
            model=args.model,
            on_progress=on_progress,
            **llm_options,
        )
    except LocationCacheError as err:
        raise LocationsUsageError(str(err)) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(out: Path, *, inputs: Sequence[Path], cache: Path | None) -> None:
    """Refuse an ``--out`` that would overwrite an input or the cache, or cannot be written."""
    for path, what in [*((p, "the input") for p in inputs), (cache, "the --cache file")]:
        if path is not None and _same_file(out, path):
            raise LocationsUsageError(
                f"--out {out} is {what}; writing it would destroy it: give another --out"
            )
    try:
        check_writable(out)
    except OutputError as err:
        raise LocationsUsageError(f"--out: {err}") from None


def _print(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _resume_hint(cache: Path | None) -> str:
    if cache is None:
        return "run the same command again"
    return (
        f"run the same command again (with --cache {cache}) to resume: cached answers are not "
        "asked again"
    )


def run_locations(args: argparse.Namespace) -> int:
    """Run ``jaxssm locations`` from parsed arguments; the exit code (see the module)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        _print(f"interrupted; {args.out} was not written. {_resume_hint(cache_path(args))}.")
        return 130


def _run(args: argparse.Namespace) -> int:
    cache = cache_path(args)
    try:
        frame = read_table(args.input)
        texts = location_texts(frame, args.column, str(args.input))
        check_output(args.out, inputs=[args.input], cache=cache)
        printer = None if args.quiet else ProgressPrinter()
        normalizer = normalizer_from_args(args, printer)
    except (LocationTableError, ValueError) as err:
        _print(f"error: {err}")
        return 2
    stop: Exception | None = None
    try:
        results = normalizer.normalize(texts)
    except NormalizeInterrupted as err:
        results, stop = err.results, err
    except (LLMError, LocationCacheError) as err:
        results, stop = err.results, err
        _print(f"error: {err}")
    finally:
        close = getattr(normalizer, "close", None)
        if close is not None:
            close()
    answers = results_frame(results, taken=list(map(str, frame.columns)))
    try:
        write_table(pd.concat([frame.reset_index(drop=True), answers], axis=1), args.out)
    except OutputError as err:
        _print(f"error: {err}; it is left as it was")
        return 2
    print(summarize(results))
    print(f"wrote {args.out}")
    return _outcome(args, results, stop, getattr(normalizer, "llm", normalizer), cache)


def _outcome(
    args: argparse.Namespace,
    results: Sequence[LocationResult],
    stop: Exception | None,
    llm,
    cache: Path | None,
) -> int:
    """Say what is missing and how to get it; the exit code."""
    pending = sum(r.status == "pending" for r in results)
    failed = sum(r.status == "failed" for r in results)
    left = f"{pending} rows have status 'pending' and {failed} 'failed'"
    if isinstance(stop, NormalizeInterrupted):
        _print(f"interrupted: {left}; {_resume_hint(cache)}.")
        return 130
    if isinstance(stop, LocationCacheError):
        _print(f"{left}; free space for the cache, then {_resume_hint(cache)}.")
        return 2
    if stop is not None:
        _print(f"{left}; {_resume_hint(cache)}.")
        return 3
    if failed:
        last = getattr(llm, "last_failure", None)
        why = f" (the last failure: {last})" if last else ""
        _print(
            f"warning: {failed} rows have status 'failed': the LLM could not answer them{why}. "
            f"To retry them, {_resume_hint(cache)} (raise --max-attempts if the server is "
            "flaky); pass --allow-failed to accept them."
        )
        return 0 if args.allow_failed else 3
    return 0
