r"""**student_t**: heavy-tailed campaign and ad-set effects ($t_\nu$ instead of normal)."""

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
class StudentTPriors(MultilevelPriors):
    r"""Priors of ``student_t``: the multilevel ones plus the degrees of freedom $\nu$ of the
    campaign and ad-set effects: fixed when ``df`` is a number, else
    $\nu - 1 \sim \mathrm{Gamma}(2, 0.1)$ (mean 21; tails from Cauchy-like to nearly normal)."""

    df: float | None = None
    df_concentration: float = 2.0
    df_rate: float = 0.1


def student_t(data: RevenueArrays, priors: StudentTPriors = StudentTPriors()) -> None:
    r"""Heavy-tailed campaign and ad-set effects: the multilevel model with
    $z_c, z_a \sim t_\nu(0, 1)$ (non-centered), so a few campaigns or ad sets far from the rest
    are not shrunk as hard as the bulk; $\nu$ fixed or learnt (see :class:`StudentTPriors`).
    """
    p = priors
    account = account_level(p)
    if p.df is None:
        df = 1.0 + numpyro.sample("df_minus_one", dist.Gamma(p.df_concentration, p.df_rate))
        numpyro.deterministic("df", df)
    else:
        df = p.df
    campaign_mu, adset_mu = effects(data, account, dist.StudentT(df, 0.0, 1.0))
    revenue_sigma = shared_sigma(p)
    half_var = 0.5 * jnp.square(revenue_sigma)
    numpyro.deterministic("campaign_mean", jnp.exp(campaign_mu + half_var))
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + half_var))
    obs_mu, obs_sigma = fenton_wilkinson(adset_mu[data.adset], revenue_sigma, data.conversions)
    observe(data, obs_mu, obs_sigma)


def student_t_initial_values(arrays: RevenueArrays, priors: StudentTPriors) -> dict:
    r"""The multilevel start, and $\nu = 10$ when it is learnt."""
    values = multilevel_initial_values(arrays, priors)
    if priors.df is None:
        values["df_minus_one"] = jnp.asarray(9.0, arrays.conversions.dtype)
    return values


STUDENT_T = register_model(
    ModelSpec(
        name="student_t",
        program=student_t,
        default_priors=StudentTPriors(),
        initial_values=student_t_initial_values,
        adset_sites=MULTILEVEL_ADSET_SITES,
        campaign_sites=MULTILEVEL_CAMPAIGN_SITES,
        checked_sites=(*MULTILEVEL_CHECKED_SITES, "df"),
        has_campaign_level=True,
        pooling_sites=POOLING_SITES,
    )
)
