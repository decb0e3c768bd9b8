r"""What the revenue models share: the Fenton-Wilkinson likelihood, the multilevel family's priors
and building blocks, and its data-driven start.

Symbols (seed ``004``): observation $i$ is one ad set-hour with $n_i \ge 1$ conversions and total
revenue $r_i$; $a_i$ is its ad set and $c_a$ the campaign of ad set $a$. One conversion's revenue
in ad set $a$ is log-normal, $R_a \sim \mathrm{LogNormal}(\theta_a, \sigma_a)$, so its mean is
$E[R_a] = \exp(\theta_a + \sigma_a^2/2)$ (``adset_mean``).

**Fenton-Wilkinson.** The sum of $n_i$ independent $R_{a_i}$ is approximated by one log-normal
with the same mean and variance:

$$\sigma_i^2 = \log\!\Big(1 + \frac{e^{\sigma_{a_i}^2} - 1}{n_i}\Big), \qquad
  \mu_i = \theta_{a_i} + \log n_i + \tfrac12\big(\sigma_{a_i}^2 - \sigma_i^2\big), \qquad
  \log r_i \sim \mathcal N(\mu_i, \sigma_i).$$

Site names follow the Stan programs (``account_mu`` $=\lambda$, ``account_mu_sd`` $=\phi$,
``campaign_mu_sd`` $=\tau$, ``revenue_sigma`` $=\sigma$, ``adset_mu`` $=\theta_a$, ``campaign_mu``
$=\mu_c$), so draws compare one to one with Stan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from jaxrev.data import RevenueArrays
from jaxrev.distributions import TruncatedExponential, TruncatedInverseGamma
from jaxrev.types import ObsFloat


@dataclass(frozen=True)
class MultilevelPriors:
    """Priors and bounds of the multilevel model; the defaults are the seed's. The base of every
    multilevel-family model's priors (they add their own fields after these).

    Hashable (frozen, plain floats), so a set of priors can be a static argument of a compiled
    fit.
    """

    account_mu_low: float = -5.0  # lambda ~ U(low, high), flat on Stan's bounds
    account_mu_high: float = 20.0
    pooling_sd_rate: float = 1.0 / 0.05  # phi, tau ~ Exponential(rate) on (0, upper)
    pooling_sd_upper: float = 5.0
    sigma_concentration: float = 6.0  # sigma ~ InvGamma(alpha, beta) on (low, high)
    sigma_rate: float = 4.0
    sigma_low: float = 0.001
    sigma_high: float = 2.5


SEED_PRIORS = MultilevelPriors()  # the seed's priors, the default of every program using them
POOLING_SITES = ("account_mu_sd", "campaign_mu_sd")  # phi and tau


def fenton_wilkinson(
    theta: ObsFloat, sigma: ObsFloat | float, conversions: ObsFloat
) -> tuple[ObsFloat, ObsFloat]:
    r"""Log-normal approximation of a sum of $n_i$ i.i.d. $\mathrm{LogNormal}(\theta, \sigma)$.

    Matches mean and variance exactly:
    $\sigma_i^2 = \log(1 + (e^{\sigma^2} - 1)/n_i)$ and
    $\mu_i = \theta + \log n_i + (\sigma^2 - \sigma_i^2)/2$. Computed with ``expm1``/``log1p`` so
    small $\sigma$ stays accurate in float32.

    Args:
        theta: $\theta_{a_i}$, location of one conversion's log revenue.
        sigma: $\sigma_{a_i}$, its scale (broadcasts).
        conversions: $n_i \ge 1$.

    Returns:
        ``(mu_i, sigma_i)``, location and scale of $\log r_i$.

    Example:
        >>> mu_i, sigma_i = fenton_wilkinson(jnp.array([1.0]), 0.8, jnp.array([3.0]))
    """
    sigma_sq = jnp.square(sigma)
    obs_sigma_sq = jnp.log1p(jnp.expm1(sigma_sq) / conversions)
    obs_mu = theta + jnp.log(conversions) + 0.5 * (sigma_sq - obs_sigma_sq)
    return obs_mu, jnp.sqrt(obs_sigma_sq)


def observe(data: RevenueArrays, obs_mu: ObsFloat, obs_sigma: ObsFloat) -> None:
    """The likelihood $\\log r_i \\sim N(\\mu_i, \\sigma_i)$ of the unmasked observations."""
    with (
        numpyro.plate("observations", data.conversions.shape[-1]),
        numpyro.handlers.mask(mask=data.obs_mask),
    ):
        numpyro.sample("log_revenue", dist.Normal(obs_mu, obs_sigma), obs=data.log_revenue)


def account_level(p: MultilevelPriors) -> tuple:
    r"""$\lambda$, $\phi$, $\tau$ with the seed's priors (as in the multilevel model)."""
    account_mu = numpyro.sample("account_mu", dist.Uniform(p.account_mu_low, p.account_mu_high))
    account_mu_sd = numpyro.sample(
        "account_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    campaign_mu_sd = numpyro.sample(
        "campaign_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    return account_mu, account_mu_sd, campaign_mu_sd


def shared_sigma(p: MultilevelPriors):
    r"""$\sigma \sim \mathrm{InvGamma}(\alpha, \beta)$ on its bounds (``revenue_sigma``)."""
    return numpyro.sample(
        "revenue_sigma",
        TruncatedInverseGamma(p.sigma_concentration, p.sigma_rate, p.sigma_low, p.sigma_high),
    )


def effects(data: RevenueArrays, account, effect: dist.Distribution) -> tuple:
    r"""$\mu_c = \lambda + \phi z_c$, $\theta_a = \mu_{c_a} + \tau z_a$ with $z \sim$ ``effect``."""
    account_mu, account_mu_sd, campaign_mu_sd = account
    with numpyro.plate("campaigns", data.num_campaigns):
        campaign_mu_z = numpyro.sample("campaign_mu_z", effect)
    with numpyro.plate("adsets", data.num_adsets):
        adset_mu_z = numpyro.sample("adset_mu_z", effect)
    campaign_mu = numpyro.deterministic("campaign_mu", account_mu + account_mu_sd * campaign_mu_z)
    adset_mu = numpyro.deterministic(
        "adset_mu", campaign_mu[data.adset_campaign] + campaign_mu_sd * adset_mu_z
    )
    return campaign_mu, adset_mu


def mean_log_revenue_per_conversion(arrays: RevenueArrays) -> jax.Array:
    r"""$\overline{\log(r_i/n_i)}$ over the unmasked observations (0 when there are none)."""
    w = arrays.obs_mask.astype(arrays.conversions.dtype)
    per_conversion = arrays.log_revenue - jnp.log(arrays.conversions)
    return jnp.sum(w * per_conversion) / jnp.maximum(jnp.sum(w), 1.0)


def multilevel_initial_values(arrays: RevenueArrays, priors: MultilevelPriors) -> dict:
    r"""Starting values on the constrained scale, from the data.

    The account location $\lambda$ starts at the mean of $\log(r_i/n_i)$ (clipped inside its
    bounds), $\sigma$ at 1, pooling scales at their prior mean 0.05, effects at 0. Works on traced
    arrays (inside ``jit``/``vmap``) and ignores masked observations.
    """
    overall = mean_log_revenue_per_conversion(arrays)
    dtype = arrays.conversions.dtype
    span = priors.account_mu_high - priors.account_mu_low
    return {
        "account_mu": jnp.clip(
            overall, priors.account_mu_low + 0.01 * span, priors.account_mu_high - 0.01 * span
        ),
        "account_mu_sd": jnp.asarray(0.05, dtype),
        "campaign_mu_z": jnp.zeros(arrays.num_campaigns, dtype),
        "campaign_mu_sd": jnp.asarray(0.05, dtype),
        "adset_mu_z": jnp.zeros(arrays.num_adsets, dtype),
        "revenue_sigma": jnp.clip(jnp.asarray(1.0, dtype), priors.sigma_low, priors.sigma_high),
    }


# The multilevel family's indexed and checked sites (each model adds its own).
MULTILEVEL_ADSET_SITES = ("adset_mu_z", "adset_mu", "adset_mean")
MULTILEVEL_CAMPAIGN_SITES = ("campaign_mu_z", "campaign_mu", "campaign_mean")
MULTILEVEL_CHECKED_SITES = (
    "account_mu",
    "account_mu_sd",
    "campaign_mu_sd",
    "revenue_sigma",
    "adset_mean",
    "campaign_mean",
)
