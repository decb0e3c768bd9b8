"""A scriptable OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1, for tests and
benchmarks of the LLM location normalizer (stdlib only; no network beyond loopback).

By default it answers every request correctly, resolving each item of the user message's
``{"items": [{"i", "text"}]}`` from a table keyed by folded text. A queue of *behaviours* scripts
the next requests, one each, in arrival order (429s with each Retry-After form, 5xx, permanent
errors, slow answers, dropped connections, content faults); when the queue is empty,
``server.default`` answers. Every request is recorded: arrival and reply times
(``time.monotonic``, the event loop's clock), headers, body, item texts, and the peak number
of requests in flight.

Example::

    with FakeOpenAI({"berlin": "DE", "東京": ("JP", "Tokyo", "Tokyo"), "earth": NON_GEO}) as srv:
        srv.script(rate_limited(retry_after_ms=50), error(503))
        LLMNormalizer(srv.base_url, "fake-model").normalize(["Berlin", "東京"])
        [s.status for s in srv.requests]  # [429, 503, 200]

Answer table values: an ISO code string (status ``ok``), ``None`` (``unknown``), a tuple
``(country, region, city)`` or a dict with any of ``country, region, city, status``; a callable
``text -> value`` works in place of the table. Unlisted texts are ``unknown``. A value the client
must reject (``"NARNIA"``) makes that item fail every time.
"""

from __future__ import annotations

import collections
import email.utils
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loopback_http import JSONHandler, LoopbackServer, Reply, named

from jaxssm.locations.base import fold
from jaxssm.locations.limiter import estimate_tokens

NON_GEO = {"country": None, "status": "non_geo"}


@dataclass
class Seen:
    """One request as the server saw it."""

    t: float  # arrival (time.monotonic)
    headers: dict[str, str]  # lower-case names
    body: dict | None
    texts: list[str]  # the items' texts, in order
    behaviour: str = ""
    status: int = 0  # 0: connection dropped
    t_reply: float = math.nan
    usage: dict = field(default_factory=dict)

    @property
    def response_format(self) -> str:
        """``json_schema``, ``json_object`` or ``prompt`` (none requested)."""
        fmt = (self.body or {}).get("response_format")
        return fmt.get("type", "?") if isinstance(fmt, dict) else "prompt"


Behaviour = Callable[["FakeOpenAI", Seen], Reply]


# ----------------------------------------------------------------------------- behaviours


def answer() -> Behaviour:
    """A correct answer in the requested format (the default)."""
    return named("answer", lambda srv, seen: srv.completion(seen, srv.answer_content(seen)))


def content(text: str, finish_reason: str = "stop") -> Behaviour:
    """A 200 whose message content is ``text`` verbatim."""
    return named("content", lambda srv, seen: srv.completion(seen, text, finish_reason))


def mangled(fn: Callable[[list[dict]], Any], name: str = "mangled", finish_reason="stop"):
    """A 200 built from the correct results list: ``fn(results)`` returns the content (a str,
    or any JSON value, which is dumped)."""

    def behave(srv: FakeOpenAI, seen: Seen) -> Reply:
        out = fn(srv.results_for(seen.texts))
        return srv.completion(seen, out if isinstance(out, str) else json.dumps(out), finish_reason)

    return named(name, behave)


def fenced() -> Behaviour:
    return mangled(lambda rs: f"```json\n{json.dumps({'results': rs})}\n```", "fenced")


def prose() -> Behaviour:
    return mangled(
        lambda rs: f"Sure! Here are the locations:\n{json.dumps({'results': rs})}\nHope it helps.",
        "prose",
    )


def think() -> Behaviour:
    return mangled(
        lambda rs: "<think>Berlin is {in Germany}, so...</think>\n" + json.dumps({"results": rs}),
        "think",
    )


def truncated() -> Behaviour:
    """The JSON cut at 60% with ``finish_reason="length"`` (the batch did not fit max_tokens)."""
    return mangled(
        lambda rs: json.dumps({"results": rs})[: int(0.6 * len(json.dumps({"results": rs})))],
        "truncated",
        finish_reason="length",
    )


def shifted(by: int = 1) -> Behaviour:
    """Every index off by ``by`` (the classic batched-prompt failure)."""
    return mangled(lambda rs: {"results": [{**r, "i": r["i"] + by} for r in rs]}, "shifted")


def missing(n: int = 1) -> Behaviour:
    """The last ``n`` items left out."""
    return mangled(lambda rs: {"results": rs[: len(rs) - n]}, "missing")


def recoded(codes: Mapping[str, str]) -> Behaviour:
    """Country codes replaced by other strings, e.g. ``{"JP": "Japan", "GB": "UK"}``."""
    return mangled(
        lambda rs: {
            "results": [{**r, "country": codes.get(r["country"], r["country"])} for r in rs]
        },
        "recoded",
    )


def error(
    status: int,
    message: str = "",
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Behaviour:
    """An OpenAI-shaped error ``{"error": {message, type, param, code}}`` with ``status``."""
    body = {
        "error": {
            "message": message or f"fake error {status}",
            "type": code or "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    return named(f"error {status}", lambda srv, seen: Reply(status, body, dict(headers or {})))


def rate_limited(
    retry_after: float | None = None,
    *,
    retry_after_ms: float | None = None,
    http_date_in: float | None = None,
) -> Behaviour:
    """A 429 ``rate_limit_exceeded`` with ``retry-after`` seconds, ``retry-after-ms``, a
    ``retry-after`` HTTP date ``http_date_in`` seconds from the reply, or no header at all."""

    def behave(srv: FakeOpenAI, seen: Seen) -> Reply:
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = f"{retry_after_ms:g}"
        if http_date_in is not None:
            headers["retry-after"] = email.utils.formatdate(time.time() + http_date_in, usegmt=True)
        return error(429, "Rate limit reached", code="rate_limit_exceeded", headers=headers)(
            srv, seen
        )

    return named("429", behave)


def insufficient_quota() -> Behaviour:
    return error(429, "You exceeded your current quota.", code="insufficient_quota")


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Sleep ``seconds`` (past the client's read timeout, say), then answer."""

    def behave(srv: FakeOpenAI, seen: Seen) -> Reply:
        time.sleep(seconds)
        return (then or answer())(srv, seen)

    return named(f"slow {seconds:g}s", behave)


def drop() -> Behaviour:
    """Close the connection without a response (the client sees RemoteProtocolError)."""
    return named("drop", lambda srv, seen: Reply(drop=True))


# ----------------------------------------------------------------------------- the server


class FakeOpenAI(LoopbackServer):
    """The server. Start and stop it with ``with``; ``base_url`` ends in ``/v1``.

    Args:
        answers: folded text → answer (see the module docstring), or a callable.
        latency: seconds every reply takes (models the server's work; concurrency shows up).
        formats: the ``response_format`` types accepted; others get a 400 naming response_format.
        chatty: when no response_format is requested, wrap the JSON in prose and a code fence.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get a 401 whose
            message repeats the presented key (as some servers do).
        rpm, tpm: limits the server enforces over a sliding ``window`` (seconds) counted at each
            request's arrival: a request that would exceed one gets a 429 with ``retry-after-ms``
            (the wait until it would fit) and is not counted. Tokens are the client's own
            estimate (:func:`request_tokens`), so equal limits on both sides are the tightest.
    """

    handler_attr = "fake"

    def __init__(
        self,
        answers: Mapping[str, Any] | Callable[[str], Any] | None = None,
        *,
        latency: float = 0.0,
        formats: tuple[str, ...] = ("json_schema", "json_object"),
        chatty: bool = True,
        api_key: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        window: float = 60.0,
    ):
        if callable(answers):
            self._lookup = answers
        else:
            table = {fold(k): v for k, v in (answers or {}).items()}
            self._lookup = lambda text: table.get(fold(text))
        self.latency = latency
        self.formats = formats
        self.chatty = chatty
        self.api_key = api_key
        self.rpm, self.tpm, self.window = rpm, tpm, window
        self._window_log: collections.deque[tuple[float, int]] = collections.deque()
        self.default: Behaviour = answer()
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._lock = threading.Lock()
        self._requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0

    # -- control -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: Behaviour) -> FakeOpenAI:
        """Queue behaviours for the next requests, one each, in arrival order."""
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def reset(self) -> None:
        """Forget recorded requests, the queue and the in-flight peak."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self.max_in_flight = 0

    @property
    def requests(self) -> list[Seen]:
        """Recorded requests in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def texts_sent(self, status: int | None = 200) -> collections.Counter[str]:
        """How often each item text was sent (in requests answered with ``status``; None: all)."""
        return collections.Counter(
            t for s in self.requests if status is None or s.status == status for t in s.texts
        )

    # -- answers -------------------------------------------------------------------------------
    def resolve(self, text: str) -> dict:
        value = self._lookup(text)
        if value is None:
            return {"country": None, "region": None, "city": None, "status": "unknown"}
        if isinstance(value, str):
            value = {"country": value}
        elif isinstance(value, tuple):
            value = dict(zip(("country", "region", "city"), value, strict=False))
        out = {"country": None, "region": None, "city": None, **value}
        out.setdefault("status", "ok" if out["country"] else "unknown")
        return out

    def results_for(self, texts: list[str]) -> list[dict]:
        return [{"i": i, "text": t, **self.resolve(t)} for i, t in enumerate(texts)]

    def answer_content(self, seen: Seen) -> str:
        data = json.dumps({"results": self.results_for(seen.texts)}, ensure_ascii=False)
        if seen.response_format == "prompt" and self.chatty:
            return f"Here is the JSON you asked for:\n```json\n{data}\n```"
        return data

    def completion(self, seen: Seen, text: str, finish_reason: str = "stop") -> Reply:
        messages = (seen.body or {}).get("messages") or []
        prompt_bytes = sum(len(str(m.get("content", "")).encode()) for m in messages)
        usage = {
            "prompt_tokens": math.ceil(prompt_bytes / 4),  # a rough 4-bytes-per-token count
            "completion_tokens": math.ceil(len(text.encode()) / 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        seen.usage = usage
        body = {
            "id": f"chatcmpl-fake-{len(self._requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (seen.body or {}).get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
        return Reply(200, body)

    def _over_limit(self, seen: Seen) -> float | None:
        """Seconds until ``seen`` would fit the rate limits (None: it fits, and is counted)."""
        if self.rpm is None and self.tpm is None:
            return None
        cost = request_tokens(seen.body or {})
        with self._lock:
            log = self._window_log
            while log and log[0][0] <= seen.t - self.window:
                log.popleft()
            requests, tokens = len(log), sum(n for _, n in log)
            over_r = self.rpm is not None and requests + 1 > self.rpm
            over_t = self.tpm is not None and tokens + cost > self.tpm
            if not (over_r or over_t):
                log.append((seen.t, cost))
                return None
            freed, until = 0, seen.t
            for k, (t, n) in enumerate(log):  # the oldest entries whose expiry makes room
                freed, until = freed + n, t + self.window
                fits_r = not over_r or requests - (k + 1) + 1 <= self.rpm
                fits_t = not over_t or tokens - freed + cost <= self.tpm
                if fits_r and fits_t:
                    break
            return max(until - seen.t, 0.001)

    def _behaviour_for(self, seen: Seen) -> Behaviour:
        wait = self._over_limit(seen)
        if wait is not None:
            return rate_limited(retry_after_ms=math.ceil(wait * 1000))
        auth = seen.headers.get("authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            presented = auth.removeprefix("Bearer ")
            return error(401, f"Incorrect API key provided: {presented}.", code="invalid_api_key")
        fmt = seen.response_format
        if fmt != "prompt" and fmt not in self.formats:
            return error(
                400, f"response_format type {fmt!r} is not supported", param="response_format"
            )
        with self._lock:
            return self._queue.popleft() if self._queue else self.default


class _Handler(JSONHandler):
    fake: FakeOpenAI

    def do_POST(self):
        fake = self.fake
        body = self.read_json()
        seen = Seen(
            t=time.monotonic(),
            headers=self.lower_headers(),
            body=body,
            texts=_item_texts(body),
        )
        with fake._lock:
            fake._requests.append(seen)
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            if self.path.rstrip("/") != "/v1/chat/completions":
                behaviour = error(404, f"no route {self.path}")
            else:
                behaviour = fake._behaviour_for(seen)
            seen.behaviour = getattr(behaviour, "__name__", "custom")
            if fake.latency:
                time.sleep(fake.latency)
            reply = behaviour(fake, seen)
            self.send_reply(seen, reply)
        finally:
            seen.t_reply = time.monotonic()
            with fake._lock:
                fake.in_flight -= 1


def request_tokens(body: dict) -> int:
    """The client's own token estimate of a request (prompt estimate plus ``max_tokens``)."""
    return estimate_tokens(body.get("messages") or []) + int(body.get("max_tokens") or 0)


def _item_texts(body: Any) -> list[str]:
    """The ``text`` of each item in the last user message's JSON, or []."""
    try:
        user = [m for m in body["messages"] if m.get("role") == "user"][-1]
        return [str(item["text"]) for item in json.loads(user["content"])["items"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return []


FakeOpenAI.handler = _Handler
