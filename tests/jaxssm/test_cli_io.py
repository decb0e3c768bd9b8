"""The jaxssm command line as a process: fast ``--help`` (no JAX imported to build the parser),
defaults shown, ``--version``; one checked input path for ``report`` and ``fit`` (every bad
file a named error, exit 2, no traceback); outputs written atomically and RFC 4180 quoted;
``--out`` over an input refused; I/O errors as one line naming the path; exit codes 3 and 130.

Tables are tiny and the fits q = 0 Poisson, so the module stays fast."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from jaxssm import cli, files, tables
from jaxssm.cli import main
from jaxssm.errors import InputError, OutputError
from jaxssm.tables import read_frame, read_records

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
STARS_HEADER = "user,starred_at,location\n"


def _jaxssm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jaxssm.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- help, version


@pytest.mark.parametrize(
    "command", [[], ["report"], ["fit"], ["locations"], ["stargazers", "fetch"]]
)
def test_help_is_fast_shows_defaults_and_exits_0(command):
    # Fast = nothing heavy imported, counted with -X importtime (a time bound breaks on a loaded
    # machine).
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jaxssm.cli", *command, "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert len(loaded) > 20  # the listing is there
    heavy = {n for n in loaded if n.split(".")[0] in ("jax", "jaxlib", "pandas", "httpx")}
    assert heavy == set(), f"--help imported {sorted(heavy)[:5]}"
    if command:
        assert "(default: " in done.stdout
    if command in ([], ["report"], ["fit"]):
        assert "Exit codes: 0 done; 2 bad input" in " ".join(done.stdout.split())


def test_building_the_parser_imports_no_jax_pandas_or_httpx():
    code = (
        "import sys, jaxssm.cli; jaxssm.cli.build_parser(); "
        "print(sorted(m for m in ('jax', 'pandas', 'httpx', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_version_and_usage_errors():
    done = _jaxssm("--version")
    assert done.returncode == 0 and done.stdout.startswith("jaxssm ")
    assert _jaxssm("fit").returncode == 2  # argparse: COUNTS and --out missing
    assert _jaxssm("no-such-command").returncode == 2


def test_fetch_defaults_in_the_parser_are_the_librarys():
    from jaxssm.stargazers.github import GITHUB_GRAPHQL_URL, MAX_PAGE_SIZE, Backoff

    assert cli.GITHUB_GRAPHQL_URL == GITHUB_GRAPHQL_URL
    assert cli.MAX_PAGE_SIZE == MAX_PAGE_SIZE
    assert cli.WAIT_CAP_S == Backoff().wait_cap_s


# ----------------------------------------------------------------------------- bad input files

COUNTS = "window,US,DE\n2021-01,3,1\n2021-02,4,0\n2021-03,2,2\n2021-04,5,1\n"
STARS = STARS_HEADER + "a,2024-01-05T10:00:00Z,Berlin\nb,2024-02-05T10:00:00Z,Paris\n"

#: name → (bytes of the file, or None for a folder, or "missing"; fragments of the message)
BAD_FILES = {
    "missing": ("missing", ["no such file"]),
    "folder": (None, ["is a folder, not a table"]),
    "empty": (b"", ["the file is empty"]),
    "blank": (b"\n \n", ["the file is empty"]),
    "latin-1": (None, ["not UTF-8 text", "byte"]),
    "duplicated header": (None, ["row 1", "appears twice"]),
    "bare CR": (None, ["row 3", "a carriage return (\\r) outside quotes"]),
    "NUL": (None, ["row 2", "a NUL byte"]),
}


def _bad_file(tmp_path: Path, case: str, good: str) -> Path:
    path = tmp_path / "table.csv"
    content, _ = BAD_FILES[case]
    first_line, rest = good.split("\n", 1)
    if case == "missing":
        return path
    if case == "folder":
        path.mkdir()
        return path
    if case == "latin-1":
        content = first_line[:-1].encode() + b"\xe9\n" + rest.encode()  # é in Latin-1
    elif case == "duplicated header":
        content = (first_line.rsplit(",", 1)[0] + "," + first_line.split(",")[1]).encode()
        content += b"\n" + rest.encode()
    elif case == "bare CR":
        lines = good.split("\n")
        lines[2] = lines[2][:-1] + "\r" + lines[2][-1]
        content = "\n".join(lines).encode()
    elif case == "NUL":
        lines = good.split("\n")
        lines[1] = lines[1] + "\x00"
        content = "\n".join(lines).encode()
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("command", ["fit", "report"])
def test_a_bad_input_file_is_one_named_error_exit_2(command, case, tmp_path, capsys):
    good = COUNTS if command == "fit" else STARS
    path = _bad_file(tmp_path, case, good)
    out = tmp_path / "out"
    extra = ["--factors", "0", "--emission", "poisson"] if command == "fit" else ["--quiet"]
    code = main([command, str(path), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {path}") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in BAD_FILES[case][1]:
        assert fragment in err, err
    assert not out.exists()


def test_an_unreadable_file_is_named(tmp_path, capsys, monkeypatch):
    path = tmp_path / "stars.csv"
    path.write_text(STARS)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: the error the open would raise, injected

        def denied(file, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))

        monkeypatch.setattr(tables, "open", denied, raising=False)
    try:
        assert main(["report", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    finally:
        path.chmod(0o600)
    assert capsys.readouterr().err == f"error: {path}: cannot be read: Permission denied\n"


def test_the_reader_gives_row_and_column_and_keeps_quoted_line_breaks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'user,location\r\na,"Rio\r de\nJaneiro"\r\n\r\nb,x\ry\r\n')
    with pytest.raises(InputError, match=r"row 4, column 'location': a carriage return") as err:
        read_records(path)
    assert (err.value.file, err.value.row, err.value.column) == (path, 4, "location")
    path.write_bytes(b'user,location\r\na,"Rio\r de\nJaneiro"\r\n\r\nb,NA\r\nc,\r\n')
    frame, rows = read_frame(path)
    assert frame["location"].tolist() == ["Rio\r de\nJaneiro", "NA", None] and rows == [2, 4, 5]
    path.write_text("user,location\na,x\nb,y,z\n")
    with pytest.raises(InputError, match=r"row 3: 3 fields, but the header has 2"):
        read_frame(path)


# ----------------------------------------------------------------------------- the report


def test_report_on_too_few_windows_is_a_named_error_without_warnings(tmp_path, capsys, recwarn):
    path = tmp_path / "one.csv"
    path.write_text(STARS_HEADER + "a,2024-01-05T10:00:00Z,Berlin\n")
    code = main(["report", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "1 window(s) of width 'MS'" in err and "needs at least 3" in err
    assert "--freq" in err and "num_factors" not in err
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_the_candidates_are_those_the_windows_allow():
    from jaxssm.stargazers.analysis import usable_candidates

    assert usable_candidates((0, 1, 2, 3), 3, 5) == (0, 1, 2)
    assert usable_candidates((2, 3), 2, 1) == (0,)
    assert usable_candidates((1, 2), 30, 10) == (1, 2)


def test_report_out_over_its_input_or_under_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    path = out / "counts.csv"  # the report writes counts.csv into --out
    path.write_text(STARS)
    assert main(["report", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: would overwrite the input {path}" in err
    assert path.read_text() == STARS
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    good = tmp_path / "stars.csv"
    good.write_text(STARS)
    assert main(["report", str(good), "--out", str(blocker / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot create the output folder {blocker / 'out'}: Not a directory\n"


def _fake_report(monkeypatch, converged: bool = True, interrupt: bool = False):
    from jaxssm.stargazers import report

    def analyze_and_report(source, out_dir, **kwargs):
        if interrupt:
            files.write_atomic(Path(out_dir) / "growth.csv", b"window\r\n")
            raise KeyboardInterrupt
        fit = SimpleNamespace(num_factors=1, emission="poisson", converged=converged,
                              status="converged" if converged else "max_iterations")  # fmt: skip
        return SimpleNamespace(fit=fit), Path(out_dir) / "report.html"

    monkeypatch.setattr(report, "analyze_and_report", analyze_and_report)


@pytest.mark.parametrize(("converged", "allow", "code"), [(True, False, 0), (False, False, 3),
                                                          (False, True, 0)])  # fmt: skip
def test_report_exit_3_when_not_converged_unless_allowed(
    converged, allow, code, monkeypatch, tmp_path, capsys
):
    _fake_report(monkeypatch, converged=converged)
    argv = ["report", "x.csv", "--out", str(tmp_path), "--quiet"]
    assert main(argv + ["--allow-unconverged"] * allow) == code
    err = capsys.readouterr().err
    assert ("--allow-unconverged" in err) == (code == 3)


def test_report_interrupted_exits_130_naming_what_is_kept(monkeypatch, tmp_path, capsys):
    _fake_report(monkeypatch, interrupt=True)
    assert main(["report", "x.csv", "--out", str(tmp_path), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted: 1 of the report's files are in {tmp_path}")
    assert "run the same command again" in err


def test_report_tables_are_rfc4180_with_no_float32_noise(tmp_path):
    from jaxssm.stargazers.report import _Tables

    frame = pd.DataFrame(
        {"location": ["Rio\rde Janeiro", 'say "hi"', "a,b"], "share": np.float32([886.16, 0.5, 1])}
    )
    _Tables(tmp_path)(frame, "t.csv")
    raw = (tmp_path / "t.csv").read_bytes()
    assert b"886.16\r\n" in raw and b"886.159973" not in raw
    back = pd.read_csv(tmp_path / "t.csv")
    assert back["location"].tolist() == frame["location"].tolist() and len(back) == 3


# ----------------------------------------------------------------------------- fit: outputs


def test_fit_out_over_its_input_is_refused(tmp_path, capsys):
    path = tmp_path / "expected_counts.csv"
    path.write_text(COUNTS)
    code = main(["fit", str(path), "--out", str(tmp_path), "--factors", "0"])
    assert code == 2
    assert f"would overwrite the input {path}" in capsys.readouterr().err
    assert path.read_text() == COUNTS


def test_fit_into_a_read_only_folder_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "counts.csv"
    path.write_text(COUNTS)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: what os.access says for anyone else, injected
        monkeypatch.setattr(files.os, "access", lambda path, mode: False)
    try:
        assert main(["fit", str(path), "--out", str(out), "--factors", "0"]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err
    assert err == f"error: cannot write into the output folder {out}: permission denied\n"


def test_fit_on_a_full_disk_is_one_line_naming_the_file_nothing_torn(tmp_path, capsys, monkeypatch):
    path = tmp_path / "counts.csv"
    path.write_text(COUNTS)
    out = tmp_path / "out"
    written = []
    real = files._write_synced

    def full_disk(target, payload):
        if len(written) == 2:  # summary.json and params/mu.csv fit; the third file does not
            real(target, b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(target)
        real(target, payload)

    monkeypatch.setattr(files, "_write_synced", full_disk)
    argv = ["fit", str(path), "--out", str(out), "--factors", "0", "--emission", "poisson",
            "--draws", "10", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: cannot write {out / 'params' / 'loadings.csv'}: No space left on device\n"
    )
    assert not list(out.rglob("*.tmp")) and not (out / "params" / "loadings.csv").exists()
    assert json.loads((out / "summary.json").read_text())["finished"] is False
    assert len(pd.read_csv(out / "params" / "mu.csv")) > 0


def test_write_atomic_keeps_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "t.csv"
    target.write_bytes(b"old\r\n")

    def full_disk(handle):
        handle.write(b"new but cut")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        files.write_atomic(target, full_disk)
    assert target.read_bytes() == b"old\r\n" and sorted(tmp_path.iterdir()) == [target]


def test_csv_bytes_round_trips_line_breaks_quotes_and_commas():
    frame = pd.DataFrame({"text": ["a\rb", "c\nd", 'e"f', "g,h", "i\r\nj"], "n": range(5)})
    back = pd.read_csv(__import__("io").BytesIO(files.csv_bytes(frame)))
    assert back["text"].tolist() == frame["text"].tolist() and len(back) == 5


# ----------------------------------------------------------------------------- real signals


def test_report_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """A real SIGINT to ``jaxssm report`` on the bundled demo once the analysis is running."""
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "jaxssm.cli", "report", "bundled:demo", "--out", str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    lines = []
    try:
        for line in child.stderr:
            lines.append(line)
            if line.startswith("homogeneity test"):
                break
        child.send_signal(signal.SIGINT)
        _, rest = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    err = "".join(lines) + rest
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted: " in err
    assert "run the same command again" in err


def _options(parser) -> set[str]:
    import argparse

    found = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _options(child)
    return found


def test_every_flag_a_message_names_is_a_real_flag():
    """Hints name real flags: every ``--flag`` in the string literals of the command line, the
    fit command and the stargazers application is an option of ``jaxssm``."""
    import ast
    import re

    known = _options(cli.build_parser())
    sources = [
        ROOT / "jaxssm" / "cli.py",
        ROOT / "jaxssm" / "tables.py",
        ROOT / "jaxssm" / "files.py",
    ]
    sources += sorted((ROOT / "jaxssm" / "fitting").glob("*.py"))
    sources += sorted((ROOT / "jaxssm" / "stargazers").glob("*.py"))
    named = {}
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value):
                    named.setdefault(flag, source.name)
    assert named and {flag: where for flag, where in named.items() if flag not in known} == {}
