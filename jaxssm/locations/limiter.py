"""Requests-per-minute *and* tokens-per-minute throttling for LLM calls, with a concurrency cap.

:class:`DualLimiter` admits one request at a time, in arrival order, against two budgets (requests
and estimated tokens per minute) and a semaphore. Each budget is an ``aiolimiter.AsyncLimiter``
that holds one second of the limit (larger amounts are taken in chunks of that size), started
*full* so that a run does not open with a burst, plus a log of the last 60 s of admissions.

Guarantees, for each budget with limit ``L`` per minute and ``t0`` the first admission's start:

1. **Every prefix of a run**: the amount admitted in ``[t0, t]`` is at most ``L·(t − t0)/60``,
   for every ``t``. The achieved rate, measured from the start, is never above the limit.
2. **Every 60-second window**, wherever it starts: at most ``L`` (the log delays an admission
   that would exceed it; this only binds after an idle gap or a cooldown).
3. **Short windows**: steady demand is admitted at the exact rate ``L/60`` per second; after an
   idle gap, at most one bucket (one second of the limit, at least one unit) goes out at once.

An admission is *recorded* in both logs at one instant, when every wait is over and the request
goes out (not when its first budget let it through), and the log counts each admission for
``margin_s`` past the window edge: a server that counts a request at its arrival, a few
milliseconds after it was recorded, never sees ``L + 1`` in its own window when its limit equals
the client's (the price: a steady rate ``margin_s / 60`` below the limit).

A 429 calls :meth:`DualLimiter.cooldown`, which pauses every admission until it ends. A limiter
belongs to one event loop (like the ``AsyncLimiter`` it wraps).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

WINDOW_S = 60.0
WINDOW_MARGIN_S = 0.1  # waited past the window edge: the time from admission to arrival


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """An offline, deliberately high estimate of a chat request's prompt tokens.

    ``ceil(utf8_bytes / 3)`` per message content, plus 4 tokens of framing per message and 3 for
    the reply's priming. Over-estimates English by about a third and is about right for CJK (one
    token per 3-byte character); no tokenizer is downloaded.

    Example:
        >>> estimate_tokens([{"role": "user", "content": "Berlin"}])
        9
    """
    total = 3
    for message in messages:
        content = message.get("content") or ""
        total += math.ceil(len(content.encode("utf-8")) / 3) + 4
    return total


class _Budget:
    """``limit`` per ``window`` seconds: a pre-filled ``AsyncLimiter`` paces admissions at
    ``limit / window`` per second, and a log of the last ``window`` seconds caps them."""

    def __init__(self, limit: float, window: float = WINDOW_S, margin: float = WINDOW_MARGIN_S):
        if not limit > 0:
            raise ValueError(f"a per-minute limit must be positive, got {limit!r}")
        self.limit = float(limit)
        self.window = float(window)
        self.margin = float(margin)
        self.rate = self.limit / self.window  # per second
        self.capacity = min(self.limit, max(1.0, self.rate))  # one second's worth, >= 1 unit
        self._bucket = AsyncLimiter(self.capacity, self.capacity / self.rate)
        self._log: deque[tuple[float, float]] = deque()  # (admitted_at, amount)
        self._in_window = 0.0
        self._primed = False
        self.admitted = 0.0

    def check(self, amount: float) -> None:
        if amount > self.limit:
            raise ValueError(
                f"one request of {amount:g} exceeds the whole per-minute limit {self.limit:g}"
            )

    def _expire(self, now: float) -> None:
        """Forget admissions older than the window plus the margin."""
        while self._log and self._log[0][0] <= now - self.window - self.margin:
            self._in_window -= self._log.popleft()[1]

    async def wait(self, amount: float, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until ``amount`` fits: the pacing bucket, then the window log, whose entries
        count for ``window + margin`` seconds. Room only grows while the caller holds the
        limiter's lock."""
        self.check(amount)
        if not self._primed:  # a fresh bucket is empty: filling it removes the opening burst
            self._primed = True
            await self._bucket.acquire(self.capacity)
        left = float(amount)
        while left > 0:
            chunk = min(left, self.capacity)
            await self._bucket.acquire(chunk)
            left -= chunk
        while True:
            now = loop.time()
            self._expire(now)
            excess = self._in_window + amount - self.limit
            if excess <= 1e-9:
                return
            freed, until = 0.0, now
            for admitted_at, old in self._log:  # the oldest entries whose expiry makes room
                freed += old
                until = admitted_at + self.window + self.margin
                if freed >= excess - 1e-9:
                    break
            await asyncio.sleep(max(until - now, 0.0) + 1e-3)

    async def take(self, amount: float, loop: asyncio.AbstractEventLoop) -> None:
        """:meth:`wait`, then :meth:`record` now (one budget alone)."""
        await self.wait(amount, loop)
        self.record(amount, loop.time())

    def record(self, amount: float, now: float) -> None:
        """Log an admission at ``now``, the moment the request goes out."""
        self._log.append((now, float(amount)))
        self._in_window += amount
        self.admitted += amount


class DualLimiter:
    """FIFO admission against requests/min, tokens/min and a concurrency cap.

    Args:
        rpm: requests per minute, or None for no limit.
        tpm: tokens per minute (prompt estimate plus ``max_tokens``), or None for no limit.
        max_concurrency: requests in flight at once (local servers have a few slots), or None.
        sleep: the coroutine used to wait out a :meth:`cooldown` (injectable for tests).
        window_s: the window the limits count over (60 s: per minute; shorter in tests).
        margin_s: how long past the window edge an admission still counts.

    Example:
        >>> limiter = DualLimiter(rpm=600, tpm=60_000, max_concurrency=4)
        >>> async def call():
        ...     async with limiter.slot(tokens=1_200):
        ...         ...  # send the request here
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        max_concurrency: int | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        window_s: float = WINDOW_S,
        margin_s: float = WINDOW_MARGIN_S,
    ):
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self._requests = _Budget(rpm, window_s, margin_s) if rpm is not None else None
        self._tokens = _Budget(tpm, window_s, margin_s) if tpm is not None else None
        self._semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._lock = asyncio.Lock()  # waiters are woken in arrival order
        self._sleep = sleep
        self._resume_at = -math.inf
        self._waited_to = -math.inf
        self.started_at: float | None = None  # loop time of the first admission's start
        self.in_flight = 0
        self.max_in_flight = 0
        self.admitted_requests = 0
        self.admitted_tokens = 0
        self.cooldowns = 0

    def __repr__(self) -> str:
        return (
            f"DualLimiter(rpm={self.rpm!r}, tpm={self.tpm!r}, "
            f"max_concurrency={self.max_concurrency!r})"
        )

    def cooldown(self, seconds: float) -> None:
        """Pause every admission for ``seconds`` from now (a 429: the server is over its limit)."""
        loop = asyncio.get_running_loop()
        self.cooldowns += 1
        self._resume_at = max(self._resume_at, loop.time() + max(seconds, 0.0))

    async def _wait_cooldown(self, loop: asyncio.AbstractEventLoop) -> bool:
        waited = False
        # Under the lock, so one wait serves everyone queued behind it; tracking the end time
        # waited for (not the clock) also keeps an instant test ``sleep`` from spinning.
        while self._resume_at > self._waited_to and (wait := self._resume_at - loop.time()) > 0:
            self._waited_to = self._resume_at
            waited = True
            await self._sleep(wait)
        return waited

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a turn at the rate limits (not the concurrency cap: see :meth:`slot`); the
        admission is recorded in both budgets when every wait is over."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self.started_at is None:
                self.started_at = loop.time()
            await self._wait_cooldown(loop)
            if self._tokens is not None and tokens > 0:
                await self._tokens.wait(tokens, loop)
            if self._requests is not None:
                await self._requests.wait(1, loop)
            await self._wait_cooldown(loop)  # a 429 may have arrived while we waited
            now = loop.time()
            if self._tokens is not None and tokens > 0:
                self._tokens.record(tokens, now)
            if self._requests is not None:
                self._requests.record(1, now)
            self.admitted_requests += 1
            self.admitted_tokens += tokens

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold a concurrency slot and an admission for one request of ``tokens`` tokens.

        The concurrency slot is taken first, so a request is sent right after its admission.
        """
        if self._semaphore is not None:
            await self._semaphore.acquire()
        try:
            await self.acquire(tokens)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
        finally:
            if self._semaphore is not None:
                self._semaphore.release()
