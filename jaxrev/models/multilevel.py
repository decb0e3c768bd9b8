r"""**multilevel**: the seed's second Stan program (account > campaign > ad set, non-centered).

$$\lambda \sim \mathcal U(-5, 20), \quad \phi, \tau \sim \mathrm{Exp}(1/0.05)\,\mathbb 1_{(0,5)},
  \quad \sigma \sim \mathrm{InvGamma}(6, 4)\,\mathbb 1_{(0.001, 2.5)},$$
$$\mu_c = \lambda + \phi z_c, \quad \theta_a = \mu_{c_a} + \tau z_a,
  \quad z_c, z_a \sim \mathcal N(0, 1),$$

one $\sigma$ shared by every ad set; ``campaign_mean`` $= \exp(\mu_c + \sigma^2/2)$; the
likelihood is Fenton-Wilkinson (:mod:`jaxrev.models.common`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from jaxrev.data import RevenueArrays
from jaxrev.distributions import TruncatedExponential, TruncatedInverseGamma
from jaxrev.models.common import (
    MULTILEVEL_ADSET_SITES,
    MULTILEVEL_CAMPAIGN_SITES,
    MULTILEVEL_CHECKED_SITES,
    POOLING_SITES,
    SEED_PRIORS,
    MultilevelPriors,
    fenton_wilkinson,
    multilevel_initial_values,
    observe,
)
from jaxrev.models.spec import ModelSpec, register_model


def multilevel(data: RevenueArrays, priors: MultilevelPriors = SEED_PRIORS) -> None:
    """The seed's multilevel program (account > campaign > ad set, shared σ, non-centered).

    See the module docstring for the equations. Deterministic sites: ``campaign_mu``, ``adset_mu``,
    ``campaign_mean`` and ``adset_mean``.

    Example:
        >>> from numpyro.infer import MCMC, NUTS
        >>> mcmc = MCMC(NUTS(multilevel), num_warmup=500, num_samples=500)
        >>> mcmc.run(jax.random.key(0), arrays)  # doctest: +SKIP
    """
    p = priors
    account_mu = numpyro.sample("account_mu", dist.Uniform(p.account_mu_low, p.account_mu_high))
    account_mu_sd = numpyro.sample(
        "account_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    with numpyro.plate("campaigns", data.num_campaigns):
        campaign_mu_z = numpyro.sample("campaign_mu_z", dist.Normal(0.0, 1.0))
    campaign_mu_sd = numpyro.sample(
        "campaign_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    with numpyro.plate("adsets", data.num_adsets):
        adset_mu_z = numpyro.sample("adset_mu_z", dist.Normal(0.0, 1.0))
    revenue_sigma = numpyro.sample(
        "revenue_sigma",
        TruncatedInverseGamma(p.sigma_concentration, p.sigma_rate, p.sigma_low, p.sigma_high),
    )

    campaign_mu = numpyro.deterministic("campaign_mu", account_mu + account_mu_sd * campaign_mu_z)
    adset_mu = numpyro.deterministic(
        "adset_mu", campaign_mu[data.adset_campaign] + campaign_mu_sd * adset_mu_z
    )
    half_var = 0.5 * jnp.square(revenue_sigma)
    numpyro.deterministic("campaign_mean", jnp.exp(campaign_mu + half_var))
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + half_var))

    obs_mu, obs_sigma = fenton_wilkinson(adset_mu[data.adset], revenue_sigma, data.conversions)
    observe(data, obs_mu, obs_sigma)


MULTILEVEL = register_model(
    ModelSpec(
        name="multilevel",
        program=multilevel,
        default_priors=MultilevelPriors(),
        initial_values=multilevel_initial_values,
        adset_sites=MULTILEVEL_ADSET_SITES,
        campaign_sites=MULTILEVEL_CAMPAIGN_SITES,
        checked_sites=MULTILEVEL_CHECKED_SITES,
        has_campaign_level=True,
        pooling_sites=POOLING_SITES,
    )
)
DEFAULT_MODEL = MULTILEVEL.name  # the seed's model: the default of fit, batch and the CLI
