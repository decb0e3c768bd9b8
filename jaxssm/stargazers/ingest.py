"""Read a stargazers table: one row per stargazer with a login, the time of the star and the
free-text location of the profile (CSV, TSV, Parquet or a DataFrame).

The canonical frame has the columns ``user`` (str), ``starred_at`` (tz-aware UTC timestamps) and
``location`` (str or None), in star order; columns already normalized (``country`` as ISO
alpha-2, ``region``, ``city``) are kept. Common spellings of the column names are accepted
(``login``, ``starredAt``, ``starred``, ``date``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from jaxssm.errors import DataError, InputError
from jaxssm.tables import read_frame

USER_NAMES = ("user", "login", "username", "user_login", "stargazer")
TIME_NAMES = ("starred_at", "starredat", "starred", "date", "timestamp", "time")
LOCATION_NAMES = ("location", "user_location", "raw_location")


class StargazersError(DataError):
    """A stargazers table that cannot be used; the message names the file, row and column."""


def _find_column(frame: pd.DataFrame, asked: str | None, names: tuple[str, ...], what: str, src):
    if asked is not None:
        if asked not in frame.columns:
            raise StargazersError(
                f"{src}: no column {asked!r} for the {what}; the columns are {list(frame.columns)}"
            )
        return asked
    lowered = {str(c).lower().replace("-", "_"): c for c in frame.columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise StargazersError(
        f"{src}: no {what} column (looked for {', '.join(names)}); the columns are "
        f"{list(map(str, frame.columns))}"
    )


def _read_file(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The table and each row's number (checked: :mod:`jaxssm.tables`)."""
    try:
        return read_frame(path)
    except InputError as err:
        raise StargazersError(str(err), file=err.file, row=err.row, column=err.column) from None


def read_metadata(path: str | os.PathLike) -> dict:
    """The fetcher's (or the demo's) sidecar ``<stem>.meta.json`` next to a table, if any."""
    path = Path(path)
    for candidate in (path.with_suffix(".meta.json"), Path(str(path) + ".meta.json")):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise StargazersError(
                    f"{candidate}: cannot be read as the table's metadata (JSON): {err}; fix or "
                    "delete it",
                    file=candidate,
                ) from None
            return meta if isinstance(meta, dict) else {}
    return {}


def read_stargazers(
    source: str | os.PathLike | pd.DataFrame,
    *,
    user: str | None = None,
    starred_at: str | None = None,
    location: str | None = None,
) -> pd.DataFrame:
    """The canonical stargazers frame (see the module docstring), sorted by ``starred_at``.

    Raises:
        StargazersError: a missing file or column, or a timestamp that cannot be read (the
            message names the file, the line — header = line 1 — and the column), or a duplicated
            user.
    """
    if isinstance(source, pd.DataFrame):
        frame, src, numbers = source.reset_index(drop=True), "table", None
    else:
        path = Path(source)
        frame, numbers = _read_file(path)
        src = str(path)
    user_col = _find_column(frame, user, USER_NAMES, "user (login)", src)
    time_col = _find_column(frame, starred_at, TIME_NAMES, "star time", src)
    loc_col = _find_column(frame, location, LOCATION_NAMES, "location", src)

    def check(bad: np.ndarray, column: str, problem) -> None:
        """Raise for the first row flagged in ``bad``, naming the file, line and column."""
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            where = f"line {numbers[row]}" if numbers else f"row {row}"
            raise StargazersError(
                f"{src}: {where}, column {column!r}: {problem(row, bad.sum())}",
                file=None if numbers is None else src,
                row=numbers[row] if numbers else row,
                column=column,
            )

    raw_time = frame[time_col]
    times = pd.to_datetime(raw_time, utc=True, errors="coerce", format="mixed")
    check(
        times.isna().to_numpy(),
        time_col,
        lambda r, n: f"{raw_time.iloc[r]!r} is not a timestamp ({int(n)} such rows)",
    )
    users = frame[user_col].astype("string")
    check(users.isna().to_numpy(), user_col, lambda r, n: "the user is empty")
    check(
        users.duplicated().to_numpy(),
        user_col,
        lambda r, n: f"user {users.iloc[r]!r} appears twice ({int(n)} repeated rows)",
    )
    locations = [
        None if (pd.isna(v) or not str(v).strip()) else str(v) for v in frame[loc_col].tolist()
    ]
    out = pd.DataFrame(
        {"user": users.astype(str).to_numpy(), "starred_at": times, "location": locations}
    )
    for extra in ("country", "region", "city"):
        if extra in frame.columns and extra not in (user_col, time_col, loc_col):
            values = frame[extra]
            out[extra] = [None if pd.isna(v) or not str(v).strip() else str(v) for v in values]
    return out.sort_values("starred_at", kind="stable").reset_index(drop=True)
