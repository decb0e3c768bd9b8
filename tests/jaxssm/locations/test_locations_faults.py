"""`jaxssm locations` under bad input and faults: one named line and the right exit code, never a
traceback or a torn file. Real subprocesses and signals where the process boundary matters
(Ctrl-C, an unreadable file, the exit code of a crash), the loopback OpenAI server for the LLM,
an injected ENOSPC / a capped SQLite file for a full disk."""

from __future__ import annotations

import csv
import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from fake_openai import FakeOpenAI, drop, error, insufficient_quota, named, rate_limited

from jaxssm import files as files_module
from jaxssm import tables as tables_module  # the atomic writer every command uses
from jaxssm.cli import main
from jaxssm.locations import llm as llm_module
from jaxssm.locations.cache import LocationCache

HAS_PROC = Path("/proc/self").exists()


def write_users(path: Path, locations: list[str]) -> Path:
    """A users table with every field quoted (CR and LF inside quotes are data)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(["user", "location"])
        writer.writerows([f"u{k}", text] for k, text in enumerate(locations))
    return path


def read_back(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)


def run_cli(*args, user: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "jaxssm.cli", "locations", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        user=user,
    )


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- input


BAD_INPUTS = {
    "empty": (b"", "is empty"),
    "blank": (b"\n  \n\n", "is empty"),
    "not-utf8": (b"user,location\na,Berlin\nb,S\xe3o Paulo\n",
                 "row 3, column 'location': not UTF-8 text (byte 0xe3)"),
    "utf16": ("user,location\na,Berlin\n".encode("utf-16"), "UTF-16"),
    "repeated-header": (b"user,location,location\na,Berlin,Paris\n",
                        "row 1, column 'location': the column name appears twice "
                        "(columns 2 and 3)"),
    "nul": (b"user,location\na,Berlin\nb,Ber\x00lin\n",
            "row 3, column 'location': a NUL byte"),
    "bare-cr": (b'user,location\r\na,"Par\ris"\r\nb,Ber\rlin\r\nc,Rome\r\n',
                "row 3, column 'location': a carriage return (\\r) outside quotes"),
    "ragged": (b"user,location\na,Berlin\nb,Paris,France,EU\n",
               "row 3: 4 fields, but the header has 2"),
    "bad-parquet": (b"PAR1 not really", "cannot be read as Parquet"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_named_line_and_exit_2(tmp_path, capsys, case):
    content, expected = BAD_INPUTS[case]
    path = tmp_path / ("users.parquet" if case == "bad-parquet" else "users.csv")
    path.write_bytes(content)
    out = tmp_path / "out.csv"
    assert main(["locations", str(path), "--out", str(out), "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and expected in line
    assert not out.exists()


def test_missing_file_and_folder_are_named(tmp_path, capsys):
    for path, expected in [(tmp_path / "nope.csv", "no such file"), (tmp_path, "is a folder")]:
        assert main(["locations", str(path), "--out", str(tmp_path / "o.csv")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(path) in line and expected in line


def test_empty_file_in_a_real_process_exits_2_without_traceback(tmp_path):
    """The case that used to end in an EmptyDataError traceback."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    done = run_cli(empty, "--out", tmp_path / "o.csv")
    assert done.returncode == 2, done.stderr
    assert f"{empty}: the file is empty" in one_error_line(done.stderr)


def test_unreadable_file_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    """chmod 000 and a real process; as root (who reads anything) the process runs as nobody,
    or, where nobody cannot run this Python, the read fails by injection in this process."""
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp()) if root else tmp_path
    try:
        folder.chmod(0o755)
        path = write_users(folder / "users.csv", ["Berlin"])
        path.chmod(0)
        try:
            done = run_cli(path, "--out", folder / "o.csv", user=65534 if root else None)
        except PermissionError:  # nobody may not execute this interpreter
            done = None
        if done is not None:
            assert done.returncode == 2, done.stderr
            line = one_error_line(done.stderr)
        else:
            denied = OSError(errno.EACCES, os.strerror(errno.EACCES))
            monkeypatch.setattr(
                tables_module, "open", lambda *a, **k: (_ for _ in ()).throw(denied), raising=False
            )
            assert main(["locations", str(path), "--out", str(folder / "o.csv")]) == 2
            line = one_error_line(capsys.readouterr().err)
        assert str(path) in line and "Permission denied" in line
    finally:
        if root:
            (folder / "users.csv").unlink()
            folder.rmdir()


def test_cr_and_newlines_inside_quotes_are_data(tmp_path, capsys):
    path = write_users(tmp_path / "users.csv", ["Par\ris", "Berlin\nGermany", "\r", "Tokyo"])
    out = tmp_path / "out.csv"
    assert main(["locations", str(path), "--out", str(out), "--quiet"]) == 0
    frame = read_back(out)
    assert list(frame.location) == ["Par\ris", "Berlin\nGermany", "\r", "Tokyo"]


# ----------------------------------------------------------------------------- output


def test_5000_rows_with_cr_and_newlines_read_back_as_exactly_the_rows_written(tmp_path):
    pool = ["Berlin", "Paris\r", "\r", "São Paulo\nBrazil", "Tokyo, Japan", 'The "Bay" Area',
            "", "NA", " Rome ", "Lagos\r\n", "\n"]  # fmt: skip
    texts = [pool[k % len(pool)] for k in range(5000)]
    path = write_users(tmp_path / "users.csv", texts)
    out = tmp_path / "out.csv"
    assert main(["locations", str(path), "--out", str(out), "--quiet"]) == 0
    frame = read_back(out)
    assert len(frame) == 5000
    assert list(frame.user) == [f"u{k}" for k in range(5000)]
    assert frame.location.fillna("").tolist() == texts
    assert b'"\r"' in out.read_bytes()  # the lone CR is quoted
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_parquet_and_tsv_outputs_read_back(tmp_path):
    texts = ["Berlin", "Par\tis", "\r", "Tokyo"]
    path = write_users(tmp_path / "users.csv", texts)
    for name, read in [("o.parquet", pd.read_parquet),
                       ("o.tsv", lambda p: pd.read_csv(p, sep="\t", dtype=str))]:  # fmt: skip
        assert main(["locations", str(path), "--out", str(tmp_path / name), "--quiet"]) == 0
        assert read(tmp_path / name).location.tolist() == texts


def test_out_over_the_input_is_refused(tmp_path, capsys):
    path = write_users(tmp_path / "users.csv", ["Berlin"])
    before = path.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(path)
    for out in (path, link, tmp_path / "." / "users.csv"):
        assert main(["locations", str(path), "--out", str(out)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(out) in line and "is the input" in line
    assert path.read_bytes() == before


@pytest.mark.parametrize("where", ["under-a-file", "a-folder", "proc-missing", "proc"])
def test_unusable_out_is_named_before_the_run(tmp_path, capsys, where):
    if where.startswith("proc") and not HAS_PROC:
        pytest.skip("needs Linux /proc (a place nobody can write, root included)")
    path = write_users(tmp_path / "users.csv", ["Berlin"])
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out, named_path = {
        "under-a-file": (blocker / "sub" / "o.csv", blocker / "sub"),
        "a-folder": (tmp_path, tmp_path),
        "proc-missing": (Path(f"/proc/jaxssm-test-{os.getpid()}/o.csv"), None),
        "proc": (Path("/proc/o.csv"), Path("/proc")),
    }[where]
    assert main(["locations", str(path), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(named_path or out.parent) in line and "--out" in line


def test_full_disk_leaves_the_old_output_and_no_temporary_file(tmp_path, capsys, monkeypatch):
    """ENOSPC half-way through the write (injected): the final path keeps its old content."""
    path = write_users(tmp_path / "users.csv", ["Berlin", "Tokyo"] * 500)
    out = tmp_path / "out.csv"
    out.write_text("the previous output\n")

    class Full:
        def __init__(self, handle):
            self.handle, self.left = handle, 1000

        def write(self, data):
            if len(data) > self.left:
                self.handle.write(data[: self.left])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(files_module, "open", lambda *a, **k: Full(open(*a, **k)), raising=False)
    assert main(["locations", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"cannot write {out}: No space left on device" in err
    assert out.read_text() == "the previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "users.csv"]


# ----------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("where", ["under-a-file", "xdg-is-a-file", "a-folder", "not-sqlite",
                                   "proc"])  # fmt: skip
def test_unusable_cache_is_named_before_the_run(tmp_path, capsys, monkeypatch, where):
    if where == "proc" and not HAS_PROC:
        pytest.skip("needs Linux /proc")
    path = write_users(tmp_path / "users.csv", ["Qwertyland"])
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database, not at all" * 100)
    cache = {
        "under-a-file": blocker / "c.sqlite",
        "xdg-is-a-file": None,
        "a-folder": tmp_path,
        "not-sqlite": garbage,
        "proc": Path("/proc/c.sqlite"),
    }[where]
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    args = ["locations", str(path), "--out", str(tmp_path / "o.csv"), "--quiet",
            "--llm-base-url", "http://127.0.0.1:9/v1", "--model", "m"]  # fmt: skip
    if cache is not None:
        args += ["--cache", str(cache)]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(cache.parent if where == "under-a-file" else cache or blocker) in line
    if where == "xdg-is-a-file":
        assert "XDG_CACHE_HOME" in line and "--cache" in line


class _SmallDisk(LocationCache):
    """A cache whose file cannot grow past its size when opened (SQLITE_FULL, as on a full
    disk)."""

    def __init__(self, path):
        super().__init__(path)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages}")


def test_full_cache_disk_writes_the_rows_and_keeps_the_cache(tmp_path, capsys, monkeypatch):
    texts = [f"Zyx place number {k}" for k in range(120)]
    path = write_users(tmp_path / "users.csv", texts)
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out.csv"
    monkeypatch.setattr(llm_module, "LocationCache", _SmallDisk)
    with FakeOpenAI({t: "NZ" for t in texts}) as server:
        args = ["locations", str(path), "--out", str(out), "--quiet", "--backend", "llm",
                "--llm-base-url", server.base_url, "--model", "fake", "--batch-size", "4",
                "--max-concurrency", "1", "--cache", str(cache)]  # fmt: skip
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write the location cache {cache}" in err
    assert "database or disk is full" in err and "--cache" in err
    frame = read_back(out)
    answered = int((frame.status == "ok").sum())
    assert 0 < answered < len(texts) and (frame.status[answered:] == "pending").all()
    with LocationCache(cache) as db:  # still a good cache, with every batch before the full one
        assert db.count() == answered - 4
        db._db.execute("PRAGMA integrity_check")


# ----------------------------------------------------------------------------- the LLM run


def llm_args(path, out, server, cache, *extra):
    return ["locations", str(path), "--out", str(out), "--quiet", "--backend", "llm",
            "--llm-base-url", server.base_url, "--model", "fake", "--batch-size", "2",
            "--max-concurrency", "1", "--cache", str(cache), *map(str, extra)]  # fmt: skip


def test_a_batch_that_exhausts_its_attempts_fails_and_the_run_goes_on(tmp_path, capsys):
    """429, 503 and a dropped connection in a row for one batch: exit 3, its rows ``failed``,
    every other row answered; a rerun asks only for them; --allow-failed accepts failures."""
    texts = [f"Zyx {k}" for k in range(6)]
    path = write_users(tmp_path / "users.csv", texts)
    out, cache = tmp_path / "out.csv", tmp_path / "c.sqlite"
    quick_503 = error(503, "overloaded", headers={"retry-after-ms": "1"})
    with FakeOpenAI({t: "NZ" for t in texts}) as server:
        server.script(server.default, rate_limited(retry_after_ms=1), quick_503, drop())
        assert main(llm_args(path, out, server, cache, "--max-attempts", 3)) == 3
        assert [s.status for s in server.requests] == [200, 429, 503, 0, 200]
        err = capsys.readouterr().err
        assert "Traceback" not in err and "2 rows have status 'failed'" in err
        assert "--allow-failed" in err and "--max-attempts" in err and str(cache) in err
        assert list(read_back(out).status) == ["ok", "ok", "failed", "failed", "ok", "ok"]

        server.reset()
        server.script(quick_503, quick_503)
        assert main(llm_args(path, out, server, cache, "--max-attempts", 2, "--allow-failed")) == 0
        assert server.texts_sent(None) == {"Zyx 2": 2, "Zyx 3": 2}  # only the failed rows
        assert list(read_back(out).status)[2:4] == ["failed", "failed"]

        server.reset()
        assert main(llm_args(path, out, server, cache)) == 0
        assert (read_back(out).country == "NZ").all()


def test_quota_stops_the_run_with_the_rows_so_far_and_exit_3(tmp_path, capsys):
    texts = [f"Zyx {k}" for k in range(6)]
    path = write_users(tmp_path / "users.csv", texts)
    out, cache = tmp_path / "out.csv", tmp_path / "c.sqlite"
    with FakeOpenAI({t: "NZ" for t in texts}) as server:
        server.script(server.default, insufficient_quota())
        assert main(llm_args(path, out, server, cache)) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "insufficient_quota" in err and "--cache" in err
    assert list(read_back(out).status) == ["ok", "ok"] + ["pending"] * 4


def interrupt_after(n: int):
    """A behaviour that answers, and sends this process SIGINT on the ``n``-th request."""
    count = {"seen": 0}

    def behave(srv, seen):
        count["seen"] += 1
        if count["seen"] == n:
            os.kill(os.getpid(), signal.SIGINT)
        return srv.completion(seen, srv.answer_content(seen))

    return named("interrupt", behave)


def test_ctrl_c_in_the_cascade_writes_every_row(tmp_path, capsys):
    """SIGINT (a real signal, in this process) while the LLM is asked: gazetteer rows are
    answered, the LLM's rows so far too, the rest ``pending``; exit 130 and a resume hint."""
    texts = ["Berlin"] + [f"Zyx {k}" for k in range(8)] + ["Tokyo"]
    path = write_users(tmp_path / "users.csv", texts)
    out, cache = tmp_path / "out.csv", tmp_path / "c.sqlite"
    with FakeOpenAI({t: "NZ" for t in texts}, latency=0.05) as server:
        server.default = interrupt_after(2)
        args = llm_args(path, out, server, cache)
        args[args.index("llm")] = "cascade"
        assert main(args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err and f"--cache {cache}" in err
    frame = read_back(out)
    assert frame.country[0] == "DE" and frame.country[9] == "JP"
    llm_rows = list(frame.status[1:9])
    assert llm_rows[:2] == ["ok", "ok"] and "pending" in llm_rows
    assert set(llm_rows) <= {"ok", "pending"}


def test_ctrl_c_writes_the_partial_output_and_a_rerun_finishes(tmp_path):
    """SIGINT to a real `jaxssm locations` process in the middle of an LLM run: exit 130, no
    traceback, every row in the output (answered, or ``pending``), a hint naming --cache; the
    same command again asks only for the pending rows."""
    texts = [f"Zyx place {k}" for k in range(24)]
    path = write_users(tmp_path / "users.csv", texts)
    out, cache = tmp_path / "out.csv", tmp_path / "c.sqlite"
    with FakeOpenAI({t: "NZ" for t in texts}, latency=0.2) as server:
        args = llm_args(path, out, server, cache)
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        child = subprocess.Popen(
            [sys.executable, "-m", "jaxssm.cli", *args], env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err and f"--cache {cache}" in err
        frame = read_back(out)
        assert len(frame) == 24 and set(frame.status) == {"ok", "pending"}
        done = int((frame.status == "ok").sum())
        assert done >= 6 and (frame.status[done:] == "pending").all()
        assert (frame.country[:done] == "NZ").all() and frame.country[done:].isna().all()

        server.reset()
        assert main(args) == 0
        assert sum(server.texts_sent().values()) == 24 - done
    assert (read_back(out).status == "ok").all()
