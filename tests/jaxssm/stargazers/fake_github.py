"""A scriptable GitHub GraphQL endpoint on 127.0.0.1, for the stargazers fetcher's tests (stdlib
only; nothing beyond loopback).

It serves one repository's stargazers, ``first`` per page after an opaque cursor, in the order
given (the fixtures are in star order). By default every request is answered correctly; a queue
of *behaviours* scripts the next requests, one each, in arrival order (rate limits of each kind,
5xx, dropped connections, bad credentials, NOT_FOUND). ``fail_after(pages, behaviour)`` makes
every request after ``pages`` answered pages get ``behaviour`` (a permanent failure). Every
request is recorded with its headers, variables and the status sent (0: dropped).

Example::

    with FakeGitHub(synthetic_stargazers(250), token="t0k") as hub:
        hub.script(secondary_limit(retry_after=1))
        fetch_stargazers("acme/rocket", out, token="t0k", api_url=hub.url, sleep=recorder)
        [seen.status for seen in hub.requests]  # [403, 200, 200, 200]
"""

from __future__ import annotations

import base64
import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loopback_http import JSONHandler, LoopbackServer, Reply, named

DEFAULT_RESET = 2_000_000_000.0  # epoch seconds of the default rate-limit window's reset


class FakeStar:
    """One synthetic stargazer: ``login``, ``starred_at`` (ISO, Z) and ``location`` (or None)."""

    __slots__ = ("location", "login", "starred_at")

    def __init__(self, login: str, starred_at: str, location: str | None):
        self.login = login
        self.starred_at = starred_at
        self.location = location

    def row(self) -> tuple[str, str, str]:
        """The row the fetcher should write for this star."""
        return (self.login, self.starred_at, self.location or "")


# Locations that exercise the CSV writer: commas, quotes, newlines, non-ASCII, "NA", none.
SAMPLE_LOCATIONS = (
    "Berlin, Germany",
    None,
    "São Paulo",
    'Paris, "la ville lumière"',
    "東京",
    "",
    "Lagos\nNigeria",
    "NA",
)


def synthetic_stargazers(
    count: int, start: str = "2019-01-01T00:00:00Z", every_s: int = 3600
) -> list[FakeStar]:
    """``count`` stargazers ``user0000, user0001, ...``, one every ``every_s`` seconds."""
    t0 = datetime.fromisoformat(start)
    return [
        FakeStar(
            f"user{i:04d}",
            (t0 + timedelta(seconds=i * every_s)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            SAMPLE_LOCATIONS[i % len(SAMPLE_LOCATIONS)],
        )
        for i in range(count)
    ]


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:v2:{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    return int(base64.b64decode(cursor).decode().rsplit(":", 1)[1])


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Seen:
    """One request as the server saw it."""

    headers: dict[str, str]  # lower-case names
    body: Any
    behaviour: str = ""
    status: int = 0  # 0: connection dropped

    @property
    def variables(self) -> dict:
        variables = self.body.get("variables") if isinstance(self.body, dict) else None
        return variables if isinstance(variables, dict) else {}

    @property
    def cursor(self) -> str | None:
        return self.variables.get("cursor")


Behaviour = Callable[["FakeGitHub", Seen], Reply]


# ----------------------------------------------------------------------------- behaviours


def page(*, remaining: int | None = None, reset: float | None = None) -> Behaviour:
    """The right page (the default). ``remaining`` / ``reset`` override the ``rateLimit`` of
    this answer (and its headers), e.g. ``remaining=0`` for a spent primary limit."""
    return named("page", lambda hub, seen: hub.page_reply(seen, remaining, reset))


def secondary_limit(retry_after: float | None = None, status: int = 403) -> Behaviour:
    """GitHub's secondary rate limit answer, with ``retry-after`` seconds when given."""
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    body = {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
        "you try again.",
        "documentation_url": "https://docs.github.com/graphql/overview/rate-limits",
    }
    return named(f"secondary {status}", lambda hub, seen: Reply(status, body, dict(headers)))


def too_many_requests(retry_after: float | None = None) -> Behaviour:
    """A bare 429, with ``retry-after`` seconds when given."""
    return secondary_limit(retry_after, status=429)


def primary_limit(reset: float, status: int = 403) -> Behaviour:
    """The primary limit spent: ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        body = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": "x"}
        return Reply(status, body, hub.rate_headers(remaining=0, reset=reset))

    return named(f"primary {status}", behave)


def graphql_rate_limited(reset: float, in_headers: bool = True) -> Behaviour:
    """A 200 with a GraphQL ``RATE_LIMITED`` error; the reset in the headers, or else only in
    ``data.rateLimit.resetAt``."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        limit = {"cost": 1, "remaining": 0, "resetAt": iso(reset), "limit": 5000}
        body = {
            "data": None if in_headers else {"rateLimit": limit, "repository": None},
            "errors": [
                {"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}
            ],
        }
        headers = hub.rate_headers(remaining=0, reset=reset) if in_headers else {}
        return Reply(200, body, headers)

    return named("RATE_LIMITED", behave)


def server_error(status: int = 502) -> Behaviour:
    return named(f"{status}", lambda hub, seen: Reply(status, "<html>Bad gateway</html>"))


def drop() -> Behaviour:
    """Close the connection without an answer (the client sees RemoteProtocolError)."""
    return named("drop", lambda hub, seen: Reply(drop=True))


def bad_credentials(echo_token: bool = True) -> Behaviour:
    """A 401; with ``echo_token`` the message repeats the presented Authorization header."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        presented = seen.headers.get("authorization", "") if echo_token else ""
        message = f"Bad credentials {presented}".strip()
        return Reply(401, {"message": message, "documentation_url": "https://docs.github.com"})

    return named("401", behave)


def not_found() -> Behaviour:
    """The GraphQL answer for a repository that does not exist."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        slug = f"{seen.variables.get('owner')}/{seen.variables.get('name')}"
        body = {
            "data": {"repository": None, "rateLimit": hub.rate_limit_object()},
            "errors": [
                {
                    "type": "NOT_FOUND",
                    "path": ["repository"],
                    "locations": [{"line": 3, "column": 3}],
                    "message": f"Could not resolve to a Repository with the name '{slug}'.",
                }
            ],
        }
        return Reply(200, body, hub.rate_headers())

    return named("NOT_FOUND", behave)


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait ``seconds`` (past the client's read timeout, say), then answer."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        time.sleep(seconds)
        return (then or page())(hub, seen)

    return named(f"slow {seconds:g}s", behave)


def call(fn: Callable[[], None], then: Behaviour | None = None) -> Behaviour:
    """Run ``fn()`` in the server thread, then answer with ``then`` (default: the page)."""

    def behave(hub: FakeGitHub, seen: Seen) -> Reply:
        fn()
        return (then or page())(hub, seen)

    return named("call", behave)


# ----------------------------------------------------------------------------- the server


class FakeGitHub(LoopbackServer):
    """The server; start and stop it with ``with``. ``url`` is its ``/graphql`` endpoint.

    Args:
        stargazers: the stars, in star order.
        owner, name: the one repository served (other names get NOT_FOUND).
        created_at: the repository's ``createdAt``.
        token: requests without ``Authorization: bearer <token>`` get a 401.
        remaining: the rate-limit points left at the start (one is spent per page).
        reset: the epoch seconds of the window's reset.
    """

    handler_attr = "hub"

    def __init__(
        self,
        stargazers: Sequence[FakeStar],
        *,
        owner: str = "acme",
        name: str = "rocket",
        created_at: str = "2018-06-01T12:00:00Z",
        token: str = "ghp_fake_token_0123456789",
        remaining: int = 4999,
        reset: float = DEFAULT_RESET,
    ):
        self.stargazers = list(stargazers)
        self.owner, self.name = owner, name
        self.created_at = created_at
        self.token = token
        self.remaining = remaining
        self.reset = reset
        self.default: Behaviour = page()
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._after: tuple[int, Behaviour] | None = None
        self._lock = threading.Lock()
        self._requests: list[Seen] = []
        self.pages_served = 0

    # -- control -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def script(self, *behaviours: Behaviour) -> FakeGitHub:
        """Queue behaviours for the next requests, one each, in arrival order."""
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def fail_after(self, pages: int, behaviour: Behaviour) -> FakeGitHub:
        """Once ``pages`` pages are answered, answer every request with ``behaviour``."""
        with self._lock:
            self._after = (pages, behaviour)
        return self

    def heal(self) -> FakeGitHub:
        """Forget the queue and ``fail_after``; keep the recorded requests."""
        with self._lock:
            self._queue.clear()
            self._after = None
        return self

    def reset_log(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    @property
    def cursors(self) -> list[str | None]:
        """The ``cursor`` variable of each request, in order."""
        return [seen.cursor for seen in self.requests]

    # -- answers -------------------------------------------------------------------------------
    def rate_limit_object(self, remaining: int | None = None, reset: float | None = None) -> dict:
        return {
            "cost": 1,
            "remaining": self.remaining if remaining is None else remaining,
            "resetAt": iso(self.reset if reset is None else reset),
            "limit": 5000,
        }

    def rate_headers(self, remaining: int | None = None, reset: float | None = None) -> dict:
        left = self.remaining if remaining is None else remaining
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(left),
            "x-ratelimit-used": str(5000 - left),
            "x-ratelimit-reset": str(int(self.reset if reset is None else reset)),
            "x-ratelimit-resource": "graphql",
        }

    def page_reply(self, seen: Seen, remaining: int | None, reset: float | None) -> Reply:
        variables = seen.variables
        if (str(variables.get("owner")).lower(), str(variables.get("name")).lower()) != (
            self.owner.lower(),
            self.name.lower(),
        ):
            return not_found()(self, seen)
        offset = decode_cursor(variables.get("cursor"))
        first = int(variables.get("first") or 0)
        if not 1 <= first <= 100:
            body = {"errors": [{"type": "INVALID", "message": "first must be in 1..100"}]}
            return Reply(200, body)
        stars = self.stargazers[offset : offset + first]
        with self._lock:
            self.remaining -= 1
            self.pages_served += 1
        edges = [
            {"starredAt": s.starred_at, "node": {"login": s.login, "location": s.location}}
            for s in stars
        ]
        body = {
            "data": {
                "rateLimit": self.rate_limit_object(remaining, reset),
                "repository": {
                    "createdAt": self.created_at,
                    "stargazerCount": len(self.stargazers),
                    "stargazers": {
                        "pageInfo": {
                            "endCursor": encode_cursor(offset + len(stars)) if stars else None,
                            "hasNextPage": offset + len(stars) < len(self.stargazers),
                        },
                        "edges": edges,
                    },
                },
            }
        }
        return Reply(200, body, self.rate_headers(remaining, reset))

    def behaviour_for(self, seen: Seen) -> Behaviour:
        if seen.headers.get("authorization", "").lower() != f"bearer {self.token}".lower():
            return bad_credentials(echo_token=False)
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._after is not None and self.pages_served >= self._after[0]:
                return self._after[1]
        return self.default


class _Handler(JSONHandler):
    hub: FakeGitHub
    disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stall)
    text_content_type = "text/html; charset=utf-8"

    def do_POST(self):
        hub = self.hub
        seen = Seen(headers=self.lower_headers(), body=self.read_json())
        with hub._lock:
            hub._requests.append(seen)
        if self.path != "/graphql":
            reply = Reply(404, {"message": "Not Found"})
        else:
            behaviour = hub.behaviour_for(seen)
            seen.behaviour = getattr(behaviour, "__name__", "custom")
            reply = behaviour(hub, seen)
        self.send_reply(seen, reply)


FakeGitHub.handler = _Handler
