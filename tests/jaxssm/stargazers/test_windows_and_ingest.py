"""Windows t_i = (T_0 + (i-1)w, T_0 + iw] and counts X_i(eta), against a plain loop; reading a
stargazers table with errors that name the file, the line and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jaxssm.stargazers.ingest import StargazersError, read_stargazers
from jaxssm.stargazers.windows import (
    assign_windows,
    covering_set,
    window_edges,
    window_width,
    windowed_counts,
)


def test_monthly_edges_keep_the_day_and_windows_are_left_open():
    edges = window_edges("2023-01-31", "2023-04-01", "MS")
    # calendar months from T_0 (pandas clips the 31st to the month's end)
    assert [e.strftime("%Y-%m-%d") for e in edges] == [
        "2023-01-31",
        "2023-02-28",
        "2023-03-31",
        "2023-04-30",
    ]
    t = pd.Series(
        pd.to_datetime(
            ["2023-01-31", "2023-02-28", "2023-02-28 00:00:01", "2023-04-30", "2023-05-01"],
            utc=True,
            format="mixed",
        )
    )
    # a star at exactly T_0 is in window 0; the right edge is included; past the end is -1
    assert assign_windows(t, edges).tolist() == [0, 0, 1, 2, -1]


@pytest.mark.parametrize("freq", ["MS", "7D", "W", "2W", "Q", "12h"])
def test_counts_equal_a_plain_loop(rng, freq):
    n = 500
    start = pd.Timestamp("2022-03-15 12:00", tz="UTC")
    offsets = pd.to_timedelta(rng.uniform(0, 400, n), unit="D")
    times = pd.Series(start + offsets)
    countries = np.array(["US", "DE", "BR", "IN", None], dtype=object)
    locs = pd.Series(countries[rng.integers(0, 5, n)])
    w = windowed_counts(times, locs, start=start, freq=freq)
    width = window_width(freq)
    N = w.num_windows
    loop = {}
    unlocated = np.zeros(N, int)
    for t, c in zip(times, locs, strict=True):
        i = 0
        while not (start + i * width < t <= start + (i + 1) * width):
            i += 1
        if pd.isna(c):
            unlocated[i] += 1
        else:
            loop[(i, c)] = loop.get((i, c), 0) + 1
    assert start + (N - 1) * width < times.max() <= start + N * width
    for (i, c), v in loop.items():
        assert w.counts.loc[i, c] == v
    assert w.counts.to_numpy().sum() == sum(loop.values())
    assert w.unlocated.tolist() == unlocated.tolist()
    assert (w.located == w.counts.sum(axis=1)).all()
    totals = w.counts.sum(axis=0).to_numpy()
    assert (np.diff(totals) <= 0).all()  # columns largest first


def test_stars_before_t0_are_an_error():
    t = pd.Series(pd.to_datetime(["2023-01-01", "2023-02-01"], utc=True))
    with pytest.raises(ValueError, match="before T_0"):
        windowed_counts(t, pd.Series(["US", "US"]), start="2023-01-15")


def test_covering_set():
    totals = pd.Series({"US": 50, "IN": 20, "DE": 10, "BR": 10, "FR": 10})
    assert covering_set(totals, 0.8) == ["US", "IN", "DE"]
    assert covering_set(totals, 0.5) == ["US"]
    assert covering_set(totals, 1.0) == list(totals.index)


def test_read_stargazers_aliases_sorting_and_empty_locations(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "login,starredAt,location\n"
        "b,2024-02-01T10:00:00Z,Berlin\n"
        "a,2024-01-01T10:00:00Z,\n"
        "c,2024-03-01T10:00:00+02:00,  \n"
        "d,2024-01-15T00:00:00Z,NA\n"
    )
    frame = read_stargazers(path)
    assert list(frame.columns) == ["user", "starred_at", "location"]
    assert frame.user.tolist() == ["a", "d", "b", "c"]
    assert frame.location.fillna("-").tolist() == ["-", "NA", "Berlin", "-"]  # "NA" is Namibia
    assert str(frame.starred_at.dt.tz) == "UTC"
    assert frame.starred_at.iloc[-1] == pd.Timestamp("2024-03-01T08:00:00Z")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "user,starred_at,location\na,2024-01-01,X\nb,not a date,Y\n",
            r"s\.csv: line 3, column 'starred_at': 'not a date' is not a timestamp",
        ),
        (
            "user,starred_at,location\na,2024-01-01,X\na,2024-01-02,Y\n",
            r"s\.csv: line 3, column 'user': user 'a' appears twice",
        ),
        ("user,when,location\na,2024-01-01,X\n", r"s\.csv: no star time column"),
    ],
)
def test_bad_tables_name_the_file_line_and_column(tmp_path, text, match):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(StargazersError, match=match):
        read_stargazers(path)
