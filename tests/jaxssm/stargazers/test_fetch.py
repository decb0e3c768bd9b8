"""The stargazers fetcher against a real loopback HTTP server (:mod:`fake_github`).

Waits go to an injected recorder that also moves an injected clock, so rate-limit resets are
exact and the tests never sleep for real.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fake_github import (
    FakeGitHub,
    FakeStar,
    bad_credentials,
    call,
    drop,
    encode_cursor,
    graphql_rate_limited,
    not_found,
    page,
    primary_limit,
    secondary_limit,
    server_error,
    slow,
    synthetic_stargazers,
    too_many_requests,
)

from jaxssm.cli import add_fetch_arguments
from jaxssm.stargazers import fetch as fetch_module
from jaxssm.stargazers.fetch import (
    COLUMNS,
    FetchProgressPrinter,
    FetchStateError,
    fetch_stargazers,
    read_fetch_meta,
    run_fetch,
)
from jaxssm.stargazers.github import (
    Backoff,
    BadCredentialsError,
    FetchProgress,
    GitHubAPIError,
    InvalidArgumentError,
    InvalidRepositoryError,
    MissingTokenError,
    RateLimitWaitTooLongError,
    RepositoryNotFoundError,
    RetriesExhaustedError,
    Retry,
    interpret_response,
    parse_repository,
)

TOKEN = "ghp_fake_token_0123456789"
START = 1_700_000_000.0
# Backoff without jitter and with tiny 5xx waits, so recorded waits are exact.
EXACT = Backoff(base_s=0.01, max_s=0.05, secondary_min_s=60.0, jitter=0.0)


class Clock:
    """A controllable ``now``: epoch seconds that only move when the recorder sleeps."""

    def __init__(self, t: float = START):
        self.t = t

    def __call__(self) -> float:
        return self.t


class SleepRecorder:
    """An injected ``sleep``: records each wait and advances the clock instead of sleeping."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeper(clock) -> SleepRecorder:
    return SleepRecorder(clock)


@pytest.fixture
def stars() -> list[FakeStar]:
    return synthetic_stargazers(250)


@pytest.fixture
def hub(stars):
    with FakeGitHub(stars, token=TOKEN) as server:
        yield server


def run(hub: FakeGitHub, out: Path, sleeper: SleepRecorder, repo="acme/rocket", **kwargs):
    kwargs.setdefault("backoff", EXACT)
    kwargs.setdefault("token", TOKEN)
    return fetch_stargazers(repo, out, api_url=hub.url, sleep=sleeper, now=sleeper.clock, **kwargs)


def csv_rows(path: Path) -> list[tuple[str, ...]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [tuple(r) for r in csv.reader(handle)]
    assert rows[0] == COLUMNS
    return rows[1:]


def expected(stars: list[FakeStar]) -> list[tuple[str, str, str]]:
    return [s.row() for s in stars]


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "text",
    [
        "acme/rocket",
        " acme/rocket ",
        "https://github.com/acme/rocket",
        "https://www.github.com/acme/rocket/",
        "http://github.com/acme/rocket.git",
        "github.com/acme/rocket/tree/main?tab=readme",
    ],
)
def test_repository_forms_accepted(text):
    assert parse_repository(text).slug == "acme/rocket"


@pytest.mark.parametrize(
    "text", ["", "acme", "acme/rocket/extra", "-acme/rocket", "acme/", "https://gitlab.com/a/b"]
)
def test_bad_repository_is_a_clear_error(text, hub, tmp_path, sleeper):
    with pytest.raises(InvalidRepositoryError, match="OWNER/REPO"):
        run(hub, tmp_path / "s.csv", sleeper, repo=text)
    assert hub.requests == []


def test_bad_output_extension_and_page_size(hub, tmp_path, sleeper):
    with pytest.raises(InvalidArgumentError, match=r"\.csv, \.parquet"):
        run(hub, tmp_path / "s.json", sleeper)
    with pytest.raises(InvalidArgumentError, match="page_size"):
        run(hub, tmp_path / "s.csv", sleeper, page_size=101)
    assert hub.requests == []


def test_no_token_fails_before_any_socket(monkeypatch, tmp_path):
    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was opened")

    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("MY_GH_TOKEN", raising=False)
    monkeypatch.setattr(socket, "socket", no_socket)
    with pytest.raises(MissingTokenError, match="GITHUB_TOKEN"):
        fetch_stargazers("acme/rocket", tmp_path / "s.csv")
    with pytest.raises(MissingTokenError, match="MY_GH_TOKEN"):
        fetch_stargazers("acme/rocket", tmp_path / "s.csv", token_env="MY_GH_TOKEN")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a full fetch


def test_fetches_every_stargazer_once_in_star_order(hub, stars, tmp_path, sleeper):
    out = tmp_path / "stars.csv"
    seen: list[FetchProgress] = []
    result = run(hub, out, sleeper, progress=seen.append)

    assert csv_rows(out) == expected(stars)
    assert (result.rows, result.new_rows, result.requests, result.retries) == (250, 250, 3, 0)
    assert result.complete and result.stargazer_count == 250
    assert sleeper.waits == []
    assert hub.cursors == [None, encode_cursor(100), encode_cursor(200)]
    first = hub.requests[0]
    assert first.headers["authorization"] == f"bearer {TOKEN}"
    assert first.variables == {"owner": "acme", "name": "rocket", "first": 100, "cursor": None}
    assert "orderBy: {field: STARRED_AT, direction: ASC}" in first.body["query"]
    assert [p.fetched for p in seen] == [100, 200, 250]
    assert [p.requests for p in seen] == [1, 2, 3]
    assert {p.total for p in seen} == {250}
    assert seen[-1].rate_limit_remaining == 4999 - 3

    meta = json.loads((tmp_path / "stars.meta.json").read_text())
    assert meta["repository"] == "acme/rocket"
    assert meta["created_at"] == "2018-06-01T12:00:00Z"
    assert meta["stargazer_count"] == 250
    assert meta["complete"] is True
    assert meta["cursor"] == encode_cursor(250)
    assert meta["fetched_at"].endswith("Z")

    # Locations with commas, quotes, newlines and "NA" survive a pandas round trip.
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["location"].tolist() == [s.location or "" for s in stars]


def test_parquet_output(hub, stars, tmp_path, sleeper):
    out = tmp_path / "stars.parquet"
    result = run(hub, out, sleeper, page_size=60)
    frame = pd.read_parquet(out)
    assert [tuple(r) for r in frame.itertuples(index=False)] == expected(stars)
    assert result.requests == 5 and result.complete
    assert not (tmp_path / "stars.parquet.part.csv").exists()
    assert read_fetch_meta(out).complete


def test_token_from_the_environment(hub, stars, tmp_path, sleeper, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    result = run(hub, tmp_path / "s.csv", sleeper, token=None)
    assert result.rows == 250
    assert {s.headers["authorization"] for s in hub.requests} == {f"bearer {TOKEN}"}


def test_user_seen_twice_is_kept_once(tmp_path, sleeper):
    stars = synthetic_stargazers(250)
    again = FakeStar(stars[5].login, "2030-01-01T00:00:00Z", "elsewhere")
    with FakeGitHub([*stars[:150], again, *stars[150:]], token=TOKEN) as hub:
        result = run(hub, tmp_path / "s.csv", sleeper)
    assert csv_rows(tmp_path / "s.csv") == expected(stars)
    assert result.duplicates_skipped == 1


def test_empty_repository(tmp_path, sleeper):
    with FakeGitHub([], token=TOKEN) as hub:
        result = run(hub, tmp_path / "s.csv", sleeper)
    assert csv_rows(tmp_path / "s.csv") == []
    assert result.complete and result.requests == 1


# ----------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize(
    ("behaviour", "asked"),
    [
        (secondary_limit(retry_after=1.5), 1.5),
        (secondary_limit(retry_after=0.25, status=429), 0.25),
        (too_many_requests(retry_after=3), 3.0),
    ],
)
def test_retry_after_is_obeyed(hub, stars, tmp_path, sleeper, behaviour, asked):
    hub.script(page(), behaviour)
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == [asked]
    assert [s.status for s in hub.requests] == [200, behaviour_status(behaviour), 200, 200]
    assert (result.requests, result.retries, result.waited_s) == (4, 1, asked)
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


def behaviour_status(behaviour) -> int:
    return int(behaviour.__name__.split()[-1])


def test_secondary_limit_without_retry_after_waits_a_minute_then_doubles(
    hub, stars, tmp_path, sleeper
):
    hub.script(secondary_limit(), secondary_limit(), too_many_requests())
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == [60.0, 120.0, 240.0]
    assert result.retries == 3 and result.rows == 250


def test_secondary_backoff_jitter_only_lengthens(hub, tmp_path, sleeper):
    hub.script(secondary_limit(), secondary_limit())
    run(hub, tmp_path / "s.csv", sleeper, backoff=Backoff(jitter=0.5))
    assert 60.0 <= sleeper.waits[0] <= 90.0
    assert 120.0 <= sleeper.waits[1] <= 180.0


@pytest.mark.parametrize("status", [403, 429])
def test_primary_limit_waits_until_the_reset_header(hub, stars, tmp_path, sleeper, status):
    hub.script(page(), primary_limit(reset=START + 1, status=status))
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == [1.0]
    assert result.requests == 4
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


@pytest.mark.parametrize("in_headers", [True, False])
def test_graphql_rate_limited_waits_until_reset(hub, stars, tmp_path, sleeper, in_headers):
    hub.script(graphql_rate_limited(reset=START + 42, in_headers=in_headers))
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == [42.0]
    assert [s.status for s in hub.requests] == [200, 200, 200, 200]
    assert result.retries == 1
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


def test_spent_points_pause_before_the_next_query(hub, stars, tmp_path, sleeper):
    hub.script(page(remaining=0, reset=START + 5))
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == [5.0]
    assert result.retries == 0 and result.requests == 3
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


def test_long_wait_is_split_and_each_part_announced(hub, tmp_path, sleeper):
    hub.script(primary_limit(reset=START + 1))
    seen: list[FetchProgress] = []
    run(
        hub,
        tmp_path / "s.csv",
        sleeper,
        backoff=EXACT._replace(wait_cap_s=0.4),
        progress=seen.append,
    )
    assert sleeper.waits == pytest.approx([0.4, 0.4, 0.2])
    waits = [p for p in seen if p.message]
    assert [p.waiting_s for p in waits] == pytest.approx([0.4, 0.4, 0.2])
    assert all("primary rate limit" in p.message for p in waits)


def test_wait_beyond_max_wait_stops_with_the_reset_time(hub, tmp_path, sleeper):
    hub.script(page(), primary_limit(reset=START + 7200))
    with pytest.raises(RateLimitWaitTooLongError, match="run the same command again") as info:
        run(hub, tmp_path / "s.csv", sleeper)
    assert sleeper.waits == []
    assert info.value.progress.fetched == 100


# ----------------------------------------------------------------------------- transient failures


def test_server_errors_and_dropped_connections_back_off(hub, stars, tmp_path, sleeper):
    hub.script(server_error(502), drop(), server_error(503), server_error(504))
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert [s.status for s in hub.requests] == [502, 0, 503, 504, 200, 200, 200]
    assert sleeper.waits == pytest.approx([0.01, 0.02, 0.04, 0.05])  # doubling, capped at max_s
    assert (result.requests, result.retries) == (7, 4)
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


def test_backoff_jitter_stays_within_bounds(hub, tmp_path, sleeper):
    hub.script(server_error(502), server_error(502), server_error(502))
    run(hub, tmp_path / "s.csv", sleeper, backoff=Backoff(base_s=1.0, jitter=0.5))
    for retry, wait in enumerate(sleeper.waits):
        assert 2.0**retry <= wait <= 1.5 * 2.0**retry


def test_read_timeout_is_retried(hub, stars, tmp_path, sleeper):
    hub.script(slow(0.5))
    result = run(hub, tmp_path / "s.csv", sleeper, timeout_s=0.1)
    assert result.retries == 1 and result.rows == 250
    assert len(sleeper.waits) == 1


def test_retries_are_bounded_and_the_rows_so_far_kept(hub, stars, tmp_path, sleeper):
    hub.fail_after(1, server_error(502))
    with pytest.raises(RetriesExhaustedError, match="3 attempts") as info:
        run(hub, tmp_path / "s.csv", sleeper, max_attempts=3)
    assert len(hub.requests) == 1 + 3
    assert len(sleeper.waits) == 2
    assert info.value.progress.fetched == 100
    assert csv_rows(tmp_path / "s.csv") == expected(stars[:100])
    assert read_fetch_meta(tmp_path / "s.csv").cursor == encode_cursor(100)


# ----------------------------------------------------------------------------- fatal answers


def test_bad_credentials_stop_at_once_without_showing_the_token(hub, stars, tmp_path, sleeper):
    hub.script(page(), bad_credentials(echo_token=True))  # the body repeats the header
    with pytest.raises(BadCredentialsError) as info:
        run(hub, tmp_path / "s.csv", sleeper)
    assert len(hub.requests) == 2 and sleeper.waits == []
    text = "".join(traceback.format_exception(info.value))
    assert TOKEN not in text and TOKEN not in repr(info.value.args)
    assert "401" in str(info.value)
    assert csv_rows(tmp_path / "s.csv") == expected(stars[:100])
    assert read_fetch_meta(tmp_path / "s.csv").cursor == encode_cursor(100)

    result = run(hub, tmp_path / "s.csv", sleeper)  # a good token again: resumes
    assert result.new_rows == 150
    assert csv_rows(tmp_path / "s.csv") == expected(stars)


def test_wrong_token_is_refused(hub, tmp_path, sleeper):
    wrong = "ghp_wrong_token_9876543210"
    with pytest.raises(BadCredentialsError) as info:
        run(hub, tmp_path / "s.csv", sleeper, token=wrong)
    assert wrong not in str(info.value)
    assert len(hub.requests) == 1


def test_missing_repository_stops_at_once(hub, tmp_path, sleeper):
    with pytest.raises(RepositoryNotFoundError, match="acme/nope") as info:
        run(hub, tmp_path / "s.csv", sleeper, repo="acme/nope")
    assert len(hub.requests) == 1
    assert TOKEN not in str(info.value)
    # Nothing was fetched, so the same --out is free for the right repository.
    assert run(hub, tmp_path / "s.csv", sleeper).rows == 250


def test_not_found_mid_fetch_keeps_the_rows(hub, stars, tmp_path, sleeper):
    hub.script(page(), not_found())
    with pytest.raises(RepositoryNotFoundError):
        run(hub, tmp_path / "s.csv", sleeper)
    assert csv_rows(tmp_path / "s.csv") == expected(stars[:100])


@pytest.mark.parametrize(
    ("status", "headers", "body", "outcome"),
    [
        (403, {}, '{"message": "Resource not accessible by integration"}', GitHubAPIError),
        (400, {}, '{"message": "Problems parsing JSON"}', GitHubAPIError),
        (200, {}, '{"errors": [{"type": "FORBIDDEN", "message": "no"}]}', GitHubAPIError),
        (200, {}, '{"errors": [{"message": "Something went wrong, timeout"}]}', Retry),
        (200, {}, "<html>", Retry),
        (500, {}, "", Retry),
        (403, {"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}, "", Retry),
    ],
)
def test_interpret_response(status, headers, body, outcome):
    if outcome is Retry:
        answer = interpret_response(
            status, httpx.Headers(headers), body, repository="a/b", now=START
        )
        assert isinstance(answer, Retry)
        if "retry-after" in headers:
            assert answer.wait_s == pytest.approx(10.0)  # the date is START + 10 s
    else:
        with pytest.raises(outcome):
            interpret_response(status, httpx.Headers(headers), body, repository="a/b", now=START)


# ----------------------------------------------------------------------------- checkpoints


def test_resume_after_a_permanent_failure_fetches_only_the_rest(hub, stars, tmp_path, sleeper):
    out = tmp_path / "s.csv"
    hub.fail_after(2, server_error(502))
    with pytest.raises(RetriesExhaustedError):
        run(hub, out, sleeper, max_attempts=2)
    assert csv_rows(out) == expected(stars[:200])
    meta = read_fetch_meta(out)
    assert (meta.complete, meta.cursor, meta.rows) == (False, encode_cursor(200), 200)

    hub.heal()
    hub.reset_log()
    result = run(hub, out, sleeper)
    assert hub.cursors == [encode_cursor(200)]
    assert (result.new_rows, result.rows, result.requests) == (50, 250, 1)
    assert csv_rows(out) == expected(stars)


def test_resume_after_ctrl_c(hub, stars, tmp_path, sleeper):
    def interrupt(progress: FetchProgress) -> None:
        if progress.fetched == 100:
            raise KeyboardInterrupt

    out = tmp_path / "s.csv"
    with pytest.raises(KeyboardInterrupt):
        run(hub, out, sleeper, progress=interrupt)
    hub.reset_log()
    run(hub, out, sleeper)
    assert hub.cursors == [encode_cursor(100), encode_cursor(200)]
    assert csv_rows(out) == expected(stars)


def test_page_written_without_its_checkpoint_is_not_kept_twice(
    hub, stars, tmp_path, sleeper, monkeypatch
):
    """The process dies between appending page 2 and saving its cursor."""
    real_write_meta = fetch_module._write_meta
    calls = []

    def dies_at_second_checkpoint(path, meta):
        calls.append(meta.rows)
        if meta.rows == 200:
            raise KeyboardInterrupt
        real_write_meta(path, meta)

    out = tmp_path / "s.csv"
    monkeypatch.setattr(fetch_module, "_write_meta", dies_at_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run(hub, out, sleeper)
    monkeypatch.setattr(fetch_module, "_write_meta", real_write_meta)
    assert len(csv_rows(out)) == 200  # page 2 is on disk, its checkpoint is not
    with open(out, "ab") as handle:
        handle.write(b"user9999,2020-01-01T00:00:00Z,half a li")  # and a torn write after it

    hub.reset_log()
    result = run(hub, out, sleeper)
    assert hub.cursors == [encode_cursor(100), encode_cursor(200)]
    assert result.rows == 250 and result.duplicates_skipped == 0
    assert csv_rows(out) == expected(stars)


def test_resume_after_kill_9(hub, stars, tmp_path):
    """A real ``kill -9`` of a fetching process after its second page."""
    out = tmp_path / "s.csv"
    script = textwrap.dedent(
        f"""
        import os, signal
        from jaxssm.stargazers.fetch import fetch_stargazers

        def die(progress):
            if progress.fetched == 200:
                os.kill(os.getpid(), signal.SIGKILL)

        fetch_stargazers("acme/rocket", {str(out)!r}, token={TOKEN!r}, api_url={hub.url!r},
                         progress=die)
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60, check=False)
    assert done.returncode == -9
    assert len(csv_rows(out)) == 200
    hub.reset_log()
    run(hub, out, SleepRecorder(Clock()))
    assert hub.cursors == [encode_cursor(200)]
    assert csv_rows(out) == expected(stars)


def test_parquet_resume(hub, stars, tmp_path, sleeper):
    out = tmp_path / "s.parquet"
    hub.fail_after(2, server_error(503))
    with pytest.raises(RetriesExhaustedError):
        run(hub, out, sleeper, max_attempts=1)
    assert not out.exists()
    assert len(csv_rows(tmp_path / "s.parquet.part.csv")) == 200
    hub.heal()
    hub.reset_log()
    run(hub, out, sleeper)
    assert hub.cursors == [encode_cursor(200)]
    assert [tuple(r) for r in pd.read_parquet(out).itertuples(index=False)] == expected(stars)


def test_complete_fetch_is_not_repeated_unless_refreshed(hub, stars, tmp_path, sleeper):
    out = tmp_path / "s.csv"
    run(hub, out, sleeper)
    hub.reset_log()
    again = run(hub, out, sleeper)
    assert hub.requests == [] and again.requests == 0
    assert again.complete and again.rows == 250 and again.created_at == "2018-06-01T12:00:00Z"

    refreshed = run(hub, out, sleeper, refresh=True)
    assert len(hub.requests) == 3 and refreshed.new_rows == 250
    assert csv_rows(out) == expected(stars)


def test_stars_added_during_a_fetch_are_picked_up(hub, stars, tmp_path, sleeper):
    newcomer = FakeStar("late-comer", "2031-01-01T00:00:00Z", None)
    hub.script(page(), call(lambda: hub.stargazers.append(newcomer)))
    result = run(hub, tmp_path / "s.csv", sleeper)
    assert csv_rows(tmp_path / "s.csv") == [*expected(stars), newcomer.row()]
    assert result.stargazer_count == 251


def test_another_repository_in_the_meta_file_is_an_error(hub, tmp_path, sleeper):
    out = tmp_path / "s.csv"
    run(hub, out, sleeper)
    hub.reset_log()
    with pytest.raises(FetchStateError, match=r"acme/rocket.*acme/other"):
        run(hub, out, sleeper, repo="acme/other")
    assert hub.requests == []
    assert len(csv_rows(out)) == 250


def test_a_table_not_written_here_is_not_overwritten(hub, tmp_path, sleeper):
    out = tmp_path / "s.csv"
    out.write_text("precious\n")
    with pytest.raises(FetchStateError, match="not written by this fetcher"):
        run(hub, out, sleeper)
    assert out.read_text() == "precious\n" and hub.requests == []
    assert run(hub, out, sleeper, refresh=True).rows == 250


def test_a_deleted_table_is_fetched_again(hub, stars, tmp_path, sleeper):
    out = tmp_path / "s.csv"
    hub.fail_after(2, server_error(502))
    with pytest.raises(RetriesExhaustedError):
        run(hub, out, sleeper, max_attempts=1)
    out.unlink()
    hub.heal()
    hub.reset_log()
    run(hub, out, sleeper)
    assert hub.cursors[0] is None
    assert csv_rows(out) == expected(stars)


# ----------------------------------------------------------------------------- command line


def parse(argv: list[str]) -> argparse.Namespace:
    return add_fetch_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_run_fetch(hub, stars, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    out = tmp_path / "s.csv"
    args = parse(["https://github.com/acme/rocket", "--out", str(out), "--api-url", hub.url])
    assert run_fetch(args) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "250 stargazers" in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2  # the first page, then (within 2 s) only the last one
    assert lines[-1].startswith("acme/rocket: 250/250 stargazers")
    assert csv_rows(out) == expected(stars)


def test_run_fetch_errors(hub, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "s.csv")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert run_fetch(parse(["acme/rocket", "--out", out, "--api-url", hub.url])) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert run_fetch(parse(["not a repo", "--out", out, "--api-url", hub.url])) == 2
    assert "OWNER/REPO" in capsys.readouterr().err
    hub.script(page(), bad_credentials(echo_token=True))
    assert run_fetch(parse(["acme/rocket", "--out", out, "--api-url", hub.url, "--quiet"])) == 3
    err = capsys.readouterr().err
    assert "100 stargazers are saved" in err and "run the same command again" in err
    assert TOKEN not in err


def test_printer_throttles_pages_but_not_waits():
    stream, now = io.StringIO(), [0.0]
    printer = FetchProgressPrinter(stream, every=2.0, clock=lambda: now[0])
    base = FetchProgress("a/b", 0, 1000, 0, 0, 0.0, None)
    for step in range(10):  # pages every 0.5 s
        now[0] = 0.5 * step
        printer(base._replace(fetched=100 * step, requests=step))
    printer(base._replace(fetched=900, waiting_s=3.0, message="waiting 3.0 s: HTTP 502"))
    printer(base._replace(fetched=1000, requests=10))
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[1].split("/")[0].strip() for line in lines] == [
        "0",
        "400",
        "800",
        "900",
        "1000",
    ]


def test_run_fetch_disk_full_is_one_line_naming_the_file(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    out = tmp_path / "s.csv"

    def full_disk(path, offset, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(fetch_module, "_write_at", full_disk)
    args = parse(["acme/rocket", "--out", str(out), "--api-url", hub.url, "--quiet"])
    assert run_fetch(args) == 2
    assert capsys.readouterr().err == f"error: {out}: No space left on device\n"


def test_a_location_with_line_breaks_round_trips(tmp_path, sleeper):
    stars = [FakeStar("a", "2024-01-01T00:00:00Z", "Rio\rde\nJaneiro"),
             FakeStar("b", "2024-01-02T00:00:00Z", 'say "hi", bye')]  # fmt: skip
    with FakeGitHub(stars, token=TOKEN) as server:
        run(server, tmp_path / "s.csv", sleeper)
    assert csv_rows(tmp_path / "s.csv") == expected(stars)
    frame = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert frame["location"].tolist() == ["Rio\rde\nJaneiro", 'say "hi", bye']
