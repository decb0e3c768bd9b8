"""The bundled M49 table: complete, consistent with ISO 3166-1, and right on the known cases."""

import numpy as np
import pandas as pd
import pycountry
import pytest

from jaxssm.stargazers.regions import (
    COLUMNS,
    LATIN_AMERICA,
    LEVELS,
    aggregate_columns,
    group_of,
    level_names,
    region_table,
)

REGIONS = {"Africa", "Americas", "Asia", "Europe", "Oceania", "Antarctica"}
SUBREGIONS_OF = {
    "Africa": {"Northern Africa", "Sub-Saharan Africa"},
    "Americas": {LATIN_AMERICA, "Northern America"},
    "Asia": {"Central Asia", "Eastern Asia", "South-eastern Asia", "Southern Asia", "Western Asia"},
    "Europe": {"Eastern Europe", "Northern Europe", "Southern Europe", "Western Europe"},
    "Oceania": {"Australia and New Zealand", "Melanesia", "Micronesia", "Polynesia"},
    "Antarctica": {"Antarctica"},
}
INTERMEDIATE_OF = {
    "Sub-Saharan Africa": {"Eastern Africa", "Middle Africa", "Southern Africa", "Western Africa"},
    LATIN_AMERICA: {"Caribbean", "Central America", "South America"},
    "Northern Europe": {"Channel Islands", ""},
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return region_table()


def test_every_iso_country_and_kosovo_has_one_row(table):
    iso = {c.alpha_2 for c in pycountry.countries}
    assert set(table.index) == iso | {"XK"}
    assert table.index.is_unique and len(table) == len(iso) + 1 == 250
    assert tuple(table.columns) == COLUMNS
    assert "NA" in table.index  # Namibia is not a missing value
    assert table.loc["NA", "name"] == "Namibia"


def test_codes_agree_with_pycountry(table):
    for country in pycountry.countries:
        row = table.loc[country.alpha_2]
        assert row["m49"] == country.numeric, country.name
        assert row["alpha3"] == country.alpha_3
        assert row["name"] == country.name
    assert table.loc["XK", ["alpha3", "m49", "name"]].tolist() == ["XKX", "", "Kosovo"]
    assert table.loc["BR", "m49"] == "076"  # text, zeros kept


def test_levels_nest(table):
    assert set(table["region"]) == REGIONS
    for region, subregions in SUBREGIONS_OF.items():
        assert set(table.loc[table["region"] == region, "subregion"]) == subregions
    assert (table["subregion"] != "").all()
    for subregion, expected in INTERMEDIATE_OF.items():
        assert set(table.loc[table["subregion"] == subregion, "intermediate_region"]) == expected
    others = ~table["subregion"].isin(list(INTERMEDIATE_OF))
    assert (table.loc[others, "intermediate_region"] == "").all()


@pytest.mark.parametrize(
    ("codes", "subregion"),
    [
        ("MX BZ CR SV GT HN NI PA", LATIN_AMERICA),
        ("CU DO HT JM PR TT BS BB AW CW GP MQ VI", LATIN_AMERICA),
        ("AR BO BR CL CO EC GY PY PE SR UY VE GF FK", LATIN_AMERICA),
        ("US CA BM GL PM", "Northern America"),
        ("TW CN HK MO JP KR KP MN", "Eastern Asia"),
        ("CY TR IL GE AM AZ SA AE PS", "Western Asia"),
        ("RU UA BY PL CZ", "Eastern Europe"),
        ("SD EG DZ MA TN LY EH", "Northern Africa"),
        ("SS NG KE ZA CD ET", "Sub-Saharan Africa"),
        ("IN PK BD IR AF LK", "Southern Asia"),
        ("GB IE SE NO DK FI IS EE LV LT GG JE IM", "Northern Europe"),
        ("XK RS ES IT PT GR", "Southern Europe"),
        ("DE FR NL BE CH AT", "Western Europe"),
        ("AU NZ", "Australia and New Zealand"),
        ("NR GU FM", "Micronesia"),
    ],
)
def test_known_cases(table, codes, subregion):
    for code in codes.split():
        assert table.loc[code, "subregion"] == subregion, code


def test_known_intermediate_regions(table):
    expected = {
        "MX": "Central America", "PA": "Central America", "JM": "Caribbean", "BR": "South America",
        "KE": "Eastern Africa", "CD": "Middle Africa", "ZA": "Southern Africa",
        "NG": "Western Africa", "JE": "Channel Islands", "US": "", "SD": "", "RU": "",
    }  # fmt: skip
    for code, intermediate in expected.items():
        assert table.loc[code, "intermediate_region"] == intermediate, code
    assert table.loc["AQ", ["region", "subregion"]].tolist() == ["Antarctica", "Antarctica"]


def test_group_sizes(table):
    assert table.groupby("subregion").size()[LATIN_AMERICA] == 52
    inter = table.groupby("intermediate_region").size()
    assert (inter["Caribbean"], inter["Central America"], inter["South America"]) == (28, 8, 16)
    sizes = table.groupby("region").size().to_dict()
    assert sizes == {
        "Africa": 60, "Americas": 57, "Asia": 51, "Europe": 52, "Oceania": 29, "Antarctica": 1,
    }  # fmt: skip
    assert table.groupby("subregion").size()["Northern America"] == 5


def test_group_of_at_every_level():
    codes = ["BR", "us", " de ", None, "ZZ", np.nan, "GG", "XK"]
    assert group_of(codes, "country") == ["BR", "US", "DE", None, None, None, "GG", "XK"]
    assert group_of(codes, "intermediate_region") == [
        "South America", "Northern America", "Western Europe", None, None, None,
        "Channel Islands", "Southern Europe",
    ]  # fmt: skip
    assert group_of(codes, "subregion") == [
        LATIN_AMERICA, "Northern America", "Western Europe", None, None, None,
        "Northern Europe", "Southern Europe",
    ]  # fmt: skip
    assert group_of(codes, "region") == [
        "Americas", "Americas", "Europe", None, None, None, "Europe", "Europe",
    ]  # fmt: skip
    assert group_of([], "region") == []


def test_every_country_has_a_group_at_every_level(table):
    for level in LEVELS:
        groups = group_of(list(table.index), level)
        assert all(groups), level
        assert set(groups) == set(level_names(level))


def test_level_names():
    assert level_names("region") == sorted(REGIONS)
    assert len(level_names("country")) == 250
    subregions = level_names("subregion")
    assert subregions == sorted(set().union(*SUBREGIONS_OF.values()))
    intermediate = level_names("intermediate_region")
    assert {"Caribbean", "Channel Islands", "Northern America", "Western Asia"} <= set(intermediate)
    assert LATIN_AMERICA not in intermediate and "Sub-Saharan Africa" not in intermediate


def test_unknown_level_lists_the_valid_ones():
    for call in (lambda: group_of(["US"], "continent"), lambda: level_names("continent")):
        with pytest.raises(ValueError, match="country, intermediate_region, subregion, region"):
            call()


def test_region_table_is_a_copy():
    mine = region_table()
    mine.loc["US", "region"] = "Mars"
    assert region_table().loc["US", "region"] == "Americas"
    assert group_of(["US"], "region") == ["Americas"]


def test_aggregate_columns():
    counts = pd.DataFrame(
        {"MX": [1, 2], "BR": [0, 1], "US": [4, 4], "CA": [1, 1], "other": [1, 0]},
        index=["w1", "w2"],
    )
    by_subregion = aggregate_columns(counts, "subregion")
    assert by_subregion.columns.tolist() == [LATIN_AMERICA, "Northern America", "Unknown"]
    assert by_subregion.loc["w2"].tolist() == [3, 5, 0]
    assert by_subregion.index.tolist() == ["w1", "w2"]
    by_region = aggregate_columns(counts, "region", unknown_label="?")
    assert by_region.columns.tolist() == ["Americas", "?"]
    assert by_region.to_numpy().sum() == counts.to_numpy().sum()
