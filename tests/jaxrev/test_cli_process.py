"""``jaxrev`` as a real process: fast ``--help`` (no JAX imported to build the parser), defaults
shown, ``--version``, exit status 2 without a traceback on bad input, and Ctrl-C (a real SIGINT)
giving exit 130, the finished part of a batch written, a resume hint, and a resume that fits
every account exactly once; a second run on a locked folder is refused meanwhile."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from jaxrev.cli import main
from jaxrev.inference import NUTSOptions
from jaxrev.simulate import simulate_account

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["fit", "batch", "allocate", "compare", "datasets"]


def environment() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"}


HEAVY_MODULES = {"jax", "jaxlib", "numpyro", "arviz", "matplotlib", "pandas"}


def jaxrev(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python [-X option] -m jaxrev.cli args``."""
    flags = list(args[:2]) if args[:1] == ("-X",) else []
    cmd = [sys.executable, *flags, "-m", "jaxrev.cli", *args[len(flags) :]]
    return subprocess.run(
        cmd, env=environment(), capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_is_fast_and_shows_defaults(command):
    """Fast = nothing heavy imported: ``-X importtime`` lists every module the process loads
    (counted, not timed: a loaded machine would break a time bound)."""
    done = jaxrev("-X", "importtime", *([command] if command else []), "--help")
    assert done.returncode == 0
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert all(line.startswith("import time:") for line in done.stderr.splitlines())
    assert len(loaded) > 20  # the listing is there
    heavy = {name for name in loaded if name.split(".")[0] in HEAVY_MODULES}
    assert heavy == set(), f"--help imported {sorted(heavy)[:5]}"
    if command in ("fit", "batch", "allocate", "compare"):
        assert "(default: " in done.stdout
    if command == "fit":
        o = NUTSOptions()
        assert f"(default: {o.num_warmup})" in done.stdout and "--allow-unconverged" in done.stdout
        assert f"(default: {o.target_accept_prob})" in done.stdout


def test_building_the_parser_imports_no_jax_and_version_is_printed():
    code = (
        "import sys; from jaxrev.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('jax', 'numpyro', 'arviz', 'matplotlib', 'pandas') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(), capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr
    version = jaxrev("--version")
    assert version.returncode == 0 and version.stdout.startswith("jaxrev 0.")


def test_bad_input_exits_2_without_a_traceback(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("campaign,adset,conversions,revenue,revenue\nc,a,1,10,3\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    cases = [
        (["fit", str(folder), "--out", str(tmp_path / "o")], f"{folder}: is a folder"),
        (["fit", str(dup), "--out", str(tmp_path / "o")], "column 'revenue' 2 times"),
        (["batch", str(empty), "--out", str(tmp_path / "o"), "--no-cache"], "empty file"),
        (["fit", str(dup), "--out", str(tmp_path / "o"), "--max-steps", "x"], "invalid int"),
    ]
    for argv, message in cases:
        done = jaxrev(*argv)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def accounts_table(count: int) -> pd.DataFrame:
    frames = []
    for k in range(count):
        sim = simulate_account(500 + k, (2, 2), num_hours=8, conversions_per_hour=(1.5, 4.0))
        frames.append(sim.table.assign(account=f"acct-{k:02d}"))
    return pd.concat(frames, ignore_index=True)


def in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_ctrl_c_mid_batch_exits_130_with_partial_output_then_resumes(tmp_path, compile_cache):
    accounts = 12
    data = tmp_path / "accounts.csv"
    accounts_table(accounts).to_csv(data, index=False)
    out = tmp_path / "out"
    argv = ["batch", str(data), "--out", str(out), "--max-batch", "1", "--no-nuts", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxrev.cli", *argv, "--no-cache"],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((out / "parts").glob("status-*.parquet")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no account finished in 300 s"
            time.sleep(0.05)
        code, _, err = in_process([*argv, "--no-cache"])  # the subprocess holds the lock
        assert code == 2 and "in use by another jaxrev batch run" in err
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    partial = pd.read_csv(out / "status.csv")
    assert 1 <= len(partial) < accounts
    assert json.loads((out / "run.json").read_text())["interrupted"] is True

    code, printed, _ = in_process([*argv, "--no-cache"])  # resume: the dead run's lock is free
    assert code == 0, printed
    assert f"{len(partial)} already done" in printed
    status = pd.read_csv(out / "status.csv")
    assert sorted(status["account"]) == [f"acct-{k:02d}" for k in range(accounts)]
    summary = pd.read_csv(out / "summary.csv")
    assert not summary.duplicated(["account", "level", "campaign", "adset"]).any()


def test_ctrl_c_mid_fit_exits_130_without_a_traceback(tmp_path, compile_cache):
    data = tmp_path / "hourly.csv"
    simulate_account(9, (2, 2), num_hours=8).table.to_csv(data, index=False)
    out = tmp_path / "out"
    argv = ["fit", str(data), "--out", str(out), "--max-steps", "100000000", "--no-plots"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxrev.cli", *argv, "--quiet"],
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = ""
        while "fitting" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.communicate()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted: nothing was written" in stderr and "Traceback" not in stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".tmp")]
