"""Reading a model's reply to a batch of locations: find the JSON, check every item.

The reply may wrap its JSON in ``<think>`` blocks, code fences or prose; each item must carry an
index in range and unique, the echoed text equal to the input up to
:func:`~jaxssm.locations.base.fold`, and an ISO 3166-1 code (after mapping "UK" and country
names). Items that fail are reported, not guessed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jaxssm.locations.base import LocationResult, country_codes, country_name, fold

_CODE_ALIASES = {"UK": "GB", "EL": "GR"}  # common non-ISO two-letter codes
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)```", re.S)


@dataclass(frozen=True)
class Item:
    """One distinct location in a request."""

    key: str  # folded text: the cache key
    text: str  # what is sent (the first original spelling, cut to MAX_TEXT_CHARS)


def parse_content(content: str) -> Any:
    """The JSON value in a model's reply, or None: ``<think>`` blocks, code fences and prose
    around the JSON are tolerated."""
    text = _THINK.sub("", content or "").strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        try:
            return json.loads(candidate)
        except ValueError:
            pass
        starts = [i for i, ch in enumerate(candidate) if ch in "{["][:20]
        for start in starts:
            try:
                return decoder.raw_decode(candidate, start)[0]
            except ValueError:
                continue
    return None


def _rows(value: Any) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("results"), list):
            return value["results"]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def to_country_code(value: Any) -> tuple[str | None, bool]:
    """``(code, valid)`` for a model's country field: None/"" → (None, True); ``"uk"`` → GB;
    names and alpha-3 codes are looked up in pycountry ("Japan" → JP); anything else is invalid."""
    if value is None:
        return None, True
    if not isinstance(value, str):
        return None, False
    stripped = value.strip()
    if stripped.lower() in ("", "null", "none", "n/a"):
        return None, True
    code = _CODE_ALIASES.get(stripped.upper(), stripped.upper())
    if code in country_codes():
        return code, True
    import pycountry

    try:
        found = pycountry.countries.lookup(stripped)
    except LookupError:
        return None, False
    return (found.alpha_2, True) if found.alpha_2 in country_codes() else (None, False)


def _loose(text: str) -> str:
    return "".join(ch for ch in fold(text) if ch.isalnum())


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())[:100]
    return value if value and value.lower() not in ("null", "none", "n/a") else None


def validate(
    value: Any, items: Sequence[Item], source: str
) -> tuple[dict[str, LocationResult], list[str]]:
    """Accepted answers by key, and a list of problems (empty when every item was answered)."""
    rows = _rows(value)
    if rows is None:
        return {}, ["no results list in the reply"]
    indices = [r.get("i") for r in rows if isinstance(r, dict)]
    counts = Counter(i for i in indices if isinstance(i, int) and not isinstance(i, bool))
    good: dict[str, LocationResult] = {}
    problems: list[str] = []
    for row in rows:
        i = row.get("i") if isinstance(row, dict) else None
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(items):
            problems.append(f"index {i!r} out of range")
            continue
        if counts[i] > 1:
            problems.append(f"index {i} repeated")
            continue
        item = items[i]
        echo = row.get("text")
        if not isinstance(echo, str) or _loose(echo) != _loose(item.text):
            problems.append(f"item {i}: echo {echo!r} is not {item.text!r}")
            continue
        code, valid = to_country_code(row.get("country"))
        if not valid:
            problems.append(f"item {i}: {row.get('country')!r} is not an ISO 3166-1 country")
            continue
        status = row.get("status")
        if code is not None:
            status = status if status in ("ok", "multi") else "ok"
        else:
            status = status if status in ("non_geo", "unknown") else "unknown"
        good[item.key] = LocationResult(
            text=item.text,
            country=code,
            country_name=country_name(code),
            region=_clean(row.get("region")),
            city=_clean(row.get("city")),
            status=status,
            source=source,
        )
    missing = len(items) - len(good)
    if missing and not problems:
        problems.append(f"{missing} of {len(items)} items missing")
    return good, problems
