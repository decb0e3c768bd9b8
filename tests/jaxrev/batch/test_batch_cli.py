"""``jaxrev batch`` on one output folder: a lock (a second run refuses or waits; a dead run's
lock file is taken over), corrupt parts named or repaired, exit 3 when accounts fail, and no
temporary file left when the disk is full."""

import contextlib
import errno
import io
import os
import threading
import time
import warnings

import pandas as pd
import pytest

from jaxrev.batch.lock import LOCK_NAME, folder_lock
from jaxrev.cli import main
from jaxrev.simulate import simulate_account


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def accounts_csv(tmp_path_factory):
    """Three small accounts (one shape bucket) and one whose revenue is negative."""
    frames = []
    for k in range(3):
        sim = simulate_account(400 + k, (2, 2), num_hours=8, conversions_per_hour=(1.5, 4.0))
        frames.append(sim.table.assign(account=f"acct-{k}"))
    bad = frames[0].assign(account="broken")
    bad.loc[bad["conversions"] > 0, "revenue"] = -1.0
    path = tmp_path_factory.mktemp("accounts") / "accounts.csv"
    pd.concat([*frames, bad], ignore_index=True).to_csv(path, index=False)
    return path


def batch(data, out, *extra) -> list[str]:
    return ["batch", str(data), "--out", str(out), "--no-cache", "--no-nuts", "--quiet", *extra]


@pytest.fixture(scope="module")
def done(accounts_csv, tmp_path_factory):
    """A finished run, started with --wait while this process held the folder's lock for 1 s
    (so it waited, then took the lock over)."""
    out = tmp_path_factory.mktemp("batch") / "out"
    held = threading.Event()

    def hold():
        with folder_lock(out):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    t0 = time.perf_counter()
    result = run(batch(accounts_csv, out, "--wait"))
    holder.join()
    return (*result, out, time.perf_counter() - t0)


def test_wait_takes_the_lock_when_it_is_released_and_failures_exit_3(done):
    code, _, err, out, seconds = done
    assert seconds >= 1.0
    assert code == 3 and "1 of 4 accounts failed" in err and "--allow-unconverged" in err
    status = pd.read_csv(out / "status.csv")
    assert sorted(status["account"]) == ["acct-0", "acct-1", "acct-2", "broken"]


def test_a_second_run_refuses_a_locked_folder_naming_the_lock_file(done, accounts_csv):
    out = done[3]
    with folder_lock(out):
        code, _, err = run(batch(accounts_csv, out))
    assert code == 2
    assert f"lock file {out / LOCK_NAME}" in err and "--wait" in err and err.count("\n") == 1


def test_a_dead_runs_lock_file_is_taken_over(done, accounts_csv):
    out = done[3]
    (out / LOCK_NAME).write_text("pid 999999 on elsewhere\n")  # no process holds it
    code, printed, _ = run(batch(accounts_csv, out, "--allow-unconverged"))
    assert code == 0 and "0 fitted now, 4 already done" in printed


def test_a_truncated_part_is_named_then_refitted_with_repair(done, accounts_csv):
    out = done[3]
    part = next(
        p for p in sorted((out / "parts").glob("status-*.parquet")) if "invalid" not in p.name
    )
    part.write_bytes(part.read_bytes()[:40])
    code, _, err = run(batch(accounts_csv, out))
    assert code == 2 and str(part) in err
    assert "--repair" in err and "rm " in err and str(part).replace("status-", "summary-") in err
    code, printed, _ = run(batch(accounts_csv, out, "--repair", "--allow-unconverged"))
    assert code == 0 and "3 fitted now, 1 already done" in printed
    status = pd.read_csv(out / "status.csv")
    assert sorted(status["account"]) == ["acct-0", "acct-1", "acct-2", "broken"]
    assert not list(out.rglob("*.tmp"))


def test_disk_full_exits_2_naming_the_file_and_leaves_no_temporary_file(
    accounts_csv, tmp_path, monkeypatch
):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("jaxrev.files.os.fsync", no_space)
    out = tmp_path / "out"
    code, _, err = run(batch(accounts_csv, out))
    assert code == 2
    assert err.startswith(f"error: cannot write {out}") and "No space left on device" in err
    assert err.count("\n") == 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
