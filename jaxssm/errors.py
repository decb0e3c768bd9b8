"""The errors jaxssm raises on purpose, in one place.

* :class:`DataError`: counts (or an offset) that cannot be fitted. The message names the file,
  row and column where they are known, and so do the attributes ``file``, ``row`` and
  ``column`` (``None`` where unknown), for code that reports them its own way.
* :class:`InputError`: an input of ``jaxssm fit`` that cannot be used: a table (a
  :class:`DataError`, naming file, row and column) or a command-line option (naming it).
* :class:`OutputError`: an output that could not be written; the message names the path.
"""

from __future__ import annotations

import os


class DataError(ValueError):
    """Data that cannot be used; the message names the file, row and column where known.

    Args:
        message: the whole sentence, already naming where the problem is.
        file: the file the data came from, or None (an array, a DataFrame).
        row: the row (window) as the caller counts it (0-based array index for arrays, the
            spreadsheet's row number for files), or None.
        column: the column (location) name or index, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | os.PathLike | None = None,
        row: int | None = None,
        column: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column


class InputError(DataError):
    """An input of ``jaxssm fit`` that cannot be used: a table (the message names the file and,
    where there is one, the row and column) or an option (the message names the option)."""


class OutputError(OSError):
    """An output that could not be written; the message names the path."""
