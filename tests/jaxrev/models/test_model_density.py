"""The NumPyro programs' log density equals a hand-written NumPy density of the seed's models."""

import math

import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from jaxrev.data import load_revenue_data, pad_observations
from jaxrev.models import MultilevelPriors, NoPoolingPriors, multilevel, no_pooling
from jaxrev.simulate import simulate_account


def normal_logpdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


def loglik_loop(arrays, theta, sigma):
    """Sum, one observation at a time, of log N(log r_i | mu_i, sigma_i) (Fenton-Wilkinson)."""
    total = 0.0
    for i in range(len(arrays.conversions)):
        if not arrays.obs_mask[i]:
            continue
        a = arrays.adset[i]
        s_a = sigma[a] if np.ndim(sigma) else sigma
        n = float(arrays.conversions[i])
        var_i = math.log(1 + (math.exp(s_a**2) - 1) / n)
        mu_i = theta[a] + math.log(n) + 0.5 * (s_a**2 - var_i)
        total += normal_logpdf(float(arrays.log_revenue[i]), mu_i, math.sqrt(var_i))
    return total


def multilevel_logdensity_numpy(arrays, params, p: MultilevelPriors):
    lp = -math.log(p.account_mu_high - p.account_mu_low)  # flat on the bounds
    sd_prior = stats.truncexpon(
        b=p.pooling_sd_upper * p.pooling_sd_rate, scale=1 / p.pooling_sd_rate
    )
    lp += sd_prior.logpdf(params["account_mu_sd"]) + sd_prior.logpdf(params["campaign_mu_sd"])
    lp += (
        stats.norm.logpdf(params["campaign_mu_z"]).sum()
        + stats.norm.logpdf(params["adset_mu_z"]).sum()
    )
    ig = stats.invgamma(p.sigma_concentration, scale=p.sigma_rate)
    lp += ig.logpdf(params["revenue_sigma"]) - np.log(ig.cdf(p.sigma_high) - ig.cdf(p.sigma_low))
    campaign_mu = params["account_mu"] + params["account_mu_sd"] * params["campaign_mu_z"]
    theta = campaign_mu[arrays.adset_campaign] + params["campaign_mu_sd"] * params["adset_mu_z"]
    return lp + loglik_loop(arrays, theta, params["revenue_sigma"])


@pytest.fixture(scope="module")
def arrays():
    sim = simulate_account(3, adsets_per_campaign=(2, 3, 1), num_hours=10)
    data = load_revenue_data(sim.table)
    # Two padded observations must not count.
    return pad_observations(data.arrays, data.num_observations + 2)


@pytest.mark.parametrize(
    "priors",
    [MultilevelPriors(), MultilevelPriors(pooling_sd_rate=2.0, sigma_low=0.5, sigma_high=1.5)],
)
def test_multilevel_log_density_matches_numpy(arrays, priors, rng, x64):
    for _ in range(5):
        params = {
            "account_mu": rng.uniform(priors.account_mu_low, priors.account_mu_high),
            "account_mu_sd": rng.uniform(0.001, 1.0),
            "campaign_mu_z": rng.standard_normal(len(arrays.campaign_mask)),
            "campaign_mu_sd": rng.uniform(0.001, 1.0),
            "adset_mu_z": rng.standard_normal(len(arrays.adset_mask)),
            "revenue_sigma": rng.uniform(priors.sigma_low, priors.sigma_high),
        }
        got, _ = log_density(multilevel, (arrays,), {"priors": priors}, params)
        want = multilevel_logdensity_numpy(arrays, params, priors)
        np.testing.assert_allclose(float(got), want, rtol=1e-10)


@pytest.mark.parametrize("priors", [NoPoolingPriors(), NoPoolingPriors((-5.0, 20.0), (0.01, 3.0))])
def test_no_pooling_log_density_matches_numpy(arrays, priors, rng, x64):
    num_adsets = len(arrays.adset_mask)
    theta = rng.uniform(2, 6, num_adsets)
    sigma = rng.uniform(0.3, 2.0, num_adsets)
    got, _ = log_density(
        no_pooling, (arrays,), {"priors": priors}, {"adset_mu": theta, "adset_sigma": sigma}
    )
    want = loglik_loop(arrays, theta, sigma)
    if priors.theta_bounds is not None:
        want -= num_adsets * (math.log(25.0) + math.log(2.99))
    np.testing.assert_allclose(float(got), want, rtol=1e-10)


def test_deterministic_means_follow_the_seed(arrays, x64):
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(multilevel, 0)).get_trace(arrays)
    value = {k: np.asarray(v["value"]) for k, v in trace.items()}
    half_var = 0.5 * value["revenue_sigma"] ** 2
    np.testing.assert_allclose(
        value["adset_mean"], np.exp(value["adset_mu"] + half_var), rtol=1e-12
    )
    np.testing.assert_allclose(
        value["campaign_mean"], np.exp(value["campaign_mu"] + half_var), rtol=1e-12
    )
    np.testing.assert_allclose(
        value["adset_mu"],
        value["campaign_mu"][arrays.adset_campaign] + value["campaign_mu_sd"] * value["adset_mu_z"],
        rtol=1e-12,
    )
