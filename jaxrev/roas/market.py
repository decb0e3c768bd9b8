r"""Offline evaluation: a drifting market of ad sets with known truth, and a day-by-day replay.

**The market.** Ad set $a$ (campaign $c_a$) on day $t$ has true impressions per unit spend
$\lambda_{at}$, click-through rate $p_{at}$, conversion rate per click $q_{at}$ and log-normal
revenue per conversion $\mathrm{LogNormal}(\theta_{at}, \sigma)$. On day 0,

$$\log\lambda_{a0} = \log\bar\lambda + e^\lambda_a, \quad \mathrm{logit}\,p_{a0} =
  \mathrm{logit}\,\bar p + e^p_a, \quad \mathrm{logit}\,q_{a0} = \mathrm{logit}\,\bar q + e^q_a,
  \quad \theta_{a0} = \log\bar R - \sigma^2/2 + e^\theta_a,$$

where each $e$ is a campaign effect plus an ad-set effect (``campaign_share`` of the variance at
the campaign level); the funnel effects have standard deviation ``funnel_spread`` / $\sqrt3$ each
(so $\log$ conversions per spend spreads by about ``funnel_spread``), $e^\theta$ has
``revenue_spread`` (0: every ad set earns the same per conversion) and correlation
``correlation`` with the ad set's log conversions per spend (negative: cheap conversions are
worth less). Then each of the four moves as an AR(1) around its day-0 value,
$x_t - x_0 = \phi (x_{t-1} - x_0) + \delta\,\varepsilon_t$ (``drift`` $\delta$, ``persistence``
$\phi$; $\delta = 0$ is a stationary market). Given spend $s_{at}$: impressions
$\sim \mathrm{Poisson}(\lambda s)$, clicks $\sim \mathrm{Binomial}$, conversions
$\sim \mathrm{Binomial}$, and revenue is the exact sum of that many log-normal purchases.
A leading axis of seeds simulates many markets at once.

**The replay.** Every policy starts from the even split (``warmup_days``), then each day
splits a fixed budget from what it has seen so far, and the market answers. Policies:

* ``fixed``: the even split, always;
* ``cpa_thompson``: Thompson sampling on conversions per spend (the funnel alone: CPA
  allocation);
* ``roas_greedy``: all it may give to the ad set with the highest posterior-mean ROAS;
* ``roas_thompson``: Thompson sampling on ROAS draws (funnel × revenue per conversion); with
  ``rule="proportional"``, shares proportional to a power of the probability of being best.

All use the same funnel (:mod:`jaxrev.roas.funnel`: empirical Bayes per campaign, warm-started from
the previous day) and the same floors and caps; the oracle puts the budget on the truly best ad
sets. Regret is the oracle's expected revenue minus the policy's, where a day's expected revenue
is $\sum_a s_{at}\,\mathrm{ROAS}^{\text{true}}_{at}$ (noise-free, so differences are due to the
decisions).

**Revenue per conversion in the replay** cannot come from a NumPyro fit per day and per seed
(thousands of fits). It comes from a conjugate stand-in of the jaxrev model: the same
Fenton-Wilkinson likelihood of each day's total, $\log r_{at} \sim \mathcal N(\theta_a + \log n_{at}
+ \tfrac12(\sigma^2 - \sigma_{at}^2), \sigma_{at}^2)$, with $\sigma$ known (the account-level
$\sigma$ is pinned down by all conversions), $\theta_a \sim \mathcal N(\mu, \tau^2)$ pooled at
the account level and the seed's prior $\tau \sim \mathrm{Exponential}(20)$ (mean 0.05): its
posterior is computed exactly on a grid of $\tau$ (:func:`revenue_mean_draws`). Draws are joint
($\tau$, then $\mu$, then each $\theta_a$), so when the data show no difference every ad set gets
nearly the same revenue draw. The revenue statistics are discounted with the same half-life as
the funnel.
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from jaxrev.roas.allocation import (
    constrained_shares,
    greedy_shares,
    share_bounds,
    shares_by_rule,
)
from jaxrev.roas.funnel import (
    FunnelParams,
    FunnelStats,
    HyperPrior,
    add_statistics,
    discount_statistics,
    fit_funnel_prior,
    funnel_posterior,
    posterior_means,
    sample_funnel,
)

# --------------------------------------------------------------------------------------------
# The market
# --------------------------------------------------------------------------------------------


class MarketTruth(NamedTuple):
    """True rates, each ``(seeds, days, adsets)``; ``revenue_sigma`` is $\\sigma$ and
    ``adset_campaign`` the campaign index of each ad set."""

    impressions_per_spend: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    revenue_mu: np.ndarray
    revenue_sigma: float
    adset_campaign: np.ndarray

    @property
    def conversions_per_spend(self) -> np.ndarray:
        return self.impressions_per_spend * self.ctr * self.cvr

    @property
    def revenue_per_conversion(self) -> np.ndarray:
        return np.exp(self.revenue_mu + 0.5 * self.revenue_sigma**2)

    @property
    def roas(self) -> np.ndarray:
        return self.conversions_per_spend * self.revenue_per_conversion

    @property
    def num_seeds(self) -> int:
        return self.ctr.shape[0]

    @property
    def num_days(self) -> int:
        return self.ctr.shape[1]

    @property
    def num_adsets(self) -> int:
        return self.ctr.shape[2]

    @property
    def num_campaigns(self) -> int:
        return int(self.adset_campaign.max()) + 1


def simulate_market(
    seed: int | np.random.Generator,
    num_seeds: int = 100,
    num_days: int = 60,
    adsets_per_campaign: tuple[int, ...] = (4, 4, 4),
    *,
    impressions_per_spend: float = 100.0,
    ctr: float = 0.01,
    cvr: float = 0.03,
    revenue_mean: float = 50.0,
    revenue_sigma: float = 1.0,
    funnel_spread: float = 0.3,
    revenue_spread: float = 0.3,
    correlation: float = -0.5,
    campaign_share: float = 0.5,
    drift: float = 0.0,
    persistence: float = 1.0,
    revenue_mu: np.ndarray | None = None,
) -> MarketTruth:
    """Simulate ``num_seeds`` markets (see the module docstring for the model).

    Args:
        seed: integer seed or generator.
        adsets_per_campaign: ad sets in each campaign.
        impressions_per_spend, ctr, cvr: typical $\\bar\\lambda, \\bar p, \\bar q$ (defaults: a
            CPM of 10, 1% click-through, 3% conversion: 0.03 conversions per unit spend).
        revenue_mean: typical mean revenue per conversion $\\bar R$; ``revenue_sigma``: $\\sigma$.
        funnel_spread, revenue_spread, correlation, campaign_share: how ad sets differ.
        drift, persistence: daily AR(1) innovation sd and coefficient of every log/logit rate
            and of $\\theta$ (``drift=0``: stationary).
        revenue_mu: fixed day-0 $\\theta_a$ ``(adsets,)`` instead of drawn ones.

    Example:
        >>> truth = simulate_market(0, num_seeds=50, num_days=60)
        >>> truth.roas.shape
        (50, 60, 12)
    """
    rng = np.random.default_rng(seed)
    campaign = np.repeat(np.arange(len(adsets_per_campaign)), adsets_per_campaign)
    num_adsets, num_campaigns = len(campaign), len(adsets_per_campaign)
    S = num_seeds

    def effects(sd):
        c = rng.standard_normal((S, num_campaigns))[:, campaign]
        a = rng.standard_normal((S, num_adsets))
        return sd * (np.sqrt(campaign_share) * c + np.sqrt(1 - campaign_share) * a)

    stage_sd = funnel_spread / np.sqrt(3)
    e_lam, e_ctr, e_cvr = effects(stage_sd), effects(stage_sd), effects(stage_sd)
    total = e_lam + e_ctr + e_cvr
    z = total / funnel_spread if funnel_spread > 0 else np.zeros_like(total)
    other = effects(1.0)
    e_theta = revenue_spread * (correlation * z + np.sqrt(1 - correlation**2) * other)
    x0 = np.stack(
        [
            np.log(impressions_per_spend) + e_lam,
            logit(ctr) + e_ctr,
            logit(cvr) + e_cvr,
            np.log(revenue_mean) - 0.5 * revenue_sigma**2 + e_theta,
        ]
    )  # (4, S, A)
    if revenue_mu is not None:
        x0[3] = np.broadcast_to(np.asarray(revenue_mu, float), (S, num_adsets))
    path = np.empty((4, S, num_days, num_adsets))
    dev = np.zeros((4, S, num_adsets))
    for t in range(num_days):
        if t > 0 and drift > 0:
            dev = persistence * dev + drift * rng.standard_normal(dev.shape)
        path[:, :, t] = x0 + dev
    return MarketTruth(
        impressions_per_spend=np.exp(path[0]),
        ctr=expit(path[1]),
        cvr=expit(path[2]),
        revenue_mu=path[3],
        revenue_sigma=float(revenue_sigma),
        adset_campaign=campaign,
    )


class DayObservation(NamedTuple):
    """One day of every (seed, ad set): ``(seeds, adsets)`` arrays."""

    spend: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    revenue: np.ndarray


def observe_day(
    rng: np.random.Generator, truth: MarketTruth, day: int, spend: np.ndarray
) -> DayObservation:
    """Draw day ``day``'s impressions, clicks, conversions and revenue (exact sums of
    log-normal purchases) given ``spend`` ``(seeds, adsets)``."""
    spend = np.asarray(spend, float)
    impressions = rng.poisson(truth.impressions_per_spend[:, day] * spend)
    clicks = rng.binomial(impressions, truth.ctr[:, day])
    conversions = rng.binomial(clicks, truth.cvr[:, day])
    n = conversions.ravel()
    purchases = rng.lognormal(
        np.repeat(truth.revenue_mu[:, day].ravel(), n), truth.revenue_sigma, size=n.sum()
    )
    cell = np.repeat(np.arange(n.size), n)
    revenue = np.bincount(cell, weights=purchases, minlength=n.size).reshape(spend.shape)
    return DayObservation(spend, impressions, clicks, conversions, revenue)


# --------------------------------------------------------------------------------------------
# The conjugate revenue stand-in
# --------------------------------------------------------------------------------------------


class RevenueStats(NamedTuple):
    r"""Discounted Fenton-Wilkinson statistics per ad set: ``precision``
    $\sum_t w_t/\sigma_{at}^2$ and ``weighted`` $\sum_t w_t y_{at}/\sigma_{at}^2$, with
    $y_{at} = \log(r_{at}/n_{at}) - \tfrac12(\sigma^2 - \sigma_{at}^2)$ (unbiased for
    $\theta_a$)."""

    precision: np.ndarray
    weighted: np.ndarray


def revenue_statistics(conversions, revenue, sigma: float) -> RevenueStats:
    """One day's :class:`RevenueStats` (zero where there was no conversion)."""
    n = np.asarray(conversions, float)
    has = n > 0
    n_safe = np.where(has, n, 1.0)
    var = np.log1p(np.expm1(sigma**2) / n_safe)
    y = np.log(np.where(has, revenue, 1.0) / n_safe) - 0.5 * (sigma**2 - var)
    prec = np.where(has, 1.0 / var, 0.0)
    return RevenueStats(prec, np.where(has, prec * y, 0.0))


TAU_GRID = np.geomspace(1e-4, 3.0, 64)
"""Grid of the pooling scale $\tau$ of the replay's revenue stand-in."""


def revenue_mean_draws(
    rng: np.random.Generator,
    stats: RevenueStats,
    sigma: float,
    num_draws: int,
    pooling_rate: float = 20.0,
) -> np.ndarray:
    r"""Joint posterior draws ``(seeds, draws, adsets)`` of $e^{\theta_a + \sigma^2/2}$ under
    $\theta_a \sim \mathcal N(\mu, \tau^2)$, flat $\mu$, $\tau \sim
    \mathrm{Exponential}(20)$ (the seed's prior) and the Fenton-Wilkinson statistics, one
    pooling group per seed.

    Exact given $\sigma$, up to a grid in $\tau$ (:data:`TAU_GRID`): with $\hat\theta_a =
    M_a/P_a$, $v_a = 1/P_a$ and $w_a = 1/(\tau^2 + v_a)$,
    $p(\tau \mid y) \propto p(\tau)\,(\sum_a w_a)^{-1/2} \prod_a w_a^{1/2}
    e^{-w_a(\hat\theta_a - \hat\mu)^2/2}$; then $\mu \mid \tau \sim \mathcal N(\hat\mu,
    1/\sum_a w_a)$ and $\theta_a \mid \mu, \tau \sim \mathcal N\big((\mu/\tau^2 + M_a)/
    (1/\tau^2 + P_a),\ 1/(1/\tau^2 + P_a)\big)$ (ad sets without data: $\mathcal N(\mu,
    \tau^2)$).
    """
    P, M = np.asarray(stats.precision, float), np.asarray(stats.weighted, float)
    S, A = P.shape
    has = P > 0
    y = np.where(has, M / np.where(has, P, 1.0), 0.0)
    v = np.where(has, 1.0 / np.where(has, P, 1.0), 0.0)
    t2 = TAU_GRID**2
    w = np.where(has[:, None, :], 1.0 / (t2[None, :, None] + v[:, None, :]), 0.0)  # (S, G, A)
    sw = w.sum(-1)
    any_data = sw > 0
    sw_safe = np.where(any_data, sw, 1.0)
    fallback = np.log(50.0) - 0.5 * sigma**2
    mu_hat = np.where(any_data, (w * y[:, None, :]).sum(-1) / sw_safe, fallback)
    with np.errstate(divide="ignore"):
        resid = np.where(
            has[:, None, :], np.log(w) - w * (y[:, None, :] - mu_hat[..., None]) ** 2, 0
        )
    log_post = 0.5 * resid.sum(-1) - 0.5 * np.log(sw_safe)
    log_post += -pooling_rate * TAU_GRID + np.log(np.gradient(TAU_GRID))
    prob = np.exp(log_post - log_post.max(-1, keepdims=True))
    cdf = np.cumsum(prob, -1)
    cdf /= cdf[:, -1:]
    idx = (rng.random((S, num_draws))[..., None] > cdf[:, None, :]).sum(-1)  # (S, D)
    idx = np.minimum(idx, len(TAU_GRID) - 1)
    tau2 = t2[idx]
    mu_mean = np.take_along_axis(mu_hat, idx, -1)
    mu_var = np.where(any_data[:, 0:1], 1.0 / np.take_along_axis(sw_safe, idx, -1), 1.0)
    mu = mu_mean + np.sqrt(mu_var) * rng.standard_normal((S, num_draws))
    prec = 1.0 / tau2[..., None] + P[:, None, :]
    mean = (mu[..., None] / tau2[..., None] + M[:, None, :]) / prec
    theta = mean + rng.standard_normal((S, num_draws, A)) / np.sqrt(prec)
    return np.exp(theta + 0.5 * sigma**2)


# --------------------------------------------------------------------------------------------
# Policies and the replay
# --------------------------------------------------------------------------------------------

PolicyKind = Literal["fixed", "cpa_thompson", "roas_thompson", "roas_greedy"]


class Policy(NamedTuple):
    """A budget policy of the replay: its ``kind``, discount half-life (days; None: none), and
    for the Thompson kinds the allocation ``rule`` and ``power``
    (:func:`jaxrev.roas.allocation.shares_by_rule`)."""

    name: str
    kind: PolicyKind
    half_life: float | None = None
    rule: Literal["thompson", "proportional"] = "thompson"
    power: float = 1.0


DEFAULT_POLICIES = (
    Policy("fixed split", "fixed"),
    Policy("CPA Thompson", "cpa_thompson"),
    Policy("ROAS greedy", "roas_greedy"),
    Policy("ROAS Thompson", "roas_thompson"),
)


class ReplayOptions(NamedTuple):
    """Budget per day, floors and caps (shares), draws per decision, even-split warm-up days,
    the funnel's pooling and hyper-prior."""

    budget: float = 1000.0
    min_share: float = 0.0
    max_share: float = 1.0
    num_draws: int = 400
    warmup_days: int = 1
    pooling: Literal["campaign", "account"] = "campaign"
    hyper: HyperPrior = HyperPrior()


DEFAULT_REPLAY = ReplayOptions()


class ReplayResult(NamedTuple):
    """Daily outcomes of every policy: ``expected_revenue`` and ``realized_revenue``
    ``(policies, seeds, days)``, ``shares`` ``(policies, seeds, days, adsets)``, and the
    oracle's ``oracle_revenue`` ``(seeds, days)``."""

    policies: tuple[Policy, ...]
    expected_revenue: np.ndarray
    realized_revenue: np.ndarray
    oracle_revenue: np.ndarray
    shares: np.ndarray
    seconds: float

    def regret(self) -> np.ndarray:
        """Cumulative regret ``(policies, seeds, days)``."""
        return np.cumsum(self.oracle_revenue[None] - self.expected_revenue, axis=-1)

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """Per policy, over seeds: mean cumulative expected revenue and regret with a ``level``
        normal interval of the mean, regret over the first and second half of the days and
        their ratio (< 1: regret grows sublinearly), and the gain over the fixed split."""
        from scipy.stats import norm

        z = norm.ppf(0.5 + level / 2)
        T = self.oracle_revenue.shape[1]
        half = T // 2
        daily_regret = self.oracle_revenue[None] - self.expected_revenue
        rows = []
        base = self.expected_revenue[0].sum(-1)
        for i, policy in enumerate(self.policies):
            revenue = self.expected_revenue[i].sum(-1)
            regret = daily_regret[i].sum(-1)
            first = daily_regret[i, :, :half].sum(-1)
            second = daily_regret[i, :, half : 2 * half].sum(-1)
            gain = revenue - base

            def ci(x):
                se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.nan
                return x.mean(), x.mean() - z * se, x.mean() + z * se

            r, r_lo, r_hi = ci(revenue)
            g, g_lo, g_hi = ci(regret)
            rows.append(
                {
                    "policy": policy.name,
                    "revenue": r,
                    "revenue_low": r_lo,
                    "revenue_high": r_hi,
                    "regret": g,
                    "regret_low": g_lo,
                    "regret_high": g_hi,
                    "regret_first_half": first.mean(),
                    "regret_second_half": second.mean(),
                    "second_to_first": second.mean() / first.mean() if first.mean() else np.nan,
                    "vs_fixed_pct": 100 * gain.mean() / base.mean(),
                }
            )
        return pd.DataFrame(rows)

    def compare(self, a: str, b: str, level: float = 0.95) -> dict:
        """Paired difference over seeds of cumulative expected revenue, policy ``a`` minus ``b``:
        mean, normal interval, and relative to ``b``."""
        from scipy.stats import norm

        names = [p.name for p in self.policies]
        da = self.expected_revenue[names.index(a)].sum(-1)
        db = self.expected_revenue[names.index(b)].sum(-1)
        d = da - db
        se = d.std(ddof=1) / np.sqrt(len(d))
        z = norm.ppf(0.5 + level / 2)
        return {
            "mean": float(d.mean()),
            "low": float(d.mean() - z * se),
            "high": float(d.mean() + z * se),
            "relative": float(d.mean() / db.mean()),
        }


class _PolicyState(NamedTuple):
    funnel: FunnelStats
    revenue: RevenueStats
    prior: FunnelParams | None


def _even(lo, hi, shape):
    return constrained_shares(np.ones(shape), lo, hi)


def _decide(
    policy: Policy,
    state: _PolicyState,
    rng: np.random.Generator,
    truth: MarketTruth,
    options: ReplayOptions,
    lo: np.ndarray,
    hi: np.ndarray,
) -> tuple[np.ndarray, FunnelParams]:
    S, A = truth.num_seeds, truth.num_adsets
    C = truth.num_campaigns if options.pooling == "campaign" else 1
    campaign = truth.adset_campaign if options.pooling == "campaign" else np.zeros(A, np.int64)
    group = (np.arange(S)[:, None] * C + campaign[None, :]).ravel()
    prior, _ = fit_funnel_prior(
        state.funnel, group, S * C, "click", options.hyper, init=state.prior
    )
    post = funnel_posterior(state.funnel, prior, group, "click")
    post = FunnelParams(*(type(p)(*(x.reshape(S, A) for x in p)) for p in post))
    if policy.kind == "roas_greedy":
        cps = posterior_means(post)["conversions_per_spend"]
        rev = revenue_mean_draws(rng, state.revenue, truth.revenue_sigma, options.num_draws)
        return greedy_shares(cps * rev.mean(axis=1), lo, hi), prior
    cps = sample_funnel(rng, post, options.num_draws).conversions_per_spend  # (S, D, A)
    if policy.kind == "cpa_thompson":
        values = cps
    else:
        values = cps * revenue_mean_draws(
            rng, state.revenue, truth.revenue_sigma, options.num_draws
        )
    return shares_by_rule(values, policy.rule, policy.power, lo, hi), prior


def replay(
    truth: MarketTruth,
    policies: tuple[Policy, ...] = DEFAULT_POLICIES,
    options: ReplayOptions = DEFAULT_REPLAY,
    seed: int = 0,
) -> ReplayResult:
    """Run every policy day by day against the market ``truth`` (all seeds at once).

    Each policy sees only its own observations; policies share random-number streams per day
    (common random numbers), so their differences are mostly due to their decisions.

    Example:
        >>> truth = simulate_market(0, num_seeds=20, num_days=30)
        >>> result = replay(truth)
        >>> result.table()[["policy", "revenue", "regret"]]  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    S, T, A = truth.num_seeds, truth.num_days, truth.num_adsets
    lo, hi = share_bounds(A, 1.0, options.min_share, options.max_share)
    true_roas = truth.roas
    oracle = greedy_shares(true_roas, lo, hi)
    oracle_revenue = options.budget * (oracle * true_roas).sum(-1)
    P = len(policies)
    expected = np.zeros((P, S, T))
    realized = np.zeros((P, S, T))
    shares_out = np.zeros((P, S, T, A))
    flat, grid = np.zeros(S * A), np.zeros((S, A))
    states = [
        _PolicyState(FunnelStats(*(flat,) * 5), RevenueStats(grid, grid), None) for _ in policies
    ]
    even = _even(lo, hi, (S, A))
    for t in range(T):
        for i, policy in enumerate(policies):
            state = states[i]
            decide_rng = np.random.default_rng([seed, 1, t])
            if policy.kind == "fixed" or t < options.warmup_days:
                shares, prior = even, state.prior
            else:
                shares, prior = _decide(policy, state, decide_rng, truth, options, lo, hi)
            spend = options.budget * shares
            obs = observe_day(np.random.default_rng([seed, 2, t]), truth, t, spend)
            shares_out[i, :, t] = shares
            expected[i, :, t] = (spend * true_roas[:, t]).sum(-1)
            realized[i, :, t] = obs.revenue.sum(-1)
            factor = 1.0 if policy.half_life is None else 2.0 ** (-1.0 / policy.half_life)
            today = FunnelStats(
                spend=obs.spend.ravel(),
                paid_impressions=np.where(obs.spend > 0, obs.impressions, 0).ravel().astype(float),
                impressions=obs.impressions.ravel().astype(float),
                clicks=obs.clicks.ravel().astype(float),
                conversions=obs.conversions.ravel().astype(float),
            )
            rev_today = revenue_statistics(obs.conversions, obs.revenue, truth.revenue_sigma)
            revenue = RevenueStats(
                factor * state.revenue.precision + rev_today.precision,
                factor * state.revenue.weighted + rev_today.weighted,
            )
            funnel = add_statistics(discount_statistics(state.funnel, factor), today)
            states[i] = _PolicyState(funnel, revenue, prior)
    return ReplayResult(
        tuple(policies), expected, realized, oracle_revenue, shares_out, time.perf_counter() - t0
    )


def plot_replay(result: ReplayResult, title: str = "", band: float = 0.8):
    """Cumulative regret (mean over seeds, with the central ``band`` of seeds shaded) and the
    mean share given to the truly best ad set, per policy, against days."""
    import matplotlib.pyplot as plt

    regret = result.regret()
    S, T = result.oracle_revenue.shape
    days = np.arange(1, T + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("tab10")
    for i, policy in enumerate(result.policies):
        color = colors(i)
        mean = regret[i].mean(0)
        lo, hi = np.quantile(regret[i], [(1 - band) / 2, (1 + band) / 2], axis=0)
        left.plot(days, mean, color=color, lw=2, label=policy.name)
        left.fill_between(days, lo, hi, color=color, alpha=0.15)
    left.set_xlabel("day")
    left.set_ylabel("cumulative regret (expected revenue lost)")
    left.set_title(f"Regret: mean over {S} seeds, {band:.0%} of seeds shaded", fontsize=10)
    left.legend(fontsize=8)
    revenue = np.cumsum(result.expected_revenue, -1)
    base = revenue[0]
    for i, policy in enumerate(result.policies):
        rel = 100 * (revenue[i] / base - 1)
        right.plot(days, rel.mean(0), color=colors(i), lw=2, label=policy.name)
    oracle = 100 * (np.cumsum(result.oracle_revenue, -1) / base - 1)
    right.plot(days, oracle.mean(0), color="black", ls="--", lw=1, label="oracle")
    right.set_xlabel("day")
    right.set_ylabel(f"cumulative revenue vs {result.policies[0].name} (%)")
    right.set_title("Cumulative expected revenue", fontsize=10)
    right.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def market_daily_table(
    truth: MarketTruth,
    observations: list[DayObservation],
    seed_index: int = 0,
    adset_names: list[str] | None = None,
    campaign_names: list[str] | None = None,
    start: str = "2026-11-01",
) -> pd.DataFrame:
    """A daily table (``campaign``, ``adset``, ``date``, ``spend``, ``impressions``, ``clicks``,
    ``conversions``, ``revenue``) of one seed's market from a list of daily observations."""
    A = truth.num_adsets
    adset_names = adset_names or [f"adset_{a + 1:02d}" for a in range(A)]
    campaign_names = campaign_names or [f"campaign_{c + 1}" for c in range(truth.num_campaigns)]
    dates = pd.date_range(start, periods=len(observations), freq="D")
    parts = []
    for date, obs in zip(dates, observations, strict=True):
        parts.append(
            pd.DataFrame(
                {
                    "campaign": [campaign_names[c] for c in truth.adset_campaign],
                    "adset": adset_names,
                    "date": date.strftime("%Y-%m-%d"),
                    "spend": np.round(obs.spend[seed_index], 2),
                    "impressions": obs.impressions[seed_index],
                    "clicks": obs.clicks[seed_index],
                    "conversions": obs.conversions[seed_index],
                    "revenue": np.round(obs.revenue[seed_index], 2),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


__all__ = [
    "DEFAULT_POLICIES",
    "DayObservation",
    "MarketTruth",
    "Policy",
    "ReplayOptions",
    "ReplayResult",
    "RevenueStats",
    "market_daily_table",
    "observe_day",
    "plot_replay",
    "replay",
    "revenue_mean_draws",
    "revenue_statistics",
    "simulate_market",
]
