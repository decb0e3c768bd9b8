"""Daily ad-set tables for the funnel: read, check every row, sum per (ad set, day).

A table has one row per ad set and day (or per ad, placement, ... of an ad set and day, summed):
campaign, ad set, day (a date or a day number; none for a single period), spend, impressions,
clicks and conversions. :func:`load_daily` checks every row at once and raises a subclass of
:class:`~jaxrev.data.InvalidDataError` naming the file, row and column of each problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from jaxrev.data import Problems, check_campaigns, missing_mask, parse_numbers, read_table
from jaxrev.errors import InvalidDataError, MissingColumnError
from jaxrev.roas.funnel import ConversionsPer, FunnelStats, discount_weights, funnel_statistics


class DailyColumns(NamedTuple):
    """Column names of a daily (or any-period) ad-set table. ``day``: a date or a day number
    (None: a column named ``date`` or ``day`` if there is one, else a single period); ``ad``:
    an ad column whose rows are summed into their ad set (None: none)."""

    adset: str = "adset"
    campaign: str = "campaign"
    spend: str = "spend"
    impressions: str = "impressions"
    clicks: str = "clicks"
    conversions: str = "conversions"
    day: str | None = None
    ad: str | None = None


KAGGLE_COLUMNS = DailyColumns(
    adset="fb_campaign_id",
    campaign="xyz_campaign_id",
    spend="Spent",
    impressions="Impressions",
    clicks="Clicks",
    conversions="Approved_Conversion",
    day=None,
    ad="ad_id",
)
"""The Kaggle "Sales Conversion Optimization" Facebook table: ``fb_campaign_id`` is the ad set,
``xyz_campaign_id`` the campaign, one row per ad, one period. ``Approved_Conversion`` (bought the
product) is the revenue-bearing conversion; ``Total_Conversion`` (enquiries) is the other choice."""


class NegativeValueError(InvalidDataError):
    """Negative spend."""

    kind = "negative_value"


class FunnelOrderError(InvalidDataError):
    """More clicks than impressions, or more conversions than clicks (or impressions)."""

    kind = "funnel_order"


def _error_class(kind: str) -> type[InvalidDataError]:
    """The :class:`~jaxrev.data.InvalidDataError` subclass whose ``kind`` is ``kind``: jaxrev's
    (missing column or value, non-numeric, ...) or this module's (negative value, funnel order)."""
    classes = [InvalidDataError]
    while classes:
        cls = classes.pop()
        if cls.kind == kind:
            return cls
        classes.extend(cls.__subclasses__())
    return InvalidDataError


def resolve_columns(names, columns: DailyColumns | None = None, **overrides) -> DailyColumns:
    """The column set for a table with columns ``names``: ``columns`` if given, else the Kaggle
    names when the table has them (and no ``adset`` column), else the defaults; then
    ``overrides`` that are not None."""
    names = set(names)
    if columns is None:
        kaggle = {KAGGLE_COLUMNS.adset, KAGGLE_COLUMNS.campaign} <= names
        columns = KAGGLE_COLUMNS if kaggle and "adset" not in names else DailyColumns()
    columns = columns._replace(**{k: v for k, v in overrides.items() if v is not None})
    if columns.day is None:
        for candidate in ("date", "day"):
            if candidate in names:
                columns = columns._replace(day=candidate)
                break
    return columns


@dataclass(frozen=True)
class DailyData:
    """A validated daily table, summed per (ad set, day).

    Attributes:
        rows: one row per ad set and day: ``adset_index``, ``age`` (days before the latest day;
            0 for a single period), ``spend``, ``impressions``, ``clicks``, ``conversions``,
            ``paid_impressions`` (impressions of the summed rows that had spend).
        adsets: one row per ad set (campaign, then ad set order): ``adset``, ``campaign``,
            ``days``, the raw totals, ``last_spend`` (spend on the latest day) and the raw rates.
        campaigns: the campaign labels; ``adset_campaign`` indexes them.
        report: what was read, summed and dropped; ``invalid`` lists dropped problems.
    """

    rows: pd.DataFrame
    adsets: pd.DataFrame
    campaigns: np.ndarray
    adset_campaign: np.ndarray
    conversions_per: ConversionsPer
    source: str
    columns: DailyColumns
    report: dict = field(default_factory=dict)
    invalid: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def num_adsets(self) -> int:
        return len(self.adsets)

    @property
    def num_campaigns(self) -> int:
        return len(self.campaigns)

    def statistics(self, half_life: float | None = None) -> FunnelStats:
        """Discounted :class:`FunnelStats` (see :func:`discount_weights`)."""
        r = self.rows
        return funnel_statistics(
            r["adset_index"].to_numpy(),
            self.num_adsets,
            r["spend"].to_numpy(),
            r["impressions"].to_numpy(),
            r["clicks"].to_numpy(),
            r["conversions"].to_numpy(),
            discount_weights(r["age"].to_numpy(), half_life),
            r["paid_impressions"].to_numpy(),
        )

    def __str__(self) -> str:
        r = self.report
        text = (
            f"{self.source}: {r['rows_read']} rows read, {r['rows_used']} used "
            f"({self.num_adsets} ad sets, {self.num_campaigns} campaigns, {r['days']} period(s))"
        )
        if r.get("ads_summed"):
            text += f"; {r['ads_summed']} ads summed into their ad sets"
        if r.get("zero_spend_rows_with_impressions"):
            text += (
                f"; {r['zero_spend_rows_with_impressions']} rows with impressions but no spend "
                "(left out of impressions per spend)"
            )
        if r.get("rows_invalid"):
            text += f"; {r['rows_invalid']} invalid rows dropped"
        return text


def _parse_days(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Days as float day numbers (dates: days since the epoch); and a mask of unparsable."""
    numbers, missing, text = parse_numbers(values)
    if not text.any():
        return numbers.to_numpy(float), missing
    dates = pd.to_datetime(values.where(~missing_mask(values)), errors="coerce")
    bad = ~missing & dates.isna()
    days = (dates - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    return days.to_numpy(float), missing | bad


def load_daily(
    source: pd.DataFrame | str | Path,
    columns: DailyColumns | Mapping[str, str] | None = None,
    *,
    conversions_per: ConversionsPer = "click",
    on_invalid: Literal["raise", "drop"] = "raise",
    name: str | None = None,
) -> DailyData:
    """Read and check a table of (campaign, ad set, day, spend, impressions, clicks, conversions).

    Every row is checked at once; a problem raises a subclass of
    :class:`~jaxrev.data.InvalidDataError` naming the file, row and column: missing columns or
    identifiers, non-numeric or non-finite values, negative spend, negative or fractional counts,
    clicks above impressions, conversions above clicks (``conversions_per="click"``) or above
    impressions, an ad set under two campaigns, an unparsable day. With ``on_invalid="drop"``
    the bad rows are dropped and listed in ``.invalid``. Rows of one ad set and day (e.g. ads,
    placements) are summed. The Kaggle Facebook table is recognised by its column names
    (:data:`KAGGLE_COLUMNS`); ``columns`` may be a :class:`DailyColumns` or a dict of a few names
    that replace those of the recognised set. ``name`` labels the source in messages (default:
    the path).

    Example:
        >>> daily = load_daily("../shared/data/kag_conversion_data_fb_ads.csv",
        ...                    conversions_per="impression")  # doctest: +SKIP
    """
    if conversions_per not in ("click", "impression"):
        raise ValueError(
            f"conversions_per must be 'click' or 'impression', got {conversions_per!r}"
        )
    table, source_name, is_csv = read_table(source)
    name = source_name if name is None else name
    if isinstance(columns, Mapping):
        cols = resolve_columns(table.columns, None, **columns)
    else:
        cols = resolve_columns(table.columns, columns)
    required = [cols.adset, cols.campaign, cols.spend, cols.impressions, cols.clicks]
    required += [cols.conversions] + [c for c in (cols.day, cols.ad) if c is not None]
    missing_cols = [c for c in required if c not in table.columns]
    if missing_cols:
        problems = pd.DataFrame(
            {
                "row": pd.NA,
                "line": pd.NA,
                "column": missing_cols,
                "value": None,
                "kind": "missing_column",
                "reason": f"column not found (columns are {list(table.columns)})",
            }
        )
        raise MissingColumnError(name, problems)

    row_number = np.arange(1, len(table) + 1)
    problems = Problems(row_number, is_csv)
    ids = {}
    for col in (cols.campaign, cols.adset):
        miss = missing_mask(table[col])
        problems.add(miss, col, table[col], "missing_value", "missing identifier")
        ids[col] = table[col].astype("string").str.strip().to_numpy(dtype=object)

    values = {}
    for key in ("spend", "impressions", "clicks", "conversions"):
        col = getattr(cols, key)
        x, miss, text = parse_numbers(table[col])
        raw = table[col]
        problems.add(miss, col, raw, "missing_value", f"missing {key}")
        problems.add(text, col, raw, "non_numeric", f"{key} is not a number")
        finite = np.isfinite(x)
        problems.add(~x.isna() & ~finite, col, raw, "non_finite", f"{key} is not finite")
        if key == "spend":
            problems.add(finite & (x < 0), col, raw, "negative_value", "negative spend")
        else:
            problems.add(finite & (x < 0), col, raw, "negative_count", f"negative {key}")
            frac = finite & (x >= 0) & (x != np.floor(x))
            problems.add(frac, col, raw, "non_integer_count", f"{key} is not a whole number")
        values[key] = x.to_numpy(float)

    v = values
    problems.add(
        pd.Series(v["clicks"] > v["impressions"]),
        cols.clicks,
        table[cols.clicks],
        "funnel_order",
        f"more clicks than impressions (column {cols.impressions!r})",
    )
    if conversions_per == "click":
        problems.add(
            pd.Series(v["conversions"] > v["clicks"]),
            cols.conversions,
            table[cols.conversions],
            "funnel_order",
            f"more conversions than clicks (column {cols.clicks!r}); if conversions need not "
            "follow a click (view-through conversions), use conversions_per='impression' "
            "(CLI: --conversions-per impression)",
        )
    else:
        problems.add(
            pd.Series(v["conversions"] > v["impressions"]),
            cols.conversions,
            table[cols.conversions],
            "funnel_order",
            f"more conversions than impressions (column {cols.impressions!r})",
        )
    if cols.day is not None:
        days, bad_day = _parse_days(table[cols.day])
        problems.add(
            bad_day, cols.day, table[cols.day], "non_numeric", "day is not a number or a date"
        )
    else:
        days = np.zeros(len(table))
    bad = problems.bad_rows()
    check_campaigns(ids[cols.adset], ids[cols.campaign], ~bad, cols.campaign, problems)
    found = problems.table()
    if len(found) and on_invalid == "raise":
        raise _error_class(found.iloc[0]["kind"])(name, found)
    keep = ~problems.bad_rows()
    if not keep.any():
        raise ValueError(f"{name}: no valid rows")

    campaign = ids[cols.campaign][keep].astype(str)
    adset = ids[cols.adset][keep].astype(str)
    campaigns, campaign_of_row = np.unique(campaign, return_inverse=True)
    labels, first, adset_of_row = np.unique(adset, return_index=True, return_inverse=True)
    campaign_of_label = campaign_of_row[first]
    order = np.lexsort((labels, campaign_of_label))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    day = days[keep]
    latest = day.max()
    frame = pd.DataFrame(
        {
            "adset_index": rank[adset_of_row],
            "age": latest - day,
            **{k: v[k][keep] for k in ("spend", "impressions", "clicks", "conversions")},
        }
    )
    frame["paid_impressions"] = np.where(frame["spend"] > 0, frame["impressions"], 0.0)
    zero_spend = int(((frame["spend"] == 0) & (frame["impressions"] > 0)).sum())
    rows = frame.groupby(["adset_index", "age"], as_index=False, sort=True).sum()
    num_adsets = len(labels)
    adset_campaign = campaign_of_label[order]

    def total(col, where=None):
        w = rows[col].to_numpy(float) if where is None else np.where(where, rows[col], 0.0)
        return np.bincount(rows["adset_index"], weights=w, minlength=num_adsets)

    adsets = pd.DataFrame(
        {
            "adset": labels[order].astype(object),
            "campaign": campaigns[adset_campaign].astype(object),
            "days": np.bincount(rows["adset_index"], minlength=num_adsets),
            **{k: total(k) for k in ("spend", "impressions", "clicks", "conversions")},
            "last_spend": total("spend", rows["age"].to_numpy() == 0),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        adsets["raw_ctr"] = adsets["clicks"] / adsets["impressions"]
        base = adsets["clicks"] if conversions_per == "click" else adsets["impressions"]
        adsets["raw_cvr"] = adsets["conversions"] / base
        adsets["raw_conversions_per_spend"] = adsets["conversions"] / adsets["spend"]
    report = {
        "rows_read": len(table),
        "rows_used": int(keep.sum()),
        "rows_invalid": int((~keep).sum()),
        "ads_summed": int(len(frame) - len(rows)) if cols.ad is not None else 0,
        "rows_summed": int(len(frame) - len(rows)),
        "days": int(rows["age"].nunique()),
        "zero_spend_rows_with_impressions": zero_spend,
    }
    return DailyData(
        rows=rows,
        adsets=adsets,
        campaigns=campaigns.astype(object),
        adset_campaign=adset_campaign,
        conversions_per=conversions_per,
        source=name,
        columns=cols,
        report=report,
        invalid=found.reset_index(drop=True) if len(found) else None,
    )


__all__ = [
    "KAGGLE_COLUMNS",
    "DailyColumns",
    "DailyData",
    "FunnelOrderError",
    "NegativeValueError",
    "load_daily",
    "resolve_columns",
]
