"""`jaxssm fit COUNTS --out DIR` end to end on a small simulated panel (in-process `main`).

One run per configuration, shared by the module's tests: q = 1 Poisson with held-out cells and a
forecast (compared with the Python API), and one `auto` run over q in {0, 1} x both emissions with
2 folds. Bad inputs stop before anything is written."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import jaxssm
from jaxssm.cli import main
from jaxssm.fitting import run as fit_run

N, M = 20, 8
WINDOWS = [f"2021-{i:02d}" if i <= 12 else f"2022-{i - 12:02d}" for i in range(1, N + 1)]
LOCATIONS = ["US", "IN", "DE", "BR", "FR", "CN", "GB", "JP"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.Index(WINDOWS, name="window"), columns=LOCATIONS)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """counts.csv (10 % missing, 15 % held out) and heldout.csv; the arrays behind them."""
    sim = jaxssm.simulate_panel(
        1, jaxssm.random_params(0, M, 1, mean_count=6.0, loading_scale=0.5), N
    )
    rng = np.random.default_rng(2)
    missing = rng.random((N, M)) < 0.10
    held = (rng.random((N, M)) < 0.15) & ~missing
    train = np.where(missing | held, np.nan, sim.counts)
    heldout = np.where(held, sim.counts, np.nan)
    folder = tmp_path_factory.mktemp("fit_cli_inputs")
    _frame(train).to_csv(folder / "counts.csv")
    _frame(heldout).to_csv(folder / "heldout.csv")
    return {"dir": folder, "train": train, "heldout": heldout, "held": held, "full": sim.counts}


@pytest.fixture(scope="module")
def q1_run(panel, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit_cli_q1") / "out"
    argv = [
        "fit", str(panel["dir"] / "counts.csv"), "--out", str(out), "--factors", "1",
        "--emission", "poisson", "--heldout", str(panel["dir"] / "heldout.csv"),
        "--horizon", "3", "--draws", "100",
    ]  # fmt: skip
    code, stdout, stderr = _run(argv)
    return {"code": code, "out": out, "stdout": stdout, "stderr": stderr, "argv": argv}


@pytest.fixture(scope="module")
def api_fit(panel):
    """The same fit through the Python API (the module runs in float64, see conftest)."""
    assert jax.config.jax_enable_x64
    return jaxssm.fit_laplace_em(panel["train"], 1, emission="poisson")


@pytest.fixture(scope="module")
def auto_run(panel, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit_cli_auto") / "out"
    code, stdout, stderr = _run(
        ["fit", str(panel["dir"] / "counts.csv"), "--out", str(out), "--candidates", "0,1",
         "--folds", "2", "--draws", "100", "--quiet"]
    )  # fmt: skip
    return {"code": code, "out": out, "stdout": stdout, "stderr": stderr}


def test_q1_run_writes_every_output_with_the_input_labels(q1_run):
    out = q1_run["out"]
    assert q1_run["code"] == 0, q1_run["stderr"]
    assert "Traceback" not in q1_run["stderr"]
    assert "jaxssm fit: fitting q = 1" in q1_run["stderr"]  # progress lines without --quiet
    assert "model: q = 1, poisson" in q1_run["stdout"] and str(out) in q1_run["stdout"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["num_factors"] == 1
    assert summary["emission"] == "poisson" and summary["selection"] is None
    assert summary["data"] == {
        "windows": N, "locations": M, "cells": N * M,
        "missing_cells": summary["data"]["missing_cells"],
        "heldout_cells": summary["data"]["heldout_cells"],
        "heldout_cells_present_in_counts": 0,
        "fitted_cells": summary["data"]["fitted_cells"],
        "first_window": WINDOWS[0], "last_window": WINDOWS[-1], "offset": False,
    }  # fmt: skip
    assert summary["options"]["horizon"] == 3 and summary["check"]["problems"] == []
    assert sorted(summary["files"]) == sorted(
        ["summary.json", "params/mu.csv", "params/loadings.csv", "params/transition.csv",
         "expected_counts.csv", "heldout_scores.csv", "heldout_score.json", "imputation.csv",
         "forecast.csv", "figures/fit.png", "figures/factors.png"]
    )  # fmt: skip
    for name in summary["files"]:
        assert (out / name).stat().st_size > 0
    assert not list(out.rglob("*.tmp")) and not (out / "selection.csv").exists()
    for png in ("fit.png", "factors.png"):
        assert (out / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    expected = pd.read_csv(out / "expected_counts.csv")
    assert list(expected.columns) == ["window", *LOCATIONS]
    assert expected["window"].tolist() == WINDOWS and expected.shape == (N, M + 1)
    assert np.isfinite(expected[LOCATIONS].to_numpy()).all()  # missing cells included
    mu = pd.read_csv(out / "params/mu.csv")
    assert mu["location"].tolist() == LOCATIONS and mu["dispersion"].isna().all()
    loadings = pd.read_csv(out / "params/loadings.csv")
    assert list(loadings.columns) == ["location", "factor_1"] and len(loadings) == M
    transition = pd.read_csv(out / "params/transition.csv")
    assert transition.shape == (1, 2) and abs(transition["factor_1"].iloc[0]) <= 1
    forecast = pd.read_csv(out / "forecast.csv")
    assert list(forecast.columns) == ["step", "location", "mean", "q05", "q95"]
    assert forecast["step"].tolist() == list(np.repeat([1, 2, 3], M))
    assert (forecast["q05"] <= forecast["mean"]).all() and (
        forecast["mean"] <= forecast["q95"]
    ).all()


def test_expected_counts_and_params_equal_the_python_api(q1_run, api_fit):
    out = q1_run["out"]
    expected = pd.read_csv(out / "expected_counts.csv")[LOCATIONS].to_numpy()
    np.testing.assert_allclose(expected, api_fit.expected_counts(), rtol=1e-8)
    mu = pd.read_csv(out / "params/mu.csv")["mu"].to_numpy()
    np.testing.assert_allclose(mu, np.asarray(api_fit.params.mu), rtol=1e-8)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == api_fit.status
    assert summary["iterations"] == api_fit.num_iterations
    assert summary["evaluations"] == api_fit.evaluations
    assert summary["converged"] == api_fit.converged


def test_heldout_score_is_the_mean_of_the_cells_and_the_api_value(q1_run, api_fit, panel):
    out = q1_run["out"]
    score = json.loads((out / "heldout_score.json").read_text())
    cells = pd.read_csv(out / "heldout_scores.csv")
    assert list(cells.columns) == ["window", "location", "count", "log_predictive"]
    held = panel["held"]
    assert score["num_cells"] == len(cells) == held.sum()
    rows, cols = np.nonzero(held)
    assert cells["window"].tolist() == [WINDOWS[i] for i in rows]
    assert cells["location"].tolist() == [LOCATIONS[j] for j in cols]
    np.testing.assert_array_equal(cells["count"], panel["heldout"][held])
    api = api_fit.log_predictive(panel["heldout"], held)[held]
    np.testing.assert_allclose(cells["log_predictive"], api, rtol=1e-8)
    np.testing.assert_allclose(
        score["log_predictive_per_cell"], cells["log_predictive"].mean(), rtol=1e-8
    )
    np.testing.assert_allclose(score["log_predictive_per_cell"], api.mean(), rtol=1e-10)
    assert score["cells_below_minus_50"] == 0
    assert score["worst_cell"]["log_predictive"] == pytest.approx(api.min(), rel=1e-10)
    assert f"{score['log_predictive_per_cell']:.4f}" in q1_run["stdout"]


def test_imputation_keeps_observed_counts_and_fills_the_rest(q1_run, panel):
    table = pd.read_csv(q1_run["out"] / "imputation.csv")
    assert list(table.columns) == ["window", "location", "observed", "mean", "q05", "q95"]
    assert len(table) == N * M
    assert table["window"].tolist() == list(np.repeat(WINDOWS, M))
    assert table["location"].tolist() == LOCATIONS * N
    train = panel["train"].reshape(-1)
    seen = ~np.isnan(train)
    np.testing.assert_array_equal(table["observed"].to_numpy()[seen], train[seen])
    assert table["observed"].isna().to_numpy().tolist() == (~seen).tolist()  # held-out: missing
    for column in ("mean", "q05", "q95"):
        np.testing.assert_array_equal(table[column].to_numpy()[seen], train[seen])
    gaps = table[~seen]
    assert (gaps["q05"] <= gaps["mean"]).all() and (gaps["mean"] <= gaps["q95"]).all()
    assert (gaps["q95"] > gaps["q05"]).any() and (gaps["q05"] >= 0).all()


def test_auto_chooses_q_and_emission_by_cross_validation(auto_run):
    out = auto_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    assert auto_run["code"] == (0 if summary["converged"] else 3), auto_run["stderr"]
    assert auto_run["stderr"] == "" or "not converged" in auto_run["stderr"]  # --quiet
    selection = pd.read_csv(out / "selection.csv")
    assert sorted(zip(selection["num_factors"], selection["emission"], strict=True)) == [
        (0, "negbin"), (0, "poisson"), (1, "negbin"), (1, "poisson"),
    ]  # fmt: skip
    best = selection.loc[selection["heldout_loglik_per_cell"].idxmax()]
    assert (summary["num_factors"], summary["emission"]) == (best["num_factors"], best["emission"])
    assert len(summary["selection"]) == 4
    assert summary["options"]["folds"] == 2 and summary["options"]["candidates"] == "0,1"
    assert not (out / "forecast.csv").exists() and not (out / "heldout_score.json").exists()
    mu = pd.read_csv(out / "params/mu.csv")
    assert mu["dispersion"].notna().all() == (summary["emission"] == "negbin")
    assert f"q = {summary['num_factors']}, {summary['emission']}" in auto_run["stdout"]
    assert "2-fold CV" in auto_run["stdout"]


def test_interrupted_run_keeps_what_was_written_in_float64(q1_run, panel, monkeypatch, tmp_path):
    """A rerun into the first run's folder, interrupted at the imputation, under a float32
    caller: the earlier run's later files are gone (no mixing), what came before the interrupt
    is whole and equal to the first run (the command computes in float64 on its own), no
    temporary file is left, and the caller's precision is restored."""
    out = tmp_path / "out"
    shutil.copytree(q1_run["out"], out)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_run, "impute", interrupt)
    argv = [a if a != str(q1_run["out"]) else str(out) for a in q1_run["argv"]] + ["--quiet"]
    with jax.enable_x64(False):
        code, _, stderr = _run(argv)
        assert not jax.config.jax_enable_x64
    assert code == 130 and "interrupted" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] is False
    assert "imputation.csv" not in summary["files"]
    assert not (out / "imputation.csv").exists() and not (out / "forecast.csv").exists()
    assert not (out / "figures" / "fit.png").exists()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))
    first = pd.read_csv(q1_run["out"] / "expected_counts.csv")
    again = pd.read_csv(out / "expected_counts.csv")
    pd.testing.assert_frame_equal(first, again)
    assert json.loads((out / "heldout_score.json").read_text()) == json.loads(
        (q1_run["out"] / "heldout_score.json").read_text()
    )


def _bad_counts(tmp_path: Path, edit) -> Path:
    frame = _frame(np.arange(N * M, dtype=float).reshape(N, M) % 7).astype(object)
    text = edit(frame)
    path = tmp_path / "bad.csv"
    path.write_text(text if isinstance(text, str) else text.to_csv())
    return path


def _set(frame, i, column, value):
    frame.loc[WINDOWS[i], column] = value
    return frame


BAD_COUNTS = {
    "negative": (
        lambda f: _set(f, 3, "DE", -2),
        ["row 5 (window '2021-04')", "column 'DE'", "count -2 is negative"],
    ),
    "text": (
        lambda f: _set(f, 0, "JP", "many"),
        ["row 2 (window '2021-01')", "column 'JP'", "'many' is not a count"],
    ),
    "fractional": (
        lambda f: _set(f, 19, "US", 2.5),
        ["row 21", "column 'US'", "count 2.5 is not a whole number"],
    ),
    "duplicate location": (
        lambda f: f.to_csv().replace(",BR,", ",IN,", 1),
        ["row 1", "column 'IN'", "appears twice (columns 3 and 5)"],
    ),
    "duplicate window": (
        lambda f: f.rename(index={WINDOWS[4]: WINDOWS[1]}),
        ["row 6", "column 'window'", "window '2021-02' appears twice (rows 3 and 6)"],
    ),
    "header only": (lambda f: "window,US,IN\n", ["no data rows"]),
    "no location columns": (lambda f: "window\n2021-01\n2021-02\n", ["no location columns"]),
    "ragged row": (
        lambda f: f.to_csv() + "2023-01,1,2\n",
        ["row 22", "3 fields, but the header has 9"],
    ),
    "empty file": (lambda f: "", ["the file is empty"]),
}


@pytest.mark.parametrize("case", list(BAD_COUNTS))
def test_bad_counts_exit_2_naming_file_row_and_column(case, tmp_path, capsys):
    edit, fragments = BAD_COUNTS[case]
    path = _bad_counts(tmp_path, edit)
    out = tmp_path / "out"
    code = main(["fit", str(path), "--out", str(out), "--factors", "1", "--emission", "poisson"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"error: {path}")
    for fragment in fragments:
        assert fragment in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1
    assert not out.exists()  # checked before anything is written


def test_bad_heldout_and_paths_exit_2(panel, tmp_path, capsys):
    counts = panel["dir"] / "counts.csv"
    out = tmp_path / "out"

    def fails(extra: list[str], *fragments: str, target=out) -> None:
        code = main(["fit", str(counts), "--out", str(target), "--factors", "1", *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("error: ") and "Traceback" not in err
        for fragment in fragments:
            assert fragment in err, err
        assert not out.exists()

    renamed = _frame(panel["heldout"]).rename(index={WINDOWS[2]: "2030-01"}, columns={"FR": "fr"})
    renamed.to_csv(tmp_path / "labels.csv")
    fails(
        ["--heldout", str(tmp_path / "labels.csv")],
        f"{tmp_path / 'labels.csv'}: does not match {counts}",
        "windows of counts.csv missing here: '2021-03'",
        "windows not in counts.csv: '2030-01'",
        "locations of counts.csv missing here: 'FR'",
        "locations not in counts.csv: 'fr'",
    )
    clash = np.where(panel["held"], panel["heldout"], np.nan)
    i, j = np.argwhere(~np.isnan(panel["train"]))[0]
    clash[i, j] = panel["train"][i, j] + 1
    _frame(clash).to_csv(tmp_path / "clash.csv")
    fails(
        ["--heldout", str(tmp_path / "clash.csv")],
        f"window {WINDOWS[i]!r}, column {LOCATIONS[j]!r}",
        "a held-out cell must be empty in the counts or hold the same count",
    )
    _frame(np.full((N, M), np.nan)).to_csv(tmp_path / "empty_heldout.csv")
    fails(["--heldout", str(tmp_path / "empty_heldout.csv")], "no held-out counts")
    fails(["--heldout", str(tmp_path / "missing.csv")], "missing.csv: no such file")
    fails(["--folds", "0"], "--folds 0: must be at least 1")
    fails(["--factors", "9"], "allow at most 8 factors")
    (tmp_path / "a_file").write_text("x")
    fails([], "cannot create the output folder", target=tmp_path / "a_file" / "out")


def test_a_held_out_cell_the_model_cannot_explain_makes_the_run_not_converged(panel, tmp_path):
    # one held-out count a thousand times its cell's rate: its log predictive is far below -50
    heldout = panel["heldout"].copy()
    i, j = np.argwhere(panel["held"])[0]
    heldout[i, j] = 1000.0 * max(panel["full"][i, j], 1.0)
    _frame(heldout).to_csv(tmp_path / "outlier.csv")
    out = tmp_path / "out"
    code, _, stderr = _run(
        ["fit", str(panel["dir"] / "counts.csv"), "--out", str(out), "--factors", "1",
         "--emission", "poisson", "--heldout", str(tmp_path / "outlier.csv"), "--draws", "50",
         "--quiet"]
    )  # fmt: skip
    assert code == 3, stderr
    summary = json.loads((out / "summary.json").read_text())
    score = json.loads((out / "heldout_score.json").read_text())
    assert score["cells_below_minus_50"] == 1
    assert not summary["converged"]
    assert summary["status"].startswith("not converged: 1 held-out cell(s)")
    assert LOCATIONS[j] in summary["status"] and "Traceback" not in stderr
