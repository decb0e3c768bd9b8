"""Output files: atomic (no torn or temporary file left on any failure), CSVs that read back
exactly, one-line errors naming the path, and the refusal to write over an input."""

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxrev.errors import OutputError
from jaxrev.files import (
    make_dir,
    overlapping_input,
    write_csv,
    write_json,
    write_parquet,
    write_text,
    write_with,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_csv_reads_back_the_rows_written_even_with_line_breaks_quotes_and_commas(tmp_path):
    frame = pd.DataFrame(
        {
            "location": ["Paris\r", "a\nb", 'say "hi"', "x,y", "", "plain", "\r\n", " 1 "],
            "count": [1, 2, 3, 4, 5, 6, 7, 8],
            "value": np.float32([886.16, 0.1, 1e-8, 2.5, np.nan, 3.0, 4.0, 5.0]).astype(float),
        }
    )
    path = write_csv(frame, tmp_path / "out.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert len(back) == len(frame)
    assert back["location"].fillna("").tolist() == frame["location"].tolist()
    assert back["count"].tolist() == frame["count"].tolist()
    np.testing.assert_allclose(back["value"], frame["value"], rtol=1e-6)
    text = path.read_text()
    assert "886.159973" not in text and "886.16" in text  # float32 noise dropped


def test_a_failing_writer_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = write_text(tmp_path / "summary.csv", "old\n")

    def disk_full(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError) as caught:
        write_with(target, disk_full)
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert "\n" not in str(caught.value)
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_fsync_failure_and_read_only_folder_name_the_path(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("jaxrev.files.os.fsync", no_space)
    with pytest.raises(OutputError, match=r"out\.parquet: No space left on device"):
        write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "out.parquet")
    monkeypatch.undo()
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.parquet").exists()

    def read_only(tmp, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("jaxrev.files.os.replace", read_only)
    with pytest.raises(OutputError, match=r"run\.json: Read-only file system"):
        write_json(tmp_path / "run.json", {"a": 1})
    assert leftovers(tmp_path) == []


def test_an_output_folder_under_a_file_or_missing_folder_is_one_line(tmp_path):
    blocker = write_text(tmp_path / "file", "x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        make_dir(blocker)
    with pytest.raises(OutputError) as caught:
        make_dir(blocker / "out")
    assert str(caught.value).startswith(f"cannot write {blocker / 'out'}: ")
    with pytest.raises(OutputError, match="its folder does not exist"):
        write_text(tmp_path / "missing" / "a.txt", "x")


def test_overlapping_input_finds_outputs_that_would_overwrite_an_input(tmp_path):
    data = write_text(tmp_path / "summary.csv", "x")
    folder = make_dir(tmp_path / "accounts")
    assert overlapping_input(tmp_path, [data], ["summary.csv"]) == data
    assert overlapping_input(tmp_path, [data], ["other.csv"]) is None
    assert overlapping_input(data, [data]) == data  # --out is the input file itself
    assert overlapping_input(folder / "out", [folder]) == folder  # output inside an input folder
    assert overlapping_input(tmp_path / "elsewhere", [data, None, "missing.csv"]) is None
