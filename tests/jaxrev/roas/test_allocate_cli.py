"""``jaxrev allocate`` end to end: a daily table and the folder ``jaxrev fit`` wrote -> the
allocation table, summary and plot, with the same numbers as the Python API; clear errors."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxrev.cli import main
from jaxrev.datasets.daily import load_daily_bundled
from jaxrev.inference import fit
from jaxrev.roas import run_allocate
from jaxrev.roas.draws import load_revenue_draws, revenue_draws_from_fit
from jaxrev.roas.funnel_fit import fit_funnel
from jaxrev.roas.market import market_daily_table, observe_day, simulate_market


@pytest.fixture(scope="module")
def revenue_fit(small_data):
    """A tiny SVI fit of the shared small account (8 ad sets in 3 campaigns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 500 steps: not converged, on purpose
        return fit(small_data, "svi", max_steps=500, num_draws=300, seed=3, progress=False)


@pytest.fixture(scope="module")
def fit_dir(revenue_fit, tmp_path_factory):
    out = tmp_path_factory.mktemp("revenue_fit")
    revenue_fit.save(out, plots=False)
    return out


@pytest.fixture(scope="module")
def daily_csv(small_data, tmp_path_factory):
    """14 days of a simulated funnel for the small account's ad sets, uneven spend."""
    adsets = small_data.adsets
    sizes = tuple(adsets.groupby("campaign", sort=True).size())
    truth = simulate_market(5, num_seeds=1, num_days=14, adsets_per_campaign=sizes)
    rng = np.random.default_rng(5)
    split = np.linspace(1.0, 3.0, truth.num_adsets)
    days = [observe_day(rng, truth, t, (800 * split / split.sum())[None]) for t in range(14)]
    table = market_daily_table(
        truth,
        days,
        adset_names=list(adsets["adset"]),
        campaign_names=sorted(set(adsets["campaign"])),
    )
    path = tmp_path_factory.mktemp("daily") / "daily.csv"
    table.to_csv(path, index=False)
    return path


def test_allocate_writes_table_summary_and_plot(daily_csv, fit_dir, tmp_path, capsys):
    out = tmp_path / "allocation"
    argv = ["allocate", str(daily_csv), "--revenue-fit", str(fit_dir), "--budget", "10000"]
    argv += ["--out", str(out), "--min-share", "0.02", "--max-share", "0.5", "--half-life", "7"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "112 rows read, 112 used (8 ad sets, 3 campaigns, 14 period(s))" in printed
    assert "P(gain > 0)" in printed

    table = pd.read_csv(out / "allocation.csv", dtype={"adset": str})
    assert table["budget"].sum() == pytest.approx(10_000.0)
    assert table["share"].min() >= 0.02 - 1e-9 and table["share"].max() <= 0.5 + 1e-9
    last = pd.read_csv(daily_csv).query("date == date.max()").set_index("adset")["spend"]
    current = table.set_index("adset")["current_budget"]
    assert np.allclose(current, 10_000 * last[current.index] / last.sum())
    summary = json.loads((out / "allocation.json").read_text())
    assert summary["settings"]["half_life"] == 7.0
    assert summary["settings"]["revenue_method"].startswith("svi")
    assert summary["totals"]["recommended"]["low"] < summary["totals"]["recommended"]["mean"]
    assert (out / "allocation.png").stat().st_size > 10_000

    result, _ = run_allocate(
        daily_csv, fit_dir, 10_000, min_share=0.02, max_share=0.5, half_life=7
    )  # the Python API, same defaults and seed
    np.testing.assert_allclose(table["budget"], result.table["budget"], rtol=1e-9)
    assert summary["totals"]["gain"]["mean"] == pytest.approx(result.totals["gain"]["mean"])


def test_the_fit_folder_holds_the_fits_draws(revenue_fit, fit_dir):
    from_disk = load_revenue_draws(fit_dir)
    in_memory = revenue_draws_from_fit(revenue_fit)
    assert list(from_disk.adsets) == list(in_memory.adsets)
    assert list(from_disk.adset_campaign) == list(in_memory.adset_campaign)
    np.testing.assert_allclose(from_disk.adset_mean, in_memory.adset_mean, rtol=1e-6)
    np.testing.assert_allclose(from_disk.campaign_mean, in_memory.campaign_mean, rtol=1e-6)
    assert from_disk.adset_mean.shape == (300, 8)


def test_adsets_missing_from_the_revenue_fit_exit_2_naming_them(
    daily_csv, fit_dir, tmp_path, capsys
):
    table = pd.read_csv(daily_csv)
    extra = table[table["adset"] == "adset_01"].assign(adset="adset_new")
    path = tmp_path / "daily.csv"
    pd.concat([table, extra]).to_csv(path, index=False)
    argv = ["allocate", str(path), "--revenue-fit", str(fit_dir), "--budget", "500"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "1 ad set(s) of the daily table are not in the revenue fit: 'adset_new'" in err
    assert "--revenue-fallback campaign" in err
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    assert main([*argv, "--out", str(out), "--revenue-fallback", "campaign", "--no-plot"]) == 0
    written = pd.read_csv(out / "allocation.csv").set_index("adset")
    assert written.loc["adset_new", "revenue_source"] == "campaign"
    assert written.loc["adset_01", "revenue_source"] == "adset"


def test_bad_daily_rows_exit_2_naming_file_row_and_column(daily_csv, fit_dir, tmp_path, capsys):
    table = pd.read_csv(daily_csv)
    table.loc[4, "spend"] = -3.0
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    argv = ["allocate", str(path), "--revenue-fit", str(fit_dir), "--budget", "500"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert f"{path}, row 5 (line 6), column 'spend': negative spend" in capsys.readouterr().err
    good = ["allocate", str(daily_csv), "--revenue-fit", str(fit_dir), "--budget", "500"]
    assert main([*good, "--out", str(tmp_path / "out"), "--min-share", "0.2"]) == 2
    assert "the minimum shares sum to 1.6 > 1" in capsys.readouterr().err
    no_fit = ["allocate", str(daily_csv), "--revenue-fit", str(tmp_path), "--budget", "5"]
    assert main([*no_fit, "--out", str(tmp_path / "x")]) == 2
    assert "jaxrev fit DATA --out DIR" in capsys.readouterr().err


def test_caps_file_and_floors_are_applied(daily_csv, fit_dir, tmp_path):
    caps = tmp_path / "caps.csv"
    pd.DataFrame({"adset": ["adset_02", "adset_05"], "max_budget": [50.0, 75.0]}).to_csv(
        caps, index=False
    )
    out = tmp_path / "out"
    argv = ["allocate", str(daily_csv), "--revenue-fit", str(fit_dir), "--budget", "1000"]
    assert main([*argv, "--out", str(out), "--caps", str(caps), "--no-plot"]) == 0
    table = pd.read_csv(out / "allocation.csv").set_index("adset")
    assert table.loc["adset_02", "budget"] <= 50.0 + 1e-9
    assert table.loc["adset_05", "budget"] <= 75.0 + 1e-9
    assert table["budget"].sum() == pytest.approx(1000.0)


def test_the_kaggle_table_with_a_revenue_map(shared_data, fit_dir, tmp_path, capsys):
    path = shared_data / "kag_conversion_data_fb_ads.csv"
    adsets = pd.read_csv(path)["fb_campaign_id"].drop_duplicates().astype(str)
    revenue_adsets = load_revenue_draws(fit_dir).adsets
    mapping = tmp_path / "map.csv"
    pd.DataFrame({"adset": adsets, "revenue_adset": np.resize(revenue_adsets, len(adsets))}).to_csv(
        mapping, index=False
    )
    out = tmp_path / "kaggle"
    argv = ["allocate", str(path), "--revenue-fit", str(fit_dir), "--budget", "10000"]
    argv += ["--out", str(out), "--conversions-per", "impression", "--revenue-map", str(mapping)]
    argv += ["--current", "total", "--min-share", "0.0001", "--no-plot"]
    assert main(argv) == 0
    assert "691 ad sets, 3 campaigns, 1 period(s)" in capsys.readouterr().out
    table = pd.read_csv(out / "allocation.csv")
    assert len(table) == 691 and table["budget"].sum() == pytest.approx(10_000.0)
    assert set(table["revenue_source"]) == {"mapping"}


def test_the_bundled_daily_table_and_the_datasets_list(capsys):
    assert main(["datasets"]) == 0
    assert "bundled:simulated_daily" in capsys.readouterr().out
    table = load_daily_bundled("simulated_daily")
    assert set(table.columns) >= {"campaign", "adset", "date", "spend", "impressions", "clicks"}
    funnel = fit_funnel(table)
    assert funnel.data.num_adsets == 19 and funnel.data.report["days"] == 28
    assert funnel.status.all_converged


def test_out_that_would_overwrite_the_daily_table_is_refused(daily_csv, fit_dir, tmp_path, capsys):
    base = ["--revenue-fit", str(fit_dir), "--budget", "100"]
    assert main(["allocate", str(daily_csv), *base, "--out", str(daily_csv)]) == 2
    assert f"would overwrite the input {daily_csv}" in capsys.readouterr().err
    daily = tmp_path / "allocation.csv"
    daily.write_bytes(daily_csv.read_bytes())
    assert main(["allocate", str(daily), *base, "--out", str(tmp_path)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
