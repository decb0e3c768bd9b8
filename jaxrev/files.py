"""Output files written atomically, and the one-line error of a failed write.

Every file jaxrev writes goes through :func:`atomic_path`: the content is written to a temporary
file in the target's folder, flushed to disk (``fsync``) and renamed over the target
(``os.replace``), so a reader sees the old file or the new one, never a torn one; on any failure
the temporary file is removed and an :class:`~jaxrev.errors.OutputError` names the path.
CSVs quote every text field (:data:`CSV_QUOTING`), so a field holding a comma, a quote, ``\\r``
or ``\\n`` reads back as written, and floats keep ``significant`` digits (float32 results are
written without their float64 noise: ``886.16``, not ``886.159973``).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from jaxrev.errors import OutputError

CSV_QUOTING = csv.QUOTE_NONNUMERIC
TMP_SUFFIX = ".tmp"


def describe_os_error(err: OSError) -> str:
    """The reason of an ``OSError`` in words (``No space left on device``)."""
    if err.strerror:
        return err.strerror
    if err.errno:
        return os.strerror(err.errno)
    return str(err) or type(err).__name__


def make_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents); :class:`OutputError` naming it when
    it cannot be (a file in the way, no permission, a read-only disk)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(path, "a file in the way (a parent is not a folder)") from None
    except NotADirectoryError:
        raise OutputError(path, "a parent of this path is a file, not a folder") from None
    except OSError as err:
        raise OutputError(path, describe_os_error(err)) from None
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, flush it to
    disk and rename it to ``path``. On any error the temporary file is removed; ``OSError``
    becomes :class:`OutputError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        if isinstance(err, OutputError):
            raise
        if err.errno == errno.ENOENT and not path.parent.is_dir():
            raise OutputError(path, "its folder does not exist") from None
        raise OutputError(path, describe_os_error(err)) from None
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def write_with(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Atomically write ``path`` with ``write(tmp_path)`` (e.g. ``frame.to_parquet``)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, payload: Any) -> Path:
    """Atomically write ``payload`` as indented JSON (unknown types as text)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def float_format(significant: int) -> str:
    return f"%.{significant}g"


def write_csv(
    frame: pd.DataFrame, path: str | Path, *, significant: int = 7, index: bool = False
) -> Path:
    """Atomically write ``frame`` as CSV: text quoted (:data:`CSV_QUOTING`), ``\\n`` line ends,
    floats with ``significant`` digits, the index only with ``index=True``. ``pandas.read_csv``
    gets the rows back."""
    return write_with(
        path,
        lambda tmp: frame.to_csv(
            tmp,
            index=index,
            quoting=CSV_QUOTING,
            lineterminator="\n",
            float_format=float_format(significant),
            encoding="utf-8",
        ),
    )


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write ``frame`` as Parquet (no index)."""
    return write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """Atomically write a matplotlib figure (the format from ``path``'s suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))


def overlapping_input(
    out_dir: str | Path, inputs: Iterable[str | Path | None], written: Iterable[str] = ()
) -> Path | None:
    """The first input that writing into ``out_dir`` would overwrite or mix with: the output
    folder itself, one of the ``written`` names inside it, or a folder that holds it."""
    out = Path(out_dir).resolve()
    targets = {out / name for name in written}
    for source in inputs:
        if source is None:
            continue
        path = Path(source)
        if not path.exists():
            continue
        path = path.resolve()
        if path == out or path in targets or (path.is_dir() and out.is_relative_to(path)):
            return Path(source)
        if any(path.is_relative_to(t) for t in targets):
            return Path(source)
    return None


__all__ = [
    "CSV_QUOTING",
    "atomic_path",
    "describe_os_error",
    "make_dir",
    "overlapping_input",
    "save_figure",
    "write_csv",
    "write_json",
    "write_parquet",
    "write_text",
    "write_with",
]
