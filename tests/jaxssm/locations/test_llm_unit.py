"""Fast, deterministic tests of the LLM normalizer's logic (respx transport mock), its limiter
and its cache. The wire-level behaviour is in test_llm.py, against a real loopback server."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sqlite3
import time

import httpx
import pytest
import respx

from jaxssm.locations.base import LocationResult
from jaxssm.locations.cache import LocationCache
from jaxssm.locations.limiter import DualLimiter, _Budget, estimate_tokens
from jaxssm.locations.llm import (
    RESULT_SCHEMA,
    SYSTEM_PROMPT,
    LLMNormalizer,
    PermanentLLMError,
    retry_after_s,
)
from jaxssm.locations.llm_answers import Item, parse_content, to_country_code, validate

URL = "http://llm.test/v1"
TABLE = {"berlin": "DE", "paris": "FR", "東京": "JP", "earth": None}


def completion(content: str, finish_reason: str = "stop") -> httpx.Response:
    message = {"role": "assistant", "content": content}
    return httpx.Response(
        200, json={"choices": [{"message": message, "finish_reason": finish_reason}]}
    )


def correct(request: httpx.Request) -> httpx.Response:
    """What a good model answers (countries from TABLE, everything else unknown)."""
    items = json.loads(json.loads(request.content)["messages"][-1]["content"])["items"]
    rows = [
        {
            "i": it["i"],
            "text": it["text"],
            "country": TABLE.get(it["text"].lower()),
            "region": None,
            "city": None,
            "status": "ok" if TABLE.get(it["text"].lower()) else "unknown",
        }
        for it in items
    ]
    return completion(json.dumps({"results": rows}))


def scripted(*steps):
    """A respx side effect: each step (a Response, an exception, or None for a correct answer)
    answers one request; after the script, correct answers."""
    queue = list(steps)

    def respond(request):
        step = queue.pop(0) if queue else None
        if step is None:
            return correct(request)
        if isinstance(step, Exception):
            raise step
        return step

    return respond


def failure(status, message="nope", code=None, headers=None) -> httpx.Response:
    body = {"error": {"message": message, "type": "x", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def api():
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router.post("/chat/completions")


def make(no_sleep, **kw) -> LLMNormalizer:
    kw.setdefault("api_key_env", "JAXSSM_TEST_NO_SUCH_KEY")
    return LLMNormalizer(URL, "m", sleep=no_sleep, **kw)


# ----------------------------------------------------------------------------- construction


def test_a_base_url_is_required_and_construction_opens_no_socket(monkeypatch, tmp_path):
    def no_network(*args):
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    llm = LLMNormalizer(URL, "m", rpm=60, tpm=100_000, cache=tmp_path / "c.sqlite")
    assert llm.fingerprint.startswith("llm|m|v")
    llm.close()
    for bad in ("", None, "localhost:11434"):
        with pytest.raises(ValueError, match="base_url"):
            LLMNormalizer(bad, "m")
    with pytest.raises(ValueError, match="tpm"):
        LLMNormalizer(URL, "m", tpm=100)


def test_normalize_inside_a_running_loop_points_to_anormalize(no_sleep):
    async def inside():
        make(no_sleep).normalize(["Berlin"])

    with pytest.raises(RuntimeError, match="anormalize"):
        asyncio.run(inside())


# ----------------------------------------------------------------------------- status matrix


@pytest.mark.parametrize(
    "reply",
    [
        failure(400),
        failure(401),
        failure(403),
        failure(404),
        failure(422),
        failure(429, "You exceeded your current quota", code="insufficient_quota"),
        failure(503, headers={"x-should-retry": "false"}),
    ],
    ids=["400", "401", "403", "404", "422", "insufficient_quota", "503-should-not-retry"],
)
def test_permanent_errors_stop_after_one_request(api, no_sleep, reply):
    api.mock(side_effect=scripted(reply))
    with pytest.raises(PermanentLLMError, match=f"HTTP {reply.status_code}") as info:
        make(no_sleep).normalize(["Berlin", "Paris"])
    assert api.call_count == 1 and info.value.status_code == reply.status_code
    assert [r.status for r in info.value.results] == ["pending", "pending"]


@pytest.mark.parametrize(
    "reply",
    [failure(s) for s in (408, 409, 425, 429, 500, 502, 503, 504)]
    + [failure(400, headers={"x-should-retry": "true"})],
    ids=[str(s) for s in (408, 409, 425, 429, 500, 502, 503, 504)] + ["400-should-retry"],
)
def test_transient_statuses_are_retried(api, no_sleep, reply):
    api.mock(side_effect=scripted(reply))
    llm = make(no_sleep)
    assert [r.country for r in llm.normalize(["Berlin", "Paris"])] == ["DE", "FR"]
    assert api.call_count == 2 and llm.progress.retries == 1
    assert llm.progress.rate_limited == (reply.status_code == 429)


def test_transport_errors_are_retried_and_attempts_are_bounded(api, no_sleep):
    errors = [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("gone"),
    ]
    api.mock(side_effect=scripted(*errors))
    assert make(no_sleep).normalize(["Berlin"])[0].country == "DE"
    assert api.call_count == 4

    api.reset()
    api.mock(side_effect=scripted(*[failure(500)] * 10))
    llm = make(no_sleep, max_attempts=4)
    assert [r.status for r in llm.normalize(["Berlin"])] == ["failed"]  # the run goes on
    assert "4 attempts" in llm.last_failure and llm.progress.failed_batches == 1
    assert api.call_count == 4
    assert len(no_sleep.waits) >= 3


def test_retry_after_header_forms():
    h = httpx.Headers
    assert retry_after_s(h({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_s(h({"retry-after": "2"})) == 2.0
    assert retry_after_s(h({"retry-after": "1.5"})) == 1.5
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 28 <= retry_after_s(h({"retry-after": date})) <= 30
    assert retry_after_s(h({"retry-after": "Mon, 01 Jan 2001 00:00:00 GMT"})) == 0.0
    assert retry_after_s(h({"retry-after": "3600"})) == 120.0  # capped
    assert retry_after_s(h({"retry-after": "soon"})) is None
    assert retry_after_s(h({})) is None


# ----------------------------------------------------------------------------- payload and key


def test_request_payload_and_key_handling(api, no_sleep, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    api.mock(side_effect=correct)
    texts = ["Berlin", "東京"]
    make(no_sleep, api_key_env="OPENAI_API_KEY").normalize(texts)
    request = api.calls.last.request
    assert "authorization" not in request.headers  # no key, no header
    body = json.loads(request.content)
    assert body["model"] == "m" and body["temperature"] == 0
    assert body["max_tokens"] == 200 + sum(32 + math.ceil(len(t.encode()) / 3) for t in texts)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "locations", "strict": True, "schema": RESULT_SCHEMA},
    }
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert json.loads(body["messages"][1]["content"]) == {
        "items": [{"i": 0, "text": "Berlin"}, {"i": 1, "text": "東京"}]
    }

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-42")
    llm = make(no_sleep, api_key_env="OPENAI_API_KEY")
    llm.normalize(["Paris"])
    assert api.calls.last.request.headers["authorization"] == "Bearer sk-from-env-42"
    assert "sk-from-env-42" not in repr(llm) and "api_key=set" in repr(llm)

    api.mock(side_effect=scripted(failure(401, "Incorrect API key provided: sk-from-env-42")))
    with pytest.raises(PermanentLLMError) as info:
        llm.normalize(["Lagos"])
    assert "sk-from-env-42" not in str(info.value) and "$OPENAI_API_KEY" in str(info.value)


# ----------------------------------------------------------------------------- answer parsing


def test_parse_content_tolerates_wrappers():
    data = {"results": [{"i": 0}]}
    text = json.dumps(data)
    assert parse_content(text) == data
    assert parse_content(f"```json\n{text}\n```") == data
    assert parse_content(f"Here you go:\n{text}\nBye {{not json}}") == data
    assert parse_content(f"<think>maybe {{x}}</think>{text}") == data
    assert parse_content("[1, 2]") == [1, 2]
    assert parse_content(text[:-5]) is None  # truncated
    assert parse_content("") is None and parse_content("<think>never closed") is None


def test_country_codes_are_mapped_or_rejected():
    assert to_country_code("jp") == ("JP", True)
    assert to_country_code(" UK ") == ("GB", True)
    assert to_country_code("Japan") == ("JP", True)
    assert to_country_code("USA") == ("US", True)
    assert to_country_code("XK") == ("XK", True)
    assert to_country_code(None) == (None, True) and to_country_code("null") == (None, True)
    assert to_country_code("Narnia") == (None, False)
    assert to_country_code("ZZ") == (None, False)
    assert to_country_code(49) == (None, False)


def test_validate_checks_indices_echoes_and_codes():
    items = [Item("sao paulo", "São Paulo 🇧🇷"), Item("berlin", "Berlin"), Item("x", "X")]

    def row(i, text, country="BR", **kw):
        return {"i": i, "text": text, "country": country, "region": None, "city": None, **kw}

    good, problems = validate(
        {
            "results": [
                row(0, "sao paulo", status="multi"),  # echo compared loosely (fold, alnum)
                row(1, "Paris", "FR"),  # echo mismatch: a shifted index
                row(2, "X", "Japan", status="unknown"),  # a name; status fixed to match
                row(7, "X"),  # out of range
            ]
        },
        items,
        "llm:m",
    )
    assert set(good) == {"sao paulo", "x"}
    assert good["sao paulo"].status == "multi" and good["x"] == LocationResult(
        "X", "JP", "Japan", status="ok", source="llm:m"
    )
    assert len(problems) == 2
    dup, _ = validate([row(0, "São Paulo"), row(0, "São Paulo")], items, "s")
    assert dup == {}  # a repeated index is not trusted
    earth, _ = validate([row(0, "São Paulo", None, status="non_geo")], items, "s")
    assert earth["sao paulo"].status == "non_geo"
    assert validate("not a list", items, "s") == ({}, ["no results list in the reply"])


# ----------------------------------------------------------------------------- planning


def test_batches_respect_batch_size_and_tpm(no_sleep):
    items = [Item(f"k{j}", f"place number {j}") for j in range(120)]
    assert [len(b) for b in make(no_sleep)._plan(items)] == [50, 50, 20]
    small = make(no_sleep, tpm=1_500)
    batches = small._plan(items)
    assert all(small._request_tokens(b) <= 1_500 for b in batches) and len(batches) > 6


# ----------------------------------------------------------------------------- limiter


def test_estimate_tokens():
    assert estimate_tokens([]) == 3
    assert estimate_tokens([{"role": "user", "content": "abcd"}]) == 3 + 2 + 4
    assert (
        estimate_tokens([{"role": "user", "content": "東京"}, {"role": "system"}]) == 3 + 2 + 4 + 4
    )


def test_limiter_paces_requests_from_the_start():
    async def run():
        limiter = DualLimiter(rpm=1200)  # 20 per second, no opening burst
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(10):
            await limiter.acquire()
        return loop.time() - start

    assert 0.48 <= asyncio.run(run()) <= 0.8


def test_limiter_chunks_large_amounts_and_keeps_fifo_order():
    async def run():
        limiter = DualLimiter(tpm=60_000)  # 1,000 tokens/s; the bucket holds 1,000
        order = []

        async def take(name, tokens):
            await limiter.acquire(tokens)
            order.append(name)

        loop = asyncio.get_running_loop()
        start = loop.time()
        await take("big", 1_200)  # above the bucket: taken in chunks, no ValueError
        first = loop.time() - start
        tasks = [asyncio.create_task(take("big2", 300))]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(take(f"small{k}", 20)) for k in range(5)]
        await asyncio.gather(*tasks)
        return first, order

    first, order = asyncio.run(run())
    assert first >= 1.18  # waited out the window and its margin (a lower bound, load-proof)
    assert order == ["big", "big2"] + [f"small{k}" for k in range(5)]  # no overtaking


def test_limiter_window_log_caps_a_burst_after_idle():
    async def run():
        budget = _Budget(6, window=0.3, margin=0.0)  # 6 per 0.3 s; the bucket alone: 12
        loop = asyncio.get_running_loop()
        for _ in range(6):
            await budget.take(1, loop)
        await asyncio.sleep(0.35)  # idle: the bucket empties
        start = loop.time()
        times = []
        for _ in range(7):
            await budget.take(1, loop)
            times.append(loop.time() - start)
        return times

    times = asyncio.run(run())
    assert times[5] < 0.05  # the burst the bucket allows after idle...
    assert times[6] >= 0.29  # ...but never more than 6 in any 0.3 s window
    with pytest.raises(ValueError, match="exceeds"):
        asyncio.run(_Budget(10).take(11, asyncio.new_event_loop()))


def test_limiter_counts_an_admission_a_margin_past_the_window_and_records_it_when_sent():
    async def margin():
        budget = _Budget(2, window=0.2, margin=0.1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        times = []
        for _ in range(3):
            await budget.take(1, loop)
            times.append(loop.time() - start)
        return times

    times = asyncio.run(margin())
    assert times[2] - times[0] >= 0.3  # window + margin after the first, not just the window

    async def recorded_together():
        limiter = DualLimiter(rpm=120, tpm=60_000, window_s=1.0)  # 2 requests per second
        loop = asyncio.get_running_loop()
        for _ in range(3):  # the third waits for the requests budget, long after tokens allow it
            await limiter.acquire(100)
        return limiter._tokens._log[-1][0], limiter._requests._log[-1][0], loop.time()

    tokens_at, request_at, now = asyncio.run(recorded_together())
    assert tokens_at == request_at and now - request_at < 0.05


def test_limiter_cooldown_pauses_and_slot_caps_concurrency(no_sleep):
    async def run():
        limiter = DualLimiter(max_concurrency=2, sleep=no_sleep)
        limiter.cooldown(5.0)
        await limiter.acquire()
        peak = 0

        async def work():
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(work() for _ in range(6)))
        return peak, limiter.max_in_flight

    assert asyncio.run(run()) == (2, 2)
    assert len(no_sleep.waits) == 1 and 4.9 <= no_sleep.waits[0] <= 5.0


# ----------------------------------------------------------------------------- cache


def test_cache_round_trip_skips_failed_and_separates_fingerprints(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    answers = {
        "berlin": LocationResult("Berlin", "DE", "Germany", "Berlin", "Berlin", "ok", "llm:m"),
        "x": LocationResult("x", status="failed", source="llm:m"),
        "springfield": LocationResult("Springfield", "US", status="multi", candidates=("AU",)),
    }
    with LocationCache(path) as cache:
        assert cache.put_many(answers, "fp1") == 2
    with LocationCache(path) as cache:  # reopened: committed, WAL journal
        got = cache.get_many(["berlin", "x", "springfield", "nope"], "fp1")
        assert set(got) == {"berlin", "springfield"}
        assert got["berlin"] == LocationResult(
            "berlin", "DE", "Germany", "Berlin", "Berlin", "ok", "cache"
        )
        assert got["springfield"].candidates == ("AU",)
        assert cache.get_many(["berlin"], "fp2") == {}
        assert cache.count() == 2
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        LocationCache(path)


def test_cache_rerun_model_change_and_failed_retry(api, no_sleep, tmp_path):
    db = tmp_path / "c.sqlite"
    bad = completion(json.dumps({"results": [{"i": 0, "text": "Paris", "country": "Narnia"}]}))
    api.mock(side_effect=scripted(None, bad, bad))  # Berlin fine; Paris rejected twice
    out = make(no_sleep, cache=db, batch_size=1, max_concurrency=1).normalize(["Berlin", "Paris"])
    assert [r.status for r in out] == ["ok", "failed"] and api.call_count == 3

    api.reset()
    progress = []
    llm = make(no_sleep, cache=db, on_progress=progress.append)
    out = llm.normalize(["Berlin", "berlin", "Paris"])
    assert api.call_count == 1  # only the failed one is asked again
    assert [r.source for r in out] == ["cache", "cache", "llm:m"]
    last = progress[-1]
    assert (last.total, last.done, last.cached, last.by_llm, last.failed) == (2, 2, 1, 1, 0)

    api.reset()
    assert make(no_sleep, cache=db).normalize(["Berlin", "Paris"])[1].source == "cache"
    assert api.call_count == 0  # a rerun makes no request

    other = LLMNormalizer(URL, "other-model", cache=db, sleep=no_sleep)
    assert other.fingerprint != llm.fingerprint
    other.normalize(["Berlin"])
    assert api.call_count == 1  # another model misses the cache

    make(no_sleep, cache=db, refresh=True).normalize(["Berlin"])
    assert api.call_count == 2
