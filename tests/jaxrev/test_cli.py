"""``jaxrev fit`` end to end: the files it writes hold the same numbers as the Python API."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxrev.cli import main
from jaxrev.inference import SVIOptions, fit
from jaxrev.result import import_arviz


@pytest.mark.slow
def test_fit_writes_summary_inference_data_and_plots(tmp_path, small_sim, capsys):
    path = tmp_path / "hourly.csv"
    small_sim.table.rename(columns={"adset": "ad_set"}).to_csv(path, index=False)
    out = tmp_path / "out"
    argv = [
        "fit",
        str(path),
        "--out",
        str(out),
        "--method",
        "svi",
        "--adset-col",
        "ad_set",
        "--max-steps",
        "3000",
        "--seed",
        "4",
        "--quiet",
    ]
    with pytest.warns(RuntimeWarning, match="did not converge"):
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "128 rows read, 93 used, 35 with zero conversions dropped" in printed

    with pytest.warns(RuntimeWarning, match="did not converge"):
        reference = fit(
            small_sim.table, "svi", options=SVIOptions(max_steps=3000), seed=4, progress=False
        )
    written = pd.read_csv(out / "summary.csv")
    expected = reference.summary()
    np.testing.assert_allclose(written["mean"], expected["mean"], rtol=1e-5)
    np.testing.assert_allclose(written["q97.5"], expected["q97.5"], rtol=1e-5)
    assert written["adset"].dropna().tolist() == expected["adset"].dropna().tolist()

    idata = import_arviz().from_netcdf(out / "inference_data.nc")
    assert idata.posterior["adset_mean"].dims == ("chain", "draw", "adset")
    np.testing.assert_allclose(
        idata.posterior["adset_mean"].mean(("chain", "draw")).values,
        expected.query("level == 'adset'")["mean"],
        rtol=1e-5,
    )
    assert idata.observed_data["log_revenue"].size == 93
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["fit"]["num_steps"] == 3000 and diagnostics["data"]["rows_used"] == 93
    for name in ("ppc", "pooling", "campaign_means"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_bad_input_exits_2_naming_row_and_column(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("campaign,adset,conversions,revenue\nc,a,1,10\nc,a,2,-1\n")
    assert main(["fit", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}, row 2 (line 3), column 'revenue'" in err
    assert not (tmp_path / "out").exists()


def test_datasets_lists_the_bundled_data(capsys):
    assert main(["datasets"]) == 0
    printed = capsys.readouterr().out
    assert "bundled:uci_online_retail" in printed and "bundled:simulated_account" in printed
