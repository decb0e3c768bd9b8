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

from jaxrev.model import RevenueArrays

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


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
# Errors
# --------------------------------------------------------------------------------------------


class InvalidDataError(ValueError):
    """Bad input. ``source``, ``row``, ``column``, ``value`` describe the first problem;
    ``problems`` (a DataFrame with columns row, line, column, value, kind, reason) lists all."""

    kind = "invalid"

    def __init__(self, source: str, problems: pd.DataFrame, *, max_listed: int = 5):
        self.source = source
        self.problems = problems.reset_index(drop=True)
        first = self.problems.iloc[0]
        self.row = None if pd.isna(first["row"]) else int(first["row"])
        self.line = None if pd.isna(first["line"]) else int(first["line"])
        self.column = first["column"]
        self.value = first["value"]
        lines = [_describe(source, p) for p in self.problems.head(max_listed).itertuples()]
        more = len(self.problems) - max_listed
        if more > 0:
            lines.append(f"... and {more} more problem(s) (see the error's .problems table)")
        if self.row is not None:
            lines.append(
                'Fix the input, or drop and list these rows with on_invalid="drop" '
                "(CLI: --on-invalid drop)."
            )
        super().__init__("\n".join(lines))


class MissingColumnError(InvalidDataError):
    kind = "missing_column"


class MissingValueError(InvalidDataError):
    kind = "missing_value"


class NonNumericValueError(InvalidDataError):
    kind = "non_numeric"


class NonFiniteValueError(InvalidDataError):
    kind = "non_finite"


class NegativeCountError(InvalidDataError):
    kind = "negative_count"


class NonIntegerCountError(InvalidDataError):
    kind = "non_integer_count"


class NonPositiveRevenueError(InvalidDataError):
    kind = "non_positive_revenue"


class AdsetCampaignConflictError(InvalidDataError):
    kind = "adset_campaign_conflict"


class MultipleAccountsError(ValueError):
    """The rows hold several accounts and no ``account=`` was chosen."""


class NoObservationsError(ValueError):
    """No row with at least one conversion is left to fit."""


_ERRORS = {
    cls.kind: cls
    for cls in (
        MissingColumnError,
        MissingValueError,
        NonNumericValueError,
        NonFiniteValueError,
        NegativeCountError,
        NonIntegerCountError,
        NonPositiveRevenueError,
        AdsetCampaignConflictError,
    )
}


def _describe(source: str, p) -> str:
    where = [source]
    if not pd.isna(p.row):
        where.append(f"row {int(p.row)}" + ("" if pd.isna(p.line) else f" (line {int(p.line)})"))
    where.append(f"column {p.column!r}")
    value = "" if p.value is None else f"; got {p.value!r}"
    return f"{', '.join(where)}: {p.reason}{value}"


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
        )


# --------------------------------------------------------------------------------------------
# Reading and checking
# --------------------------------------------------------------------------------------------


def read_table(source: pd.DataFrame | str | Path) -> tuple[pd.DataFrame, str, bool]:
    """Read a DataFrame, ``.csv`` (optionally compressed) or ``.parquet`` file.

    CSV cells are read as text so that parsing numbers is explicit. Returns ``(table, name,
    is_csv)``; ``name`` is what error messages call the source.
    """
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "<DataFrame>", False
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return pd.read_parquet(path).reset_index(drop=True), str(path), False
    if ".csv" in suffixes or ".tsv" in suffixes:
        sep = "\t" if ".tsv" in suffixes else ","
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[])
        return table, str(path), True
    raise ValueError(f"{path}: unsupported file type (use .csv, .tsv or .parquet)")


def _missing_mask(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return values.isna()
    text = values.astype("string").str.strip().str.lower()
    return values.isna() | text.isin(MISSING_TOKENS).fillna(True)


def _parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Return ``(numbers, missing, non_numeric)``; numbers are NaN where not parsed."""
    missing = _missing_mask(values)
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index), missing, ~missing
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype(float), missing, pd.Series(False, index=values.index)
    text = values.astype("string").str.strip()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").astype(float)
    non_numeric = ~missing & numbers.isna()
    return numbers, missing, non_numeric


class _Problems:
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


def _check_rows(table: pd.DataFrame, columns: Columns, problems: _Problems):
    """Row-wise checks; returns parsed conversions, revenue and the ids as text."""
    ids = {}
    for name in (columns.account, columns.campaign, columns.adset):
        if name is None:
            continue
        missing = _missing_mask(table[name])
        problems.add(missing, name, table[name], "missing_value", "missing identifier")
        ids[name] = table[name].astype("string").str.strip()

    n, n_missing, n_text = _parse_numbers(table[columns.conversions])
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

    r, r_missing, r_text = _parse_numbers(table[columns.revenue])
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


def _check_campaigns(
    adset: pd.Series, campaign: pd.Series, ok: np.ndarray, column: str, problems: _Problems
) -> np.ndarray:
    """An ad set must belong to one campaign: flag rows that disagree with its first campaign."""
    first_campaign = campaign[ok].groupby(adset[ok], sort=False).first()
    differs = (campaign != adset.map(first_campaign)).fillna(False).to_numpy(dtype=bool)
    conflict = ok & differs
    for a, c in dict.fromkeys(zip(adset[conflict], campaign[conflict], strict=True)):
        reason = (
            f"ad set {a!r} is filed under campaign {c!r} here and under "
            f"{first_campaign[a]!r} on an earlier row"
        )
        rows = pd.Series(conflict & (adset == a).to_numpy() & (campaign == c).to_numpy())
        problems.add(rows, column, campaign, "adset_campaign_conflict", reason)
    return conflict


def load_revenue_data(
    source: pd.DataFrame | str | Path,
    columns: Columns | None = None,
    *,
    account: str | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
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

    Returns:
        The validated :class:`RevenueData`.

    Example:
        >>> data = load_revenue_data("hourly.csv", Columns(adset="ad_set_id"))  # doctest: +SKIP
        >>> print(data.report)  # doctest: +SKIP
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    columns = columns or Columns()
    table, name, is_csv = read_table(source)

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
    # Row numbers refer to the input as given (before the account filter).
    row_number = table.index.to_numpy() + 1
    table = table.reset_index(drop=True)
    problems = _Problems(row_number, is_csv)
    n, r, ids = _check_rows(table, columns, problems)
    bad_rows = problems.bad_rows()
    zero = (n == 0).to_numpy() & ~bad_rows
    conflict = _check_campaigns(
        ids[columns.adset], ids[columns.campaign], ~bad_rows & ~zero, columns.campaign, problems
    )
    found = problems.table()
    if len(found) and on_invalid == "raise":
        raise _ERRORS[found.iloc[0]["kind"]](name, found)

    keep = ~bad_rows & ~zero & ~conflict
    if not keep.any():
        raise NoObservationsError(
            f"{name}: no row with at least one conversion and valid revenue to fit"
        )
    obs = pd.DataFrame(
        {
            "campaign": ids[columns.campaign][keep].to_numpy(dtype=object),
            "adset": ids[columns.adset][keep].to_numpy(dtype=object),
            "conversions": n[keep].to_numpy(dtype=np.float64),
            "revenue": r[keep].to_numpy(dtype=np.float64),
            "row": row_number[keep],
        }
    )
    if columns.time is not None:
        obs.insert(2, "time", table[columns.time][keep].to_numpy())

    report = DataReport(
        source=name,
        rows_read=len(table),
        rows_used=int(keep.sum()),
        zero_conversion_rows=int(zero.sum()),
        invalid=found.reset_index(drop=True),
    )
    return _pack(obs, report, account)


def _pack(obs: pd.DataFrame, report: DataReport, account: str | None) -> RevenueData:
    """Order campaigns and ad sets (sorted by label), build the model arrays and raw tables."""
    campaigns = sorted(obs["campaign"].unique())
    adset_table = (
        obs.groupby("adset", sort=False)
        .agg(
            campaign=("campaign", "first"),
            n_obs=("row", "size"),
            conversions=("conversions", "sum"),
            revenue=("revenue", "sum"),
        )
        .reset_index()
    )
    campaign_index = {c: i for i, c in enumerate(campaigns)}
    adset_table["campaign_index"] = adset_table["campaign"].map(campaign_index)
    adset_table = adset_table.sort_values(["campaign_index", "adset"], kind="stable")
    adset_table = adset_table.reset_index(drop=True)
    adset_table["raw_mean"] = adset_table["revenue"] / adset_table["conversions"]
    adset_index = {a: i for i, a in enumerate(adset_table["adset"])}

    campaign_table = (
        adset_table.groupby("campaign", sort=False)
        .agg(
            n_adsets=("adset", "size"),
            n_obs=("n_obs", "sum"),
            conversions=("conversions", "sum"),
            revenue=("revenue", "sum"),
        )
        .reindex(campaigns)
        .reset_index()
    )
    campaign_table["raw_mean"] = campaign_table["revenue"] / campaign_table["conversions"]

    num_obs = len(obs)
    arrays = RevenueArrays(
        log_revenue=np.log(obs["revenue"].to_numpy()),
        conversions=obs["conversions"].to_numpy(),
        adset=obs["adset"].map(adset_index).to_numpy(dtype=np.int32),
        adset_campaign=adset_table["campaign_index"].to_numpy(dtype=np.int32),
        obs_mask=np.ones(num_obs, dtype=bool),
        adset_mask=np.ones(len(adset_table), dtype=bool),
        campaign_mask=np.ones(len(campaigns), dtype=bool),
    )
    return RevenueData(
        arrays=arrays,
        observations=obs,
        adsets=adset_table.drop(columns="campaign_index"),
        campaigns=campaign_table,
        report=report,
        account=account,
    )


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
    )
