"""``jaxrev fit`` end to end: the files it writes hold the same numbers as the Python API; exit
codes (2 bad input, 3 not converged); every bad input or unwritable output is one named line;
InferenceData that ``az.loo`` reads; the README's symbols; tables without float noise."""

import contextlib
import errno
import io
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxrev.cli import CAMPAIGN_LEVEL_MODELS, DEFAULT_MODEL, MODEL_NAMES, main
from jaxrev.inference import SVIOptions, fit
from jaxrev.models import DEFAULT_MODEL as REGISTRY_DEFAULT
from jaxrev.models import MODELS
from jaxrev.result import FitDiagnostics, import_arviz, nuts_diagnostics


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
        "--allow-unconverged",
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


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # "did not converge": on purpose
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_the_cli_knows_the_registered_models():
    """The built-in models (other tests may register more)."""
    builtin = {n: s for n, s in MODELS.items() if s.program.__module__.startswith("jaxrev.")}
    assert MODEL_NAMES == tuple(builtin) and DEFAULT_MODEL == REGISTRY_DEFAULT
    assert CAMPAIGN_LEVEL_MODELS == tuple(n for n, s in builtin.items() if s.has_campaign_level)


@pytest.fixture(scope="module")
def hourly_csv(small_sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("hourly") / "hourly.csv"
    small_sim.table.to_csv(path, index=False)
    return path


SHORT_SVI = ["--max-steps", "500", "--num-draws", "200", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def unconverged(hourly_csv, tmp_path_factory):
    """A 500-step SVI fit through the CLI: not converged, on purpose."""
    out = tmp_path_factory.mktemp("unconverged") / "out"
    return (*run(["fit", str(hourly_csv), "--out", str(out), *SHORT_SVI]), out)


def test_unconverged_fit_exits_3_with_its_files_unless_allowed(unconverged, hourly_csv, tmp_path):
    code, printed, err, out = unconverged
    assert code == 3
    assert "NOT converged" in printed and "raise max_steps (CLI: --max-steps)" in printed
    assert "--allow-unconverged" in err
    for name in ("summary.csv", "parameters.csv", "inference_data.nc", "diagnostics.json"):
        assert (unconverged[3] / name).stat().st_size > 0
    out = tmp_path / "allowed"
    code, _, err = run(
        ["fit", str(hourly_csv), "--out", str(out), *SHORT_SVI, "--allow-unconverged"]
    )
    assert code == 0 and "accepted" in err


def test_saved_inference_data_has_a_log_likelihood_for_loo(unconverged):
    az = import_arviz()
    idata = az.from_netcdf(unconverged[3] / "inference_data.nc")
    assert "log_likelihood" in idata.groups()
    assert idata.log_likelihood["log_revenue"].shape == (1, 200, 93)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of a short SVI fit
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    assert idata.posterior["account_mu_sd"].attrs["symbol"] == "φ"


def test_parameters_are_mapped_to_the_readme_symbols(unconverged):
    table = pd.read_csv(unconverged[3] / "parameters.csv")
    symbols = dict(zip(table["site"], table["symbol"], strict=True))
    assert symbols == {
        "account_mu": "λ",
        "account_mu_sd": "φ",
        "campaign_mu_sd": "τ",
        "revenue_sigma": "σ",
    }
    saved = json.loads((unconverged[3] / "diagnostics.json").read_text())["symbols"]
    assert saved["campaign_mu"] == "μ_c" and saved["adset_mu"] == "θ_a"


def test_tables_are_printed_and_written_without_float_noise(unconverged):
    printed = unconverged[1]
    assert not re.search(r"\d\.\d{6,}", printed), printed
    text = (unconverged[3] / "summary.csv").read_text()
    digits = [len(m.replace(".", "").lstrip("0")) for m in re.findall(r"\d+\.\d+", text)]
    assert max(digits) <= 7


def test_divergence_hint_names_the_cli_flag(unconverged):
    idata = import_arviz().from_netcdf(unconverged[3] / "inference_data.nc")
    start = FitDiagnostics("nuts", True, 10, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = nuts_diagnostics(start, idata, num_divergent=52, checked_sites=("account_mu",))
    text = next(m for m in d.messages if "divergent" in m)
    assert "52 divergent transitions" in text and "--target-accept" in text
    assert not d.converged


def test_readme_example_without_a_campaign_column_names_the_flag(small_sim, tmp_path):
    path = tmp_path / "hourly.csv"
    renamed = {"adset": "ad_set_id", "campaign": "campaign_id"}
    small_sim.table.rename(columns=renamed).to_csv(path, index=False)
    code, _, err = run(["fit", str(path), "--method", "svi", "--out", str(tmp_path / "o"),
                        "--adset-col", "ad_set_id"])  # fmt: skip
    assert code == 2
    assert "column 'campaign'" in err and "hint: give the columns' names with --campaign-col" in err


BAD = {
    "empty.csv": b"",
    "dup.csv": b"campaign,adset,conversions,revenue,revenue\nc,a,1,10,3\n",
    "cr.csv": b"campaign,adset,conversions,revenue\nc,a\r,1,10\n",
    "nul.csv": b"campaign,adset,conversions,revenue\nc,a,1,1\x000\n",
    "latin1.csv": "campaign,adset,conversions,revenue\nc,Zürich,1,10\n".encode("latin-1"),
    "folder.csv": None,
    "missing.csv": "missing",
}


@pytest.mark.parametrize("command", ["fit", "compare", "batch", "allocate"])
def test_every_bad_input_exits_2_with_one_named_error(tmp_path, command):
    for name, content in BAD.items():
        path = tmp_path / name
        if content is None:
            path.mkdir()
            (path / "account.csv").write_bytes(BAD["dup.csv"])  # batch reads folders
        elif content != "missing":
            path.write_bytes(content)
        out = tmp_path / f"out-{name}"
        argv = [command, str(path), "--out", str(out)]
        if command == "batch":
            argv.append("--no-cache")
        if command == "allocate":
            argv += ["--revenue-fit", str(tmp_path / "fit"), "--budget", "100"]
        code, _, err = run(argv)
        assert code == 2, (name, err)
        assert err.startswith("error: ") and err.count("error: ") == 1, err
        assert str(path) in err and "Traceback" not in err


def test_an_unknown_bundled_table_exits_2_and_bundled_tables_are_named(tmp_path):
    code, _, err = run(["fit", "bundled:nope", "--out", "never"])
    assert code == 2 and "no bundled data set 'nope'" in err
    argv = ["batch", "bundled:simulated_account", "--out", str(tmp_path / "o"), "--no-cache"]
    code, _, err = run(argv)  # no account column: one named line, and the flag to use
    assert code == 2 and err.startswith("error: bundled:simulated_account, column 'account'")
    assert "--account-col NAME" in err


def test_out_that_would_overwrite_an_input_is_refused(hourly_csv, tmp_path):
    data = tmp_path / "summary.csv"
    data.write_bytes(hourly_csv.read_bytes())
    code, _, err = run(["fit", str(data), "--out", str(tmp_path)])
    assert code == 2 and f"would overwrite or mix with the input {data}" in err
    code, _, err = run(["batch", str(tmp_path), "--out", str(tmp_path / "out"), "--no-cache"])
    assert code == 2 and "would overwrite or mix with the input" in err


def test_out_under_a_file_is_one_line_before_fitting(hourly_csv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, printed, err = run(["fit", str(hourly_csv), "--out", str(blocker / "out"), *SHORT_SVI])
    assert code == 2 and err.startswith(f"error: cannot write {blocker / 'out'}: ")
    assert err.count("\n") == 1 and "fitting" not in printed


def test_disk_full_while_saving_exits_2_naming_the_file(hourly_csv, tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("jaxrev.files.os.fsync", no_space)
    out = tmp_path / "out"
    code, _, err = run(["fit", str(hourly_csv), "--out", str(out), *SHORT_SVI])
    assert code == 2
    assert err == f"error: cannot write {out / 'summary.csv'}: No space left on device\n"
    assert [p.name for p in out.iterdir()] == []  # nothing torn, no temporary file
