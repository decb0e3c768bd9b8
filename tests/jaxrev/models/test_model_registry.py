"""The model registry: a model registered in ONE place (the spec below) gets ``fit`` (SVI and
NUTS), ``summary()``, ``InferenceData``, PSIS-LOO ``compare`` and the batch runner for free; a
spec with a missing field or a site its program lacks fails at registration."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

from jaxrev.batch import BatchOptions, fit_accounts
from jaxrev.checks import compare
from jaxrev.data import RevenueArrays
from jaxrev.inference import NUTSOptions, SVIOptions, fit
from jaxrev.models import MODELS, ModelSpec, ModelSpecError, register_model
from jaxrev.models.common import fenton_wilkinson, observe
from jaxrev.simulate import simulate_account

# ---- the toy model: everything about it, in one place -----------------------------------------


@dataclass(frozen=True)
class ToyPriors:
    """theta_a ~ N(mean, sd) independently per ad set; one sigma ~ HalfNormal(sigma_scale)."""

    mean: float = 4.0
    sd: float = 2.0
    sigma_scale: float = 1.0


def toy(data: RevenueArrays, priors: ToyPriors = ToyPriors()) -> None:
    """A one-level log-normal model: no campaigns, no pooling scale."""
    sigma = numpyro.sample("revenue_sigma", dist.HalfNormal(priors.sigma_scale))
    with numpyro.plate("adsets", data.num_adsets):
        theta = numpyro.sample("adset_mu", dist.Normal(priors.mean, priors.sd))
    numpyro.deterministic("adset_mean", jnp.exp(theta + 0.5 * jnp.square(sigma)))
    observe(data, *fenton_wilkinson(theta[data.adset], sigma, data.conversions))


def toy_start(arrays: RevenueArrays, priors: ToyPriors) -> dict:
    dtype = arrays.conversions.dtype
    return {
        "adset_mu": jnp.full(arrays.num_adsets, priors.mean, dtype),
        "revenue_sigma": jnp.asarray(1.0, dtype),
    }


TOY = dict(
    name="toy_lognormal",
    program=toy,
    default_priors=ToyPriors(),
    initial_values=toy_start,
    adset_sites=("adset_mu", "adset_mean"),
    campaign_sites=(),
    checked_sites=("revenue_sigma", "adset_mean"),
    has_campaign_level=False,
)
register_model(ModelSpec(**TOY))

# ---- what it gets for free -------------------------------------------------------------------

SVI = SVIOptions(max_steps=3_000, decay_steps=500, average_steps=300, window=100)
NUTS = NUTSOptions(num_warmup=150, num_samples=150, num_chains=2)


@pytest.fixture(scope="module")
def toy_fits(small_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a short NUTS run may warn about ESS
        svi = fit(small_data, "svi", model="toy_lognormal", options=SVI, num_draws=200,
                  seed=3, progress=False)  # fmt: skip
        nuts = fit(small_data, "nuts", model="toy_lognormal", options=NUTS, seed=4, progress=False)
    return svi, nuts


def test_fit_summary_and_inference_data(toy_fits, small_data):
    for result in toy_fits:
        table = result.summary()
        assert (table["level"] == "adset").all() and len(table) == small_data.num_adsets
        assert np.isfinite(table["mean"]).all() and (table["mean"] > 0).all()
        idata = result.to_inference_data()
        assert idata.posterior["adset_mu"].dims[-1] == "adset"
        assert result.status.startswith(("converged", "not converged"))
        assert isinstance(result.messages, list)
    svi, nuts = toy_fits
    assert svi.converged and svi.status == "converged"
    assert set(nuts.diagnostics.parameters.index) >= {"revenue_sigma", "adset_mean[adset_01]"}
    # The raw means and the model's means agree (a weakly informative, unpooled model).
    table = nuts.summary()
    assert np.corrcoef(np.log(table["raw_mean"]), np.log(table["mean"]))[0, 1] > 0.7


def test_compare(toy_fits):
    svi, nuts = toy_fits
    table = compare({"toy_svi": svi, "toy_nuts": nuts}).table
    assert sorted(table.index) == ["toy_nuts", "toy_svi"] and np.isfinite(table["elpd_loo"]).all()


def test_batch(tmp_path):
    frames = [
        simulate_account(60 + k, (2, 2), num_hours=8).table.assign(account=f"acct-{k}")
        for k in range(2)
    ]
    options = BatchOptions(
        svi=SVI, more_steps=0, fullrank=False, nuts=False, max_batch=2, num_draws=200
    )
    result = fit_accounts(
        pd.concat(frames, ignore_index=True),
        model="toy_lognormal",
        options=options,
        out_dir=tmp_path,
        progress=False,
    )
    assert sorted(result.status["account"]) == ["acct-0", "acct-1"]
    assert (result.status["status"] == "converged").all(), result.status
    assert (result.summary["level"] == "adset").all()
    assert len(result.summary) == result.status["num_adsets"].sum()
    assert np.isfinite(result.summary["mean"]).all()


# ---- what fails at registration ----------------------------------------------------------------


def test_a_missing_field_fails_at_registration():
    incomplete = {k: v for k, v in TOY.items() if k != "checked_sites"}
    with pytest.raises(TypeError, match="checked_sites"):
        register_model(ModelSpec(**incomplete))
    with pytest.raises(ModelSpecError, match="initial_values"):
        register_model(ModelSpec(**{**TOY, "name": "toy_b", "initial_values": None}))
    assert "toy_b" not in MODELS


def test_a_site_the_program_lacks_fails_at_registration():
    with pytest.raises(ModelSpecError, match="adset_sigma"):
        register_model(ModelSpec(**{**TOY, "name": "toy_c", "checked_sites": ("adset_sigma",)}))
    with pytest.raises(ModelSpecError, match="campaign_mean"):
        register_model(ModelSpec(**{**TOY, "name": "toy_d", "has_campaign_level": True}))
    with pytest.raises(ModelSpecError, match="non-latent"):
        bad_start = lambda arrays, priors: {**toy_start(arrays, priors), "adset_mean": 1.0}  # noqa: E731
        register_model(ModelSpec(**{**TOY, "name": "toy_e", "initial_values": bad_start}))
    with pytest.raises(ModelSpecError, match="already registered"):
        register_model(ModelSpec(**TOY))
    assert not {"toy_c", "toy_d", "toy_e"} & set(MODELS)
    assert dataclasses.replace(MODELS["toy_lognormal"]).name == "toy_lognormal"
