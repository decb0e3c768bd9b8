"""What every location normalizer shares: the result record, the folded key, the ISO set.

A *normalizer* maps free-text locations ("SF Bay Area", "東京", "Earth") to ISO 3166-1 alpha-2
countries (plus region and city where known). All implementations follow
:class:`LocationNormalizer`: ``normalize(texts)`` returns one :class:`LocationResult` per input,
in order, and ``anormalize`` is its async twin.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Literal, Protocol, runtime_checkable

Status = Literal["ok", "multi", "non_geo", "unknown", "failed", "pending"]
STATUSES: tuple[str, ...] = ("ok", "multi", "non_geo", "unknown", "failed", "pending")
UNANSWERED: tuple[str, ...] = ("failed", "pending")  # never cached: a rerun asks again


@dataclass(frozen=True)
class LocationResult:
    """One normalized location.

    Attributes:
        text: the input string, as given ("" for None).
        country: ISO 3166-1 alpha-2 code (``"XK"`` for Kosovo) or None.
        country_name: the country's common English name, or None.
        region: state / province / subdivision name where known.
        city: city name where known.
        status: ``ok`` (one place), ``multi`` (several places; ``country`` is the first),
            ``non_geo`` ("Earth", "Remote", "localhost"), ``unknown`` (nothing recognised),
            ``failed`` (the backend was asked and could not answer: attempts exhausted or the
            answer invalid), ``pending`` (not answered because the run stopped: Ctrl-C, a
            quota or auth error); both are retried on a rerun.
        source: ``"gazetteer"``, ``"llm:<model>"`` or ``"cache"``.
        candidates: ISO codes of the other countries in play when ambiguous, best first.
    """

    text: str
    country: str | None = None
    country_name: str | None = None
    region: str | None = None
    city: str | None = None
    status: Status = "unknown"
    source: str = "gazetteer"
    candidates: tuple[str, ...] = field(default=())

    def with_text(self, text: str) -> LocationResult:
        """The same answer for another input string with the same folded key."""
        return replace(self, text=text)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["candidates"] = ";".join(self.candidates)
        return out


class NormalizeInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a normalization: ``results`` holds one answer per input row, those not
    reached with status ``pending`` (a ``KeyboardInterrupt``, so code that does not look for
    the rows stops as before)."""

    def __init__(self, results: Sequence[LocationResult]):
        super().__init__("interrupted")
        self.results = list(results)


@runtime_checkable
class LocationNormalizer(Protocol):
    """Free text → :class:`LocationResult`, one per input, order kept."""

    def normalize(self, texts: Sequence[str | None]) -> list[LocationResult]: ...

    async def anormalize(self, texts: Sequence[str | None]) -> list[LocationResult]: ...


_DROPPED = frozenset(("So", "Sk", "Cs", "Co", "Cn", "Me", "Cf"))


def _is_accented_base(ch: str) -> bool:
    """Latin, Greek and Cyrillic letters, whose combining marks are accents to strip (the
    dakuten of Japanese kana are not: ハ and バ are different sounds)."""
    o = ord(ch)
    return o < 0x0530 or 0x1E00 <= o < 0x2000


def _strip(s: str) -> str:
    out = []
    base_is_accented = False
    for ch in s:
        cat = unicodedata.category(ch)
        if cat == "Mn":
            if not base_is_accented:
                out.append(ch)
            continue
        if cat in _DROPPED:  # emoji, pins, flags, variation selectors, joiners
            continue
        base_is_accented = _is_accented_base(ch)
        out.append(ch)
    return "".join(out)


def is_missing(value) -> bool:
    """None, NaN, ``pd.NA`` and ``NaT``: a cell with no location (pandas gives NaN, not None,
    for an empty cell of a string column; "nan" must not become the Thai province Nan)."""
    if value is None:
        return True
    if isinstance(value, str):
        return False
    if type(value).__name__ in ("NAType", "NaTType"):
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


def as_texts(texts: Sequence[object]) -> list[str | None]:
    """Inputs as strings, with every kind of missing value (see :func:`is_missing`) as None."""
    return [None if is_missing(t) else str(t) for t in texts]


def fold(text: str | None) -> str:
    """The dedupe key of a location string.

    Unicode NFKC (so "ℙakistan" is "Pakistan"), accents stripped ("München" → "munchen"),
    case folded, emoji and other symbols dropped, whitespace collapsed. Punctuation is kept:
    the gazetteer splits on it. CJK and other scripts pass through unchanged.
    """
    if not text or is_missing(text):
        return ""
    s = unicodedata.normalize("NFKC", str(text))
    s = unicodedata.normalize("NFKD", s)
    s = _strip(s)
    s = unicodedata.normalize("NFC", s).casefold()
    return " ".join(s.split())


def dedupe(texts: Sequence[str | None]) -> tuple[list[str], list[int]]:
    """Unique folded keys in first-seen order, and for each input the index of its key."""
    index: dict[str, int] = {}
    inverse = []
    for t in texts:
        k = fold(t)
        inverse.append(index.setdefault(k, len(index)))
    return list(index), inverse


@cache
def country_codes() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes (pycountry) plus ``XK`` (Kosovo, user-assigned but in wide use)."""
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}


# Names people use where ISO's short name reads like a treaty ("Russian Federation").
_COMMON_NAMES = {
    "XK": "Kosovo", "RU": "Russia", "IR": "Iran", "KP": "North Korea", "KR": "South Korea",
    "VN": "Vietnam", "TZ": "Tanzania", "SY": "Syria", "MD": "Moldova", "LA": "Laos",
    "BO": "Bolivia", "VE": "Venezuela", "PS": "Palestine", "FM": "Micronesia", "BN": "Brunei",
    "CD": "DR Congo", "CG": "Congo", "CV": "Cape Verde", "TR": "Turkey", "GB": "United Kingdom",
    "US": "United States", "VA": "Vatican City", "MO": "Macao", "HK": "Hong Kong",
}  # fmt: skip


@cache
def _names() -> dict[str, str]:
    import pycountry

    names = {c.alpha_2: getattr(c, "common_name", None) or c.name for c in pycountry.countries}
    names.update(_COMMON_NAMES)
    return names


def country_name(code: str | None) -> str | None:
    """Common English name of an alpha-2 code ("TW" → "Taiwan"), None if not a code."""
    if code is None:
        return None
    return _names().get(code.upper())


def empty_result(text: str | None, status: Status = "unknown", source: str = "gazetteer"):
    return LocationResult(text=text or "", status=status, source=source)


@dataclass
class Progress:
    """Counters of a normalization run, passed to ``on_progress`` callbacks (unique keys, not rows).

    ``done`` counts keys with a final answer (any status); ``cached`` came from the cache,
    ``by_gazetteer`` / ``by_llm`` from each backend, ``failed`` are keys the LLM could not answer
    (``failed_batches`` the batches among them that exhausted their attempts).
    ``requests`` / ``retries`` / ``rate_limited`` count HTTP requests, retried ones and 429s;
    ``tokens_estimated`` the tokens reserved against the tokens-per-minute budget.
    """

    total: int = 0
    done: int = 0
    cached: int = 0
    by_gazetteer: int = 0
    by_llm: int = 0
    failed: int = 0
    failed_batches: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    tokens_estimated: int = 0
    elapsed_s: float = 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first answer)."""
        if self.done <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (self.total - self.done) / self.done

    def line(self) -> str:
        eta = self.eta_s
        eta_text = "?" if eta is None else f"{eta:.0f}s"
        return (
            f"{self.done}/{self.total} done · cached {self.cached} · gazetteer {self.by_gazetteer}"
            f" · llm {self.by_llm} · failed {self.failed} · requests {self.requests}"
            f" · retries {self.retries} · 429s {self.rate_limited} · ETA {eta_text}"
        )
