"""The research notebooks run end to end (at a small size) and reach their conclusions."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, tmp_path, monkeypatch) -> tuple[str, int]:
    """Execute a notebook at its small size; returns its printed text and its number of figures.
    Raises CellExecutionError if any cell (or one of its asserts) fails."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JAXMODELS_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [out for cell in cells for out in cell.get("outputs", [])]
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) for out in outputs
    )
    images = sum("image/png" in out.get("data", {}) for out in outputs)
    return text, images


@pytest.mark.slow
def test_revenue_notebook_runs_and_reaches_its_conclusions(tmp_path, monkeypatch):
    text, images = run_notebook("revenue_multilevel.ipynb", tmp_path, monkeypatch)
    assert "NUTS 95% intervals cover" in text
    assert "P(mean of A > mean of B)" in text
    assert images >= 5


@pytest.mark.slow
def test_ssm_notebook_runs_and_reaches_its_conclusions(tmp_path, monkeypatch):
    text, images = run_notebook("ssm_laplace_em.ipynb", tmp_path, monkeypatch)
    assert "90% imputation intervals cover" in text  # the notebook asserts the coverage itself
    assert "chosen q = " in text and "chosen q = 0" not in text
    assert images >= 4


@pytest.mark.slow
def test_stargazers_notebook_runs_and_reaches_its_conclusions(tmp_path, monkeypatch):
    text, images = run_notebook("stargazers.ipynb", tmp_path, monkeypatch)
    # the cells assert the conclusions themselves (p < 0.05, q >= 1, coverage >= 0.8, ...)
    assert "The offline gazetteer places" in text or "Skipped:" in text
    assert "The geography changed over time" in text and "Monte Carlo p" in text
    assert "chosen q = " in text and "chosen q = 0" not in text
    assert "90% intervals of the imputed country totals cover the truth for" in text
    assert "Latin America and the Caribbean:" in text
    assert "write_report wrote" in text and "report.html" in text
    assert images >= 6


@pytest.mark.slow
def test_roas_notebook_runs_and_reaches_its_conclusions(tmp_path, monkeypatch):
    text, images = run_notebook("roas_allocation.ipynb", tmp_path, monkeypatch)
    # the cells assert the conclusions themselves (pooling shrinks small ad sets most, budgets
    # sum and respect caps, ROAS beats CPA when revenue per conversion differs and ties without)
    assert "shrinkage toward the campaign" in text
    assert "capped at 3x: budget 10,000.00: expected revenue" in text
    assert "ROAS vs CPA Thompson, revenue per conversion differs: +" in text
    assert "ROAS vs CPA Thompson, same revenue per conversion:" in text
    assert "truly best ad set on the last day: adset_07" in text
    assert images >= 5
