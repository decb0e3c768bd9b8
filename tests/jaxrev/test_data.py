"""Reading and validating revenue rows: every bad input gets its named error, with file, row and
column; nothing is silently coerced; zero-conversion rows are dropped and counted."""

import numpy as np
import pandas as pd
import pytest

from jaxrev.data import Columns, load_revenue_data, pad_observations
from jaxrev.errors import (
    AdsetCampaignConflictError,
    InvalidDataError,
    MissingColumnError,
    MissingValueError,
    MultipleAccountsError,
    NegativeCountError,
    NonFiniteValueError,
    NonIntegerCountError,
    NonNumericValueError,
    NonPositiveRevenueError,
    NoObservationsError,
)

GOOD = """campaign,adset,conversions,revenue
c1,a1,1,10.5
c1,a1,0,0
c1,a2,3,120
c2,b1,2,35.25
c2,b1,1,8
"""


def write(tmp_path, text, name="rows.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_tables_and_arrays(tmp_path):
    data = load_revenue_data(write(tmp_path, GOOD))
    assert data.report.rows_read == 5
    assert data.report.rows_used == 4
    assert data.report.zero_conversion_rows == 1
    assert data.adsets["adset"].tolist() == ["a1", "a2", "b1"]
    assert data.campaigns["campaign"].tolist() == ["c1", "c2"]
    np.testing.assert_allclose(data.adsets["raw_mean"], [10.5, 40.0, 43.25 / 3])
    np.testing.assert_allclose(data.campaigns["raw_mean"], [130.5 / 4, 43.25 / 3])
    a = data.arrays
    np.testing.assert_allclose(a.log_revenue, np.log([10.5, 120, 35.25, 8]))
    np.testing.assert_array_equal(a.conversions, [1, 3, 2, 1])
    np.testing.assert_array_equal(a.adset, [0, 1, 2, 2])
    np.testing.assert_array_equal(a.adset_campaign, [0, 0, 1])
    assert data.observations["row"].tolist() == [1, 3, 4, 5]


def test_dataframe_parquet_and_renamed_columns(tmp_path):
    frame = pd.read_csv(write(tmp_path, GOOD)).rename(
        columns={"adset": "ad_set_id", "revenue": "value", "conversions": "purchases"}
    )
    columns = Columns(adset="ad_set_id", revenue="value", conversions="purchases")
    from_frame = load_revenue_data(frame, columns)
    frame.to_parquet(tmp_path / "rows.parquet")
    from_parquet = load_revenue_data(tmp_path / "rows.parquet", columns)
    for data in (from_frame, from_parquet):
        np.testing.assert_allclose(data.adsets["raw_mean"], [10.5, 40.0, 43.25 / 3])
        assert data.report.zero_conversion_rows == 1


BAD_CASES = [
    # (replace line 4 of the file with, error, column, fragment of the message)
    ("c1,a2,-3,120", NegativeCountError, "conversions", "negative"),
    ("c1,a2,2.5,120", NonIntegerCountError, "conversions", "whole number"),
    ("c1,a2,three,120", NonNumericValueError, "conversions", "not a number"),
    ("c1,a2,,120", MissingValueError, "conversions", "missing"),
    ("c1,a2,3,0", NonPositiveRevenueError, "revenue", "> 0"),
    ("c1,a2,3,-5", NonPositiveRevenueError, "revenue", "> 0"),
    ("c1,a2,3,NaN", MissingValueError, "revenue", "missing revenue"),
    ("c1,a2,3,1.234,5", None, None, None),  # extra field: pandas' own parser error
    ("c1,a2,3,$120", NonNumericValueError, "revenue", "not a number"),
    ("c1,a2,3,inf", NonFiniteValueError, "revenue", "not finite"),
    ("c1,,3,120", MissingValueError, "adset", "missing identifier"),
    ("c2,a1,3,120", AdsetCampaignConflictError, "campaign", "filed under campaign"),
]


@pytest.mark.parametrize(("line", "error", "column", "fragment"), BAD_CASES)
def test_bad_input_names_file_row_and_column(tmp_path, line, error, column, fragment):
    lines = GOOD.splitlines()
    lines[3] = line  # file line 4 = data row 3
    path = write(tmp_path, "\n".join(lines) + "\n")
    if error is None:
        with pytest.raises(pd.errors.ParserError):
            load_revenue_data(path)
        return
    with pytest.raises(error) as info:
        load_revenue_data(path)
    err = info.value
    assert isinstance(err, InvalidDataError) and isinstance(err, ValueError)
    assert (err.source, err.row, err.line, err.column) == (str(path), 3, 4, column)
    message = str(err)
    assert str(path) in message and "row 3 (line 4)" in message and repr(column) in message
    assert fragment in message


def test_missing_column_lists_what_is_there(tmp_path):
    path = write(tmp_path, GOOD.replace("revenue", "sales"))
    with pytest.raises(MissingColumnError) as info:
        load_revenue_data(path)
    assert info.value.column == "revenue" and info.value.row is None
    assert "'sales'" in str(info.value) and str(path) in str(info.value)


def test_all_problems_are_listed_and_drop_keeps_the_rest(tmp_path):
    text = GOOD + "c1,a2,-1,5\nc3,a9,2,abc\nc2,b1,1,0\n"  # data rows 6, 7, 8
    path = write(tmp_path, text)
    with pytest.raises(NegativeCountError) as info:
        load_revenue_data(path)
    problems = info.value.problems
    assert problems["row"].tolist() == [6, 7, 8]
    assert problems["kind"].tolist() == ["negative_count", "non_numeric", "non_positive_revenue"]

    data = load_revenue_data(path, on_invalid="drop")
    assert data.report.rows_invalid == 3 and data.report.rows_used == 4
    assert data.report.invalid["row"].tolist() == [6, 7, 8]
    assert "a9" not in data.adsets["adset"].tolist()  # its only row was invalid
    np.testing.assert_allclose(data.adsets["raw_mean"], [10.5, 40.0, 43.25 / 3])


def test_conflicting_campaign_rows_dropped_on_request(tmp_path):
    data = load_revenue_data(write(tmp_path, GOOD + "c2,a1,1,99\n"), on_invalid="drop")
    assert data.report.invalid["row"].tolist() == [6]
    assert data.adsets.set_index("adset").loc["a1", "campaign"] == "c1"
    assert data.adsets.set_index("adset").loc["a1", "n_obs"] == 1


def test_numbers_are_not_coerced_from_dataframes():
    frame = pd.DataFrame(
        {
            "campaign": ["c", "c"],
            "adset": ["a", "a"],
            "conversions": ["1", "1,000"],  # text with a thousands separator
            "revenue": [10.0, 20.0],
        }
    )
    with pytest.raises(NonNumericValueError) as info:
        load_revenue_data(frame)
    assert info.value.row == 2 and info.value.line is None and "<DataFrame>" in str(info.value)


def test_zero_conversion_rows_may_have_blank_revenue(tmp_path):
    data = load_revenue_data(write(tmp_path, GOOD.replace("c1,a1,0,0", "c1,a1,0,")))
    assert data.report.zero_conversion_rows == 1 and data.report.rows_used == 4


def test_accounts(tmp_path):
    text = "account,campaign,adset,conversions,revenue\nx,c,a,1,5\ny,c,a,2,9\ny,c,b,1,4\n"
    path = write(tmp_path, text)
    columns = Columns(account="account")
    with pytest.raises(MultipleAccountsError):
        load_revenue_data(path, columns)
    data = load_revenue_data(path, columns, account="y")
    assert data.account == "y" and data.adsets["adset"].tolist() == ["a", "b"]
    assert data.observations["row"].tolist() == [2, 3]  # row numbers of the file, not the subset
    bad = write(tmp_path, text.replace("y,c,b,1,4", "y,c,b,1,-4"), "bad.csv")
    with pytest.raises(NonPositiveRevenueError) as info:
        load_revenue_data(bad, columns, account="y")
    assert info.value.row == 3 and info.value.line == 4


def test_nothing_to_fit(tmp_path):
    with pytest.raises(NoObservationsError):
        load_revenue_data(write(tmp_path, "campaign,adset,conversions,revenue\nc,a,0,0\n"))


def test_padding_is_masked(tmp_path):
    data = load_revenue_data(write(tmp_path, GOOD))
    padded = pad_observations(data.arrays, 7)
    assert padded.obs_mask.tolist() == [True] * 4 + [False] * 3
    np.testing.assert_array_equal(padded.conversions[4:], 1.0)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_observations(data.arrays, 2)


def test_uci_bundled_copy_is_the_shared_file(shared_data):
    from jaxrev.datasets import load_uci_online_retail

    shared = pd.read_csv(shared_data / "uci_online_retail_hourly_by_country.csv")
    bundled = load_uci_online_retail()
    assert len(bundled) == len(shared) == 4566
    np.testing.assert_allclose(bundled["revenue"], shared["revenue"])
    data = load_revenue_data(bundled)
    assert data.num_adsets == 38 and data.num_campaigns == 3
    uk = data.adsets.set_index("adset").loc["United Kingdom"]
    np.testing.assert_allclose(uk["raw_mean"], 9025222.08 / 18019, rtol=1e-9)
