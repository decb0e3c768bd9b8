"""The research notebooks run end to end (at a small size) and reach their conclusions, with and
without the tests-only data of ``../shared/data`` (a bare clone has none)."""

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from selected_tests import selected_in_module
from shared_data_location import SHARED_DATA_ENV, shared_data_dir

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# The notebook each test executes, longest-running first (the order they are started in).
NOTEBOOK_OF_TEST = {
    "test_revenue_notebook_runs_and_reaches_its_conclusions": "revenue_multilevel.ipynb",
    "test_ssm_notebook_runs_and_reaches_its_conclusions": "ssm_laplace_em.ipynb",
    "test_stargazers_notebook_runs_and_reaches_its_conclusions": "stargazers.ipynb",
    "test_roas_notebook_runs_and_reaches_its_conclusions": "roas_allocation.ipynb",
}
# The notebooks whose behaviour depends on the tests-only data, and the heading of the first part
# that does not: the parts before it run again with the data hidden, as on a bare clone.
SHARED_DATA_PARTS = {
    "roas_allocation.ipynb": "## 4.",  # parts 1-3: the Kaggle table, else the bundled daily table
    "stargazers.ipynb": "## 2.",  # part 1: real location strings, else skipped
}
HIDDEN_TEST = "test_notebooks_run_without_the_shared_data"


def without_shared_data(name: str) -> str:
    """The key of ``name``'s run with the shared data hidden."""
    return f"{name} (no shared data)"


# Kernels run at once. A notebook's time is mostly XLA compiling, which keeps little more than
# one core busy: two kernels use both cores of the 2-core CI machine (one after another, the
# second core sat mostly idle); more where there are more cores.
CONCURRENT_KERNELS = max(2, min(len(NOTEBOOK_OF_TEST), os.cpu_count() or 2))


def run_notebook(
    name: str, path: Path, env: dict[str, str], until: str | None = None
) -> tuple[str, int]:
    """Execute a notebook at its small size in a kernel started with ``env``, working directory
    ``path`` (only the cells before the first markdown cell that starts with ``until``, if
    given); returns its printed text and its number of figures. Raises CellExecutionError if any
    cell (or one of its asserts) fails."""
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    if until is not None:
        end = next(
            i
            for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "markdown" and cell.source.startswith(until)
        )
        notebook.cells = notebook.cells[:end]
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": path}}
    )
    start = time.perf_counter()
    client.execute(env=env)
    part = f" (before {until!r}, {env[SHARED_DATA_ENV]})" if until else ""
    print(f"{name}{part}: {time.perf_counter() - start:.0f} s")  # shown with -s
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [out for cell in cells for out in cell.get("outputs", [])]
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) for out in outputs
    )
    images = sum("image/png" in out.get("data", {}) for out in outputs)
    return text, images


@pytest.fixture(scope="module")
def executed(request, tmp_path_factory, compile_cache) -> dict[str, Future]:
    """The notebooks of this session's selected tests, started together on a pool of
    ``CONCURRENT_KERNELS`` kernels; maps a notebook to the future of ``run_notebook``. The kernels
    share the session's persistent compilation cache (``compile_cache``), so a program one
    notebook compiled (the revenue model's SVI on the bundled account, say) is loaded, not
    compiled again, by another. The runs with the shared data hidden (``SHARED_DATA_PARTS``) are
    started last, on a warm cache."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    selected = selected_in_module(request)
    names = [nb for test, nb in NOTEBOOK_OF_TEST.items() if test in selected]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline figures
    env.update(JAXMODELS_NOTEBOOK_SMALL="1", JAX_PLATFORMS="cpu")
    env[SHARED_DATA_ENV] = str(shared_data_dir())  # where the tests look, present or not
    hidden = {**env, SHARED_DATA_ENV: str(tmp_path_factory.mktemp("bare") / "no-shared-data")}
    with ThreadPoolExecutor(max_workers=CONCURRENT_KERNELS) as pool:
        futures = {
            name: pool.submit(run_notebook, name, tmp_path_factory.mktemp(Path(name).stem), env)
            for name in names
        }
        if HIDDEN_TEST in selected:
            for name, until in SHARED_DATA_PARTS.items():
                path = tmp_path_factory.mktemp(f"{Path(name).stem}-bare")
                futures[without_shared_data(name)] = pool.submit(
                    run_notebook, name, path, hidden, until
                )
        yield futures
        for future in futures.values():
            future.cancel()  # those not started yet (a deselected or failed run); others finish


@pytest.mark.slow
def test_revenue_notebook_runs_and_reaches_its_conclusions(executed):
    text, images = executed["revenue_multilevel.ipynb"].result()
    assert "NUTS 95% intervals cover" in text
    assert "P(mean of A > mean of B)" in text
    assert images >= 5


@pytest.mark.slow
def test_ssm_notebook_runs_and_reaches_its_conclusions(executed):
    text, images = executed["ssm_laplace_em.ipynb"].result()
    assert "90% imputation intervals cover" in text  # the notebook asserts the coverage itself
    assert "chosen q = " in text and "chosen q = 0" not in text
    assert images >= 4


@pytest.mark.slow
def test_stargazers_notebook_runs_and_reaches_its_conclusions(executed):
    text, images = executed["stargazers.ipynb"].result()
    # the cells assert the conclusions themselves (p < 0.05, q >= 1, coverage >= 0.8, ...)
    assert "The offline gazetteer places" in text or "Skipped:" in text
    assert "The geography changed over time" in text and "Monte Carlo p" in text
    assert "chosen q = " in text and "chosen q = 0" not in text
    assert "90% intervals of the imputed country totals cover the truth for" in text
    assert "Latin America and the Caribbean:" in text
    assert "write_report wrote" in text and "report.html" in text
    assert images >= 6


@pytest.mark.slow
def test_roas_notebook_runs_and_reaches_its_conclusions(executed):
    text, images = executed["roas_allocation.ipynb"].result()
    # the cells assert the conclusions themselves (pooling shrinks small ad sets most, budgets
    # sum and respect caps, ROAS beats CPA when revenue per conversion differs and ties without)
    assert "shrinkage toward the campaign" in text
    assert "capped at 3x: budget 10,000.00: expected revenue" in text
    assert "ROAS vs CPA Thompson, revenue per conversion differs: +" in text
    assert "ROAS vs CPA Thompson, same revenue per conversion:" in text
    assert "truly best ad set on the last day: adset_07" in text
    assert images >= 5


@pytest.mark.slow
def test_notebooks_run_without_the_shared_data(executed):
    """On a bare clone (no ``../shared/data``) the parts that read it fall back to the bundled
    data and reach the same kind of conclusions (their own asserts pass too)."""
    text, images = executed[without_shared_data("roas_allocation.ipynb")].result()
    assert "Kaggle table found: False" in text and "bundled simulated daily table" in text
    assert "shrinkage toward the campaign" in text
    assert "capped at 3x: budget 10,000.00: expected revenue" in text
    assert images >= 3
    text, _ = executed[without_shared_data("stargazers.ipynb")].result()
    assert "Skipped:" in text and "The offline gazetteer places" not in text
