"""Checked reading and atomic writing of the files ``jaxssm locations`` reads and writes.

Reading: :func:`read_text` returns a delimited file's text or raises :class:`InputFileError`, one
line naming the file (and the line, row and column where there is one), for a missing file, a
folder, an unreadable or empty file, bytes that are not UTF-8, a NUL byte, a carriage return
outside quotes (a reader would start a new row there) and a name repeated in the header.

Writing goes through :func:`jaxssm.files.write_atomic` (the old file or the whole new one, never a
part); :func:`check_writable` tells before a long run whether the target can be written at all
and raises :class:`OutputFileError` (an :class:`~jaxssm.errors.OutputError`) naming the path.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import tempfile
from pathlib import Path

from jaxssm.errors import OutputError

_BARE_CR = re.compile(r"\r(?!\n)")


class InputFileError(ValueError):
    """An input file that cannot be read as a table (the message names it)."""


class OutputFileError(OutputError):
    """An output file that cannot be written (the message names it)."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing path, a folder or an unreadable file is an InputFileError."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a table file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise InputFileError(f"{path}: cannot be read: {_reason(err)}") from None


def _scan(text: str, sep: str, stop: int, *, bare_cr: bool = False) -> tuple[int, int, int]:
    """Walk ``text[:stop]`` as CSV (RFC 4180 quotes; a ``\\r`` outside quotes ends a row, as it
    does for pandas). Returns ``(offset, row, field)`` at ``stop`` or, with ``bare_cr``, at the
    first carriage return outside quotes and not before a newline (offset -1: none); row 0 is
    the header, fields count from 0."""
    row = field = 0
    quoted, at_start, i = False, True, 0
    while i < stop:
        ch = text[i]
        if quoted:
            if ch == '"':
                if text.startswith('""', i):
                    i += 1
                else:
                    quoted = False
        elif ch == '"' and at_start:
            quoted = True
        elif ch == sep:
            field, at_start = field + 1, True
            i += 1
            continue
        elif ch in "\r\n":
            if text.startswith("\r\n", i):
                i += 1
            elif ch == "\r" and bare_cr:
                return i, row, field
            row, field, at_start = row + 1, 0, True
            i += 1
            continue
        at_start = False
        i += 1
    return (-1 if bare_cr else stop), row, field


def _where(text: str, offset: int, row: int, field: int, header: list[str]) -> str:
    name = header[field] if field < len(header) else f"#{field + 1}"
    row_name = "the header" if row == 0 else f"row {row}"
    return f"line {text.count(chr(10), 0, offset) + 1} ({row_name}, column {name!r})"


def _at(text: str, offset: int, sep: str, header: list[str]) -> str:
    _, row, field = _scan(text, sep, offset)
    return _where(text, offset, row, field, header)


def _header(text: str, sep: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    except (StopIteration, csv.Error):
        return []


def read_text(path: Path, sep: str = ",") -> str:
    """The checked text of a delimited file (UTF-8, a BOM allowed).

    Raises:
        InputFileError: missing, a folder, unreadable, empty, not UTF-8, a NUL byte, a carriage
            return outside quotes, or a repeated column name (with line, row and column).
    """
    raw = read_bytes(path)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputFileError(f"{path}: is UTF-16 text; save it as UTF-8")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start].decode("utf-8", errors="replace")
        where = _at(before, len(before), sep, _header(before, sep))
        raise InputFileError(
            f"{path}: not UTF-8 text: byte 0x{raw[err.start]:02x} at {where}; save it as UTF-8"
        ) from None
    if not text.strip():
        raise InputFileError(f"{path}: is empty (no header row)")
    header = _header(text, sep)
    if (nul := text.find("\x00")) >= 0:
        raise InputFileError(f"{path}: a NUL byte at {_at(text, nul, sep, header)}")
    bare = [m.start() for m in _BARE_CR.finditer(text)]  # the slow walk only when needed
    if bare:
        cr, row, field = _scan(text, sep, bare[-1] + 1, bare_cr=True)
        if cr >= 0:
            raise InputFileError(
                f"{path}: a carriage return (\\r) outside quotes at "
                f"{_where(text, cr, row, field, header)}: it would split the row; quote that "
                "field or remove the \\r"
            )
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name and name in seen:
            raise InputFileError(
                f"{path}: the column name {name!r} appears twice in the header "
                f"(columns {seen[name] + 1} and {k + 1})"
            )
        seen.setdefault(name, k)
    return text


# ---------------------------------------------------------------------------------------------
# Writing


def check_writable(path: Path) -> None:
    """Create ``path``'s folder if needed and check that a file can be written in it.

    Raises:
        OutputFileError: the path is a folder, its folder cannot be created (a file is in the
            way, no permission) or written in.
    """
    if path.is_dir():
        raise OutputFileError(f"{path}: is a folder; give a file name")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFileError(f"cannot create the folder {folder}: {_reason(err)}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise OutputFileError(f"cannot write in {folder}: {_reason(err)}") from None
