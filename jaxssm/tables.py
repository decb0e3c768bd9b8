r"""Reading the tables a user gives a jaxssm command (CSV, TSV or Parquet), checked: every
problem is one :class:`~jaxssm.errors.InputError` naming the file, and the row and column where
there is one, never a parser's traceback.

Checked: a missing path, a folder, an unreadable file, an empty file, bytes that are not UTF-8,
a NUL byte, a carriage return outside quotes that is not part of a ``\r\n`` line end (a reader
would start a new row there), a malformed CSV record, an empty header and a column name that
appears twice. Rows are counted as a spreadsheet shows them: the header is row 1 (for Parquet
the first data row is row 1).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from pathlib import Path

import pandas as pd

from jaxssm.errors import InputError

PARQUET_SUFFIXES = (".parquet", ".pq")

_BARE_CR = re.compile(r"\r(?!\n)")


def delimiter(path: Path, first_line: str) -> str:
    """``\t`` for ``.tsv`` / ``.tab``, ``,`` for a ``.csv`` whose header has one, else the most
    frequent of ``,``, tab and ``;`` in the header."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return "\t"
    if suffix == ".csv" and "," in first_line:
        return ","
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _first_bad_character(text: str, sep: str) -> tuple[int, int, str] | None:
    """(row, field, what) of the first NUL, or of the first ``\\r`` outside quotes that is not
    part of a ``\\r\\n`` line end; rows from 1 (the header), fields from 0; None if neither.
    Walks the text as CSV (a ``"`` toggles quoting; a line end outside quotes ends a row)."""
    if "\x00" not in text and not _BARE_CR.search(text):
        return None
    row, field, quoted = 1, 0, False
    for i, c in enumerate(text):
        if c == "\x00":
            return row, field, "a NUL byte"
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c == sep:
            field += 1
        elif c == "\n":
            row, field = row + 1, 0
        elif c == "\r" and text[i + 1 : i + 2] != "\n":
            return row, field, "a carriage return (\\r) outside quotes"
    return None


def _check_characters(path: Path, text: str, sep: str) -> None:
    """InputError at the first NUL or bare carriage return (see :func:`_first_bad_character`)."""
    found = _first_bad_character(text, sep)
    if found is None:
        return
    row, field, what = found
    first = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader(io.StringIO(first), delimiter=sep), [])
    column = header[field] if field < len(header) else str(field + 1)
    raise InputError(
        f"{path}, row {row}, column {column!r}: {what}; quote the field or remove the character",
        file=path,
        row=row,
        column=column,
    )


def _not_utf8(path: Path, err: UnicodeDecodeError) -> InputError:
    """The error for bytes that are not UTF-8, naming the row and column of the first one."""
    raw = path.read_bytes()
    before = raw[: err.start].decode("utf-8", errors="replace")
    row = before.count("\n") + 1
    sep = delimiter(path, before.split("\n", 1)[0])
    header = next(csv.reader(io.StringIO(before.split("\n", 1)[0].rstrip("\r")), delimiter=sep), [])
    field = before.rsplit("\n", 1)[-1].count(sep)
    column = header[field] if field < len(header) else str(field + 1)
    return InputError(
        f"{path}, row {row}, column {column!r}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
        "save it as UTF-8",
        file=path,
        row=row,
        column=column,
    )


def read_text(path: str | os.PathLike) -> str:
    """The text of a delimited file (UTF-8, a BOM dropped).

    Raises:
        InputError: a missing path, a folder, an unreadable or empty file, or bytes that are
            not UTF-8 (naming the byte offset).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file", file=path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a table", file=path)
    try:
        with open(path, "rb") as handle:
            if handle.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                raise InputError(f"{path}: is UTF-16 text; save it as UTF-8", file=path)
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read: {err.strerror or err}", file=path) from None
    if not text.strip():
        raise InputError(f"{path}: the file is empty", file=path)
    return text


def _check_header(path: Path, header: list[str], where: str) -> None:
    seen: dict[str, int] = {}
    for j, name in enumerate(header, start=1):
        if name in seen:
            raise InputError(
                f"{path}, {where}, column {name!r}: the column name appears twice (columns "
                f"{seen[name]} and {j})",
                file=path,
                column=name,
            )
        seen[name] = j


def read_records(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, list]], int]:
    """The header, the data rows (row number, fields; blank rows left out) and the number of
    the first data row (2 for text files, whose header is row 1; 1 for Parquet). Header names
    are stripped and checked for repeats; Parquet cells keep their types.

    Raises:
        InputError: see the module docstring.
    """
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        if not path.exists() or path.is_dir():
            read_text(path)  # the same message for a missing path or a folder
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a file that is not Parquet
            raise InputError(f"{path}: cannot be read as Parquet: {err}", file=path) from None
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        header = [str(c).strip() for c in frame.columns]
        _check_header(path, header, "the header")
        rows = [(i + 1, list(r)) for i, r in enumerate(frame.itertuples(index=False, name=None))]
        return header, rows, 1
    text = read_text(path)
    sep = delimiter(path, text.split("\n", 1)[0])
    _check_characters(path, text, sep)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
    except csv.Error as err:
        row = len(records) + 1
        raise InputError(
            f"{path}, row {row}: cannot be read as CSV: {err}", file=path, row=row
        ) from None
    numbered = [(n, r) for n, r in enumerate(records, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise InputError(f"{path}: no header (every row is empty)", file=path)
    header = [h.strip() for h in numbered[0][1]]
    _check_header(path, header, f"row {numbered[0][0]}")
    return header, numbered[1:], 2


def read_frame(
    path: str | os.PathLike, blank_is_missing: bool = True
) -> tuple[pd.DataFrame, list[int]]:
    """A table as a DataFrame of strings (None where a cell is empty, or only white space when
    ``blank_is_missing``; ``"NA"`` stays a string; Parquet cells keep their types) and the row
    number of each of its rows (see :func:`read_records`).

    Raises:
        InputError: see the module docstring, and a row whose number of fields differs from the
            header's (naming the row).
    """
    header, rows, first = read_records(path)
    numbers = [n for n, _ in rows]
    if first == 1:
        return pd.DataFrame([r for _, r in rows], columns=header), numbers
    for number, record in rows:
        if len(record) != len(header):
            raise InputError(
                f"{path}, row {number}: {len(record)} fields, but the header has {len(header)} "
                "(a separator inside an unquoted field?)",
                file=path,
                row=number,
            )
    keep = (lambda c: c.strip()) if blank_is_missing else (lambda c: c)
    cells = [[c if keep(c) else None for c in r] for _, r in rows]
    return pd.DataFrame(cells, columns=header, dtype=object), numbers
