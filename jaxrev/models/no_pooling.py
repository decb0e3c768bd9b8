r"""**no_pooling**: the seed's first program, independent $(\theta_a, \sigma_a)$ per ad set.

Flat priors (our $\sigma_a$ is constrained positive: the seed's enters only squared, so its sign
is not identified). As the seed says, it does not fit well; it is the reference for "no pooling".
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from jaxrev.data import RevenueArrays
from jaxrev.models.common import fenton_wilkinson, mean_log_revenue_per_conversion, observe
from jaxrev.models.spec import ModelSpec, register_model


@dataclass(frozen=True)
class NoPoolingPriors:
    """Priors of the no-pooling model. ``None`` bounds give the seed's flat (improper) priors;
    numbers give a flat prior on those bounds (a proper posterior even for ad sets with one hour).
    """

    theta_bounds: tuple[float, float] | None = None
    sigma_bounds: tuple[float, float] | None = None


def _flat_or_bounded(bounds: tuple[float, float] | None, support) -> dist.Distribution:
    if bounds is None:
        return dist.ImproperUniform(support, (), event_shape=())
    return dist.Uniform(*bounds)


def no_pooling(data: RevenueArrays, priors: NoPoolingPriors = NoPoolingPriors()) -> None:
    r"""The seed's first program: independent $(\theta_a, \sigma_a)$ per ad set, no hierarchy.

    Deterministic site: ``adset_mean`` $=\exp(\theta_a + \sigma_a^2/2)$. With the default flat
    priors the posterior is improper for ad sets with a single observation (the seed's "fails to
    fit"); pass ``NoPoolingPriors(theta_bounds=..., sigma_bounds=...)`` for a proper one.
    """
    with numpyro.plate("adsets", data.num_adsets):
        adset_mu = numpyro.sample(
            "adset_mu", _flat_or_bounded(priors.theta_bounds, constraints.real)
        )
        adset_sigma = numpyro.sample(
            "adset_sigma", _flat_or_bounded(priors.sigma_bounds, constraints.positive)
        )
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + 0.5 * jnp.square(adset_sigma)))
    obs_mu, obs_sigma = fenton_wilkinson(
        adset_mu[data.adset], adset_sigma[data.adset], data.conversions
    )
    observe(data, obs_mu, obs_sigma)


def no_pooling_initial_values(arrays: RevenueArrays, priors: NoPoolingPriors) -> dict:
    r"""$\theta_a$ at the ad set's mean $\log(r_i/n_i)$ (the account's for an ad set without
    rows; inside its bounds, if any) and $\sigma_a = 1$ (clipped to its bounds)."""
    w = arrays.obs_mask.astype(arrays.conversions.dtype)
    per_conversion = arrays.log_revenue - jnp.log(arrays.conversions)
    overall = mean_log_revenue_per_conversion(arrays)
    num = jax.ops.segment_sum(w * per_conversion, arrays.adset, arrays.num_adsets)
    den = jax.ops.segment_sum(w, arrays.adset, arrays.num_adsets)
    theta = jnp.where(den > 0, num / jnp.maximum(den, 1.0), overall)
    if priors.theta_bounds is not None:
        lo, hi = priors.theta_bounds
        theta = jnp.clip(theta, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo))
    sigma = jnp.ones(arrays.num_adsets, arrays.conversions.dtype)
    if priors.sigma_bounds is not None:
        sigma = jnp.clip(sigma, *priors.sigma_bounds)
    return {"adset_mu": theta, "adset_sigma": sigma}


NO_POOLING = register_model(
    ModelSpec(
        name="no_pooling",
        program=no_pooling,
        default_priors=NoPoolingPriors(),
        initial_values=no_pooling_initial_values,
        adset_sites=("adset_mu", "adset_mean", "adset_sigma"),
        campaign_sites=(),
        checked_sites=("adset_mean", "adset_sigma"),
        has_campaign_level=False,
    )
)
