"""Writing outputs so that a reader never sees half of one: atomic files and folders, and the
CSV and JSON encodings that :meth:`jaxssm.result.LaplaceEMResult.save` and ``jaxssm fit`` share.

A file is written to a temporary file beside it, flushed to disk and renamed over the target
(``os.replace``); a folder is written whole to a temporary sibling folder first
(:func:`write_folder`).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from jaxssm.errors import OutputError


def _write_synced(path: Path, payload: bytes | Callable[[io.BufferedWriter], None]) -> None:
    with open(path, "wb") as handle:
        if isinstance(payload, bytes):
            handle.write(payload)
        else:
            payload(handle)
        handle.flush()
        os.fsync(handle.fileno())


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
            _write_synced(tmp, payload)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (best effort: not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_folder(path: str | os.PathLike, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Write ``files`` (names relative to ``path``, e.g. ``"params/mu.csv"``, → bytes) into the
    folder ``path``, atomically: every file goes to a temporary sibling folder first; a new
    folder then appears whole (one rename), while in an existing folder each file is renamed
    into place in the order of ``files`` (put the file that says a save is complete last) and
    other files there are left alone.

    Returns:
        The path of each file written, by its name in ``files``.

    Raises:
        OutputError: naming ``path``; the temporary folder is removed.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            for name, payload in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                _write_synced(tmp / name, payload)
            if not path.exists():
                os.replace(tmp, path)
            elif not path.is_dir():
                raise NotADirectoryError(20, "exists and is not a folder")
            else:
                for name in files:
                    (path / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp / name, path / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    return {name: path / name for name in files}


def csv_bytes(frame: pd.DataFrame, float_format: str | None = None, index: bool = False) -> bytes:
    """``frame`` as CSV bytes, RFC 4180: ``\\r\\n`` row ends, and every field holding a comma,
    a quote, a ``\\r`` or a ``\\n`` quoted, so a reader gets back exactly the rows written (with
    ``\\n`` row ends a lone ``\\r`` would go unquoted and split its row). ``float_format`` None
    writes each float's shortest exact representation (read back with pandas, the same
    float64)."""
    return frame.to_csv(index=index, lineterminator="\r\n", float_format=float_format).encode()


def make_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents) if needed.

    Raises:
        OutputError: one line naming the path (under a file, read-only, disk full).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create the output folder {path}: a file is in the way") from None
    except OSError as err:
        raise OutputError(
            f"cannot create the output folder {path}: {err.strerror or err}"
        ) from None
    return path


def writable_folder(path: str | os.PathLike) -> Path:
    """:func:`make_folder`, then check that files can be created in it, so that a command
    fails before its long computation rather than at its first output.

    Raises:
        OutputError: one line naming the path.
    """
    path = make_folder(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into the output folder {path}: permission denied")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same file (links resolved; False if ``b`` is absent)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def overwritten_input(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None]
) -> tuple[Path, Path] | None:
    """The first (input, output) pair where writing ``output`` would replace ``input``, or
    None. A command refuses to run then (its ``--out`` points at its own input)."""
    outputs = [Path(o) for o in outputs]
    for given in filter(None, inputs):
        for output in outputs:
            if same_file(given, output):
                return Path(given), output
    return None


def plain(value):
    """JSON-ready: numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def json_bytes(data: dict) -> bytes:
    """``data`` as indented JSON bytes (see :func:`plain`), ending in a newline."""
    return (json.dumps(plain(data), indent=2, allow_nan=False) + "\n").encode()
