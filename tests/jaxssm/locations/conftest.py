"""Fixtures for the location tests: a loopback OpenAI-compatible server and an instant sleep."""

from __future__ import annotations

import asyncio

import pytest
from fake_openai import NON_GEO, FakeOpenAI

# What the fake model knows (keys are folded before lookup); anything else is "unknown".
ANSWERS = {
    "berlin": "DE",
    "paris": "FR",
    "london": ("GB", "England", "London"),
    "東京": ("JP", "Tokyo", "Tokyo"),
    "воронеж": ("RU", "Voronezh Oblast", "Voronezh"),
    "pakistan": "PK",
    "sf bay area": ("US", "California", "San Francisco"),
    "lagos": ("NG", "Lagos", "Lagos"),
    "earth": NON_GEO,
    "narnia": "NARNIA",  # an answer the client must reject every time
}


@pytest.fixture
def fake_llm():
    """A running :class:`FakeOpenAI` answering from :data:`ANSWERS`."""
    with FakeOpenAI(ANSWERS) as server:
        yield server


class SleepRecorder:
    """An async ``sleep`` that records each wait and returns at once."""

    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def no_sleep() -> SleepRecorder:
    return SleepRecorder()
