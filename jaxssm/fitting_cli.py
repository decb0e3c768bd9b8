r"""``jaxssm fit COUNTS --out DIR``: fit the dynamic factor model to a wide table of counts.

The input is a wide table (CSV, TSV or Parquet): the first column holds the window labels, one
column per location, one row per window in time order; an empty cell (or ``NA``, ``NaN``) is a
missing count. Rows in error messages are counted as a spreadsheet shows them (the header is
row 1; for Parquet the first data row is row 1).

What the command does, step by step (each output written atomically, a temporary file then
``os.replace``, as soon as it is computed, so a failure late in the run keeps what came before):

1. Reads and checks every input (``COUNTS``, ``--heldout``, ``--offset``) before it touches
   ``DIR``: a bad input is one line ``error: FILE, row R (window W), column 'C': ...`` and exit 2.
2. Removes the outputs of an earlier ``jaxssm fit`` in ``DIR`` (only the file names listed in
   :data:`OUTPUTS`), so the folder never mixes two runs.
3. With ``--factors auto`` or ``--emission auto``, chooses q and the emission by K-fold
   cross-validation on the training cells (:func:`jaxssm.select_num_factors`) →
   ``selection.csv``.
4. Fits the chosen model (:func:`jaxssm.fit_laplace_em`) → ``summary.json`` (rewritten at the
   end with ``"finished": true``), ``params/``, ``expected_counts.csv``; with ``--heldout`` the
   held-out scores; then ``imputation.csv``, ``forecast.csv`` and ``figures/``.

**Held-out cells** (``--heldout``): a count in HELDOUT marks a cell to score. Such a cell is
always left out of the fit (and of the cross-validation), whether COUNTS leaves it empty (the
usual layout) or holds the same count there (so the full panel and a held-out file can be
passed as they are); a different count in COUNTS at a held-out cell is an error (two files that
do not belong together). Held-out cells count as missing in ``imputation.csv`` and the figures.

**Precision**: the command computes in float64 (``jax.enable_x64`` for the run only), so its
tables agree with the Python API called in float64 to rounding; CSVs hold 10 significant digits.

**Exit codes**: 0 done; 2 bad input or usage (nothing written); 3 written, but the fit is not
converged (``--allow-unconverged`` accepts it) or a figure failed; 1 an output could not be
written (the message names the path); 130 interrupted (the files written so far are kept).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: Cell texts read as a missing count.
MISSING_TEXTS = frozenset({"", "NA", "NaN", "nan"})

#: Every file a run may write, relative to DIR (an earlier run's copies are removed first).
OUTPUTS = (
    "summary.json",
    "selection.csv",
    "params/mu.csv",
    "params/loadings.csv",
    "params/transition.csv",
    "expected_counts.csv",
    "heldout_scores.csv",
    "heldout_score.json",
    "imputation.csv",
    "forecast.csv",
    "figures/fit.png",
    "figures/factors.png",
)

EXIT_OK, EXIT_WRITE_FAILED, EXIT_BAD_INPUT, EXIT_UNCONVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: The interval of imputed and forecast counts: 5 % and 95 % quantiles of the draws.
LEVEL = 0.9

#: The log predictive density below which a held-out cell counts as unexplained.
WORST_CELL = -50.0

_FLOAT_FORMAT = "%.10g"


class InputError(ValueError):
    """An input that cannot be used; the message names the file and, where there is one, the
    row and column."""


class OutputError(OSError):
    """An output that could not be written; the message names the path."""


class WideTable(NamedTuple):
    """A wide table as read: ``windows`` (N,) labels in file order, ``locations`` (m,) names,
    ``values`` (N, m) float64 with NaN where a cell is missing."""

    path: Path
    label_column: str
    windows: list[str]
    locations: list[str]
    values: np.ndarray


# ---------------------------------------------------------------------------------------------
# Reading and checking the inputs


def _delimiter(path: Path, first_line: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv" and "," in first_line:
        return ","
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _raw_rows(path: Path) -> tuple[list[str], list[tuple[int, list]], int]:
    """The header, the data rows with their row numbers, and the number of the first data row
    (2 for text files, whose header is row 1; 1 for Parquet)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a table")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a file that is not Parquet
            raise InputError(f"{path}: cannot be read as Parquet: {err}") from err
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        header = [str(c) for c in frame.columns]
        rows = [(i + 1, list(r)) for i, r in enumerate(frame.itertuples(index=False, name=None))]
        return header, rows, 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from err
    except OSError as err:
        raise InputError(f"{path}: cannot be read: {err.strerror or err}") from err
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(path, text.split("\n", 1)[0])
    )
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
    except csv.Error as err:
        raise InputError(f"{path}, row {len(records) + 1}: cannot be read as CSV: {err}") from err
    numbered = [(n, r) for n, r in enumerate(records, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise InputError(f"{path}: no header (every row is empty)")
    header = numbered[0][1]
    return header, numbered[1:], 2


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
        InputError: the first problem, naming the file, row (and window) and column.
    """
    path = Path(path)
    header, rows, first = _raw_rows(path)
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
                "(a separator inside an unquoted label?)"
            )
        label = "" if record[0] is None else str(record[0]).strip()
        if isinstance(record[0], float) and math.isnan(record[0]):
            label = ""
        if not label:
            raise InputError(f"{where(number, label_column)}: the window label is empty")
        if _control_character(label):
            raise InputError(
                f"{where(number, label_column)}: the window label {label!r} holds a control "
                "character (a line break, tab or NUL)"
            )
        if label in first_row:
            raise InputError(
                f"{where(number, label_column)}: window {label!r} appears twice (rows "
                f"{first_row[label]} and {number})"
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
            f"{path}, row {number} (window {label!r}), column {column!r}: {problem}{more}"
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


# ---------------------------------------------------------------------------------------------
# Writing


def write_atomic(path: Path, payload: bytes | Callable[[io.BufferedWriter], None]) -> None:
    """Write ``payload`` (bytes, or a function writing to a binary handle) to a temporary file
    beside ``path``, flush it to disk and rename it over ``path``: a reader sees the old file or
    the whole new one, never a part. The temporary file is removed on any failure.

    Raises:
        OutputError: naming ``path``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            with open(tmp, "wb") as handle:
                if isinstance(payload, bytes):
                    handle.write(payload)
                else:
                    payload(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err


def _csv_bytes(frame, index: bool = False) -> bytes:
    return frame.to_csv(index=index, lineterminator="\n", float_format=_FLOAT_FORMAT).encode()


def _plain(value):
    """JSON-ready: numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(_plain(data), indent=2, allow_nan=False) + "\n").encode()


# ---------------------------------------------------------------------------------------------
# The run


class FitRun(NamedTuple):
    """What :func:`fit_wide_table` computed: the fit, the selection (or None), the summary
    dict as written, the held-out score (or None), the files written and the figure errors."""

    fit: object
    selection: object
    summary: dict
    heldout_score: dict | None
    files: list[str]
    figure_errors: list[str]


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


def fit_wide_table(
    inputs: Inputs,
    out: Path,
    *,
    factors: str = "auto",
    candidates: str = "0,1,2,3",
    emission: str = "auto",
    folds: int = 5,
    horizon: int = 0,
    draws: int = 1000,
    seed: int = 0,
    max_iterations: int = 1000,
    options: dict | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> FitRun:
    """Fit, score and write every output into ``out`` (see the module docstring). Runs in
    float64. ``options`` are recorded in ``summary.json``; ``say`` gets the progress lines."""
    import jax

    with jax.enable_x64(True):
        return _fit_and_write(
            inputs, out, factors, candidates, emission, folds, horizon, draws, seed,
            max_iterations, options or {}, say,
        )  # fmt: skip


def _fit_and_write(
    inputs, out, factors, candidates, emission, folds, horizon, draws, seed, max_iterations,
    options, say,
) -> FitRun:  # fmt: skip
    import jax
    import pandas as pd

    import jaxssm
    from jaxssm.emissions import EMISSIONS

    table = inputs.counts
    windows, locations = table.windows, table.locations
    N, m = table.values.shape
    x = inputs.train
    written: list[str] = []

    def put(name: str, payload) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, payload)
        if name not in written:
            written.append(name)
        say(f"wrote {path}")

    k_select, k_impute, k_forecast = jax.random.split(jax.random.key(seed), 3)
    qs, too_large = candidate_factors(factors, candidates, (N, m), table.path)
    if too_large:
        say(f"skipping q = {', '.join(map(str, too_large))}: at most {min(N, m)} factors here")
    emissions = EMISSIONS if emission == "auto" else (emission,)
    offset = inputs.offset

    selection = None
    if len(qs) * len(emissions) > 1:
        say(
            f"choosing q in {{{', '.join(map(str, qs))}}} and the emission "
            f"({', '.join(emissions)}) by {folds}-fold cross-validation: "
            f"{len(qs) * len(emissions) * folds} fits"
        )
        start = time.perf_counter()
        selection = jaxssm.select_num_factors(
            k_select, x, qs, emissions=emissions, offset=offset, folds=folds,
            max_iterations=max_iterations,
        )  # fmt: skip
        q, chosen = selection.best, selection.best_emission
        say(f"chose q = {q}, {chosen} ({time.perf_counter() - start:.1f} s)")
        put("selection.csv", _csv_bytes(selection.table))
    else:
        q, chosen = qs[0], emissions[0]

    say(f"fitting q = {q}, {chosen} emission")
    start = time.perf_counter()
    fit = jaxssm.fit_laplace_em(x, q, emission=chosen, offset=offset, max_iterations=max_iterations)
    say(f"{fit.status} after {fit.num_iterations} iterations ({time.perf_counter() - start:.1f} s)")

    check = fit.check._asdict() if fit.check is not None else {}
    if check:
        i, j = check.pop("worst_window"), check.pop("worst_location")
        check["worst_window"] = windows[i] if 0 <= i < N else None
        check["worst_location"] = locations[j] if 0 <= j < m else None
        check["problems"] = list(check["problems"])
    summary = {
        "finished": False,
        "counts_file": str(table.path),
        "num_factors": q,
        "emission": chosen,
        "status": fit.status,
        "converged": bool(fit.converged),
        "iterations": int(fit.num_iterations),
        "evaluations": int(fit.evaluations),
        "objective": float(fit.objective[-1]) if len(fit.objective) else None,
        "selection": None if selection is None else selection.table.to_dict("records"),
        "check": check,
        "loading_variance": np.asarray(fit.prior.loading_variance).tolist(),
        "data": {
            "windows": N,
            "locations": m,
            "cells": N * m,
            "missing_cells": int(np.isnan(table.values).sum()),
            "heldout_cells": 0
            if inputs.heldout is None
            else int((~np.isnan(inputs.heldout)).sum()),
            "heldout_cells_present_in_counts": inputs.heldout_in_counts,
            "fitted_cells": int(np.isfinite(x).sum()),
            "first_window": windows[0],
            "last_window": windows[-1],
            "offset": offset is not None,
        },
        "float64": True,
        "options": options,
        "files": written,
    }
    put("summary.json", lambda h: h.write(_json_bytes(summary)))

    phi = (
        None if fit.params.log_dispersion is None else np.exp(np.asarray(fit.params.log_dispersion))
    )
    factor_names = [f"factor_{k + 1}" for k in range(q)]
    mu = pd.DataFrame(
        {
            "location": locations,
            "mu": np.asarray(fit.params.mu),
            "dispersion": np.full(m, np.nan) if phi is None else phi,
        }
    )
    put("params/mu.csv", _csv_bytes(mu))
    loadings = pd.DataFrame(np.asarray(fit.params.Lambda), columns=factor_names)
    loadings.insert(0, "location", locations)
    put("params/loadings.csv", _csv_bytes(loadings))
    transition = pd.DataFrame(np.asarray(fit.params.Phi), columns=factor_names)
    transition.insert(0, "factor", factor_names)
    put("params/transition.csv", _csv_bytes(transition))

    expected = pd.DataFrame(fit.expected_counts(), columns=locations)
    expected.insert(0, table.label_column, windows)
    put("expected_counts.csv", _csv_bytes(expected))

    def long(values: dict) -> pd.DataFrame:
        frame = pd.DataFrame({"window": np.repeat(windows, m), "location": np.tile(locations, N)})
        for name, value in values.items():
            frame[name] = np.asarray(value).reshape(-1)
        return frame

    score = None
    if inputs.heldout is not None:
        say("scoring the held-out cells")
        cells = ~np.isnan(inputs.heldout)
        logp = fit.log_predictive(inputs.heldout, cells)
        scores = long({"count": inputs.heldout, "log_predictive": logp})[cells.reshape(-1)]
        put("heldout_scores.csv", _csv_bytes(scores.reset_index(drop=True)))
        values = logp[cells]
        worst = int(np.argmin(np.where(np.isfinite(values), values, -np.inf)))
        score = {
            "log_predictive_per_cell": float(np.mean(values)),
            "log_predictive_se": float(np.std(values, ddof=1) / math.sqrt(values.size))
            if values.size > 1
            else None,
            "num_cells": int(values.size),
            "cells_below_minus_50": int(np.sum(~(values >= WORST_CELL))),
            "worst_cell": scores.iloc[worst][
                ["window", "location", "count", "log_predictive"]
            ].to_dict(),
            "num_factors": q,
            "emission": chosen,
        }
        put("heldout_score.json", _json_bytes(score))
        summary["heldout_score"] = score
        if score["cells_below_minus_50"]:
            # a cell the model cannot explain, held out or not, means the fit is not usable
            w = score["worst_cell"]
            summary["converged"] = False
            summary["status"] = (
                f"not converged: {score['cells_below_minus_50']} held-out cell(s) have a log "
                f"predictive below {WORST_CELL:g} (worst {w['log_predictive']:,.1f} at window "
                f"{w['window']!r}, location {w['location']!r}) (fit: {fit.status})"
            )

    say(f"imputing the missing cells ({draws} draws)")
    cov = fit.parameter_covariance()
    imputed = np.asarray(
        jaxssm.impute(
            k_impute, fit.params, fit.posterior, fit.panel, draws, parameter_cov=cov
        ).counts
    )
    tail = (1 - LEVEL) / 2
    imputation = long(
        {
            "observed": x,
            "mean": imputed.mean(0),
            "q05": np.quantile(imputed, tail, axis=0),
            "q95": np.quantile(imputed, 1 - tail, axis=0),
        }
    )
    del imputed
    put("imputation.csv", _csv_bytes(imputation))

    if horizon > 0:
        say(f"forecasting {horizon} windows ahead ({draws} draws)")
        future_offset = None if offset is None else np.broadcast_to(offset[-1], (horizon, m))
        ahead = jaxssm.forecast(
            k_forecast, fit.params, fit.posterior, horizon, draws, offset=future_offset,
            parameter_cov=cov,
        )  # fmt: skip
        mean, lo, hi = ahead.interval(LEVEL)
        steps = np.arange(1, horizon + 1)
        forecast = pd.DataFrame(
            {
                "step": np.repeat(steps, m),
                "location": np.tile(locations, horizon),
                "mean": mean.reshape(-1),
                "q05": lo.reshape(-1),
                "q95": hi.reshape(-1),
            }
        )
        put("forecast.csv", _csv_bytes(forecast))

    figure_errors = []
    shown = np.where(np.isnan(x), inputs.heldout if inputs.heldout is not None else np.nan, x)
    for name, draw in (
        ("figures/fit.png", lambda: _figure_fit(fit, shown, locations)),
        ("figures/factors.png", lambda: _figure_factors(fit)),
    ):
        try:
            fig = draw()
        except Exception as err:  # a figure is not worth the rest of the run
            figure_errors.append(f"{name}: {type(err).__name__}: {err}")
            say(f"warning: {name} not drawn: {err}")
            continue
        try:
            put(name, lambda h, fig=fig: fig.savefig(h, format="png", dpi=110))
        finally:
            import matplotlib.pyplot as plt

            plt.close(fig)

    summary["finished"] = True
    summary["figure_errors"] = figure_errors
    put("summary.json", lambda h: h.write(_json_bytes(summary)))
    return FitRun(fit, selection, summary, score, written, figure_errors)


def _figure_fit(fit, counts: np.ndarray, locations: list[str]):
    from jaxssm.plots import plot_rates

    top = list(np.argsort(-np.nansum(counts, axis=0), kind="stable")[:6])
    return plot_rates(fit, counts, top, names=locations, level=LEVEL)


def _figure_factors(fit):
    import matplotlib.pyplot as plt

    from jaxssm.plots import plot_factors

    if fit.num_factors == 0:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.text(0.5, 0.5, "q = 0: the static model has no latent factors", ha="center")
        ax.axis("off")
        return fig
    two_sd = math.erf(2 / math.sqrt(2))  # the level of mean ± 2 sd
    return plot_factors(fit, level=two_sd)


def _remove_earlier_outputs(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_file():
            path.unlink()


def _describe(run: FitRun, out: Path, folds: int) -> str:
    fit, summary = run.fit, run.summary
    how = "as asked"
    if run.selection is not None:
        table = run.selection.table
        qs = ", ".join(map(str, table["num_factors"].unique()))
        emissions = ", ".join(table["emission"].unique())
        how = f"chosen by {folds}-fold CV over q in {{{qs}}} × {emissions}"
    lines = [
        f"model: q = {summary['num_factors']}, {summary['emission']} emission ({how})",
        f"status: {fit.status} ({summary['iterations']} iterations)",
    ]
    if run.heldout_score is not None:
        s = run.heldout_score
        lines.append(
            f"held-out: {s['log_predictive_per_cell']:.4f} log predictive per cell over "
            f"{s['num_cells']} cells ({s['cells_below_minus_50']} below -50)"
        )
    lines.append(f"files in {out}: {', '.join(run.files)}")
    return "\n".join(lines)


def run_fit(args) -> int:
    """The ``jaxssm fit`` command on parsed arguments; returns the exit code (module docstring)."""
    quiet = getattr(args, "quiet", False)

    def say(line: str) -> None:
        if not quiet:
            print(f"jaxssm fit: {line}", file=sys.stderr, flush=True)

    out = Path(args.out)
    try:
        check_options(args)
        inputs = read_inputs(args.counts, args.heldout, args.offset)
        candidate_factors(args.factors, args.candidates, inputs.counts.values.shape, args.counts)
        for given in filter(None, (args.counts, args.heldout, args.offset)):
            if Path(given).resolve() in {(out / name).resolve() for name in OUTPUTS}:
                raise InputError(f"--out {out}: would overwrite the input {given}")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the output folder {out}: {err.strerror}") from err
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    N, m = inputs.counts.values.shape
    say(
        f"read {args.counts}: {N} windows × {m} locations, "
        f"{int(np.isnan(inputs.counts.values).sum())} missing cells"
        + ("" if inputs.heldout is None else f", {int(np.isfinite(inputs.heldout).sum())} held out")
    )
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        _remove_earlier_outputs(out)
        run = fit_wide_table(
            inputs, out, factors=args.factors, candidates=args.candidates,
            emission=args.emission, folds=args.folds, horizon=args.horizon, draws=args.draws,
            seed=args.seed, max_iterations=args.max_iterations, options=options, say=say,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            f"interrupted: the files written so far are in {out} (summary.json says whether the "
            "run finished); run the same command again to redo it",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except ValueError as err:  # InputError, DataError and the library's argument checks
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(_describe(run, out, args.folds))
    if run.figure_errors:
        print("error: " + "; ".join(run.figure_errors), file=sys.stderr)
        return EXIT_UNCONVERGED
    converged = run.fit.converged and run.summary.get("converged", True)
    if not converged and not getattr(args, "allow_unconverged", False):
        print(
            "warning: the fit is not converged (see status); its outputs are written. Pass "
            "--allow-unconverged to accept it (exit 0), or try --emission negbin, fewer factors "
            "or more --max-iterations.",
            file=sys.stderr,
        )
        return EXIT_UNCONVERGED
    return EXIT_OK
