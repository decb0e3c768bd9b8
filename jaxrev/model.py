r"""The revenue-per-conversion models of the seed, as NumPyro programs.

Symbols (seed ``004``): observation $i$ is one ad set-hour with $n_i \ge 1$ conversions and total
revenue $r_i$; $a_i$ is its ad set and $c_a$ the campaign of ad set $a$. One conversion's revenue
in ad set $a$ is log-normal, $R_a \sim \mathrm{LogNormal}(\theta_a, \sigma_a)$, so its mean is
$E[R_a] = \exp(\theta_a + \sigma_a^2/2)$ (``adset_mean``).

**Fenton-Wilkinson.** The sum of $n_i$ independent $R_{a_i}$ is approximated by one log-normal
with the same mean and variance:

$$\sigma_i^2 = \log\!\Big(1 + \frac{e^{\sigma_{a_i}^2} - 1}{n_i}\Big), \qquad
  \mu_i = \theta_{a_i} + \log n_i + \tfrac12\big(\sigma_{a_i}^2 - \sigma_i^2\big), \qquad
  \log r_i \sim \mathcal N(\mu_i, \sigma_i).$$

**multilevel** (the seed's second Stan program, non-centered):

$$\lambda \sim \mathcal U(-5, 20), \quad \phi, \tau \sim \mathrm{Exp}(1/0.05)\,\mathbb 1_{(0,5)},
  \quad \sigma \sim \mathrm{InvGamma}(6, 4)\,\mathbb 1_{(0.001, 2.5)},$$
$$\mu_c = \lambda + \phi z_c, \quad \theta_a = \mu_{c_a} + \tau z_a,
  \quad z_c, z_a \sim \mathcal N(0, 1),$$

one $\sigma$ shared by every ad set; ``campaign_mean`` $= \exp(\mu_c + \sigma^2/2)$.

**no_pooling** (the seed's first program): $\theta_a$ and $\sigma_a$ per ad set with flat priors
(our $\sigma_a$ is constrained positive: the seed's enters only squared, so its sign is not
identified). As the seed says, it does not fit well; it is the reference for "no pooling".

Site names follow the Stan programs (``account_mu`` $=\lambda$, ``account_mu_sd`` $=\phi$,
``campaign_mu_sd`` $=\tau$, ``revenue_sigma`` $=\sigma$, ``adset_mu`` $=\theta_a$, ``campaign_mu``
$=\mu_c$), so draws compare one to one with Stan's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from jaxrev.distributions import TruncatedExponential, TruncatedInverseGamma
from jaxrev.types import AdsetBool, AdsetInt, CampaignBool, ObsBool, ObsFloat, ObsInt


class RevenueArrays(NamedTuple):
    """Model inputs for one account: a pytree of arrays, so fits ``jit`` and ``vmap``.

    Sizes come from shapes (``adset_mask`` gives the number of ad sets, ``campaign_mask`` the number
    of campaigns), so the same compiled program serves every account of the same padded shape.
    Padded observations have ``obs_mask`` False and drop out of the likelihood; padded ad sets and
    campaigns get no observations and only their standard-normal ``z`` prior.
    """

    log_revenue: ObsFloat | None  # log r_i (None: sample it, for predictive checks)
    conversions: ObsFloat  # n_i >= 1
    adset: ObsInt  # a_i, 0-based
    adset_campaign: AdsetInt  # c_a, 0-based
    obs_mask: ObsBool
    adset_mask: AdsetBool
    campaign_mask: CampaignBool
    time: ObsFloat  # t_i, days since the account's first row (0 without a time column)

    @property
    def num_adsets(self) -> int:
        return self.adset_mask.shape[-1]

    @property
    def num_campaigns(self) -> int:
        return self.campaign_mask.shape[-1]


class MultilevelPriors(NamedTuple):
    """Priors and bounds of the multilevel model; the defaults are the seed's.

    Hashable (plain floats), so a set of priors can be a static argument of a compiled fit.
    """

    account_mu_low: float = -5.0  # lambda ~ U(low, high), flat on Stan's bounds
    account_mu_high: float = 20.0
    pooling_sd_rate: float = 1.0 / 0.05  # phi, tau ~ Exponential(rate) on (0, upper)
    pooling_sd_upper: float = 5.0
    sigma_concentration: float = 6.0  # sigma ~ InvGamma(alpha, beta) on (low, high)
    sigma_rate: float = 4.0
    sigma_low: float = 0.001
    sigma_high: float = 2.5


class NoPoolingPriors(NamedTuple):
    """Priors of the no-pooling model. ``None`` bounds give the seed's flat (improper) priors;
    numbers give a flat prior on those bounds (a proper posterior even for ad sets with one hour).
    """

    theta_bounds: tuple[float, float] | None = None
    sigma_bounds: tuple[float, float] | None = None


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


def _observe(data: RevenueArrays, obs_mu: ObsFloat, obs_sigma: ObsFloat) -> None:
    with (
        numpyro.plate("observations", data.conversions.shape[-1]),
        numpyro.handlers.mask(mask=data.obs_mask),
    ):
        numpyro.sample("log_revenue", dist.Normal(obs_mu, obs_sigma), obs=data.log_revenue)


def multilevel(data: RevenueArrays, priors: MultilevelPriors = MultilevelPriors()) -> None:
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
    _observe(data, obs_mu, obs_sigma)


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
    _observe(data, obs_mu, obs_sigma)


# --------------------------------------------------------------------------------------------
# The seed's next models: per-ad-set spread, heavy-tailed effects, a drifting level
# --------------------------------------------------------------------------------------------


class HierSigmaPriors(NamedTuple):
    r"""Priors of ``hier_sigma``: the multilevel ones (σ is now the account-level spread) plus the
    half-normal scales of the campaign and ad-set deviations of $\log\sigma$."""

    account_mu_low: float = -5.0
    account_mu_high: float = 20.0
    pooling_sd_rate: float = 1.0 / 0.05
    pooling_sd_upper: float = 5.0
    sigma_concentration: float = 6.0
    sigma_rate: float = 4.0
    sigma_low: float = 0.001
    sigma_high: float = 2.5
    log_sigma_sd_scale: float = 0.5  # tau_sigma^c, tau_sigma^a ~ HalfNormal(scale)
    adset_sigma_max: float = 5.0  # sigma_a is capped here (exp of a normal can overflow)


class StudentTPriors(NamedTuple):
    r"""Priors of ``student_t``: the multilevel ones plus the degrees of freedom $\nu$ of the
    campaign and ad-set effects: fixed when ``df`` is a number, else
    $\nu - 1 \sim \mathrm{Gamma}(2, 0.1)$ (mean 21; tails from Cauchy-like to nearly normal)."""

    account_mu_low: float = -5.0
    account_mu_high: float = 20.0
    pooling_sd_rate: float = 1.0 / 0.05
    pooling_sd_upper: float = 5.0
    sigma_concentration: float = 6.0
    sigma_rate: float = 4.0
    sigma_low: float = 0.001
    sigma_high: float = 2.5
    df: float | None = None
    df_concentration: float = 2.0
    df_rate: float = 0.1


class LocalLevelPriors(NamedTuple):
    r"""Priors of ``local_level``: the multilevel ones plus the drift of the account's level, a
    Gaussian random walk on ``num_knots`` knots ``knot_days`` apart with daily step sd
    $\omega \sim \mathrm{HalfNormal}(\texttt{drift\_sd\_scale})$ (log scale per
    $\sqrt{\text{day}}$). Static sizes, so accounts of any length share one program."""

    account_mu_low: float = -5.0
    account_mu_high: float = 20.0
    pooling_sd_rate: float = 1.0 / 0.05
    pooling_sd_upper: float = 5.0
    sigma_concentration: float = 6.0
    sigma_rate: float = 4.0
    sigma_low: float = 0.001
    sigma_high: float = 2.5
    num_knots: int = 64
    knot_days: float = 7.0
    drift_sd_scale: float = 0.02


def _account_level(p) -> tuple:
    r"""$\lambda$, $\phi$, $\tau$ with the seed's priors (as in :func:`multilevel`)."""
    account_mu = numpyro.sample("account_mu", dist.Uniform(p.account_mu_low, p.account_mu_high))
    account_mu_sd = numpyro.sample(
        "account_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    campaign_mu_sd = numpyro.sample(
        "campaign_mu_sd", TruncatedExponential(p.pooling_sd_rate, p.pooling_sd_upper)
    )
    return account_mu, account_mu_sd, campaign_mu_sd


def _shared_sigma(p):
    return numpyro.sample(
        "revenue_sigma",
        TruncatedInverseGamma(p.sigma_concentration, p.sigma_rate, p.sigma_low, p.sigma_high),
    )


def _effects(data: RevenueArrays, account, effect: dist.Distribution) -> tuple:
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


def hier_sigma(data: RevenueArrays, priors: HierSigmaPriors = HierSigmaPriors()) -> None:
    r"""Multilevel means *and* spreads: each ad set has its own $\sigma_a$, pooled toward its
    campaign's, pooled toward the account's (non-centered on the log scale):

    $$\log\sigma_c = \log\sigma + \tau^\sigma_c\, z^\sigma_c, \qquad
      \log\sigma_a = \log\sigma_{c_a} + \tau^\sigma_a\, z^\sigma_a, \qquad
      z^\sigma \sim N(0, 1), \quad \tau^\sigma_c, \tau^\sigma_a \sim \mathrm{HalfNormal}(s),$$

    means as in :func:`multilevel`; the Fenton-Wilkinson step uses $\sigma_{a_i}$.
    ``adset_mean`` $= e^{\theta_a + \sigma_a^2/2}$, ``campaign_mean`` $= e^{\mu_c + \sigma_c^2/2}$.
    """
    p = priors
    account = _account_level(p)
    campaign_mu, adset_mu = _effects(data, account, dist.Normal(0.0, 1.0))
    revenue_sigma = _shared_sigma(p)
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
    _observe(data, obs_mu, obs_sigma)


def student_t(data: RevenueArrays, priors: StudentTPriors = StudentTPriors()) -> None:
    r"""Heavy-tailed campaign and ad-set effects: :func:`multilevel` with
        $z_c, z_a \sim t_\nu(0, 1)$ (non-centered), so a few campaigns or ad sets far from the rest
        are not shrunk as hard as the bulk; $
    u$ fixed or learnt (see :class:`StudentTPriors`).
    """
    p = priors
    account = _account_level(p)
    if p.df is None:
        df = 1.0 + numpyro.sample("df_minus_one", dist.Gamma(p.df_concentration, p.df_rate))
        numpyro.deterministic("df", df)
    else:
        df = p.df
    campaign_mu, adset_mu = _effects(data, account, dist.StudentT(df, 0.0, 1.0))
    revenue_sigma = _shared_sigma(p)
    half_var = 0.5 * jnp.square(revenue_sigma)
    numpyro.deterministic("campaign_mean", jnp.exp(campaign_mu + half_var))
    numpyro.deterministic("adset_mean", jnp.exp(adset_mu + half_var))
    obs_mu, obs_sigma = fenton_wilkinson(adset_mu[data.adset], revenue_sigma, data.conversions)
    _observe(data, obs_mu, obs_sigma)


def level_at(level: jax.Array, time: ObsFloat, knot_days: float) -> ObsFloat:
    """Piecewise-linear interpolation of knot values ``level`` (K,) at ``time`` (days); times
    past the last knot take its value."""
    position = jnp.clip(time / knot_days, 0.0, level.shape[-1] - 1.0)
    left = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, level.shape[-1] - 2)
    weight = position - left
    return (1.0 - weight) * level[left] + weight * level[left + 1]


def local_level(data: RevenueArrays, priors: LocalLevelPriors = LocalLevelPriors()) -> None:
    r"""A slowly drifting account-level revenue per conversion: :func:`multilevel` plus a local
    level $\ell(t)$ on the log scale shared by every ad set,

    $$\ell_0 = 0, \quad \ell_k = \ell_{k-1} + \omega\sqrt{\Delta}\,arepsilon_k, \quad
      arepsilon_k \sim N(0, 1), \quad \omega \sim \mathrm{HalfNormal}(s),$$

    on knots $\Delta$ days apart (linear in between; past the last knot it stays flat), and
    $\log r_i \sim$ Fenton-Wilkinson with $\theta_{a_i} + \ell(t_i)$. $\theta_a$ is the ad set's
    level at $t = 0$; ``adset_mean`` and ``campaign_mean`` are reported at the last observed
    time, ``level`` (K,) and ``level_now`` are deterministic sites. Knots past the data keep
    their random-walk prior, so predictions ahead carry the drift's uncertainty.
    """
    p = priors
    account = _account_level(p)
    campaign_mu, adset_mu = _effects(data, account, dist.Normal(0.0, 1.0))
    revenue_sigma = _shared_sigma(p)
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
    _observe(data, obs_mu, obs_sigma)


class ModelSpec(NamedTuple):
    """A registered model: its NumPyro program, default priors and the quantities it reports."""

    program: Callable[..., None]
    default_priors: NamedTuple
    has_campaign_level: bool


MODELS: dict[str, ModelSpec] = {
    "multilevel": ModelSpec(multilevel, MultilevelPriors(), True),
    "no_pooling": ModelSpec(no_pooling, NoPoolingPriors(), False),
    "hier_sigma": ModelSpec(hier_sigma, HierSigmaPriors(), True),
    "student_t": ModelSpec(student_t, StudentTPriors(), True),
    "local_level": ModelSpec(local_level, LocalLevelPriors(), True),
}


def get_model(name: str) -> ModelSpec:
    """Look up a model by name (see :data:`MODELS`)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
