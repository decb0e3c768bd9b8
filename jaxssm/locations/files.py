"""The output side of ``jaxssm locations``: is the target writable before a long run.

Reading goes through jaxssm's one checked reader (:mod:`jaxssm.tables`);
writing goes through :func:`jaxssm.files.write_atomic` (the old file or the whole new one, never a
part); :func:`check_writable` tells before a long run whether the target can be written at all
and raises :class:`OutputFileError` (an :class:`~jaxssm.errors.OutputError`) naming the path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from jaxssm.errors import OutputError


class OutputFileError(OutputError):
    """An output file that cannot be written (the message names it)."""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


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
