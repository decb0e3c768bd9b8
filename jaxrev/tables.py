r"""One checked way in for every input table: :func:`read_table`.

A path is checked before pandas sees it, so a bad file gives one
:class:`~jaxrev.errors.InputFileError` naming the file (and the line and column where there is
one) instead of a parser's message or a silently wrong table:

* missing, a folder, unreadable, empty, an unsupported suffix;
* CSV/TSV (optionally ``.gz``, ``.bz2``, ``.xz``): not UTF-8 (a UTF-8 byte-order mark is fine),
  a NUL byte, a bare carriage return (``\r`` not followed by ``\n``: pandas would split the row
  there), a duplicated header, a row with more fields than the header;
* Parquet: not a Parquet file, duplicated column names.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from jaxrev.errors import InputFileError, MissingFileError

SUPPORTED = "use .csv, .tsv or .parquet (CSV/TSV optionally .gz, .bz2, .xz)"
DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
BARE_CR = re.compile(r"\r(?!\n)")


class MalformedCSVError(InputFileError, pd.errors.ParserError):
    """A row with more fields than the header, or another CSV syntax error."""


def read_table(
    source: pd.DataFrame | str | Path, name: str | None = None
) -> tuple[pd.DataFrame, str, bool]:
    """Read a DataFrame, a ``.csv``/``.tsv`` (optionally compressed) or a ``.parquet`` file.

    CSV cells are read as text so that parsing numbers is explicit. Returns ``(table, name,
    is_csv)``; ``name`` is what messages call the source (default: the path, or
    ``<DataFrame>``; e.g. ``bundled:uci_online_retail`` for a bundled table).

    Raises:
        InputFileError: the file cannot be read as a table (see the module docstring);
            :class:`~jaxrev.errors.MissingFileError` when it does not exist.
    """
    if isinstance(source, pd.DataFrame):
        name = name or "<DataFrame>"
        check_header(name, [str(c) for c in source.columns])
        return source.reset_index(drop=True), name, False
    if not isinstance(source, (str, Path)):
        raise TypeError(
            f"expected a DataFrame or the path of a CSV/Parquet file, got {type(source).__name__}"
        )
    path = Path(source)
    name = name or str(path)
    if not path.exists():
        raise MissingFileError(name, "no such file")
    if path.is_dir():
        raise InputFileError(name, f"is a folder, not a file ({SUPPORTED})")
    suffixes = [s.lower() for s in path.suffixes]
    is_parquet = ".parquet" in suffixes or ".pq" in suffixes
    is_text = ".csv" in suffixes or ".tsv" in suffixes
    if not (is_parquet or is_text):
        raise InputFileError(name, f"unsupported file type ({SUPPORTED})")
    raw = read_bytes(path, name)
    if is_parquet:
        return read_parquet_bytes(raw, name), name, False
    compression = suffixes[-1] if suffixes[-1] in DECOMPRESS else None
    if compression is None and suffixes[-1] not in (".csv", ".tsv"):
        raise InputFileError(name, f"unsupported compression {suffixes[-1]!r} ({SUPPORTED})")
    if compression is not None:
        try:
            raw = DECOMPRESS[compression](raw)
        except Exception as err:  # gzip, bz2 and lzma each raise their own error types
            raise InputFileError(name, f"not a valid {compression} file ({err})") from None
    sep = "\t" if ".tsv" in suffixes else ","
    return parse_csv_text(decode_text(raw, name), name, sep), name, True


def read_bytes(path: Path, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except PermissionError:
        raise InputFileError(name, "cannot read it: permission denied") from None
    except OSError as err:
        raise InputFileError(name, f"cannot read it: {err.strerror or err}") from None
    if not raw:
        raise InputFileError(name, "empty file (no header row)")
    return raw


def read_parquet_bytes(raw: bytes, name: str) -> pd.DataFrame:
    try:
        table = pd.read_parquet(io.BytesIO(raw))
    except Exception as err:  # pyarrow raises several types for a damaged file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputFileError(name, f"not a readable Parquet file ({first})") from None
    check_header(name, [str(c) for c in table.columns])
    return table.reset_index(drop=True)


def decode_text(raw: bytes, name: str) -> str:
    """UTF-8 text (a byte-order mark dropped); the line of the first undecodable byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        byte = raw[err.start : err.start + 1].hex()
        raise InputFileError(
            name, f"not UTF-8 text (byte 0x{byte}); re-save the file as UTF-8", line=line
        ) from None


def locate(text: str, pos: int, header: list[str], sep: str) -> tuple[int, str | None]:
    """Line (1-based) and column name of character ``pos`` of a CSV text (quote-aware within
    its line)."""
    line = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    field, quoted = 0, False
    for char in text[start:pos]:
        if char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            field += 1
    return line, header[field] if field < len(header) else None


def check_header(name: str, header: list[str]) -> None:
    """Raise on a column name that appears more than once."""
    counts = Counter(h.strip() for h in header)
    duplicated = [h for h, k in counts.items() if k > 1]
    if duplicated:
        h = duplicated[0]
        where = [i + 1 for i, c in enumerate(header) if c.strip() == h]
        raise InputFileError(
            name,
            f"the header names column {h!r} {counts[h]} times (columns {where}); "
            "rename or remove the duplicates",
            line=1,
        )


def parse_csv_text(text: str, name: str, sep: str) -> pd.DataFrame:
    """Check a CSV text (header, NUL bytes, bare carriage returns) and parse it, cells as text."""
    if not text.strip():
        raise InputFileError(name, "empty file (no header row)")
    first_line = text.split("\n", 1)[0].rstrip("\r")
    header = next(csv.reader([first_line], delimiter=sep), [])
    check_header(name, header)
    for pattern, what in (
        (re.compile("\x00"), "a NUL byte in a field (binary data?)"),
        (BARE_CR, "a bare carriage return (\\r) in a field; it would split the row"),
    ):
        found = pattern.search(text)
        if found:
            line, column = locate(text, found.start(), header, sep)
            raise InputFileError(name, what, line=line, column=column)
    try:
        # header=None: the parser then refuses a row longer than the header (with a header it
        # would silently take the first column as the index).
        rows = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[], header=None
        )
    except pd.errors.EmptyDataError:
        raise InputFileError(name, "empty file (no header row)") from None
    except pd.errors.ParserError as err:
        message = str(err).strip().splitlines()[-1]
        match = re.search(r"line (\d+)", message)
        line = int(match.group(1)) if match else None
        raise MalformedCSVError(name, f"malformed CSV: {message}", line=line) from None
    names = [h if isinstance(h, str) and h else f"Unnamed: {k}" for k, h in enumerate(rows.iloc[0])]
    table = rows.iloc[1:].reset_index(drop=True)
    table.columns = names
    return table


__all__ = [
    "MalformedCSVError",
    "check_header",
    "decode_text",
    "locate",
    "parse_csv_text",
    "read_table",
]
