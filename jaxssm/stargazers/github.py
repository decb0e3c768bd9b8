r"""GitHub's GraphQL API for stargazers: the page query, its parser, and a session that sends it
with retries and announced waits (what :func:`jaxssm.stargazers.fetch.fetch_stargazers` drives).

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

import email.utils
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx

GITHUB_GRAPHQL_URL = "https://api.github.com/graphql"
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


# ----------------------------------------------------------------------------- the session


class GitHubSession:
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
