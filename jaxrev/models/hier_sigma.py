r"""**hier_sigma**: multilevel means *and* spreads (a per-ad-set $\sigma_a$, pooled twice)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from jaxrev.data import RevenueArrays
from jaxrev.models.common import (
    MULTILEVEL_ADSET_SITES,
    MULTILEVEL_CAMPAIGN_SITES,
    MULTILEVEL_CHECKED_SITES,
    POOLING_SITES,
    MultilevelPriors,
    account_level,
    effects,
    fenton_wilkinson,
    multilevel_initial_values,
    observe,
    shared_sigma,
)
from jaxrev.models.spec import ModelSpec, register_model


@dataclass(frozen=True)
class HierSigmaPriors(MultilevelPriors):
    r"""Priors of ``hier_sigma``: the multilevel ones (σ is now the account-level spread) plus the
    half-normal scales of the campaign and ad-set deviations of $\log\sigma$."""

    log_sigma_sd_scale: float = 0.5  # tau_sigma^c, tau_sigma^a ~ HalfNormal(scale)
    adset_sigma_max: float = 5.0  # sigma_a is capped here (exp of a normal can overflow)


def hier_sigma(data: RevenueArrays, priors: HierSigmaPriors = HierSigmaPriors()) -> None:
    r"""Multilevel means *and* spreads: each ad set has its own $\sigma_a$, pooled toward its
    campaign's, pooled toward the account's (non-centered on the log scale):

    $$\log\sigma_c = \log\sigma + \tau^\sigma_c\, z^\sigma_c, \qquad
      \log\sigma_a = \log\sigma_{c_a} + \tau^\sigma_a\, z^\sigma_a, \qquad
      z^\sigma \sim N(0, 1), \quad \tau^\sigma_c, \tau^\sigma_a \sim \mathrm{HalfNormal}(s),$$

    means as in :func:`~jaxrev.models.multilevel.multilevel`; the Fenton-Wilkinson step uses
    $\sigma_{a_i}$. ``adset_mean`` $= e^{\theta_a + \sigma_a^2/2}$, ``campaign_mean``
    $= e^{\mu_c + \sigma_c^2/2}$.
    """
    p = priors
    account = account_level(p)
    campaign_mu, adset_mu = effects(data, account, dist.Normal(0.0, 1.0))
    revenue_sigma = shared_sigma(p)
    campaign_sigma_sd = numpyro.sample("campaign_sigma_sd", dist.HalfNormal(p.log_sigma_sd_scale))
    adset_sigma_sd = numpyro.sample("adset_sigma_sd", dist.HalfNormal(p.log_sigma_sd_scale))
    with numpyro.plate("campaigns", data.num_campaigns):
        campaign_sigma_z = numpyro.sample("campaign_sigma_z", dist.Normal(0.0, 1.0))
    with numpyro.plate("adsets", data.num_adsets):
        adset_sigma_z = numpyro.sample("adset_sigma_z", dist.Normal(0.0, 1.0))
    log_campaign_sigma = jnp.log(revenue_sigma) + campaign_sigma_sd * campaign_sigma_z
    log_adset_sigma = log_campaign_sigma[data.adset_campaign] + adset_sigma_sd * adset_sigma_z
    cap = jnp.log(p.adset_sigma_max)
    campaign_sigma = numpyro.deterministic(
        "campaign_sigma", jnp.exp(jnp.minimum(log_campaign_sigma, cap))
    )
    adset_sigma = numpyro.deterministic("adset_sigma", jnp.exp(jnp.minimum(log_adset_sigma, cap)))
    numpyro.deterministic("campaign_mean", jnp.exp(campaign_mu + 0.5 * jnp.square(campaign_sigma)))
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + 0.5 * jnp.square(adset_sigma)))
    obs_mu, obs_sigma = fenton_wilkinson(
        adset_mu[data.adset], adset_sigma[data.adset], data.conversions
    )
    observe(data, obs_mu, obs_sigma)


def hier_sigma_initial_values(arrays: RevenueArrays, priors: HierSigmaPriors) -> dict:
    """The multilevel start; every spread starts at sigma, barely spread."""
    dtype = arrays.conversions.dtype
    return multilevel_initial_values(arrays, priors) | {
        "campaign_sigma_sd": jnp.asarray(0.1, dtype),
        "adset_sigma_sd": jnp.asarray(0.1, dtype),
        "campaign_sigma_z": jnp.zeros(arrays.num_campaigns, dtype),
        "adset_sigma_z": jnp.zeros(arrays.num_adsets, dtype),
    }


HIER_SIGMA = register_model(
    ModelSpec(
        name="hier_sigma",
        program=hier_sigma,
        default_priors=HierSigmaPriors(),
        initial_values=hier_sigma_initial_values,
        adset_sites=(*MULTILEVEL_ADSET_SITES, "adset_sigma", "adset_sigma_z"),
        campaign_sites=(*MULTILEVEL_CAMPAIGN_SITES, "campaign_sigma", "campaign_sigma_z"),
        checked_sites=(
            *MULTILEVEL_CHECKED_SITES,
            "adset_sigma",
            "campaign_sigma",
            "campaign_sigma_sd",
            "adset_sigma_sd",
        ),
        has_campaign_level=True,
        pooling_sites=POOLING_SITES,
    )
)
