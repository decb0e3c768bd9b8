r"""**local_level**: the multilevel model plus a slowly drifting account level $\ell(t)$."""

from __future__ import annotations

from dataclasses import dataclass

import jax
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
from jaxrev.types import ObsFloat


@dataclass(frozen=True)
class LocalLevelPriors(MultilevelPriors):
    r"""Priors of ``local_level``: the multilevel ones plus the drift of the account's level, a
    Gaussian random walk on ``num_knots`` knots ``knot_days`` apart with daily step sd
    $\omega \sim \mathrm{HalfNormal}(\texttt{drift\_sd\_scale})$ (log scale per
    $\sqrt{\text{day}}$). Static sizes, so accounts of any length share one program."""

    num_knots: int = 64
    knot_days: float = 7.0
    drift_sd_scale: float = 0.02


def level_at(level: jax.Array, time: ObsFloat, knot_days: float) -> ObsFloat:
    """Piecewise-linear interpolation of knot values ``level`` (K,) at ``time`` (days); times
    past the last knot take its value."""
    position = jnp.clip(time / knot_days, 0.0, level.shape[-1] - 1.0)
    left = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, level.shape[-1] - 2)
    weight = position - left
    return (1.0 - weight) * level[left] + weight * level[left + 1]


def local_level(data: RevenueArrays, priors: LocalLevelPriors = LocalLevelPriors()) -> None:
    r"""A slowly drifting account-level revenue per conversion: the multilevel model plus a local
    level $\ell(t)$ on the log scale shared by every ad set,

    $$\ell_0 = 0, \quad \ell_k = \ell_{k-1} + \omega\sqrt{\Delta}\,\varepsilon_k, \quad
      \varepsilon_k \sim N(0, 1), \quad \omega \sim \mathrm{HalfNormal}(s),$$

    on knots $\Delta$ days apart (linear in between; past the last knot it stays flat), and
    $\log r_i \sim$ Fenton-Wilkinson with $\theta_{a_i} + \ell(t_i)$. $\theta_a$ is the ad set's
    level at $t = 0$; ``adset_mean`` and ``campaign_mean`` are reported at the last observed
    time, ``level`` (K,) and ``level_now`` are deterministic sites. Knots past the data keep
    their random-walk prior, so predictions ahead carry the drift's uncertainty.
    """
    p = priors
    account = account_level(p)
    campaign_mu, adset_mu = effects(data, account, dist.Normal(0.0, 1.0))
    revenue_sigma = shared_sigma(p)
    drift_sd = numpyro.sample("drift_sd", dist.HalfNormal(p.drift_sd_scale))
    with numpyro.plate("knots", p.num_knots - 1):
        level_z = numpyro.sample("level_z", dist.Normal(0.0, 1.0))
    steps = drift_sd * jnp.sqrt(p.knot_days) * level_z
    level = numpyro.deterministic(
        "level", jnp.concatenate([jnp.zeros_like(steps[:1]), jnp.cumsum(steps)])
    )
    last = jnp.max(jnp.where(data.obs_mask, data.time, 0.0))
    level_now = numpyro.deterministic("level_now", level_at(level, last, p.knot_days))
    half_var = 0.5 * jnp.square(revenue_sigma)
    numpyro.deterministic("campaign_mean", jnp.exp(campaign_mu + level_now + half_var))
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + level_now + half_var))
    theta = adset_mu[data.adset] + level_at(level, data.time, p.knot_days)
    obs_mu, obs_sigma = fenton_wilkinson(theta, revenue_sigma, data.conversions)
    observe(data, obs_mu, obs_sigma)


def local_level_initial_values(arrays: RevenueArrays, priors: LocalLevelPriors) -> dict:
    """The multilevel start and a flat level."""
    return multilevel_initial_values(arrays, priors) | {
        "drift_sd": jnp.asarray(0.5 * priors.drift_sd_scale, arrays.conversions.dtype),
        "level_z": jnp.zeros(priors.num_knots - 1, arrays.conversions.dtype),
    }


LOCAL_LEVEL = register_model(
    ModelSpec(
        name="local_level",
        program=local_level,
        default_priors=LocalLevelPriors(),
        initial_values=local_level_initial_values,
        adset_sites=MULTILEVEL_ADSET_SITES,
        campaign_sites=MULTILEVEL_CAMPAIGN_SITES,
        checked_sites=(*MULTILEVEL_CHECKED_SITES, "drift_sd", "level_now"),
        has_campaign_level=True,
        needs_time=True,
        other_dims={"level": ("knot",), "level_z": ("knot_step",)},
        pooling_sites=POOLING_SITES,
    )
)
