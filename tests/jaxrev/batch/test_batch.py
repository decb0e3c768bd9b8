"""The batch job: vectorised buckets equal single fits, no recompilation, resumable output that
survives SIGKILL, an adversarial batch that finishes, the persistent cache, sharding, Dask."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from selected_tests import selected_in_module

from jaxrev.batch import BatchOptions, fit_accounts, fit_bucket, load_accounts, make_specs
from jaxrev.batch.store import ResultStore
from jaxrev.compile_cache import CompileCounter
from jaxrev.data import Columns
from jaxrev.inference import fit
from jaxrev.models import MultilevelPriors
from jaxrev.simulate import simulate_account

ROOT = Path(__file__).resolve().parents[3]
OPTIONS = BatchOptions(max_batch=4)


def accounts_table(count: int, first_seed: int = 300) -> pd.DataFrame:
    """``count`` accounts of 2 campaigns x 2 ad sets x 8 hours (17-32 rows each: one bucket)."""
    frames = []
    for k in range(count):
        sim = simulate_account(first_seed + k, (2, 2), num_hours=8, conversions_per_hour=(1.5, 4.0))
        frames.append(sim.table.assign(account=f"acct-{k:02d}"))
    return pd.concat(frames, ignore_index=True)


def exactly_once(status: pd.DataFrame, summary: pd.DataFrame, accounts) -> None:
    assert sorted(status["account"]) == sorted(accounts)
    keys = ["account", "level", "campaign", "adset"]
    assert not summary.duplicated(keys).any()
    assert set(summary["account"]) == set(accounts)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return accounts_table(8)


def run_process(cmd: list[str], env: dict[str, str], started: list) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)``, with the
    process recorded in ``started`` (so that the module can stop it if it is left running)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(proc)
    try:
        out, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module", autouse=True)
def subprocess_runs(request, table, tmp_path_factory) -> dict[str, Future]:
    """The subprocess halves of the selected sharding and persistent-cache tests, started one
    after another in a thread as the module starts; maps ``"sharded"`` and ``"cache"`` to their
    futures. A subprocess is mostly XLA compiling, on one core: it runs while this process fits
    the in-process tests on the other core, and each of the two tests waits for its own."""
    selected = selected_in_module(request)
    jobs = {}
    if "test_accounts_axis_sharded_over_two_devices_gives_the_same_results" in selected:
        request.getfixturevalue("compile_cache")  # the environment the in-process runs see
        jobs["sharded"] = (sharded_run, table, tmp_path_factory.mktemp("sharded"))
    if "test_persistent_cache_hits_in_a_second_process" in selected:
        jobs["cache"] = (two_cli_runs_sharing_a_cache, tmp_path_factory.mktemp("cache"))
    started: list[subprocess.Popen] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = {name: pool.submit(*job, started) for name, job in jobs.items()}
        yield futures
        for future in futures.values():
            future.cancel()
        for proc in started:  # left running by a test that failed before waiting for it
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def batch_run(table, tmp_path_factory, compile_cache):
    out = tmp_path_factory.mktemp("batch")
    return out, fit_accounts(table, out_dir=out, options=OPTIONS, progress=False)


def test_every_account_gets_rows_and_a_status(batch_run, table):
    out, result = batch_run
    assert (result.status["status"] == "converged").all()
    assert (result.status["rung"] == "svi").all()
    exactly_once(result.status, result.summary, table["account"].unique())
    assert result.report["buckets"] == 2 and result.report["fitted_now"] == 8
    on_disk = pd.read_csv(out / "summary.csv")
    np.testing.assert_allclose(on_disk["mean"], result.summary["mean"], rtol=1e-6)
    assert json.loads((out / "run.json").read_text())["status_counts"] == {"converged": 8}
    # Raw means in the batch summary are the data's.
    one = table[(table["account"] == "acct-03") & (table["conversions"] > 0)]
    raw = one.groupby("adset")["revenue"].sum() / one.groupby("adset")["conversions"].sum()
    rows = result.summary.query("account == 'acct-03' and level == 'adset'").set_index("adset")
    np.testing.assert_allclose(rows["raw_mean"], raw.loc[rows.index], rtol=1e-9)


def test_bucket_equals_each_account_fitted_alone(batch_run, table):
    """Lanes are independent: an account fitted in a batch of 4 and alone (a batch of 1, same
    seed and shape) gets the same summaries to float32 precision; and the unpadded single-
    account fit (other random streams) agrees within SVI's run-to-run noise."""
    _, result = batch_run
    accounts, _ = load_accounts(
        {k: g.drop(columns="account") for k, g in table.groupby("account")},
        Columns(), "multilevel", MultilevelPriors(), OPTIONS,
    )  # fmt: skip
    spec = make_specs(accounts, "multilevel", MultilevelPriors(), OPTIONS, None)[0]
    for item in spec.accounts[:2]:
        alone = fit_bucket(spec._replace(accounts=(item,)))
        together = result.summary[result.summary["account"] == item.account]
        np.testing.assert_allclose(
            alone.summary["mean"].to_numpy(), together["mean"].to_numpy(), rtol=1e-5
        )
        np.testing.assert_allclose(
            alone.summary["q97.5"].to_numpy(), together["q97.5"].to_numpy(), rtol=1e-5
        )
        single = fit(item.data, "svi", seed=item.seed, progress=False).summary()
        z = np.abs(single["mean"].to_numpy() - together["mean"].to_numpy())
        z /= single["sd"].to_numpy()
        assert np.median(z) < 0.25 and z.max() < 0.5, z


def test_second_run_over_the_same_shapes_compiles_nothing(batch_run, table):
    _, first = batch_run
    with CompileCounter() as counter:
        again = fit_accounts(table, options=OPTIONS, progress=False)
    assert counter.counts["backend_compiles"] == 0, counter.counts
    np.testing.assert_array_equal(again.summary["mean"], first.summary["mean"])


def test_rerun_on_the_same_output_skips_finished_accounts(batch_run, table):
    out, first = batch_run
    again = fit_accounts(table, out_dir=out, options=OPTIONS, progress=False)
    assert again.report["fitted_now"] == 0 and again.report["skipped_done"] == 8
    pd.testing.assert_frame_equal(again.summary, first.summary)


def test_a_retried_bucket_returns_the_rows_its_first_attempt_wrote(batch_run, table):
    """A worker can die after writing a bucket and before returning it: the retry must return
    that bucket's stored rows (not an empty result) and fit nothing again."""
    out, first = batch_run
    accounts = ladder_accounts(table)
    spec = make_specs(accounts, "multilevel", MultilevelPriors(), OPTIONS, out)[0]
    retry = fit_bucket(spec)
    ids = sorted(a.account for a in spec.accounts)
    assert sorted(retry.status["account"]) == ids
    assert retry.seconds == 0.0  # nothing was fitted
    expected = first.summary[first.summary["account"].isin(ids)]
    cols = ["account", "level", "campaign", "adset", "mean"]
    pd.testing.assert_frame_equal(
        retry.summary[cols].sort_values(cols[:4]).reset_index(drop=True),
        expected[cols].sort_values(cols[:4]).reset_index(drop=True),
    )


# SVI settings that never declare convergence (no tolerance, no noise allowance): they push
# every account down the fallback ladder. Only the stopping rule differs from the batch's own
# settings, so the rungs run the programs the batch run compiled for this bucket shape.
NEVER = replace(OPTIONS.svi, max_steps=1000, rtol=0.0, noise_z=0.0)


def ladder_accounts(table):
    accounts, _ = load_accounts(
        {k: g.drop(columns="account") for k, g in table.groupby("account")},
        Columns(), "multilevel", MultilevelPriors(), OPTIONS,
    )  # fmt: skip
    return accounts


@pytest.mark.parametrize("rung", ["fullrank", "nuts"])
def test_fallback_ladder_gives_every_account_a_result(batch_run, table, rung):
    """Mean-field SVI "fails" (never converges): the full-rank rung (the batch's default one)
    fits the accounts; when it fails too, NUTS does. Both agree with the converged mean-field
    run of the same accounts."""
    _, reference = batch_run
    fullrank = replace(OPTIONS.svi if rung == "fullrank" else NEVER, guide="fullrank")
    options = replace(OPTIONS, svi=NEVER, more_steps=0, fullrank_svi=fullrank)
    accounts = ladder_accounts(table[table["account"].isin(["acct-04", "acct-05", "acct-06"])])
    spec = make_specs(accounts, "multilevel", MultilevelPriors(), options, None)[0]
    result = fit_bucket(spec)
    status = result.status.set_index("account")
    expected = {"fullrank": "fallback_fullrank", "nuts": "fallback_nuts"}[rung]
    assert (status["status"] == expected).all(), status[["status", "error"]]
    assert (status["rung"] == rung).all()
    if rung == "nuts":
        assert (status["nuts_max_rhat"] < 1.05).all()
        assert (status["steps"] == 2000).all()  # 1000 mean-field + 1000 full-rank
    ref = reference.summary.set_index(["account", "level", "campaign", "adset"])
    got = result.summary.set_index(["account", "level", "campaign", "adset"])
    z = np.abs(got["mean"] - ref.loc[got.index, "mean"]) / got["sd"]
    assert np.median(z) < 0.35 and z.max() < 0.8, z.describe()


def test_a_nan_account_does_not_poison_its_batch(batch_run, table):
    """An account whose data hold a NaN (as if validation were bypassed) shares a batch with two
    good ones: they get the results they get without it (to float32 rounding: the batch's other
    lanes differ); it ends ``failed``."""
    _, reference = batch_run
    good = ladder_accounts(table[table["account"].isin(["acct-01", "acct-02", "acct-07"])])
    poisoned = good[2].data.arrays.log_revenue.copy()
    poisoned[3] = np.nan
    bad = good[2]._replace(
        account="poisoned",
        data=dataclasses.replace(
            good[2].data, arrays=good[2].data.arrays._replace(log_revenue=poisoned)
        ),
    )
    options = replace(OPTIONS, nuts=False)
    spec = make_specs([*good[:2], bad], "multilevel", MultilevelPriors(), options, None)[0]
    assert len(spec.accounts) == 3
    result = fit_bucket(spec)
    status = result.status.set_index("account")
    assert status.loc["poisoned", "status"].startswith("failed: non-finite ELBO")
    assert (status.loc[["acct-01", "acct-02"], "status"] == "converged").all()
    clean = reference.summary[reference.summary["account"].isin(["acct-01", "acct-02"])]
    np.testing.assert_allclose(
        result.summary["mean"].to_numpy(), clean["mean"].to_numpy(), rtol=1e-6
    )


KILL_SCRIPT = """
import sys
import pandas as pd
from jaxrev.batch import BatchOptions, fit_accounts
fit_accounts(pd.read_parquet(sys.argv[1]), out_dir=sys.argv[2],
             options=BatchOptions(max_batch=4), progress=False)
"""


def test_sigkill_mid_run_then_resume_fits_every_account_exactly_once(tmp_path, compile_cache):
    table = accounts_table(16, first_seed=500)
    data = tmp_path / "accounts.parquet"
    table.to_parquet(data)
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(out)], env=os.environ)
    parts = out / "parts"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if parts.exists() and list(parts.glob("status-*.parquet")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = ResultStore(out).completed()
    assert 0 < len(done_before) < 16

    result = fit_accounts(table, out_dir=out, options=OPTIONS, progress=False)
    assert result.report["skipped_done"] == len(done_before)
    assert result.report["fitted_now"] == 16 - len(done_before)
    exactly_once(result.status, result.summary, table["account"].unique())
    assert (result.status["status"] == "converged").all()


def test_adversarial_batch_finishes_with_a_status_for_every_account(tmp_path, compile_cache):
    rng = np.random.default_rng(0)

    def rows(account, campaign, adset, n, r):
        return pd.DataFrame(
            {"account": account, "campaign": campaign, "adset": adset, "conversions": n,
             "revenue": r}
        )  # fmt: skip

    huge = simulate_account(9, (12, 10, 8), num_hours=40).table.assign(account="huge")
    parts = [
        rows("one_obs", "c", "a", [1], [50.0]),
        rows("one_adset", "c", "a", [1] * 10, 30 * np.exp(rng.normal(0, 0.8, 10))),
        rows("identical", "c", ["a", "b"] * 5, [1] * 10, [20.0] * 10),
        rows(
            "heavy",
            "c",
            ["ten"] * 10 + ["twenty"] * 10,
            [1] * 20,
            [10.0] * 9 + [1000.0] + list(20 * np.exp(rng.normal(0, 0.1, 10))),
        ),
        rows("tiny", "c", ["a", "b"], [1, 2], [12.0, 30.0]),
        huge,
        rows("garbage", "c", "a", [1, -2, 3], ["abc", "5", "-1"]),
    ]
    table = pd.concat(parts, ignore_index=True)
    table["revenue"] = table["revenue"].astype(str)  # as read from a messy CSV
    path = tmp_path / "messy.csv"
    table.to_csv(path, index=False)
    result = fit_accounts(path, out_dir=tmp_path / "out", progress=False)

    status = result.status.set_index("account")
    assert set(status.index) == {"one_obs", "one_adset", "identical", "heavy", "tiny", "huge",
                                 "garbage"}  # fmt: skip
    garbage = status.loc["garbage"]
    assert garbage["status"].startswith("failed: invalid data")
    assert "column 'revenue'" in garbage["error"] and str(path) in garbage["error"]
    assert "row" in garbage["error"]
    fitted = status.drop(index="garbage")
    allowed = {"converged", "fallback_fullrank", "fallback_nuts"}
    assert set(fitted["status"]) <= allowed, fitted[["status", "error"]]
    summary = result.summary
    assert set(summary["account"]) == set(fitted.index)
    assert np.isfinite(summary[["mean", "sd", "q2.5", "q97.5"]].to_numpy()).all()
    # The seed's example: the model does not believe the $1000 outlier makes "ten" better.
    heavy = summary.query("account == 'heavy' and level == 'adset'").set_index("adset")
    assert heavy.loc["ten", "raw_mean"] > 100 and heavy.loc["ten", "mean"] < 60
    assert status.loc["huge", "num_adsets"] == 30


def two_cli_runs_sharing_a_cache(tmp_path: Path, started: list) -> list:
    """The CLI, twice, on a folder of per-account files, each in a fresh process with an empty
    output directory and one persistent cache; returns (completed process, run.json or None)
    per run."""
    folder = tmp_path / "accounts"
    folder.mkdir()
    for account, rows in accounts_table(2, first_seed=700).groupby("account"):
        rows.drop(columns="account").to_csv(folder / f"{account}.csv", index=False)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONHASHSEED="0")
    runs = []
    for run in ("first", "second"):
        out = tmp_path / run
        cmd = [sys.executable, "-m", "jaxrev.cli", "batch", str(folder), "--out", str(out),
               "--cache-dir", str(cache), "--quiet", "--no-nuts"]  # fmt: skip
        done = run_process(cmd, env, started)
        report = out / "run.json"
        runs.append((done, json.loads(report.read_text()) if report.exists() else None))
    return runs


def test_persistent_cache_hits_in_a_second_process(subprocess_runs):
    """Two CLI runs on a folder of per-account files, each in a fresh process with an empty
    output directory: the second loads every program from the persistent cache."""
    reports = []
    for done, report in subprocess_runs["cache"].result():
        assert done.returncode == 0, done.stderr
        reports.append(report)
    first, second = (r["compilations"] for r in reports)
    assert first["cache_misses"] > 0
    assert second["cache_hits"] >= first["cache_misses"] and second["cache_misses"] == 0
    assert reports[1]["status_counts"] == {"converged": 2}


SHARD_SCRIPT = """
import sys
import jax
import pandas as pd
from jaxrev.batch import BatchOptions, fit_accounts
assert jax.local_device_count() == 2
result = fit_accounts(pd.read_parquet(sys.argv[1]), options=BatchOptions(max_batch=4),
                      progress=False)
result.summary.to_parquet(sys.argv[2])
"""
SHARDED_ACCOUNTS = ["acct-00", "acct-01", "acct-02"]


def sharded_run(table, tmp_path: Path, started: list) -> tuple[subprocess.CompletedProcess, Path]:
    """``SHARD_SCRIPT`` on three accounts in a process with two (host) devices; returns the
    completed process and where it wrote its summary."""
    table[table["account"].isin(SHARDED_ACCOUNTS)].to_parquet(tmp_path / "in.parquet")
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    cmd = [sys.executable, str(script), str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet")]
    return run_process(cmd, env, started), tmp_path / "out.parquet"


def test_accounts_axis_sharded_over_two_devices_gives_the_same_results(batch_run, subprocess_runs):
    _, reference = batch_run
    done, summary = subprocess_runs["sharded"].result()
    assert done.returncode == 0, done.stderr
    sharded = pd.read_parquet(summary)
    expected = reference.summary[reference.summary["account"].isin(SHARDED_ACCOUNTS)]
    np.testing.assert_allclose(sharded["mean"], expected["mean"], rtol=1e-5)


@pytest.mark.slow
def test_dask_local_cluster_survives_a_killed_worker(tmp_path, compile_cache):
    distributed = pytest.importorskip("distributed")
    table = accounts_table(12, first_seed=900)
    accounts, _ = load_accounts(
        {k: g.drop(columns="account") for k, g in table.groupby("account")},
        Columns(), "multilevel", MultilevelPriors(), OPTIONS,
    )  # fmt: skip
    out = tmp_path / "out"
    specs = make_specs(accounts, "multilevel", MultilevelPriors(), OPTIONS, out)
    assert len(specs) == 3
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [client.submit(fit_bucket, spec, pure=False) for spec in specs]
        bucket_of = {f.key: spec.bucket_id for f, spec in zip(futures, specs, strict=True)}

        def written(bucket_id):
            return bool(list((out / "parts").glob(f"status-{bucket_id}-*")))

        deadline, victim, bucket = time.time() + 240, None, None
        while time.time() < deadline and victim is None:
            if all(f.status == "finished" for f in futures):
                break
            for worker, keys in client.processing().items():
                running = [bucket_of[k] for k in keys if k in bucket_of]
                # A worker in the middle of a bucket whose rows are not written yet.
                if (
                    running
                    and not written(running[0])
                    and any(f.status == "finished" for f in futures)
                ):
                    victim, bucket = worker, running[0]
            time.sleep(0.05)
        assert victim is not None, "every bucket finished before a worker could be killed"
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        results = client.gather(futures)
    assert written(bucket)  # redone elsewhere after the kill
    status, summary = ResultStore(out).consolidate()
    exactly_once(status, summary, table["account"].unique())
    assert (status["status"] == "converged").all()
    assert sum(len(r.status) for r in results) == 12
