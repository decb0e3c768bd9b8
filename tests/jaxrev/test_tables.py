"""The one checked input path: every bad file gives a named error (file, line, column), never a
parser's message or a silently wrong table."""

import gzip

import pandas as pd
import pytest

from jaxrev.data import load_revenue_data
from jaxrev.datasets import load_bundled
from jaxrev.errors import InputFileError, MissingFileError
from jaxrev.tables import read_table

HEADER = "campaign,adset,conversions,revenue\n"

BAD_FILES = {
    # name: (file content as bytes, or None for a folder; expected message; line; column)
    "empty.csv": (b"", "empty file", None, None),
    "blank.csv": (b"\n\n  \n", "empty file", None, None),
    "dup.csv": (
        b"campaign,adset,conversions,revenue,revenue\nc,a,1,10,3\n",
        "column 'revenue' 2 times",
        1,
        None,
    ),
    "cr.csv": (HEADER.encode() + b"c,a\r,1,10\nc,b,1,10\n", "bare carriage return", 2, "adset"),
    "nul.csv": (HEADER.encode() + b"c,a,1,1\x000\n", "NUL byte", 2, "revenue"),
    "latin1.csv": (HEADER.encode() + "c,Zürich,1,10\n".encode("latin-1"), "not UTF-8", 2, None),
    "ragged.csv": (HEADER.encode() + b"c,a,1,10\nc,a,1,10,5\n", "Expected 4 fields", 3, None),
    "folder.csv": (None, "is a folder", None, None),
    "table.xlsx": (b"PK\x03\x04", "unsupported file type", None, None),
    "broken.parquet": (b"PAR1 not really", "not a readable Parquet file", None, None),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_give_a_named_error(tmp_path, name):
    content, message, line, column = BAD_FILES[name]
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        load_revenue_data(path)
    err = caught.value
    assert str(err).startswith(str(path)) and message in str(err)
    assert (err.line, err.column) == (line, column)


def test_missing_and_unreadable_files(tmp_path, monkeypatch):
    with pytest.raises(MissingFileError, match=r"nope\.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    assert issubclass(MissingFileError, FileNotFoundError)
    path = tmp_path / "locked.csv"
    path.write_text(HEADER)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("jaxrev.tables.open", denied, raising=False)
    with pytest.raises(InputFileError, match=r"locked\.csv: cannot read it: permission denied"):
        read_table(path)


def test_good_files_read_as_before(tmp_path):
    rows = "c,a,1,10\nc,b,0,\n"
    (tmp_path / "plain.csv").write_text(HEADER + rows)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (HEADER + rows).encode())
    (tmp_path / "crlf.csv").write_bytes((HEADER + rows).replace("\n", "\r\n").encode())
    (tmp_path / "packed.csv.gz").write_bytes(gzip.compress((HEADER + rows).encode()))
    (tmp_path / "tabs.tsv").write_text((HEADER + rows).replace(",", "\t"))
    (tmp_path / "quoted.csv").write_text(HEADER + '"c","a\r\nb",1,10\n')
    expected = pd.DataFrame(
        {"campaign": ["c", "c"], "adset": ["a", "b"], "conversions": ["1", "0"],
         "revenue": ["10", ""]}
    )  # fmt: skip
    for name in ("plain.csv", "bom.csv", "crlf.csv", "packed.csv.gz", "tabs.tsv"):
        table, source, is_csv = read_table(tmp_path / name)
        pd.testing.assert_frame_equal(table, expected)
        assert source == str(tmp_path / name) and is_csv
    table, _, _ = read_table(tmp_path / "quoted.csv")
    assert table["adset"].tolist() == ["a\r\nb"]


def test_dataframes_are_checked_and_bundled_data_is_named():
    with pytest.raises(InputFileError, match=r"<DataFrame>, line 1: .*'revenue' 2 times"):
        read_table(pd.DataFrame([[1, 2]], columns=["revenue", "revenue"]))
    data = load_revenue_data(load_bundled("simulated_account"), name="bundled:simulated_account")
    assert str(data.report).startswith("bundled:simulated_account: ")
