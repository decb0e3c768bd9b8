r"""Simulated accounts whose revenue is the *real* sum of log-normal purchases.

The model approximates the sum of $n_i$ log-normal purchases by one log-normal (Fenton-Wilkinson);
the simulator does not: every hour draws $n_i$ conversions and sums $n_i$ independent
$\mathrm{LogNormal}(\theta_a, \sigma)$ purchases, so fits on simulated data also test the
approximation. Hyper-parameters $(\lambda, \phi, \tau, \sigma)$ are given or drawn from the seed's
priors.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from jaxrev.model import MultilevelPriors


class SimulatedAccount(NamedTuple):
    """An hourly table (columns ``campaign``, ``adset``, ``hour``, ``conversions``, ``revenue``),
    the true per-ad-set and per-campaign values, and the hyper-parameters used."""

    table: pd.DataFrame
    adsets: pd.DataFrame  # adset, campaign, theta (adset_mu), adset_mean, conversion_rate
    campaigns: pd.DataFrame  # campaign, campaign_mu, campaign_mean
    hyper: dict[str, float]


def draw_hyperparameters(rng: np.random.Generator, priors: MultilevelPriors) -> dict[str, float]:
    """$\\phi, \\tau, \\sigma$ from the seed's truncated priors; $\\lambda$ from a realistic range
    (log revenue per purchase between $\\log 10$ and $\\log 300$; the flat $(-5, 20)$ is not a
    generative prior)."""
    p = priors
    sd = stats.truncexpon(b=p.pooling_sd_upper * p.pooling_sd_rate, scale=1 / p.pooling_sd_rate)
    cdf = stats.invgamma(p.sigma_concentration, scale=p.sigma_rate).cdf
    lo, hi = cdf(p.sigma_low), cdf(p.sigma_high)
    u = rng.uniform(lo, hi)
    sigma = float(stats.invgamma(p.sigma_concentration, scale=p.sigma_rate).ppf(u))
    return {
        "account_mu": float(rng.uniform(np.log(10.0), np.log(300.0))),
        "account_mu_sd": float(sd.rvs(random_state=rng)),
        "campaign_mu_sd": float(sd.rvs(random_state=rng)),
        "revenue_sigma": sigma,
    }


def simulate_account(
    seed: int | np.random.Generator,
    adsets_per_campaign: tuple[int, ...] = (4, 4, 4, 4, 3),
    num_hours: int = 24,
    conversions_per_hour: tuple[float, float] = (0.3, 3.0),
    *,
    account_mu: float | None = None,
    account_mu_sd: float | None = None,
    campaign_mu_sd: float | None = None,
    revenue_sigma: float | None = None,
    priors: MultilevelPriors = MultilevelPriors(),
) -> SimulatedAccount:
    r"""Simulate one account of the multilevel model with exact log-normal sums.

    Args:
        seed: an integer seed or a NumPy generator.
        adsets_per_campaign: number of ad sets in each campaign.
        num_hours: hours per ad set (hours with no conversion are kept as rows with zeros).
        conversions_per_hour: range of each ad set's Poisson rate (log-uniform), so ad sets
            differ in how much data they have.
        account_mu, account_mu_sd, campaign_mu_sd, revenue_sigma: $\lambda, \phi, \tau, \sigma$;
            ``None`` draws them (see :func:`draw_hyperparameters`).
        priors: the priors to draw missing hyper-parameters from.

    Example:
        >>> sim = simulate_account(0)
        >>> sim.table.head()  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    drawn = draw_hyperparameters(rng, priors)
    given = {
        "account_mu": account_mu,
        "account_mu_sd": account_mu_sd,
        "campaign_mu_sd": campaign_mu_sd,
        "revenue_sigma": revenue_sigma,
    }
    hyper = {k: drawn[k] if v is None else float(v) for k, v in given.items()}
    num_campaigns = len(adsets_per_campaign)
    campaign_mu = hyper["account_mu"] + hyper["account_mu_sd"] * rng.standard_normal(num_campaigns)
    campaign_of = np.repeat(np.arange(num_campaigns), adsets_per_campaign)
    num_adsets = len(campaign_of)
    theta = campaign_mu[campaign_of] + hyper["campaign_mu_sd"] * rng.standard_normal(num_adsets)
    lo, hi = np.log(conversions_per_hour)
    rate = np.exp(rng.uniform(lo, hi, num_adsets))
    sigma = hyper["revenue_sigma"]

    counts = rng.poisson(rate[:, None], size=(num_adsets, num_hours))
    revenue = np.zeros_like(counts, dtype=float)
    for (a, h), n in np.ndenumerate(counts):
        if n:
            revenue[a, h] = rng.lognormal(theta[a], sigma, size=n).sum()

    campaign_names = [f"campaign_{c + 1}" for c in range(num_campaigns)]
    adset_names = [f"adset_{a + 1:02d}" for a in range(num_adsets)]
    hours = pd.date_range("2026-01-01", periods=num_hours, freq="h")
    table = pd.DataFrame(
        {
            "campaign": np.repeat([campaign_names[c] for c in campaign_of], num_hours),
            "adset": np.repeat(adset_names, num_hours),
            "hour": np.tile(hours, num_adsets),
            "conversions": counts.ravel(),
            "revenue": revenue.ravel(),
        }
    )
    half_var = 0.5 * sigma**2
    adsets = pd.DataFrame(
        {
            "adset": adset_names,
            "campaign": [campaign_names[c] for c in campaign_of],
            "adset_mu": theta,
            "adset_mean": np.exp(theta + half_var),
            "conversion_rate": rate,
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign": campaign_names,
            "campaign_mu": campaign_mu,
            "campaign_mean": np.exp(campaign_mu + half_var),
        }
    )
    return SimulatedAccount(table, adsets, campaigns, hyper)
