"""Reading and checking the inputs of ``jaxssm fit``: the wide tables (COUNTS, HELDOUT, OFFSET)
and the numeric options, before anything is written (:mod:`jaxssm.fitting`).

A bad input raises :class:`~jaxssm.errors.InputError`, one line naming the file, row (and window)
and column, or the option; the file-level checks (missing, folder, empty, encoding, NUL, bare
carriage return, repeated column) are :func:`jaxssm.tables.read_records`'s.
Rows are counted as a spreadsheet shows them (the header is row 1; for
Parquet the first data row is row 1).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxssm.errors import InputError
from jaxssm.tables import read_records

#: Cell texts read as a missing count.
MISSING_TEXTS = frozenset({"", "NA", "NaN", "nan"})


class WideTable(NamedTuple):
    """A wide table as read: ``windows`` (N,) labels in file order, ``locations`` (m,) names,
    ``values`` (N, m) float64 with NaN where a cell is missing."""

    path: Path
    label_column: str
    windows: list[str]
    locations: list[str]
    values: np.ndarray


def _control_character(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _parse(value) -> float | str:
    """A cell as a float (NaN when missing), or the text to quote when it is not a number."""
    if value is None or type(value).__name__ == "NAType":  # pandas' NA in a Parquet column
        return math.nan
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip()
    if text in MISSING_TEXTS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return str(value)


def read_wide_table(path: str | os.PathLike, kind: str = "counts") -> WideTable:
    """Read and check a wide table of ``kind`` ``"counts"`` (non-negative whole numbers or
    missing) or ``"offset"`` (a finite log-offset in every cell).

    Raises:
        InputError: the first problem, naming the file, row (and window) and column (in the
            message, and as the error's ``file``, ``row`` and ``column`` for a bad cell).
    """
    path = Path(path)
    header, rows, first = read_records(path)
    where = lambda row, column: f"{path}, row {row}, column {column!r}"  # noqa: E731
    in_header = "row 1" if first == 2 else "the header"
    header = [str(h).strip() for h in header]
    if len(header) < 2:
        raise InputError(
            f"{path}: no location columns (the first column holds the window labels, then one "
            f"column per location; the header is {header!r}: is the separator right?)"
        )
    label_column, locations = header[0] or "window", header[1:]
    seen: dict[str, int] = {}
    for j, name in enumerate(locations, start=2):
        if not name:
            raise InputError(f"{path}, {in_header}, column {j}: the location has no name")
        if _control_character(name):
            raise InputError(
                f"{path}, {in_header}, column {name!r}: the location name holds a control "
                "character (a line break, tab or NUL)"
            )
        if name in seen:
            raise InputError(
                f"{path}, {in_header}, column {name!r}: the location appears twice (columns "
                f"{seen[name]} and {j})"
            )
        seen[name] = j
    if not rows:
        raise InputError(f"{path}: no data rows (only a header)")
    windows: list[str] = []
    first_row: dict[str, int] = {}
    values = np.full((len(rows), len(locations)), np.nan)
    bad: list[tuple[int, str, str, str]] = []  # (row, window, column, problem)
    for i, (number, record) in enumerate(rows):
        if len(record) != len(header):
            raise InputError(
                f"{path}, row {number}: {len(record)} fields, but the header has {len(header)} "
                "(a separator inside an unquoted label?)",
                file=path,
                row=number,
            )
        label = "" if record[0] is None else str(record[0]).strip()
        if isinstance(record[0], float) and math.isnan(record[0]):
            label = ""
        if not label:
            raise InputError(
                f"{where(number, label_column)}: the window label is empty",
                file=path,
                row=number,
                column=label_column,
            )
        if _control_character(label):
            raise InputError(
                f"{where(number, label_column)}: the window label {label!r} holds a control "
                "character (a line break, tab or NUL)"
            )
        if label in first_row:
            raise InputError(
                f"{where(number, label_column)}: window {label!r} appears twice (rows "
                f"{first_row[label]} and {number})",
                file=path,
                row=number,
                column=label_column,
            )
        first_row[label] = number
        windows.append(label)
        for j, cell in enumerate(record[1:]):
            value = _parse(cell)
            problem = None
            if isinstance(value, str):
                what = "a count" if kind == "counts" else "a number"
                problem = f"{value!r} is not {what}"
            elif kind == "offset" and not math.isfinite(value):
                problem = "the offset is missing or not finite (every cell needs one)"
            elif kind == "counts" and not math.isnan(value):
                if not math.isfinite(value):
                    problem = f"count {value!r} is not finite"
                elif value < 0:
                    problem = f"count {value:g} is negative"
                elif value != round(value):
                    problem = f"count {value:g} is not a whole number"
            if problem is None:
                values[i, j] = value
            else:
                bad.append((number, label, locations[j], problem))
    if bad:
        number, label, column, problem = bad[0]
        more = f" ({len(bad)} such cells)" if len(bad) > 1 else ""
        raise InputError(
            f"{path}, row {number} (window {label!r}), column {column!r}: {problem}{more}",
            file=path,
            row=number,
            column=column,
        )
    return WideTable(path, label_column, windows, locations, values)


def _listing(names, limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def align(other: WideTable, base: WideTable) -> np.ndarray:
    """``other``'s values in ``base``'s window and location order, (N, m); its windows and
    locations must be the same sets as ``base``'s (in any order).

    Raises:
        InputError: naming the windows and locations that do not match.
    """
    problems = []
    for what, mine, theirs in (
        ("windows", other.windows, base.windows),
        ("locations", other.locations, base.locations),
    ):
        missing = [w for w in theirs if w not in set(mine)]
        extra = [w for w in mine if w not in set(theirs)]
        if missing:
            problems.append(f"{what} of {base.path.name} missing here: {_listing(missing)}")
        if extra:
            problems.append(f"{what} not in {base.path.name}: {_listing(extra)}")
    if problems:
        raise InputError(
            f"{other.path}: does not match {base.path} (same window labels and locations "
            f"needed): " + "; ".join(problems)
        )
    rows = [other.windows.index(w) for w in base.windows]
    cols = [other.locations.index(c) for c in base.locations]
    return other.values[np.ix_(rows, cols)]


class Inputs(NamedTuple):
    """The checked inputs: ``counts`` as read; ``train`` (N, m) the counts the fit sees (NaN
    where missing or held out); ``heldout`` (N, m) the held-out counts (NaN elsewhere) or None;
    ``offset`` (N, m) or None."""

    counts: WideTable
    train: np.ndarray
    heldout: np.ndarray | None
    offset: np.ndarray | None
    heldout_in_counts: int


def read_inputs(counts_path, heldout_path=None, offset_path=None) -> Inputs:
    """Read COUNTS, HELDOUT and OFFSET and check that they belong together (see the module
    docstring for the held-out rule)."""
    counts = read_wide_table(counts_path, "counts")
    train = counts.values.copy()
    heldout = offset = None
    present = 0
    if heldout_path is not None:
        table = read_wide_table(heldout_path, "counts")
        heldout = align(table, counts)
        cells = ~np.isnan(heldout)
        if not cells.any():
            raise InputError(f"{table.path}: no held-out counts (every cell is empty)")
        both = cells & ~np.isnan(train)
        differ = both & (train != heldout)
        if differ.any():
            i, j = np.argwhere(differ)[0]
            raise InputError(
                f"{table.path}, window {counts.windows[i]!r}, column {counts.locations[j]!r}: "
                f"held-out count {heldout[i, j]:g} but {counts.path} has {train[i, j]:g} there "
                f"({int(differ.sum())} such cells; a held-out cell must be empty in the counts "
                "or hold the same count)"
            )
        present = int(both.sum())
        train[cells] = np.nan
    if offset_path is not None:
        offset = align(read_wide_table(offset_path, "offset"), counts)
    if not np.isfinite(train).any():
        raise InputError(f"{counts.path}: no observed counts to fit")
    return Inputs(counts, train, heldout, offset, present)


def _parse_factors(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        q = int(value)
    except ValueError:
        raise InputError(f"--factors {value!r}: give 'auto' or a number of factors") from None
    if q < 0:
        raise InputError(f"--factors {value!r}: the number of factors cannot be negative")
    return q


def _parse_candidates(value: str) -> tuple[int, ...]:
    try:
        candidates = tuple(dict.fromkeys(int(q) for q in value.split(",")))
    except ValueError:
        raise InputError(f"--candidates {value!r} is not a list like 0,1,2,3") from None
    if not candidates or min(candidates) < 0:
        raise InputError(f"--candidates {value!r}: numbers of factors are 0 or more")
    return candidates


def candidate_factors(factors: str, candidates: str, shape: tuple[int, int], path) -> tuple:
    """The numbers of factors to consider (``--factors`` N alone, or ``--candidates``), and
    those left out because they exceed min(windows, locations). InputError when none is left."""
    q_fixed = _parse_factors(factors)
    largest = min(shape)
    qs = (q_fixed,) if q_fixed is not None else _parse_candidates(candidates)
    too_large = tuple(q for q in qs if q > largest)
    kept = tuple(q for q in qs if q <= largest)
    if not kept:
        raise InputError(
            f"{path}: {shape[0]} windows × {shape[1]} locations allow at most {largest} "
            f"factors; asked for {_listing(too_large)}"
        )
    return kept, too_large


def check_options(args) -> None:
    """Range checks of the numeric options (InputError naming the option)."""
    for name, low in (("folds", 1), ("horizon", 0), ("draws", 1), ("max_iterations", 1)):
        value = getattr(args, name)
        if value < low:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be at least {low}")
    if args.emission not in ("auto", "poisson", "negbin"):
        raise InputError(f"--emission {args.emission!r}: give auto, poisson or negbin")
    _parse_factors(args.factors)
    _parse_candidates(args.candidates)
