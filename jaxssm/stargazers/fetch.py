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

Rate limits, as GitHub documents them
(https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api):

* primary limit: a 403/429 with ``x-ratelimit-remaining: 0``, a 200 whose GraphQL errors have
  type ``RATE_LIMITED``, or a page whose ``rateLimit.remaining`` is below the next query's
  ``cost``: wait until ``x-ratelimit-reset`` (epoch seconds) or ``rateLimit.resetAt``;
* a 403/429 with ``retry-after``: wait that many seconds;
* a secondary limit (a 403/429 that mentions a rate limit, without ``retry-after``): wait at
  least 60 s, doubling on each repeat;
* 500/502/503/504, GraphQL timeouts and transport errors (refused or dropped connections,
  timeouts): exponential backoff with jitter.

Every retry of one request counts towards ``max_attempts``. A 401 (bad credentials) or a
``NOT_FOUND`` repository stops at once; what was fetched stays on disk with its cursor. No
single ``sleep`` is longer than ``wait_cap_s``, and each one is announced to ``progress`` first.
Error messages never contain the token.
"""

from __future__ import annotations

import argparse
import csv
import email.utils
import io
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx

GITHUB_GRAPHQL_URL = "https://api.github.com/graphql"
COLUMNS = ("user", "starred_at", "location")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
META_VERSION = 1
MAX_PAGE_SIZE = 100
RETRY_STATUSES = frozenset({500, 502, 503, 504})
USER_AGENT = "jaxssm-stargazers-fetch"

STARGAZERS_QUERY = """
query Stargazers($owner: String!, $name: String!, $first: Int!, $cursor: String) {
  rateLimit { cost remaining resetAt limit }
  repository(owner: $owner, name: $name) {
    createdAt
    stargazerCount
    stargazers(first: $first, after: $cursor, orderBy: {field: STARRED_AT, direction: ASC}) {
      pageInfo { endCursor hasNextPage }
      edges { starredAt node { login location } }
    }
  }
}
""".strip()

_OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_URL_RE = re.compile(r"^(?:https?://)?(?:www\.)?github\.com/(?P<path>.+)$", re.IGNORECASE)
_TRANSIENT_GRAPHQL_TYPES = frozenset({"INTERNAL", "TIMEOUT", "SERVICE_UNAVAILABLE"})


# ----------------------------------------------------------------------------- errors


class FetchError(Exception):
    """A fetch that cannot go on. ``progress`` is where it stood (None before any request);
    the rows fetched so far are on disk and the cursor saved, so a rerun resumes."""

    progress: FetchProgress | None = None


class InvalidArgumentError(FetchError, ValueError):
    """An argument that cannot be used (output extension, page size, attempts)."""


class InvalidRepositoryError(InvalidArgumentError):
    """A repository argument that is neither ``OWNER/REPO`` nor a github.com URL."""


class MissingTokenError(FetchError):
    """No token: GitHub's GraphQL API does not answer anonymous requests."""


class FetchStateError(FetchError):
    """The files on disk belong to another fetch (another repository, or not ours)."""


class BadCredentialsError(FetchError):
    """GitHub refused the token (401)."""


class RepositoryNotFoundError(FetchError):
    """No such repository, or one the token cannot see."""


class GitHubAPIError(FetchError):
    """An answer that no retry can fix (a 4xx, an unexpected GraphQL error or shape)."""


class RetriesExhaustedError(FetchError):
    """One request failed ``max_attempts`` times in a row."""


class RateLimitWaitTooLongError(FetchError):
    """GitHub asks for a wait longer than ``max_wait_s`` (rerun after the reset)."""


# ----------------------------------------------------------------------------- values


class RepositoryName(NamedTuple):
    """A GitHub repository, ``owner/name``."""

    owner: str
    name: str

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


class Stargazer(NamedTuple):
    """One row of the output table."""

    user: str
    starred_at: str  # ISO 8601 UTC, "2021-03-04T05:06:07Z"
    location: str  # "" when the profile has none


class RateLimit(NamedTuple):
    """The GraphQL ``rateLimit`` object: points the query cost, points left, reset time."""

    cost: int
    remaining: int
    reset_at: float  # epoch seconds
    limit: int


class Page(NamedTuple):
    """One answered GraphQL page."""

    stargazers: tuple[Stargazer, ...]
    end_cursor: str | None
    has_next_page: bool
    created_at: str
    stargazer_count: int
    rate_limit: RateLimit | None
    skipped: int = 0  # edges without a user (deleted accounts)


class Retry(NamedTuple):
    """A failed attempt worth repeating: why, and how long to wait first.

    ``wait_s`` is the exact wait the server asked for; None means exponential backoff, from
    ``Backoff.base_s`` (or ``Backoff.secondary_min_s`` when ``secondary``)."""

    reason: str
    wait_s: float | None = None
    secondary: bool = False


class Backoff(NamedTuple):
    """How long to wait between attempts.

    Attributes:
        base_s: first backoff after a 5xx or a transport error; doubles on each retry.
        max_s: the longest such backoff.
        secondary_min_s: first wait after a secondary rate limit without ``retry-after``.
        jitter: each backoff is multiplied by ``1 + jitter * U(0, 1)`` (never shortened).
        wait_cap_s: the longest single ``sleep``; longer waits are split, each part announced.
        max_wait_s: a wait longer than this raises :class:`RateLimitWaitTooLongError`.
    """

    base_s: float = 1.0
    max_s: float = 60.0
    secondary_min_s: float = 60.0
    jitter: float = 0.25
    wait_cap_s: float = 900.0
    max_wait_s: float = 3900.0


class FetchProgress(NamedTuple):
    """Where a fetch stands; passed to ``progress`` after each page and before each wait.

    Attributes:
        repository: ``owner/name``.
        fetched: rows on disk (including those of earlier, interrupted runs).
        total: the repository's ``stargazerCount`` (None before the first page).
        requests: HTTP requests sent by this run, failed ones included.
        retries: of which repeats after a failure.
        waited_s: seconds slept by this run.
        rate_limit_remaining: GraphQL points left in this hour's window (None when unknown).
        waiting_s: the sleep about to start (0 after a page).
        message: why it waits ("" after a page).
    """

    repository: str
    fetched: int
    total: int | None
    requests: int
    retries: int
    waited_s: float
    rate_limit_remaining: int | None
    waiting_s: float = 0.0
    message: str = ""

    def line(self) -> str:
        """One human-readable line."""
        total = "?" if self.total is None else str(self.total)
        text = (
            f"{self.repository}: {self.fetched}/{total} stargazers, {self.requests} requests, "
            f"{self.retries} retries, waited {self.waited_s:.1f} s"
        )
        if self.rate_limit_remaining is not None:
            text += f", rate limit remaining {self.rate_limit_remaining}"
        if self.message:
            text += f" -- {self.message}"
        return text


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


# ----------------------------------------------------------------------------- pure helpers


def parse_repository(text: str) -> RepositoryName:
    """``OWNER/REPO`` or ``https://github.com/OWNER/REPO[.git][/...]`` as a repository name.

    Example:
        >>> parse_repository("https://github.com/google/jax").slug
        'google/jax'

    Raises:
        InvalidRepositoryError: anything else, with the accepted forms in the message.
    """
    raw = (text or "").strip()
    path = raw
    if match := _URL_RE.match(raw):
        path = match.group("path").split("?")[0].split("#")[0]
        parts = [p for p in path.split("/") if p]
        path = "/".join(parts[:2])
    parts = path.split("/")
    if len(parts) == 2:
        owner, name = parts
        name = name.removesuffix(".git")
        if _OWNER_RE.match(owner) and _NAME_RE.match(name) and name not in (".", ".."):
            return RepositoryName(owner, name)
    raise InvalidRepositoryError(
        f"{text!r} is not a GitHub repository: expected OWNER/REPO (e.g. google/jax) or "
        "https://github.com/OWNER/REPO"
    )


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


def build_request(repo: RepositoryName, cursor: str | None, page_size: int) -> dict[str, Any]:
    """The JSON body of one GraphQL page request."""
    return {
        "query": STARGAZERS_QUERY,
        "variables": {"owner": repo.owner, "name": repo.name, "first": page_size, "cursor": cursor},
    }


def iso_utc(text: str) -> str:
    """An ISO 8601 timestamp as UTC with a ``Z``, to the second: ``2021-03-04T05:06:07Z``."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_to_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from a ``retry-after`` header (seconds or an HTTP date), at least 0; None when
    there is no usable header."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        wait = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when.timestamp() - now
    return None if math.isnan(wait) else max(wait, 0.0)


def header_reset_wait_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until ``x-ratelimit-reset`` (epoch seconds), at least 0; None without it."""
    value = headers.get("x-ratelimit-reset")
    try:
        return max(float(value) - now, 0.0) if value is not None else None
    except ValueError:
        return None


def backoff_s(retry: int, base_s: float, max_s: float, jitter: float, uniform: float) -> float:
    """``min(max_s, base_s * 2**retry) * (1 + jitter * uniform)`` for the ``retry``-th repeat
    (0 for the first), ``uniform`` in [0, 1)."""
    return min(max_s, base_s * 2.0**retry) * (1.0 + jitter * uniform)


def rate_limit_pause_s(
    headers: Mapping[str, str], rate_limit: RateLimit | None, now: float
) -> float | None:
    """After a good page: how long to wait before the next query, if the primary limit is spent
    (``rateLimit.remaining`` below the query's cost, or ``x-ratelimit-remaining: 0``)."""
    if rate_limit is not None and rate_limit.remaining < max(rate_limit.cost, 1):
        return max(rate_limit.reset_at - now, 0.0)
    if headers.get("x-ratelimit-remaining") == "0":
        return header_reset_wait_s(headers, now)
    return None


def _message_of(payload: Any, text: str) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    return " ".join(text.split())[:300]


def _parse_rate_limit(value: Any) -> RateLimit | None:
    if not isinstance(value, dict):
        return None
    try:
        reset = datetime.fromisoformat(str(value["resetAt"])).timestamp()
        return RateLimit(
            int(value["cost"]), int(value["remaining"]), reset, int(value.get("limit") or 0)
        )
    except (KeyError, TypeError, ValueError):
        return None


def parse_page(payload: Mapping[str, Any]) -> Page:
    """The stargazers, cursor and counts of one GraphQL answer without errors.

    Raises:
        RepositoryNotFoundError: ``repository`` is null.
        GitHubAPIError: the answer does not have the query's shape.
    """
    data = payload.get("data")
    if not isinstance(data, dict):
        raise GitHubAPIError("GitHub answered without data")
    repository = data.get("repository")
    if repository is None:
        raise RepositoryNotFoundError("the repository was not found")
    try:
        connection = repository["stargazers"]
        info = connection["pageInfo"]
        stargazers, skipped = [], 0
        for edge in connection["edges"]:
            node = edge.get("node")
            if not node or not node.get("login"):
                skipped += 1
                continue
            stargazers.append(
                Stargazer(
                    str(node["login"]), iso_utc(edge["starredAt"]), node.get("location") or ""
                )
            )
        return Page(
            stargazers=tuple(stargazers),
            end_cursor=info.get("endCursor"),
            has_next_page=bool(info["hasNextPage"]),
            created_at=iso_utc(repository["createdAt"]),
            stargazer_count=int(repository["stargazerCount"]),
            rate_limit=_parse_rate_limit(data.get("rateLimit")),
            skipped=skipped,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise GitHubAPIError(f"GitHub's answer does not have the expected shape ({err!r})") from err


def interpret_response(
    status: int, headers: Mapping[str, str], text: str, *, repository: str, now: float
) -> Page | Retry:
    """One HTTP answer as a page, or a retry with its wait; fatal answers raise.

    Args:
        status: the HTTP status.
        headers: the response headers (case-insensitive mapping, e.g. ``httpx.Headers``).
        text: the response body.
        repository: ``owner/name``, for messages.
        now: the current time, epoch seconds (for ``x-ratelimit-reset`` and ``resetAt``).

    Raises:
        BadCredentialsError: 401.
        RepositoryNotFoundError: a GraphQL ``NOT_FOUND`` error or a null repository.
        GitHubAPIError: other 4xx answers and GraphQL errors that no retry can fix.
    """
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if status == 401:
        raise BadCredentialsError(
            f"GitHub refused the token (401: {_message_of(payload, text)}); check GITHUB_TOKEN "
            "or the token you passed"
        )
    if status in (403, 429):
        wait = retry_after_s(headers, now)
        if wait is not None:
            return Retry(f"HTTP {status} rate limited, retry-after {wait:g} s", wait)
        message = _message_of(payload, text)
        if headers.get("x-ratelimit-remaining") == "0":
            reset = header_reset_wait_s(headers, now)
            if reset is not None:
                return Retry(f"HTTP {status} primary rate limit, resets in {reset:.0f} s", reset)
        if status == 429 or "rate limit" in message.lower():
            return Retry(f"HTTP {status} secondary rate limit", secondary=True)
        raise GitHubAPIError(f"{repository}: GitHub answered {status}: {message}")
    if status in RETRY_STATUSES:
        return Retry(f"HTTP {status}")
    if status != 200:
        raise GitHubAPIError(
            f"{repository}: GitHub answered {status}: {_message_of(payload, text)}"
        )
    if not isinstance(payload, dict):
        return Retry("HTTP 200 with a body that is not JSON")
    errors = payload.get("errors") or []
    if errors:
        return _interpret_graphql_errors(errors, payload, headers, repository, now)
    return parse_page(payload)


def _interpret_graphql_errors(
    errors: Sequence[Any], payload: Mapping[str, Any], headers, repository: str, now: float
) -> Retry:
    kinds = {str(e.get("type") or "") for e in errors if isinstance(e, dict)}
    messages = "; ".join(
        str(e.get("message") or e) if isinstance(e, dict) else str(e) for e in errors
    )[:500]
    if "RATE_LIMITED" in kinds:
        wait = header_reset_wait_s(headers, now)
        if wait is None:
            data = payload.get("data")
            limit = _parse_rate_limit(data.get("rateLimit") if isinstance(data, dict) else None)
            wait = None if limit is None else max(limit.reset_at - now, 0.0)
        if wait is None:
            return Retry("GraphQL RATE_LIMITED without a reset time", secondary=True)
        return Retry(f"GraphQL RATE_LIMITED, resets in {wait:.0f} s", wait)
    if "NOT_FOUND" in kinds:
        raise RepositoryNotFoundError(
            f"{repository}: no such repository, or one this token cannot see (GitHub: {messages})"
        )
    if kinds & _TRANSIENT_GRAPHQL_TYPES or any(
        w in messages.lower() for w in ("timeout", "timed out", "something went wrong")
    ):
        return Retry(f"GraphQL error: {messages[:120]}")
    raise GitHubAPIError(f"{repository}: GitHub answered with GraphQL errors: {messages}")


# ----------------------------------------------------------------------------- files


def _encode_rows(rows: Iterable[Stargazer], header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(meta.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
    tmp = files.out.with_name(files.out.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, files.out)


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


class _Session:
    """The HTTP side of one run: requests with retries and announced waits, and counters."""

    def __init__(
        self,
        *,
        client: httpx.Client,
        api_url: str,
        token: str,
        repository: str,
        max_attempts: int,
        backoff: Backoff,
        progress: Callable[[FetchProgress], None] | None,
        sleep: Callable[[float], None],
        now: Callable[[], float],
        uniform: Callable[[], float],
    ):
        self.client = client
        self.api_url = api_url
        self.headers = {
            "Authorization": f"bearer {token}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self.repository = repository
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.progress = progress
        self.sleep = sleep
        self.now = now
        self.uniform = uniform
        self.requests = 0
        self.retries = 0
        self.waited_s = 0.0
        self.fetched = 0
        self.total: int | None = None
        self.remaining: int | None = None

    def snapshot(self, waiting_s: float = 0.0, message: str = "") -> FetchProgress:
        return FetchProgress(
            repository=self.repository,
            fetched=self.fetched,
            total=self.total,
            requests=self.requests,
            retries=self.retries,
            waited_s=self.waited_s,
            rate_limit_remaining=self.remaining,
            waiting_s=waiting_s,
            message=message,
        )

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.snapshot())

    def wait(self, seconds: float, reason: str) -> None:
        """Sleep ``seconds`` in parts of at most ``wait_cap_s``, announcing each part."""
        if seconds > self.backoff.max_wait_s:
            raise RateLimitWaitTooLongError(
                f"{self.repository}: {reason}: GitHub asks to wait {seconds:.0f} s (until "
                f"{epoch_to_iso(self.now() + seconds)}), more than max_wait_s="
                f"{self.backoff.max_wait_s:g}; run the same command again after then, it "
                "resumes where it stopped"
            )
        left = seconds
        while left > 0:
            part = min(left, self.backoff.wait_cap_s)
            later = f", {left - part:.0f} s more after this" if left > part else ""
            if self.progress is not None:
                self.progress(self.snapshot(part, f"waiting {part:.1f} s: {reason}{later}"))
            self.sleep(part)
            self.waited_s += part
            left -= part

    def request_page(self, body: dict[str, Any]) -> tuple[Page, httpx.Headers]:
        """POST one page query, retrying as the module docstring says."""
        failures = secondary = 0
        while True:
            self.requests += 1
            try:
                response = self.client.post(self.api_url, json=body, headers=self.headers)
            except httpx.UnsupportedProtocol as err:
                raise GitHubAPIError(f"cannot reach {self.api_url}: {err}") from err
            except httpx.RequestError as err:
                outcome: Page | Retry = Retry(f"{type(err).__name__}: {err}"[:200])
            else:
                if (remaining := response.headers.get("x-ratelimit-remaining")) is not None:
                    self.remaining = int(remaining) if remaining.isdigit() else self.remaining
                outcome = interpret_response(
                    response.status_code,
                    response.headers,
                    response.text,
                    repository=self.repository,
                    now=self.now(),
                )
                if isinstance(outcome, Page):
                    return outcome, response.headers
            failures += 1
            if failures >= self.max_attempts:
                raise RetriesExhaustedError(
                    f"{self.repository}: gave up after {failures} attempts of one request; "
                    f"the last: {outcome.reason}"
                )
            if outcome.wait_s is not None:
                wait = outcome.wait_s
            elif outcome.secondary:
                b = self.backoff
                wait = backoff_s(secondary, b.secondary_min_s, math.inf, b.jitter, self.uniform())
                secondary += 1
            else:
                b = self.backoff
                wait = backoff_s(failures - 1, b.base_s, b.max_s, b.jitter, self.uniform())
            self.retries += 1
            self.wait(wait, f"attempt {failures} failed ({outcome.reason})")


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
    session = _Session(
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
    meta: FetchMeta, files: OutputFiles, *, new_rows: int, session: _Session | None, duplicates: int
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


def add_fetch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``jaxssm stargazers fetch OWNER/REPO --out FILE`` to ``parser``."""
    parser.add_argument("repository", help="OWNER/REPO or https://github.com/OWNER/REPO")
    parser.add_argument(
        "--out", required=True, type=Path, help="output table, .csv or .parquet (resumable)"
    )
    parser.add_argument(
        "--token-env", default="GITHUB_TOKEN", help="env var holding the token (GITHUB_TOKEN)"
    )
    parser.add_argument("--api-url", default=GITHUB_GRAPHQL_URL, help="GraphQL endpoint")
    parser.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE, help="1 to 100")
    parser.add_argument(
        "--max-attempts", type=int, default=6, help="attempts of one request (default 6)"
    )
    parser.add_argument(
        "--wait-cap",
        type=float,
        default=Backoff().wait_cap_s,
        help="longest single sleep in seconds before a progress line (default 900)",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="fetch again even if a complete fetch is on disk"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


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
        print("interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    state = "complete" if result.complete else "incomplete"
    print(
        f"wrote {result.out}: {result.rows} stargazers of {result.repository} ({state}; "
        f"{result.requests} requests, {result.retries} retries, waited {result.waited_s:.0f} s)"
    )
    return 0
