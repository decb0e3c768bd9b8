r"""Time windows and the counts the model sees.

The seed's windows are $t_i = (T_0 + (i-1)w,\ T_0 + iw]$, $i = 1, \dots, N$, with $T_0$ the
repository's creation date (or the first star) and $w$ a width such as one month; a star at
exactly $T_0$ belongs to the first window. Per window and location $\eta$ at the chosen level,

$X_i(\eta) = \sum_s 1\{\ell(s) = \eta\}\, 1\{\tau(s) \in t_i\}$, $Y_i = \sum_\eta X_i(\eta)$,

counted over the stargazers with a usable location, next to $U_i$, the number of stargazers
of window $i$ without one (empty, non-geographic or unresolved).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxssm.errors import DataError

_MONTHS = re.compile(r"^\s*(\d*)\s*(MS|ME|M|months?|mo)\s*$", re.IGNORECASE)
_QUARTERS = re.compile(r"^\s*(\d*)\s*(QS|QE|Q|quarters?)\s*$", re.IGNORECASE)
_YEARS = re.compile(r"^\s*(\d*)\s*(YS|YE|Y|AS|A|years?)\s*$", re.IGNORECASE)
_WEEKS = re.compile(r"^\s*(\d*)\s*(W|weeks?)\s*$", re.IGNORECASE)


def window_width(freq: str | pd.DateOffset | pd.Timedelta) -> pd.DateOffset | pd.Timedelta:
    """The width $w$: calendar months, quarters and years as offsets (so $T_0 + iw$ keeps the day
    of the month), anything else as a fixed duration ("7D", "W", "12h", "2W")."""
    if isinstance(freq, pd.DateOffset | pd.Timedelta):
        return freq
    for pattern, unit, scale in (
        (_MONTHS, "months", 1),
        (_QUARTERS, "months", 3),
        (_YEARS, "years", 1),
    ):
        if match := pattern.match(str(freq)):
            return pd.DateOffset(**{unit: scale * int(match.group(1) or 1)})
    if match := _WEEKS.match(str(freq)):
        return pd.Timedelta(days=7 * int(match.group(1) or 1))
    try:
        width = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError) as err:
        raise DataError(f"window width {freq!r} is not a pandas frequency or duration") from err
    if width <= pd.Timedelta(0):
        raise DataError(f"window width {freq!r} must be positive")
    return width


def describe_width(freq) -> str:
    """The width in words: "1 month", "3 months", "7 days"."""
    width = window_width(freq)
    if isinstance(width, pd.Timedelta):
        days = width / pd.Timedelta(days=1)
        if days >= 1 and days == int(days):
            return f"{int(days)} day{'s' if days != 1 else ''}"
        return str(width)
    parts = [f"{v} {k[:-1] if v == 1 else k}" for k, v in width.kwds.items()]
    return " ".join(parts)


def window_edges(start, end, freq="MS") -> pd.DatetimeIndex:
    """Edges $T_0, T_0 + w, \\dots, T_0 + Nw$ with $T_0 + Nw \\ge$ ``end`` (UTC)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    width = window_width(freq)
    edges = [start]
    while edges[-1] < end or len(edges) < 2:
        edges.append(start + len(edges) * width)
    return pd.DatetimeIndex(edges)


def assign_windows(starred_at: pd.Series, edges: pd.DatetimeIndex) -> np.ndarray:
    """0-based window of each star: ``i`` with ``edges[i] < t <= edges[i+1]`` (a star at exactly
    $T_0$ goes to window 0); -1 outside the windows."""
    t = pd.DatetimeIndex(starred_at).tz_convert("UTC").as_unit("ns").asi8
    e = edges.as_unit("ns").asi8
    index = np.searchsorted(e, t, side="left") - 1
    index = np.where(t == e[0], 0, index)
    return np.where((index < 0) | (index >= len(e) - 1), -1, index).astype(int)


class WindowedCounts(NamedTuple):
    r"""The panel of a stargazers table.

    ``counts``: $X_i(\eta)$, windows × locations (columns ordered by total, largest first);
    ``located``: $Y_i$; ``unlocated``: $U_i$ (stargazers without a usable location);
    ``edges``: the $N + 1$ window edges; ``window``: each input row's window (-1 outside);
    ``level``: what the columns are (``country`` or a region level).
    """

    counts: pd.DataFrame
    located: pd.Series
    unlocated: pd.Series
    edges: pd.DatetimeIndex
    window: np.ndarray
    level: str

    @property
    def num_windows(self) -> int:
        return len(self.edges) - 1

    @property
    def labels(self) -> list[str]:
        """A short label per window: the date its window starts (``2024-03`` for months)."""
        fmt = "%Y-%m" if (self.edges[1] - self.edges[0]) >= pd.Timedelta(days=28) else "%Y-%m-%d"
        return [e.strftime(fmt) for e in self.edges[:-1]]


def windowed_counts(
    starred_at: pd.Series,
    location: pd.Series,
    *,
    start=None,
    freq="MS",
    level: str = "country",
    end=None,
) -> WindowedCounts:
    """Count stargazers per window and location.

    Args:
        starred_at: star times (tz-aware or UTC-naive).
        location: the location at the chosen level per stargazer (None / NaN = no usable one).
        start: $T_0$ (default: the first star).
        freq: the width $w$ (see :func:`window_width`; default one calendar month).
        level: a name for what ``location`` holds.
        end: the last edge is the first $T_0 + Nw \\ge$ ``end`` (default: the last star).
    """
    times = pd.Series(pd.DatetimeIndex(pd.to_datetime(starred_at, utc=True)))
    if times.empty:
        raise DataError("no stargazers to count")
    start = times.min() if start is None else pd.Timestamp(start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    if times.min() < start:
        early = int((times < start).sum())
        raise DataError(
            f"{early} stars are before T_0 = {start.isoformat()} (the first at "
            f"{times.min().isoformat()}); pass an earlier start"
        )
    edges = window_edges(start, times.max() if end is None else end, freq)
    window = assign_windows(times, edges)
    N = len(edges) - 1
    loc = pd.Series(np.asarray(location, dtype=object)).where(lambda s: s.notna(), None)
    has = loc.notna().to_numpy() & (window >= 0)
    frame = pd.DataFrame({"window": window[has], "location": loc[has].astype(str).to_numpy()})
    table = pd.crosstab(frame["window"], frame["location"]).reindex(range(N), fill_value=0)
    order = table.sum(axis=0).sort_values(ascending=False, kind="stable").index
    table = table[order].astype(int)
    table.index.name, table.columns.name = "window", level
    unlocated = np.bincount(window[~has & (window >= 0)], minlength=N)
    return WindowedCounts(
        counts=table,
        located=pd.Series(table.sum(axis=1).to_numpy(), name="located"),
        unlocated=pd.Series(unlocated, name="unlocated"),
        edges=edges,
        window=window,
        level=level,
    )


def covering_set(totals: pd.Series, share: float = 0.8) -> list[str]:
    """The smallest set of locations (largest first) that covers ``share`` of the total (the
    seed: 26 of 163 countries cover 80% of the stargazers)."""
    totals = totals.sort_values(ascending=False, kind="stable")
    cumulative = totals.cumsum() / max(totals.sum(), 1)
    k = int(np.searchsorted(cumulative.to_numpy(), share - 1e-12) + 1)
    return list(totals.index[: min(k, len(totals))])
