"""Revenue observations: reading, validating and packing one account's rows for the model.

One input row is one (account, campaign, ad set, hour) with ``conversions`` $n_i$ and ``revenue``
$r_i$. :func:`load_revenue_data` reads a DataFrame, CSV or Parquet file, checks every row and
returns a :class:`RevenueData`: the model's arrays, per-ad-set and per-campaign tables of the raw
data, and a :class:`DataReport` of what was dropped.

Rules (nothing is silently coerced):

* rows with $n_i = 0$ carry no revenue information: dropped and counted;
* a missing or non-numeric value, $n_i < 0$ or fractional, $r_i \\le 0$ (or missing) with
  $n_i \\ge 1$, an ad set filed under two campaigns, or a missing column raise a subclass of
  :class:`InvalidDataError` naming the file, row and column; with ``on_invalid="drop"`` the bad
  rows are dropped instead and listed in ``report.invalid``.

Row numbers are 1-based positions among the data rows; for CSV files the message also gives the
line (the header is line 1, so data row ``k`` is line ``k + 1`` when no field spans lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from jaxrev.errors import (
    ERRORS,
    MissingColumnError,
    MultipleAccountsError,
    NoObservationsError,
)
from jaxrev.tables import read_table
from jaxrev.types import AdsetBool, AdsetInt, CampaignBool, ObsBool, ObsFloat, ObsInt

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


class RevenueArrays(NamedTuple):
    """Model inputs for one account: a pytree of arrays, so fits ``jit`` and ``vmap``.

    Sizes come from shapes (``adset_mask`` gives the number of ad sets, ``campaign_mask`` the number
    of campaigns), so the same compiled program serves every account of the same padded shape.
    Padded observations have ``obs_mask`` False and drop out of the likelihood; padded ad sets and
    campaigns get no observations and only their standard-normal ``z`` prior.
    """

    log_revenue: ObsFloat | None  # log r_i (None: sample it, for predictive checks)
    conversions: ObsFloat  # n_i >= 1
    adset: ObsInt  # a_i, 0-based
    adset_campaign: AdsetInt  # c_a, 0-based
    obs_mask: ObsBool
    adset_mask: AdsetBool
    campaign_mask: CampaignBool
    time: ObsFloat  # t_i, days since the account's first row (0 without a time column)

    @property
    def num_adsets(self) -> int:
        return self.adset_mask.shape[-1]

    @property
    def num_campaigns(self) -> int:
        return self.campaign_mask.shape[-1]


class Columns(NamedTuple):
    """Names of the input columns. ``account`` and ``time`` are optional (None: not used)."""

    adset: str = "adset"
    campaign: str = "campaign"
    conversions: str = "conversions"
    revenue: str = "revenue"
    account: str | None = None
    time: str | None = None

    def required(self) -> list[str]:
        optional = [c for c in (self.account, self.time) if c is not None]
        return [self.adset, self.campaign, self.conversions, self.revenue, *optional]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataReport:
    """What happened to the input rows."""

    source: str
    rows_read: int
    rows_used: int
    zero_conversion_rows: int
    invalid: pd.DataFrame = field(repr=False)

    @property
    def rows_invalid(self) -> int:
        return int(self.invalid["row"].nunique()) if len(self.invalid) else 0

    def __str__(self) -> str:
        text = (
            f"{self.source}: {self.rows_read} rows read, {self.rows_used} used, "
            f"{self.zero_conversion_rows} with zero conversions dropped"
        )
        if self.rows_invalid:
            text += f", {self.rows_invalid} invalid rows dropped"
        return text


@dataclass(frozen=True)
class RevenueData:
    """One account's validated observations.

    Attributes:
        arrays: the model inputs (NumPy; :meth:`device_arrays` gives JAX arrays).
        observations: the rows used, with the columns ``campaign``, ``adset``, ``conversions``,
            ``revenue`` (and ``time``), plus ``row`` (the input row number).
        adsets: one row per ad set in model order: ``adset``, ``campaign``, ``n_obs``,
            ``conversions``, ``revenue``, ``raw_mean`` (revenue / conversions).
        campaigns: the same per campaign, plus ``n_adsets``.
        report: counts of rows read, used and dropped, and the invalid rows.
        account: the account label, if an account column was used.
    """

    arrays: RevenueArrays
    observations: pd.DataFrame
    adsets: pd.DataFrame
    campaigns: pd.DataFrame
    report: DataReport
    account: str | None = None

    @property
    def num_adsets(self) -> int:
        return len(self.adsets)

    @property
    def num_campaigns(self) -> int:
        return len(self.campaigns)

    @property
    def num_observations(self) -> int:
        return len(self.observations)

    def device_arrays(self, dtype=None) -> RevenueArrays:
        """The arrays as JAX arrays in the default float type (float32 unless x64 is enabled)."""
        import jax.numpy as jnp

        dtype = dtype or jnp.result_type(float)
        a = self.arrays
        return RevenueArrays(
            log_revenue=jnp.asarray(a.log_revenue, dtype),
            conversions=jnp.asarray(a.conversions, dtype),
            adset=jnp.asarray(a.adset, jnp.int32),
            adset_campaign=jnp.asarray(a.adset_campaign, jnp.int32),
            obs_mask=jnp.asarray(a.obs_mask),
            adset_mask=jnp.asarray(a.adset_mask),
            campaign_mask=jnp.asarray(a.campaign_mask),
            time=jnp.asarray(a.time, dtype),
        )


# --------------------------------------------------------------------------------------------
# Reading and checking
# --------------------------------------------------------------------------------------------


def missing_mask(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return values.isna()
    text = values.astype("string").str.strip().str.lower()
    return values.isna() | text.isin(MISSING_TOKENS).fillna(True)


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Return ``(numbers, missing, non_numeric)``; numbers are NaN where not parsed."""
    missing = missing_mask(values)
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index), missing, ~missing
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype(float), missing, pd.Series(False, index=values.index)
    text = values.astype("string").str.strip()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").astype(float)
    non_numeric = ~missing & numbers.isna()
    return numbers, missing, non_numeric


class Problems:
    """Collects problems as rows of a table; ``row_number`` maps positions to input rows."""

    def __init__(self, row_number: np.ndarray, is_csv: bool):
        self.row_number = row_number
        self.is_csv = is_csv
        self.parts: list[pd.DataFrame] = []

    def add(self, where: pd.Series, column: str, values: pd.Series, kind: str, reason: str):
        hit = where.to_numpy(dtype=bool)
        if not hit.any():
            return
        rows = self.row_number[hit]
        self.parts.append(
            pd.DataFrame(
                {
                    "row": rows,
                    "line": rows + 1 if self.is_csv else pd.NA,
                    "column": column,
                    "value": values[hit].tolist(),
                    "kind": kind,
                    "reason": reason,
                }
            )
        )

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=["row", "line", "column", "value", "kind", "reason"])
        return pd.concat(self.parts, ignore_index=True).sort_values("row", kind="stable")

    def bad_rows(self) -> np.ndarray:
        """Boolean mask over positions of the rows with at least one problem."""
        found = self.table()["row"].to_numpy(dtype=np.int64)
        return np.isin(self.row_number, found)


def _check_rows(table: pd.DataFrame, columns: Columns, problems: Problems):
    """Row-wise checks; returns parsed conversions, revenue and the ids as text."""
    ids = {}
    for name in (columns.account, columns.campaign, columns.adset):
        if name is None:
            continue
        missing = missing_mask(table[name])
        problems.add(missing, name, table[name], "missing_value", "missing identifier")
        ids[name] = table[name].astype("string").str.strip()

    n, n_missing, n_text = parse_numbers(table[columns.conversions])
    col = columns.conversions
    raw = table[col]
    problems.add(n_missing, col, raw, "missing_value", "missing conversion count")
    problems.add(n_text, col, raw, "non_numeric", "conversion count is not a number")
    finite = np.isfinite(n)
    problems.add(~n.isna() & ~finite, col, raw, "non_finite", "conversion count is not finite")
    problems.add(finite & (n < 0), col, raw, "negative_count", "negative conversion count")
    fractional = finite & (n >= 0) & (n != np.floor(n))
    problems.add(
        fractional, col, raw, "non_integer_count", "conversion count is not a whole number"
    )
    n_valid = finite & (n >= 0) & ~fractional

    r, r_missing, r_text = parse_numbers(table[columns.revenue])
    col, raw = columns.revenue, table[columns.revenue]
    converting = n_valid & (n >= 1)
    problems.add(
        converting & r_missing,
        col,
        raw,
        "missing_value",
        "missing revenue on a row with conversions",
    )
    problems.add(r_text, col, raw, "non_numeric", "revenue is not a number")
    problems.add(~r.isna() & ~np.isfinite(r), col, raw, "non_finite", "revenue is not finite")
    problems.add(
        converting & np.isfinite(r) & (r <= 0),
        col,
        raw,
        "non_positive_revenue",
        "revenue must be > 0 on a row with conversions (log-normal model)",
    )
    return n, r, ids


def check_campaigns(
    adset: np.ndarray,
    campaign: np.ndarray,
    ok: np.ndarray,
    column: str,
    problems: Problems,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """An ad set must belong to one campaign (within its group, e.g. account): flag the rows that
    disagree with the campaign of the ad set's first valid row."""
    key = (
        adset
        if groups is None
        else np.char.add(np.char.add(groups.astype(str), "\x00"), adset.astype(str))
    )
    key = pd.Series(key)
    camp = pd.Series(campaign)
    first_campaign = camp[ok].groupby(key[ok], sort=False).first()
    expected = key.map(first_campaign)
    conflict = ok & (camp != expected).fillna(False).to_numpy(dtype=bool)
    for k, c in dict.fromkeys(zip(key[conflict], camp[conflict], strict=True)):
        a = adset[np.flatnonzero(conflict & (key == k).to_numpy())[0]]
        reason = (
            f"ad set {a!r} is filed under campaign {c!r} here and under "
            f"{first_campaign[k]!r} on an earlier row"
        )
        rows = pd.Series(conflict & (key == k).to_numpy() & (camp == c).to_numpy())
        problems.add(rows, column, camp, "adset_campaign_conflict", reason)
    return conflict


class CheckedRows(NamedTuple):
    """Every row of a table checked at once; arrays are aligned with the table's rows."""

    conversions: np.ndarray  # n_i (NaN where unparsable)
    revenue: np.ndarray  # r_i (NaN where unparsable)
    ids: dict[str, np.ndarray]  # identifier columns as stripped text
    times: np.ndarray | None
    row_number: np.ndarray  # 1-based row in the source
    problems: pd.DataFrame  # row, line, column, value, kind, reason
    problem_position: np.ndarray  # 0-based position of each problem's row
    bad: np.ndarray  # rows with a problem
    zero: np.ndarray  # valid rows with no conversion
    conflict: np.ndarray  # rows whose ad set is filed under another campaign


def check_table(
    table: pd.DataFrame, columns: Columns, is_csv: bool, group_by: str | None = None
) -> CheckedRows:
    """Run every row check on ``table`` in one vectorised pass (ad set / campaign consistency
    within each ``group_by`` value, e.g. the account). ``table``'s index is the 0-based position
    of each row in the source, so problems name the source's rows."""
    row_number = table.index.to_numpy() + 1
    table = table.reset_index(drop=True)
    problems = Problems(row_number, is_csv)
    n, r, ids = _check_rows(table, columns, problems)
    ids = {k: v.to_numpy(dtype=object) for k, v in ids.items()}
    bad = problems.bad_rows()
    zero = (n == 0).to_numpy() & ~bad
    groups = None if group_by is None else ids[group_by]
    conflict = check_campaigns(
        ids[columns.adset], ids[columns.campaign], ~bad & ~zero, columns.campaign, problems, groups
    )
    found = problems.table()
    position = np.searchsorted(row_number, found["row"].to_numpy(dtype=np.int64))
    times = None if columns.time is None else table[columns.time].to_numpy()
    return CheckedRows(
        n.to_numpy(dtype=np.float64),
        r.to_numpy(dtype=np.float64),
        ids,
        times,
        row_number,
        found.reset_index(drop=True),
        position,
        bad | conflict,
        zero,
        conflict,
    )


def rows_to_data(
    checked: CheckedRows,
    columns: Columns,
    name: str,
    *,
    positions: np.ndarray | None = None,
    problems: pd.DataFrame | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    account: str | None = None,
) -> RevenueData:
    """Raise on (or drop) the problems among the rows at ``positions`` (default: all) and pack
    the valid rows with conversions into :class:`RevenueData`. ``problems``: those rows'
    problems, when the caller has already grouped them."""
    if positions is None:
        positions = np.arange(len(checked.row_number))
        problems = checked.problems
    elif problems is None:
        problems = checked.problems[np.isin(checked.problem_position, positions)]
    if len(problems) and on_invalid == "raise":
        raise ERRORS[problems.iloc[0]["kind"]](name, problems)
    keep = positions[~checked.bad[positions] & ~checked.zero[positions]]
    if not len(keep):
        raise NoObservationsError(
            f"{name}: no row with at least one conversion and valid revenue to fit"
        )
    report = DataReport(
        source=name,
        rows_read=len(positions),
        rows_used=len(keep),
        zero_conversion_rows=int(checked.zero[positions].sum()),
        invalid=problems.reset_index(drop=True),
    )
    return _pack(
        checked.ids[columns.campaign][keep],
        checked.ids[columns.adset][keep],
        checked.conversions[keep],
        checked.revenue[keep],
        checked.row_number[keep],
        None if checked.times is None else checked.times[keep],
        report,
        account,
    )


def load_revenue_data(
    source: pd.DataFrame | str | Path,
    columns: Columns | None = None,
    *,
    account: str | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    name: str | None = None,
) -> RevenueData:
    """Read and validate one account's hourly conversions and revenue.

    Args:
        source: a DataFrame or the path of a CSV/TSV/Parquet file.
        columns: column names (default: ``adset``, ``campaign``, ``conversions``, ``revenue``).
        account: keep only this account (needs ``columns.account``); required when the rows
            hold several accounts.
        on_invalid: ``"raise"`` (default) raises the :class:`InvalidDataError` subclass of the
            first problem, listing all; ``"drop"`` drops the invalid rows and lists them in
            ``report.invalid``.
        name: what messages call the source (default: the path, or ``<DataFrame>``).

    Returns:
        The validated :class:`RevenueData`.

    Example:
        >>> data = load_revenue_data("hourly.csv", Columns(adset="ad_set_id"))  # doctest: +SKIP
        >>> print(data.report)  # doctest: +SKIP
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    columns = columns or Columns()
    table, name, is_csv = read_table(source, name)

    check_columns(table, columns, name)

    if columns.account is not None:
        acc = table[columns.account].astype("string").str.strip()
        accounts = acc.dropna().unique().tolist()
        if account is not None:
            if str(account) not in accounts:
                raise ValueError(
                    f"{name}: account {account!r} not found; accounts: {accounts[:20]}"
                )
            table = table[acc == str(account)]
        elif len(accounts) > 1:
            raise MultipleAccountsError(
                f"{name}: {len(accounts)} accounts in column {columns.account!r} "
                f"({accounts[:5]}...); choose one with account=..., or fit them all with "
                "the batch job"
            )
        else:
            account = accounts[0] if accounts else None
    elif account is not None:
        raise ValueError("account= needs columns.account, the name of the account column")
    return validate_rows(table, columns, name, is_csv, on_invalid=on_invalid, account=account)


def check_columns(table: pd.DataFrame, columns: Columns, name: str) -> None:
    """Raise :class:`MissingColumnError` naming every required column that is absent."""
    missing_cols = [c for c in columns.required() if c not in table.columns]
    if missing_cols:
        problems = pd.DataFrame(
            {
                "row": pd.NA,
                "line": pd.NA,
                "column": missing_cols,
                "value": None,
                "kind": "missing_column",
                "reason": f"column not found (the columns are {list(table.columns)})",
            }
        )
        raise MissingColumnError(name, problems)


def validate_rows(
    table: pd.DataFrame,
    columns: Columns,
    name: str,
    is_csv: bool,
    *,
    on_invalid: Literal["raise", "drop"] = "raise",
    account: str | None = None,
) -> RevenueData:
    """Check the rows of one account and pack them (see :func:`load_revenue_data`).

    ``table``'s index must be the 0-based position of each row in the source, so that errors
    name the source's rows (a slice of a larger table keeps its index).
    """
    checked = check_table(table, columns, is_csv)
    return rows_to_data(checked, columns, name, on_invalid=on_invalid, account=account)


def _pack(
    campaign: np.ndarray,
    adset: np.ndarray,
    conversions: np.ndarray,
    revenue: np.ndarray,
    row: np.ndarray,
    times: np.ndarray | None,
    report: DataReport,
    account: str | None,
) -> RevenueData:
    """Order campaigns and ad sets (campaigns by label, ad sets by campaign then label), build
    the model arrays and the raw per-ad-set and per-campaign tables (NumPy: fast enough to pack
    thousands of accounts)."""
    campaigns, campaign_of_obs = np.unique(campaign.astype(str), return_inverse=True)
    labels, first, adset_of_obs = np.unique(
        adset.astype(str), return_index=True, return_inverse=True
    )
    campaign_of_label = campaign_of_obs[first]
    order = np.lexsort((labels, campaign_of_label))  # model order of the ad sets
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    obs_adset = rank[adset_of_obs]
    adset_campaign = campaign_of_label[order]
    num_adsets, num_campaigns = len(labels), len(campaigns)

    def per_adset(weights=None):
        return np.bincount(obs_adset, weights=weights, minlength=num_adsets)

    adset_table = pd.DataFrame(
        {
            "adset": labels[order].astype(object),
            "campaign": campaigns[adset_campaign].astype(object),
            "n_obs": per_adset().astype(np.int64),
            "conversions": per_adset(conversions),
            "revenue": per_adset(revenue),
        }
    )
    adset_table["raw_mean"] = adset_table["revenue"] / adset_table["conversions"]

    def per_campaign(values=None):
        return np.bincount(adset_campaign, weights=values, minlength=num_campaigns)

    campaign_table = pd.DataFrame(
        {
            "campaign": campaigns.astype(object),
            "n_adsets": per_campaign().astype(np.int64),
            "n_obs": per_campaign(adset_table["n_obs"].to_numpy()).astype(np.int64),
            "conversions": per_campaign(adset_table["conversions"].to_numpy()),
            "revenue": per_campaign(adset_table["revenue"].to_numpy()),
        }
    )
    campaign_table["raw_mean"] = campaign_table["revenue"] / campaign_table["conversions"]

    observations = {
        "campaign": campaign.astype(object),
        "adset": adset.astype(object),
        "conversions": conversions,
        "revenue": revenue,
        "row": row,
    }
    if times is not None:
        observations = {"campaign": observations.pop("campaign"), "adset": observations.pop(
            "adset"), "time": times, **observations}  # fmt: skip
    arrays = RevenueArrays(
        log_revenue=np.log(revenue),
        conversions=conversions,
        adset=obs_adset.astype(np.int32),
        adset_campaign=adset_campaign.astype(np.int32),
        obs_mask=np.ones(len(revenue), dtype=bool),
        adset_mask=np.ones(num_adsets, dtype=bool),
        campaign_mask=np.ones(num_campaigns, dtype=bool),
        time=days_since_start(times, len(revenue)),
    )
    return RevenueData(
        arrays=arrays,
        observations=pd.DataFrame(observations),
        adsets=adset_table,
        campaigns=campaign_table,
        report=report,
        account=account,
    )


def days_since_start(times: np.ndarray | None, num_obs: int) -> np.ndarray:
    """$t_i$: days since the earliest row (timestamps, or plain numbers taken as days); zeros
    without a time column."""
    if times is None:
        return np.zeros(num_obs)
    series = pd.Series(times)
    if pd.api.types.is_numeric_dtype(series) and num_obs:
        return (series - series.min()).to_numpy(dtype=float)
    parsed = pd.to_datetime(series, errors="coerce", format="mixed")
    if parsed.notna().all() and num_obs:
        delta = (parsed - parsed.min()) / pd.Timedelta(days=1)
        return delta.to_numpy(dtype=float)
    numeric = pd.to_numeric(pd.Series(times), errors="coerce")
    if numeric.notna().all() and num_obs:
        return (numeric - numeric.min()).to_numpy(dtype=float)
    return np.zeros(num_obs)


def pad_observations(arrays: RevenueArrays, num_obs: int) -> RevenueArrays:
    r"""Pad the observation axis to ``num_obs`` with masked, numerically benign rows
    ($n_i = 1$, $\log r_i = 0$, ad set 0), so accounts of different sizes share one shape."""
    extra = num_obs - arrays.conversions.shape[-1]
    if extra < 0:
        raise ValueError(f"cannot pad {arrays.conversions.shape[-1]} observations to {num_obs}")

    def pad(x, value):
        return np.concatenate([np.asarray(x), np.full(extra, value, dtype=np.asarray(x).dtype)])

    return arrays._replace(
        log_revenue=pad(arrays.log_revenue, 0.0),
        conversions=pad(arrays.conversions, 1.0),
        adset=pad(arrays.adset, 0),
        obs_mask=pad(arrays.obs_mask, False),
        time=pad(arrays.time, 0.0),
    )
