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

from jaxrev.models import MultilevelPriors
from jaxrev.models.common import SEED_PRIORS


class SimulatedAccount(NamedTuple):
    """An hourly table (columns ``campaign``, ``adset``, ``hour``, ``conversions``, ``revenue``),
    the true per-ad-set and per-campaign values, and the hyper-parameters used."""

    table: pd.DataFrame
    adsets: pd.DataFrame  # adset, campaign, adset_mu (theta), adset_mean, conversion_rate, sigma
    campaigns: pd.DataFrame  # campaign, campaign_mu, campaign_mean, campaign_sigma
    hyper: dict[str, float]
    level: np.ndarray | None = None  # the drift ell(t) at each time (zeros without drift)
    level_days: np.ndarray | None = None  # those times, in days from the first


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
    priors: MultilevelPriors = SEED_PRIORS,
    campaign_sigma_sd: float = 0.0,
    adset_sigma_sd: float = 0.0,
    effects_df: float | None = None,
    drift_sd: float = 0.0,
    knot_days: float = 7.0,
    freq: str = "h",
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
        campaign_sigma_sd, adset_sigma_sd: spread of the log purchase sd between campaigns and
            between the ad sets of a campaign ($\log\sigma_c = \log\sigma + s_c z$,
            $\log\sigma_a = \log\sigma_{c_a} + s_a z$: the ``hier_sigma`` model); 0 = one
            $\sigma$ (the seed's model).
        effects_df: draw the campaign and ad-set effects $z$ from a Student-t with these degrees
            of freedom (the ``student_t`` model) instead of a normal.
        drift_sd: daily sd of a Gaussian random walk added to every ad set's $\theta$ on the
            log scale, on knots ``knot_days`` apart and linear in between (the ``local_level``
            model's level); ``adset_mean`` is then the mean at the last row's time.
        knot_days: spacing of the random walk's knots (days).
        freq: spacing of the rows (``"h"``; e.g. ``"6h"`` to cover more days).

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

    def effects(size):
        if effects_df is None:
            return rng.standard_normal(size)
        return rng.standard_t(effects_df, size)

    campaign_mu = hyper["account_mu"] + hyper["account_mu_sd"] * effects(num_campaigns)
    campaign_of = np.repeat(np.arange(num_campaigns), adsets_per_campaign)
    num_adsets = len(campaign_of)
    theta = campaign_mu[campaign_of] + hyper["campaign_mu_sd"] * effects(num_adsets)
    lo, hi = np.log(conversions_per_hour)
    rate = np.exp(rng.uniform(lo, hi, num_adsets))
    sigma = hyper["revenue_sigma"]
    campaign_sigma = np.full(num_campaigns, sigma)
    adset_sigma = np.full(num_adsets, sigma)
    if campaign_sigma_sd > 0 or adset_sigma_sd > 0:
        campaign_sigma = sigma * np.exp(campaign_sigma_sd * rng.standard_normal(num_campaigns))
        adset_sigma = campaign_sigma[campaign_of] * np.exp(
            adset_sigma_sd * rng.standard_normal(num_adsets)
        )
    hours = pd.date_range("2026-01-01", periods=num_hours, freq=freq)
    days = np.asarray((hours - hours[0]) / pd.Timedelta(days=1), dtype=float)
    level = np.zeros(num_hours)
    if drift_sd > 0:  # the local_level model's walk: knots knot_days apart, linear in between
        steps = drift_sd * np.sqrt(knot_days) * rng.standard_normal(int(days[-1] / knot_days) + 1)
        walk = np.concatenate([[0.0], np.cumsum(steps)])
        level = np.interp(days / knot_days, np.arange(len(walk)), walk)

    counts = rng.poisson(rate[:, None], size=(num_adsets, num_hours))
    revenue = np.zeros_like(counts, dtype=float)
    for (a, h), n in np.ndenumerate(counts):
        if n:
            revenue[a, h] = rng.lognormal(theta[a] + level[h], adset_sigma[a], size=n).sum()

    campaign_names = [f"campaign_{c + 1}" for c in range(num_campaigns)]
    adset_names = [f"adset_{a + 1:02d}" for a in range(num_adsets)]
    table = pd.DataFrame(
        {
            "campaign": np.repeat([campaign_names[c] for c in campaign_of], num_hours),
            "adset": np.repeat(adset_names, num_hours),
            "hour": np.tile(hours, num_adsets),
            "conversions": counts.ravel(),
            "revenue": revenue.ravel(),
        }
    )
    now = level[-1]
    adsets = pd.DataFrame(
        {
            "adset": adset_names,
            "campaign": [campaign_names[c] for c in campaign_of],
            "adset_mu": theta,
            "adset_mean": np.exp(theta + now + 0.5 * adset_sigma**2),
            "conversion_rate": rate,
            "adset_sigma": adset_sigma,
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign": campaign_names,
            "campaign_mu": campaign_mu,
            "campaign_mean": np.exp(campaign_mu + now + 0.5 * campaign_sigma**2),
            "campaign_sigma": campaign_sigma,
        }
    )
    hyper |= {"level_now": float(now), "drift_sd": float(drift_sd)}
    return SimulatedAccount(table, adsets, campaigns, hyper, level, days)
