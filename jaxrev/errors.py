"""The data errors of jaxrev: every problem with input rows names the file, row and column.

:class:`InvalidDataError` carries a ``problems`` table (row, line, column, value, kind, reason);
one subclass per ``kind``, looked up in :data:`ERRORS` by the validators that collect problems
(:mod:`jaxrev.data`, and the funnel's daily tables). :class:`MultipleAccountsError` and
:class:`NoObservationsError` are about the table as a whole, :class:`InputFileError` about a file
that cannot be read as a table, :class:`OutputError` about a file that cannot be written.
"""

from __future__ import annotations

import pandas as pd


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
        lines = [describe_problem(source, p) for p in self.problems.head(max_listed).itertuples()]
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


class InputFileError(ValueError):
    """A file that cannot be read as a table: missing, empty, a folder, unreadable, not UTF-8,
    a duplicated header, a bare carriage return or NUL byte, a malformed row. The message names
    the file (and the line and column where there is one)."""

    def __init__(
        self, source: str, reason: str, *, line: int | None = None, column: str | None = None
    ):
        self.source = source
        self.reason = reason
        self.line = line
        self.column = column
        where = [str(source)]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}")


class MissingFileError(InputFileError, FileNotFoundError):
    """The input path does not exist."""


class OutputError(OSError):
    """A file or folder that cannot be written: one line naming the path and the reason
    (no space left on device, read-only file system, a file where a folder should be)."""

    def __init__(self, path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}")

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


class MultipleAccountsError(ValueError):
    """The rows hold several accounts and no ``account=`` was chosen."""


class NoObservationsError(ValueError):
    """No row with at least one conversion is left to fit."""


ERRORS: dict[str, type[InvalidDataError]] = {
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


def describe_problem(source: str, p) -> str:
    """One line for one problem (a row of a ``problems`` table): where, what, and the value."""
    where = [source]
    if not pd.isna(p.row):
        where.append(f"row {int(p.row)}" + ("" if pd.isna(p.line) else f" (line {int(p.line)})"))
    where.append(f"column {p.column!r}")
    value = "" if p.value is None else f"; got {p.value!r}"
    return f"{', '.join(where)}: {p.reason}{value}"


__all__ = [
    "ERRORS",
    "AdsetCampaignConflictError",
    "InputFileError",
    "InvalidDataError",
    "MissingColumnError",
    "MissingFileError",
    "MissingValueError",
    "MultipleAccountsError",
    "NegativeCountError",
    "NoObservationsError",
    "NonFiniteValueError",
    "NonIntegerCountError",
    "NonNumericValueError",
    "NonPositiveRevenueError",
    "OutputError",
    "describe_problem",
]
