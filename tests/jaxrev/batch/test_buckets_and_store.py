"""Bucket shapes, padding and the result store: the pieces under the batch job."""

import math

import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from jaxrev.batch import account_seed
from jaxrev.batch.buckets import (
    BucketShape,
    batch_cap,
    batch_size_for,
    bucket_shape,
    next_pow2,
    pad_account,
    plan_buckets,
    stack_lanes,
)
from jaxrev.batch.store import ResultStore
from jaxrev.data import load_revenue_data
from jaxrev.models import multilevel
from jaxrev.simulate import simulate_account


def test_shapes_and_caps():
    assert [next_pow2(n, 16) for n in (1, 16, 17, 100)] == [16, 16, 32, 128]
    assert batch_cap(BucketShape(1024, 8, 2), max_batch=256, max_batch_obs=1 << 16) == 64
    assert batch_cap(BucketShape(1 << 20, 8, 2), max_batch=256, max_batch_obs=1 << 16) == 1
    assert batch_size_for(5, cap=64) == 8
    assert batch_size_for(5, cap=4) == 4
    assert batch_size_for(3, cap=64, multiple=2) == 4
    assert batch_size_for(1, cap=64, multiple=4) == 4
    shapes = [BucketShape(16, 8, 2)] * 5 + [BucketShape(64, 8, 2)] * 2
    plan = plan_buckets(shapes, [3, 1, 2, 5, 4, 40, 33], max_batch=2, max_batch_obs=1 << 20)
    assert plan == [
        (BucketShape(16, 8, 2), [1, 2]),
        (BucketShape(16, 8, 2), [0, 4]),
        (BucketShape(16, 8, 2), [3]),
        (BucketShape(64, 8, 2), [6, 5]),
    ]


def test_padding_only_adds_the_padded_effects_prior(x64, rng):
    """Padded rows are masked and padded ad sets / campaigns carry only their N(0, 1) prior:
    log p(padded) - log p(account) = sum of standard normal log densities of the extra z."""
    data = load_revenue_data(simulate_account(4, (2, 1), num_hours=7).table)
    shape = bucket_shape(data.arrays)
    assert shape == BucketShape(16, 8, 2)
    padded = pad_account(data.arrays, shape)
    assert padded.obs_mask.sum() == data.num_observations and padded.adset_mask.sum() == 3
    params = {
        "account_mu": 4.0,
        "account_mu_sd": 0.2,
        "campaign_mu_sd": 0.3,
        "revenue_sigma": 0.9,
        "campaign_mu_z": rng.standard_normal(2),
        "adset_mu_z": rng.standard_normal(8),
    }
    small = dict(params, adset_mu_z=params["adset_mu_z"][:3])
    full, _ = log_density(multilevel, (padded,), {}, params)
    real, _ = log_density(multilevel, (data.arrays,), {}, small)
    extra = stats.norm.logpdf(params["adset_mu_z"][3:]).sum()
    np.testing.assert_allclose(float(full) - float(real), extra, rtol=1e-10)


def test_stack_lanes_fills_with_ghosts():
    data = load_revenue_data(simulate_account(4, (2, 1), num_hours=7).table)
    lane = pad_account(data.arrays, BucketShape(16, 8, 2))
    batch = stack_lanes([lane], 4)
    assert batch.conversions.shape == (4, 16)
    np.testing.assert_array_equal(batch.log_revenue[3], lane.log_revenue)
    with pytest.raises(ValueError):
        stack_lanes([lane] * 5, 4)


def test_account_seed_is_a_stable_digest():
    # Fixed values: Python's hash() would change from process to process.
    assert account_seed("acct-1") == account_seed("acct-1", 0)
    assert account_seed("acct-1") != account_seed("acct-2")
    assert account_seed("acct-1", 0) != account_seed("acct-1", 1)
    assert account_seed("acct-1") == 724825054
    assert 0 <= account_seed("x") < 2**31


def test_store_is_idempotent_and_ignores_orphans(tmp_path):
    store = ResultStore(tmp_path)
    status = pd.DataFrame({"account": ["a", "b"], "fingerprint": ["f1", "f2"], "status": "ok"})
    summary = pd.DataFrame(
        {
            "account": ["a", "a", "b"],
            "fingerprint": ["f1", "f1", "f2"],
            "level": "adset",
            "campaign": "c",
            "adset": ["x", "y", "x"],
            "mean": [1.0, 2.0, 3.0],
        }
    )
    first = store.write("bucket-0", status, summary)
    again = store.write("bucket-0", status, summary)  # a retried task
    assert first == again
    store.write("bucket-1", status.iloc[:1], summary.iloc[:2])  # a duplicate from elsewhere
    # Summary rows whose status was never written (killed in between) do not count.
    orphan = summary.assign(account="c", fingerprint="f3")
    orphan.to_parquet(tmp_path / "parts" / "summary-orphan.parquet")
    assert store.completed() == {("a", "f1"), ("b", "f2")}
    out_status, out_summary = store.consolidate()
    assert out_status["account"].tolist() == ["a", "b"]
    assert len(out_summary) == 3 and math.isclose(out_summary["mean"].sum(), 6.0)
    kept, _ = store.consolidate(keep={("b", "f2")})
    assert kept["account"].tolist() == ["b"]
    assert not list((tmp_path / "parts").glob(".*tmp"))
