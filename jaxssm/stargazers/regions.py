"""Countries grouped into the world regions of the UN's M49 standard.

The bundled table ``data/m49_regions.csv`` (see ``data/README.md``) has one row per ISO 3166-1
alpha-2 code, plus ``XK`` (Kosovo), with the three M49 levels above the country:

* ``region``: Africa, Americas, Asia, Europe, Oceania (and, by this project's choice,
  Antarctica for ``AQ``, which M49 puts in no region);
* ``subregion``: e.g. Northern Africa, Sub-Saharan Africa, Latin America and the Caribbean,
  Northern America, Eastern Asia, Western Asia, Eastern Europe, Melanesia;
* ``intermediate_region``: Caribbean, Central America, South America, Eastern / Middle /
  Southern / Western Africa, Channel Islands; empty where M49 has none.

At the ``intermediate_region`` level :func:`group_of` falls back to the subregion where the
intermediate region is empty, so every country lands in exactly one group at every level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from importlib import resources

import pandas as pd

LEVELS: tuple[str, ...] = ("country", "intermediate_region", "subregion", "region")
LATIN_AMERICA = "Latin America and the Caribbean"
NORTHERN_AMERICA = "Northern America"
SUB_SAHARAN_AFRICA = "Sub-Saharan Africa"
COLUMNS: tuple[str, ...] = (
    "alpha2", "alpha3", "m49", "name", "region", "subregion", "intermediate_region",
)  # fmt: skip


@cache
def _table() -> pd.DataFrame:
    source = resources.files("jaxssm.stargazers.data") / "m49_regions.csv"
    with source.open("r", encoding="utf-8") as f:
        # every column is text: "NA" is Namibia, "004" keeps its zeros
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    return frame.set_index("alpha2", drop=False).rename_axis(None)


def region_table() -> pd.DataFrame:
    """The country → region table, indexed by alpha-2 code (a copy; the file is read once).

    Columns ``alpha2, alpha3, m49, name, region, subregion, intermediate_region``, all text:
    ``m49`` is the 3-digit code ("076" Brazil; empty for Kosovo), ``name`` the ISO 3166-1
    short name, empty strings where M49 has no group.

    Example:
        >>> region_table().loc["MX", "subregion"]
        'Latin America and the Caribbean'
    """
    return _table().copy()


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")


@cache
def _groups(level: str) -> dict[str, str]:
    """alpha-2 → group name at ``level`` for every country in the table."""
    table = _table()
    if level == "country":
        groups = table["alpha2"]
    elif level == "intermediate_region":
        inter = table["intermediate_region"]
        groups = inter.where(inter != "", table["subregion"])
    else:
        groups = table[level]
    return dict(zip(table["alpha2"], groups, strict=True))


def _normalise(code: object) -> str | None:
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return None
    return str(code).strip().upper()


def group_of(codes: Sequence[str | None], level: str) -> list[str | None]:
    """The group of each alpha-2 code at ``level`` (one of :data:`LEVELS`).

    ``"country"`` returns the code itself (upper-cased); ``"intermediate_region"`` falls back to
    the subregion where M49 has no intermediate region, so every known country has a group at
    every level. None, NaN and codes not in the table give None.

    Example:
        >>> group_of(["BR", "us", "DE", None, "ZZ"], "subregion")
        ['Latin America and the Caribbean', 'Northern America', 'Western Europe', None, None]
    """
    _check_level(level)
    groups = _groups(level)
    return [groups.get(code) if code else None for code in map(_normalise, codes)]


def level_names(level: str) -> list[str]:
    """The groups at ``level``, sorted (alpha-2 codes for ``"country"``).

    Example:
        >>> level_names("region")
        ['Africa', 'Americas', 'Antarctica', 'Asia', 'Europe', 'Oceania']
    """
    _check_level(level)
    return sorted(set(_groups(level).values()))


def aggregate_columns(
    counts: pd.DataFrame, level: str, unknown_label: str = "Unknown"
) -> pd.DataFrame:
    """Sum a (windows × alpha-2 codes) table into its groups at ``level``.

    Columns whose code is not in the table (None, "ZZ", a label such as "other") are summed
    into ``unknown_label``. Groups are in :func:`level_names` order, then the unknown column.

    Example:
        >>> t = pd.DataFrame({"MX": [1, 2], "BR": [0, 1], "US": [4, 4], "??": [1, 0]})
        >>> aggregate_columns(t, "subregion").columns.tolist()
        ['Latin America and the Caribbean', 'Northern America', 'Unknown']
    """
    groups = [g if g is not None else unknown_label for g in group_of(list(counts.columns), level)]
    summed = counts.T.groupby(pd.Index(groups)).sum().T
    order = [g for g in level_names(level) if g in summed.columns]
    order += [unknown_label] if unknown_label in summed.columns else []
    return summed[order]
