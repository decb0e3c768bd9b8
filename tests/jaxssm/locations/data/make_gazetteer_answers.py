"""Write ``gazetteer_answers.json``: the default gazetteer's reading of a few thousand strings.

The strings are the bundled demo's locations, every name of the curated tables (alone and in
context), and the simulator's candidate strings for a spread of countries. The answers pin the
gazetteer's behaviour: ``test_gazetteer_answers.py`` checks they do not change.

    python tests/jaxssm/locations/data/make_gazetteer_answers.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jaxssm.locations import default_gazetteer
from jaxssm.locations import gazetteer_tables as tables
from jaxssm.stargazers.simulate import NON_GEO_TEXTS, _all_texts, candidate_locations

HERE = Path(__file__).parent
DEMO = HERE.parents[3] / "jaxssm" / "stargazers" / "data" / "demo_stargazers.csv"
COUNTRIES = (
    "US", "GB", "DE", "FR", "IN", "CN", "BR", "JP", "CA", "RU", "NG", "AU", "ES", "KR", "IT", "NL",
    "PL", "UA", "TR", "MX", "AR", "CO", "ID", "VN", "PK", "BD", "EG", "KE", "ZA", "IL", "IR", "SE",
    "CH", "AT", "PT", "CZ", "RO", "GR", "TW", "SG", "NZ", "IE", "BE", "NO", "FI", "DK", "PH", "TH",
)  # fmt: skip
FIELDS = ("country", "country_name", "region", "city", "status", "candidates")

CURATED = [
    "USA", "U.S.A.", "Holland", "Deutschland", "美国", "Россия", "대한민국", "Türkiye", "UAE",
    "Hong Kong SAR", "Taiwan", "Kosovo", "Palestine", "Åland", "Việt Nam", "ประเทศไทย", "भारत",
    "England", "Scotland", "Wales", "Northern Ireland", "german", "south korean", "Flanders",
    "Bay Area", "SF Bay Area", "Silicon Valley", "DMV", "Delhi NCR", "Ruhrgebiet", "Kansai",
    "NYC", "Big Apple", "New York, NY", "NY, NY", "SF", "LA", "L.A.", "Washington, D.C.",
    "washington dc", "GTA", "Bangalore", "Bombay", "Saigon", "Kiev", "Київ", "München", "Köln",
    "Genf", "Lisboa", "Praha", "Warszawa", "Москва", "СПб", "Питер", "Den Haag", "Saclay",
    "Paris-Saclay", "Sophia Antipolis", "CERN", "Europe", "EMEA", "Scandinavia", "Earth",
    "Remote", "localhost:3000", "127.0.0.1", "UTC-5", "GMT+5:30", "$HOME", "~/code",
    "https://example.com", "me@example.com", "/dev/null", "Mobile developer", "Mobile, AL",
    "Nice", "Reading, UK", "Berkeley, Calif.", "Portland, Ore.", "Austin, TX", "TX", "NSW", "BC",
    "Navi Mumbai, MH", "Recife/PE", "Bosnia and Herzegovina", "Bosnia & Herzegovina",
    "Trinidad and Tobago", "Paris, Texas", "London, Ontario", "Indianapolis, IN", "Berlin, DE",
    "Jordan, MN", "Jordan, Minnesota", "Georgia", "Atlanta, Georgia", "Tbilisi, Georgia",
    "東京", "M√ºnchen", "MÃ¼nchen", "🇩🇪", "Berlin 🇩🇪", "🇪🇺", "America/New_York",
    "Europe/Berlin", "Software engineer in Paris", "Paris ⇄ London", "Paris ✈ Tokyo",
    "Berlin / Munich", "Zurich and Geneva", "Portland, Maine", "Hyderabad", "Jerusalem",
    "Victoria", "San Jose", "Waterloo", "Cambridge, MA", "Cambridge, UK", "DE", "IN", "CA", "",
    "   ", "Waterloo, ON", "São Paulo", "Sao Paulo, Brazil", "Ciudad de México", "Mexico",
]  # fmt: skip


def table_names() -> list[str]:
    """Every name of the curated tables, alone and after a city (codes only after a city)."""
    names = [n for aliases in tables.COUNTRY_ALIASES.values() for n in aliases]
    names += [*tables.DEMONYMS, *tables.REGION_ALIASES, *tables.METROS]
    names += [*tables.CONTINENTS_AND_BLOCS, *tables.NON_PLACES]
    words = sorted(tables.STOP_WORDS | tables.SCAN_STOP_WORDS)
    codes = [f"Springfield, {a}." for a in tables.US_STATE_ABBREVIATIONS]
    return [
        *names,
        *(f"Springfield, {n}" for n in names),
        *words,
        *(f"{w} developer in Lyon" for w in words),
        *codes,
    ]


def location_strings() -> list[str]:
    demo = pd.read_csv(DEMO, dtype=str, keep_default_na=False)["location"]
    candidates = {c: candidate_locations(c) for c in COUNTRIES}
    texts = [*CURATED, *table_names(), *NON_GEO_TEXTS, *sorted(set(demo)), *_all_texts(candidates)]
    return list(dict.fromkeys(texts))


def main() -> None:
    texts = location_strings()
    results = default_gazetteer().normalize(texts)
    pairs = zip(texts, results, strict=True)
    rows = [[text, *(r.to_dict()[f] for f in FIELDS)] for text, r in pairs]
    path = HERE / "gazetteer_answers.json"
    with open(path, "w", encoding="utf-8") as f:  # one row per line
        f.write(f'{{"fields": {json.dumps(["text", *FIELDS])},\n"rows": [\n')
        f.write(",\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
        f.write("\n]}\n")
    print(f"{len(rows)} answers → {path}")


if __name__ == "__main__":
    main()
