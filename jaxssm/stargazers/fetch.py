r"""Fetch a GitHub repository's stargazers (login, star time, profile location) to CSV or Parquet.

One GraphQL request returns 100 stargazers with the time of each star *and* each user's
profile ``location``, so a repository with $n$ stars costs $\lceil n / 100 \rceil$ requests.
The REST alternative (``GET /repos/{owner}/{repo}/stargazers`` with the ``star+json`` media
type) gives the star times but not the locations: it needs one extra ``GET /users/{login}``
per stargazer, i.e. about $n$ requests instead of $n / 100$.

Files written for ``out = stars.csv`` (or ``stars.parquet``):

* ``stars.csv``: the table, columns ``user, starred_at, location`` in star order (oldest
  first); ``starred_at`` is an ISO 8601 UTC string (``2021-03-04T05:06:07Z``), ``location``
  is empty when the profile has none. For Parquet output the rows go to
  ``stars.parquet.part.csv`` while fetching, and ``stars.parquet`` is written (then the part
  file removed) once the last page is in.
* ``stars.meta.json`` (the output's name with its extension replaced by ``.meta.json``):
  ``repository``, ``created_at`` (the repository's creation time, the analysis' $T_0$),
  ``stargazer_count``, ``fetched_at``, ``complete``, ``cursor`` (the last saved page's end
  cursor) and the bookkeeping a resume needs (``has_next_page``, ``rows``, ``data_file``,
  ``data_bytes``).

Checkpoints: after every page the rows are appended (and flushed to disk), then the meta file is
rewritten atomically (a temporary file renamed over it). Whatever stops a fetch (an error,
Ctrl-C, ``kill -9``), the same call again resumes after the saved cursor: the table is first cut
back to the ``data_bytes`` the meta file vouches for, so a page written without its checkpoint is
fetched again rather than kept twice. A user seen twice (unstarred and starred again during the
fetch) is kept once, at the first star. A complete fetch is not repeated (zero requests) unless
``refresh=True``, which starts over.

The GitHub side (the query, the rate-limit rules, retries and waits) is
:mod:`jaxssm.stargazers.github`. Error messages never contain the token.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import httpx

from jaxssm.files import write_atomic
from jaxssm.stargazers.github import (
    GITHUB_GRAPHQL_URL,
    MAX_PAGE_SIZE,
    Backoff,
    FetchError,
    FetchProgress,
    GitHubAPIError,
    GitHubSession,
    InvalidArgumentError,
    MissingTokenError,
    Page,
    RepositoryName,
    Stargazer,
    build_request,
    epoch_to_iso,
    parse_repository,
    rate_limit_pause_s,
    redact,
)

COLUMNS = ("user", "starred_at", "location")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
META_VERSION = 1


class FetchStateError(FetchError):
    """The files on disk belong to another fetch (another repository, or not ours)."""


class FetchResult(NamedTuple):
    """What :func:`fetch_stargazers` did.

    Attributes:
        repository: ``owner/name``.
        out: the table (complete once ``complete``).
        meta: the sidecar JSON.
        rows: rows in the table.
        new_rows: rows fetched by this run.
        stargazer_count: GitHub's count at the last page (may differ from ``rows`` when users
            star or unstar during the fetch, or when accounts were deleted).
        created_at: the repository's creation time (ISO 8601 UTC).
        complete: whether the last page is in.
        requests: HTTP requests sent by this run (0 for a complete fetch run again).
        retries: repeats after failures.
        waited_s: seconds slept.
        duplicates_skipped: stargazers already in the table that came again.
    """

    repository: str
    out: Path
    meta: Path
    rows: int
    new_rows: int
    stargazer_count: int | None
    created_at: str | None
    complete: bool
    requests: int
    retries: int
    waited_s: float
    duplicates_skipped: int


@dataclass(frozen=True)
class FetchMeta:
    """The sidecar JSON: what was fetched, and where to resume.

    ``data_file`` is the CSV being appended (the output itself, or the Parquet output's part
    file) and ``data_bytes`` its length at the last checkpoint: bytes past it are a page whose
    checkpoint never happened, and are cut off before resuming.
    """

    repository: str
    created_at: str | None
    stargazer_count: int | None
    fetched_at: str | None
    complete: bool
    cursor: str | None
    has_next_page: bool
    rows: int
    output: str
    data_file: str
    data_bytes: int
    source: str = "github-graphql"
    version: int = META_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> FetchMeta:
        try:
            data = json.loads(text)
            fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
            return cls(**fields)
        except (ValueError, TypeError) as err:
            raise FetchStateError(
                f"{path}: not a stargazers fetch checkpoint ({err}); delete it or pass "
                "refresh=True (--refresh) to start over"
            ) from err


class OutputFiles(NamedTuple):
    """The paths one output uses."""

    out: Path  # the table asked for
    data: Path  # the CSV appended page by page (``out`` itself for CSV output)
    meta: Path  # the sidecar JSON
    parquet: bool


def output_files(out: str | os.PathLike) -> OutputFiles:
    """The table, the CSV appended while fetching, and the meta file for ``out``.

    Raises:
        InvalidArgumentError: an extension other than ``.csv``, ``.parquet`` or ``.pq``.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise InvalidArgumentError(
            f"{out}: the output must end in .csv, .parquet or .pq (the extension picks the format)"
        )
    parquet = suffix in PARQUET_SUFFIXES
    data = out.with_name(out.name + ".part.csv") if parquet else out
    return OutputFiles(out=out, data=data, meta=meta_path(out), parquet=parquet)


def meta_path(out: str | os.PathLike) -> Path:
    """The sidecar JSON of an output table: ``stars.csv`` -> ``stars.meta.json``."""
    return Path(out).with_suffix(".meta.json")


def read_fetch_meta(out: str | os.PathLike) -> FetchMeta | None:
    """The checkpoint saved next to ``out``, or None when there is none."""
    path = meta_path(out)
    if not path.exists():
        return None
    return FetchMeta.from_json(path.read_text(encoding="utf-8"), path)


# ----------------------------------------------------------------------------- files


def _encode_rows(rows: Iterable[Stargazer], header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: a lone \r is quoted too
    if header:
        writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _write_at(path: Path, offset: int, payload: bytes) -> int:
    """Cut ``path`` to ``offset`` bytes, append ``payload``, flush to disk; the new length."""
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.seek(offset)
        handle.truncate()
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def _write_meta(path: Path, meta: FetchMeta) -> None:
    """Replace the meta file atomically (a crash leaves the old or the new one, never half)."""
    write_atomic(path, meta.to_json().encode("utf-8"))


def _read_users(path: Path, limit_bytes: int) -> list[str]:
    """The ``user`` column of the first ``limit_bytes`` of a CSV written here (header checked)."""
    with open(path, "rb") as handle:
        text = handle.read(limit_bytes).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise FetchStateError(
            f"{path}: does not start with the header {','.join(COLUMNS)}; delete it or pass "
            "refresh=True (--refresh) to start over"
        )
    return [row[0] for row in rows[1:] if row]


def _write_parquet(files: OutputFiles) -> None:
    import pandas as pd

    frame = pd.read_csv(files.data, dtype=str, keep_default_na=False, na_filter=False)
    frame = frame.reindex(columns=list(COLUMNS), fill_value="")
    write_atomic(files.out, lambda handle: frame.to_parquet(handle, index=False))


def _unseen(rows: Iterable[Stargazer], seen: set[str]) -> list[Stargazer]:
    """The rows whose user is not in ``seen`` (first one wins); ``seen`` is updated."""
    fresh = []
    for row in rows:
        if row.user not in seen:
            seen.add(row.user)
            fresh.append(row)
    return fresh


def _save_page(
    files: OutputFiles, meta: FetchMeta, page: Page, rows: Sequence[Stargazer], fetched_at: str
) -> FetchMeta:
    """Append ``rows`` after the last checkpoint, then save (and return) the new checkpoint."""
    size = _write_at(files.data, meta.data_bytes, _encode_rows(rows, header=not meta.data_bytes))
    meta = replace(
        meta,
        created_at=page.created_at,
        stargazer_count=page.stargazer_count,
        fetched_at=fetched_at,
        complete=not page.has_next_page and not files.parquet,
        cursor=page.end_cursor or meta.cursor,
        has_next_page=page.has_next_page,
        rows=meta.rows + len(rows),
        data_bytes=size,
    )
    _write_meta(files.meta, meta)
    return meta


def _write_fresh_meta(repo: RepositoryName, files: OutputFiles) -> FetchMeta:
    """Save (and return) the checkpoint of a fetch that has not fetched anything yet."""
    meta = FetchMeta(
        repository=repo.slug,
        created_at=None,
        stargazer_count=None,
        fetched_at=None,
        complete=False,
        cursor=None,
        has_next_page=True,
        rows=0,
        output=files.out.name,
        data_file=files.data.name,
        data_bytes=0,
    )
    files.meta.parent.mkdir(parents=True, exist_ok=True)
    _write_meta(files.meta, meta)
    return meta


def _starting_meta(repo: RepositoryName, files: OutputFiles, refresh: bool) -> FetchMeta:
    """The checkpoint to go on from: the saved one while the files still match it, else a
    fresh one (saved at once, so that ``out`` is known to be ours from then on).

    Raises:
        FetchStateError: the meta file holds another repository's or another output's fetch,
            or ``out`` exists without a meta file (a table this fetcher did not write is never
            overwritten unless ``refresh``).
    """
    saved = None if refresh else read_fetch_meta(files.out)
    if saved is None:
        if not refresh and files.out.exists():
            raise FetchStateError(
                f"{files.out} exists but was not written by this fetcher (no {files.meta.name}); "
                "choose another --out or pass refresh=True (--refresh) to overwrite it"
            )
        return _write_fresh_meta(repo, files)
    if not saved.complete and saved.data_bytes == 0:
        return _write_fresh_meta(repo, files)  # nothing fetched yet (a mistyped repository?)
    if saved.repository.lower() != repo.slug.lower():
        raise FetchStateError(
            f"{files.meta} holds a fetch of {saved.repository}, not {repo.slug}; choose another "
            "--out (two repositories never share one table)"
        )
    if saved.output != files.out.name:
        raise FetchStateError(
            f"{files.meta} belongs to {saved.output}, not {files.out.name}; choose another --out "
            "name"
        )
    if saved.complete and files.out.exists():
        return saved
    if not saved.complete and files.data.exists():
        if files.data.stat().st_size >= saved.data_bytes:
            return saved
    return _write_fresh_meta(repo, files)  # the table was deleted or cut short: start over


# ----------------------------------------------------------------------------- the fetch


def fetch_stargazers(
    repo: str,
    out: str | Path,
    *,
    token: str | None = None,
    token_env: str = "GITHUB_TOKEN",
    api_url: str = GITHUB_GRAPHQL_URL,
    page_size: int = MAX_PAGE_SIZE,
    max_attempts: int = 6,
    progress: Callable[[FetchProgress], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    client: httpx.Client | None = None,
    refresh: bool = False,
    now: Callable[[], float] = time.time,
    backoff: Backoff | None = None,
    timeout_s: float = 30.0,
) -> FetchResult:
    """Fetch every stargazer of ``repo`` into ``out``, resuming an interrupted fetch.

    See the module docstring for the files, the checkpoints and the rate-limit rules.

    Args:
        repo: ``OWNER/REPO`` or ``https://github.com/OWNER/REPO``.
        out: the table, ``.csv`` or ``.parquet`` / ``.pq``.
        token: a GitHub token; default: the environment variable ``token_env``.
        token_env: where to read the token from when ``token`` is None.
        api_url: the GraphQL endpoint.
        page_size: stargazers per request (1 to 100).
        max_attempts: attempts of one request before :class:`RetriesExhaustedError`.
        progress: called with a :class:`FetchProgress` after each page and before each wait.
        sleep: how to wait (tests pass a recorder).
        client: an ``httpx.Client`` to send with (not closed here); default: a new one.
        refresh: start over even if a complete or partial fetch is on disk.
        now: the clock, epoch seconds (rate-limit resets are relative to it).
        backoff: wait settings (:class:`Backoff`), default ``Backoff()``.
        timeout_s: the HTTP timeout of a client created here.

    Returns:
        A :class:`FetchResult`.

    Raises:
        InvalidRepositoryError, InvalidArgumentError: bad arguments (nothing is sent).
        MissingTokenError: no token (nothing is sent; the message names ``token_env``).
        FetchStateError: ``out`` or its meta file belongs to another fetch.
        BadCredentialsError, RepositoryNotFoundError, GitHubAPIError, RetriesExhaustedError,
        RateLimitWaitTooLongError: the fetch stopped; the rows so far are saved, and the same
            call again resumes. No message contains the token.

    Example:
        >>> result = fetch_stargazers("google/jax", "jax_stars.csv")  # doctest: +SKIP
        >>> result.rows, result.complete  # doctest: +SKIP
        (31250, True)
    """
    name = parse_repository(repo)
    files = output_files(out)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    if max_attempts < 1:
        raise InvalidArgumentError("max_attempts must be at least 1")
    token = (token if token is not None else os.environ.get(token_env, "")).strip()
    if not token:
        raise MissingTokenError(
            f"no GitHub token: set the environment variable {token_env} (GitHub's GraphQL API "
            "needs one; a fine-grained token with public read access is enough)"
        )
    backoff = backoff or Backoff()
    meta = _starting_meta(name, files, refresh)
    if meta.complete:
        return _result(meta, files, new_rows=0, session=None, duplicates=0)

    own_client = client is None
    http = client if client is not None else httpx.Client(timeout=timeout_s)
    session = GitHubSession(
        client=http,
        api_url=api_url,
        token=token,
        repository=name.slug,
        max_attempts=max_attempts,
        backoff=backoff,
        progress=progress,
        sleep=sleep,
        now=now,
        uniform=random.random,
    )
    session.fetched, session.total = meta.rows, meta.stargazer_count
    new_rows = duplicates = 0
    try:
        if meta.data_bytes:
            _write_at(files.data, meta.data_bytes, b"")  # drop a page without its checkpoint
        seen = set(_read_users(files.data, meta.data_bytes)) if meta.data_bytes else set()
        while meta.has_next_page:
            page, headers = session.request_page(build_request(name, meta.cursor, page_size))
            if page.has_next_page and (page.end_cursor is None or page.end_cursor == meta.cursor):
                raise GitHubAPIError(f"{name.slug}: GitHub's cursor did not advance")
            fresh = _unseen(page.stargazers, seen)
            duplicates += len(page.stargazers) - len(fresh)
            meta = _save_page(files, meta, page, fresh, fetched_at=epoch_to_iso(now()))
            new_rows += len(fresh)
            session.fetched, session.total = meta.rows, meta.stargazer_count
            if page.rate_limit is not None:
                session.remaining = page.rate_limit.remaining
            session.report()
            if meta.has_next_page:
                pause = rate_limit_pause_s(headers, page.rate_limit, now())
                if pause:
                    session.wait(pause, "primary rate limit spent, waiting for its reset")
        if files.parquet:
            _write_parquet(files)
            meta = replace(meta, complete=True, fetched_at=meta.fetched_at or epoch_to_iso(now()))
            _write_meta(files.meta, meta)
            files.data.unlink(missing_ok=True)
    except FetchError as err:
        err.args = tuple(redact(str(a), token) for a in err.args)
        err.progress = session.snapshot()
        raise
    finally:
        if own_client:
            http.close()
    return _result(meta, files, new_rows=new_rows, session=session, duplicates=duplicates)


def _result(
    meta: FetchMeta,
    files: OutputFiles,
    *,
    new_rows: int,
    session: GitHubSession | None,
    duplicates: int,
) -> FetchResult:
    return FetchResult(
        repository=meta.repository,
        out=files.out,
        meta=files.meta,
        rows=meta.rows,
        new_rows=new_rows,
        stargazer_count=meta.stargazer_count,
        created_at=meta.created_at,
        complete=meta.complete,
        requests=session.requests if session else 0,
        retries=session.retries if session else 0,
        waited_s=session.waited_s if session else 0.0,
        duplicates_skipped=duplicates,
    )


# ----------------------------------------------------------------------------- command line


class FetchProgressPrinter:
    """A ``progress`` callback printing page lines at most every ``every`` seconds (and the
    last page), and every wait at once."""

    def __init__(
        self, stream=None, every: float = 2.0, clock: Callable[[], float] = time.monotonic
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.clock = clock
        self._last = -math.inf

    def __call__(self, progress: FetchProgress) -> None:
        now = self.clock()
        last_page = progress.total is not None and progress.fetched >= progress.total
        if progress.message or last_page or now - self._last >= self.every:
            if not progress.message:
                self._last = now
            print(progress.line(), file=self.stream, flush=True)


def run_fetch(args: argparse.Namespace) -> int:
    """Run a fetch from parsed arguments; 0 when complete, 2 for unusable arguments or files,
    3 when the fetch stopped (the rows so far are kept), 130 after Ctrl-C."""
    printer = None if args.quiet else FetchProgressPrinter()
    try:
        result = fetch_stargazers(
            args.repository,
            args.out,
            token_env=args.token_env,
            api_url=args.api_url,
            page_size=args.page_size,
            max_attempts=args.max_attempts,
            progress=printer,
            refresh=args.refresh,
            backoff=Backoff(wait_cap_s=args.wait_cap),
        )
    except (InvalidArgumentError, MissingTokenError, FetchStateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FetchError as err:
        saved = f"{err.progress.fetched} stargazers are saved; " if err.progress else ""
        print(
            f"error: {err}\n{saved}run the same command again to resume.",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        print(
            f"interrupted: the stargazers fetched so far are saved in {args.out}; run the same "
            "command again to resume (--refresh starts over).",
            file=sys.stderr,
        )
        return 130
    except OSError as err:  # disk full, read-only, a path under a file: one line, the path named
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    state = "complete" if result.complete else "incomplete"
    print(
        f"wrote {result.out}: {result.rows} stargazers of {result.repository} ({state}; "
        f"{result.requests} requests, {result.retries} retries, waited {result.waited_s:.0f} s)"
    )
    return 0
