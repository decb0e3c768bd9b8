"""The locations table: read it (checked), normalize its location column, write it (atomic)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from jaxssm.errors import InputError
from jaxssm.files import write_atomic
from jaxssm.locations.base import LocationNormalizer, LocationResult, fold
from jaxssm.tables import read_frame

RESULT_COLUMNS = ("country", "country_name", "region", "city", "status", "source", "candidates")


class LocationTableError(ValueError):
    """A locations table that cannot be read as asked (names the file and the column)."""


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """CSV / TSV / Parquet by extension, through jaxssm's one checked reader
    (:func:`jaxssm.tables.read_frame`). Empty cells are missing; "NA" stays a string (Namibia,
    and a plausible location).

    Raises:
        LocationTableError: one line naming the file (and the row and column where there is
            one): missing, a folder, unreadable, empty, not UTF-8, a NUL byte, a carriage return
            outside quotes, a repeated column name, or not a table.
    """
    try:
        frame, _ = read_frame(path, blank_is_missing=False)  # a lone "\r" is a location
    except InputError as err:
        raise LocationTableError(str(err)) from None
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` atomically: Parquet, TSV or CSV by extension. CSV and TSV follow RFC 4180
    (CRLF row ends; a field holding the separator, a quote, a CR or an LF is quoted), so a reader
    gets back exactly the rows written, whatever the locations hold.

    Raises:
        OutputError: naming the path (disk full, read-only, a folder in the way).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        write_atomic(path, lambda handle: frame.to_parquet(handle, index=False))
        return
    sep = "\t" if suffix in (".tsv", ".tab") else ","
    # The CR in the row end makes the csv writer quote every field holding a CR or an LF.
    data = frame.to_csv(index=False, sep=sep, lineterminator="\r\n").encode("utf-8")
    write_atomic(path, lambda handle: handle.write(data))


def location_texts(frame: pd.DataFrame, column: str, source: str = "table") -> list[str | None]:
    """The column's strings (None where missing), with a clear error if the column is absent."""
    if column not in frame.columns:
        raise LocationTableError(
            f"{source}: no column {column!r}; the columns are {list(map(str, frame.columns))}"
        )
    return [None if pd.isna(v) else str(v) for v in frame[column].tolist()]


def results_frame(results: Sequence[LocationResult], taken: Sequence[str] = ()) -> pd.DataFrame:
    """The answers as columns; a name already in ``taken`` gets the prefix ``normalized_``."""
    rows = [r.to_dict() for r in results]
    frame = pd.DataFrame(rows, columns=["text", *RESULT_COLUMNS]).drop(columns="text")
    return frame.rename(columns={c: f"normalized_{c}" for c in frame.columns if c in taken})


def normalize_table(
    frame: pd.DataFrame, column: str, normalizer: LocationNormalizer, source: str = "table"
) -> pd.DataFrame:
    """``frame`` with the normalizer's answers for ``column`` appended as columns."""
    results = normalizer.normalize(location_texts(frame, column, source))
    answers = results_frame(results, taken=list(map(str, frame.columns)))
    return pd.concat([frame.reset_index(drop=True), answers], axis=1)


def summarize(results: Sequence[LocationResult], top: int = 10) -> str:
    """Rows, unique keys, counts by status and source, the most frequent countries."""
    status = Counter(r.status for r in results)
    source = Counter(r.source.split(":")[0] if r.source else "" for r in results)
    countries = Counter(r.country for r in results if r.country)
    keys = len({fold(r.text) for r in results})
    lines = [
        f"{len(results)} rows, {keys} distinct locations",
        "status: " + ", ".join(f"{k} {status[k]}" for k in sorted(status)),
        "source: " + ", ".join(f"{k} {source[k]}" for k in sorted(source)),
        "top countries: " + ", ".join(f"{c} {n}" for c, n in countries.most_common(top)),
    ]
    return "\n".join(lines)


class ProgressPrinter:
    """An ``on_progress`` callback that writes one line to a stream at most every ``every`` s."""

    def __init__(self, stream=None, every: float = 2.0):
        import sys
        import time

        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._clock = time.monotonic
        self._last = -float("inf")
        self.last_progress = None

    def __call__(self, progress) -> None:
        self.last_progress = progress
        now = self._clock()
        if now - self._last >= self.every or progress.done >= progress.total:
            self._last = now
            print(progress.line(), file=self.stream, flush=True)
