r"""The conversion funnel: conversions per unit spend per ad set, with partial pooling.

Return on ad spend factors into revenue per conversion (the :mod:`jaxrev` revenue model) times
conversions per spend, and conversions per spend into three stages (seed ``004``). For ad set $a$
on day $t$ with spend $s_{at}$, impressions $I_{at}$, clicks $K_{at}$ and conversions $Y_{at}$:

$$I_{at} \sim \mathrm{Poisson}(\lambda_a s_{at}), \qquad
  K_{at} \sim \mathrm{Binomial}(I_{at}, p_a), \qquad
  Y_{at} \sim \mathrm{Binomial}(K_{at}, q_a),$$

$$\lambda_a \sim \mathrm{Gamma}(\alpha^\lambda_c, \beta^\lambda_c), \qquad
  p_a \sim \mathrm{Beta}(\alpha^p_c, \beta^p_c), \qquad
  q_a \sim \mathrm{Beta}(\alpha^q_c, \beta^q_c), \qquad c = c_a,$$

so conversions per unit spend are $\kappa_a = \lambda_a p_a q_a$ (impressions per spend × click-
through rate × conversion rate). With ``conversions_per="impression"`` the last stage is
$Y_{at} \sim \mathrm{Binomial}(I_{at}, q_a)$ and $\kappa_a = \lambda_a q_a$: for tables whose
conversions need not follow a click (view-through conversions, as in the Kaggle Facebook table).
Rows with $s_{at} = 0$ say nothing about impressions per unit spend (pay-per-click billing shows
impressions for free): they enter the click and conversion stages only.

**Discounting.** Day $t$, $d_t$ days before the latest day, has weight
$w_t = 2^{-d_t / h}$ for a half-life of $h$ days (no discounting when $h$ is None). Each stage's
likelihood is raised to $w_t$ (a power prior / exponential forgetting), which keeps every stage
conjugate with *discounted* sufficient statistics $S = \sum_t w_t s_{at}$,
$\tilde I = \sum_t w_t I_{at}$, ... :

$$\lambda_a \mid \cdot \sim \mathrm{Gamma}(\alpha^\lambda_c + \tilde I_a,\ \beta^\lambda_c + S_a),
  \quad p_a \mid \cdot \sim \mathrm{Beta}(\alpha^p_c + \tilde K_a,\ \beta^p_c + \tilde I_a -
  \tilde K_a), \quad q_a \mid \cdot \sim \mathrm{Beta}(\alpha^q_c + \tilde Y_a,\ \beta^q_c +
  \tilde K_a - \tilde Y_a).$$

**Pooling: empirical Bayes, penalised marginal likelihood (MAP-II).** The hyper-parameters of
each campaign (or of the whole account, ``pooling="account"``) are the mode of the campaign's
marginal likelihood — negative binomial for the Gamma stage, beta-binomial for the Beta stages,
evaluated at the discounted statistics — times a weak hyper-prior, found by Newton's method
(Levenberg-Marquardt damping) on $u$ = log mean (Gamma) or logit mean (Beta) and $k$ = log shape
(Gamma, $\alpha$) or log prior sample size (Beta, $\alpha + \beta$), vectorised over campaigns.
The hyper-prior (:class:`HyperPrior`) is on scale-free quantities:

* the coefficient of variation of the rate across the campaign's ad sets,
  $\mathrm{cv} = 1/\sqrt{\alpha}$ (Gamma) or $\sqrt{(1-m)/(m(\alpha+\beta+1))}$ (Beta, mean $m$),
  is log-normal with median ``cv_median`` (0.5) and log-sd ``cv_log_sd`` (1.5);
* $u$ is normal around the campaign's pooled rate, $(y_c + r)/(x_c + 1)$ from its total
  successes $y_c$ over total trials (or impressions over spend) $x_c$ plus one pseudo-trial at the
  rate $r$ of all ad sets, with sd ``mean_log_sd`` (3).

Without it a campaign whose ad sets look alike has its mode at infinite prior sample size (full
pooling), and a campaign with one ad set has none. Plugging in the mode ignores the
hyper-parameters' own uncertainty (the price of empirical Bayes; small for campaigns with many ad
sets). ``pooling="none"`` uses fixed vague priors instead: $\mathrm{Beta}(1, 1)$ and
$\mathrm{Gamma}(1, 10^{-6})$.

Everything here is NumPy in float64: impressions run to millions, and the marginal likelihoods
are differences of $\log\Gamma$ of such counts, which float32 cannot resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from scipy.special import digamma, expit, gammaln, logit, xlogy

from jaxrev.data import Problems, check_campaigns, missing_mask, parse_numbers, read_table
from jaxrev.errors import (
    AdsetCampaignConflictError,
    InvalidDataError,
    MissingColumnError,
    MissingValueError,
    NegativeCountError,
    NonFiniteValueError,
    NonIntegerCountError,
    NonNumericValueError,
)

# Shapes: ``adsets`` (ad sets a), ``groups`` (campaigns c, or any pooling groups), ``rows``,
# ``draws`` (posterior draws), ``seeds`` (a leading batch axis).
AdsetArray = Float[np.ndarray, "adsets"]
AdsetIndex = Int[np.ndarray, "adsets"]
GroupArray = Float[np.ndarray, "groups"]
RowArray = Float[np.ndarray, "rows"]
RowIndex = Int[np.ndarray, "rows"]
DrawArray = Float[np.ndarray, "draws adsets"]

ConversionsPer = Literal["click", "impression"]
Pooling = Literal["campaign", "account", "none"]


# --------------------------------------------------------------------------------------------
# Parameters and statistics
# --------------------------------------------------------------------------------------------


class GammaParams(NamedTuple):
    r"""$\mathrm{Gamma}(\alpha, \beta)$ (shape, rate): density
    $\beta^\alpha x^{\alpha-1} e^{-\beta x} / \Gamma(\alpha)$, mean $\alpha/\beta$."""

    shape: np.ndarray
    rate: np.ndarray


class BetaParams(NamedTuple):
    r"""$\mathrm{Beta}(\alpha, \beta)$: density $x^{\alpha-1}(1-x)^{\beta-1}/B(\alpha, \beta)$,
    mean $\alpha/(\alpha+\beta)$."""

    alpha: np.ndarray
    beta: np.ndarray


class FunnelParams(NamedTuple):
    r"""The three stages' distributions (per campaign for priors, per ad set for posteriors):
    impressions per unit spend $\lambda$, click-through rate $p$, conversion rate $q$ (per click
    or per impression)."""

    impressions_per_spend: GammaParams
    ctr: BetaParams
    cvr: BetaParams


class FunnelStats(NamedTuple):
    r"""Discounted sufficient statistics per ad set: $S_a = \sum_t w_t s_{at}$ and
    ``paid_impressions`` $= \sum_{t: s_{at}>0} w_t I_{at}$ (stage 1), ``impressions``
    $\tilde I_a = \sum_t w_t I_{at}$, ``clicks`` $\tilde K_a$, ``conversions`` $\tilde Y_a$."""

    spend: AdsetArray
    paid_impressions: AdsetArray
    impressions: AdsetArray
    clicks: AdsetArray
    conversions: AdsetArray


class HyperPrior(NamedTuple):
    """The weak hyper-prior of the empirical-Bayes fit (see the module docstring)."""

    cv_median: float = 0.5
    cv_log_sd: float = 1.5
    mean_log_sd: float = 3.0


class EBSettings(NamedTuple):
    """Newton (Levenberg-Marquardt) settings: stop when the Newton decrement
    $g^\\top(-H)^{-1}g/2$ is below ``tol`` (in log-likelihood units) for every group."""

    max_steps: int = 200
    tol: float = 1e-7


DEFAULT_HYPER = HyperPrior()
DEFAULT_EB = EBSettings()


class EBStatus(NamedTuple):
    """Per stage: converged flags (per group) and the number of Newton steps taken."""

    converged: dict[str, np.ndarray]
    num_steps: dict[str, int]

    @property
    def all_converged(self) -> bool:
        return all(bool(np.all(c)) for c in self.converged.values())


def discount_weights(age: RowArray, half_life: float | None) -> RowArray:
    """$w = 2^{-d/h}$ for rows ``age`` $= d$ days before the latest day; ones if ``half_life``
    is None."""
    age = np.asarray(age, dtype=float)
    if half_life is None:
        return np.ones_like(age)
    if not half_life > 0:
        raise ValueError(f"half_life must be > 0 days, got {half_life}")
    return np.exp2(-age / half_life)


def funnel_statistics(
    adset: RowIndex,
    num_adsets: int,
    spend: RowArray,
    impressions: RowArray,
    clicks: RowArray,
    conversions: RowArray,
    weights: RowArray | None = None,
    paid_impressions: RowArray | None = None,
) -> FunnelStats:
    """Sum (weighted) rows into :class:`FunnelStats` per ad set. ``paid_impressions``: the
    impressions of rows with spend > 0 (default: computed from ``spend``; give it when rows were
    summed from finer rows, some without spend)."""
    w = np.ones(len(adset)) if weights is None else np.asarray(weights, dtype=float)
    spend = np.asarray(spend, dtype=float)
    impressions = np.asarray(impressions, dtype=float)
    if paid_impressions is None:
        paid_impressions = np.where(spend > 0, impressions, 0.0)

    def total(x):
        return np.bincount(adset, weights=w * np.asarray(x, dtype=float), minlength=num_adsets)

    return FunnelStats(
        spend=total(spend),
        paid_impressions=total(paid_impressions),
        impressions=total(impressions),
        clicks=total(clicks),
        conversions=total(conversions),
    )


def discount_statistics(stats: FunnelStats, factor: float) -> FunnelStats:
    """Multiply every statistic by ``factor`` (one day of ageing is ``2**(-1/half_life)``)."""
    return FunnelStats(*(factor * x for x in stats))


def add_statistics(a: FunnelStats, b: FunnelStats) -> FunnelStats:
    return FunnelStats(*(x + y for x, y in zip(a, b, strict=True)))


def stage_data(
    stats: FunnelStats, conversions_per: ConversionsPer = "click"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(exposure or trials, count or successes)`` of each stage."""
    trials = stats.clicks if conversions_per == "click" else stats.impressions
    return {
        "impressions_per_spend": (stats.spend, stats.paid_impressions),
        "ctr": (stats.impressions, stats.clicks),
        "cvr": (trials, stats.conversions),
    }


# --------------------------------------------------------------------------------------------
# Conjugate updates and marginal likelihoods
# --------------------------------------------------------------------------------------------


def gamma_poisson_posterior(prior: GammaParams, exposure, counts) -> GammaParams:
    r"""$\mathrm{Gamma}(\alpha + y, \beta + x)$: the posterior of $\lambda$ given
    $y \sim \mathrm{Poisson}(\lambda x)$ (``counts`` $y$ and ``exposure`` $x$ may be discounted
    sums)."""
    return GammaParams(prior.shape + counts, prior.rate + exposure)


def beta_binomial_posterior(prior: BetaParams, trials, successes) -> BetaParams:
    r"""$\mathrm{Beta}(\alpha + y, \beta + n - y)$: the posterior of $p$ given
    $y \sim \mathrm{Binomial}(n, p)$."""
    return BetaParams(prior.alpha + successes, prior.beta + trials - successes)


def gamma_poisson_log_marginal(prior: GammaParams, exposure, counts) -> np.ndarray:
    r"""$\log \int \mathrm{Poisson}(y \mid \lambda x)\,\mathrm{Gamma}(\lambda \mid \alpha, \beta)
    \,d\lambda$ (negative binomial), for real-valued $y \ge 0$:
    $\log\Gamma(\alpha+y) - \log\Gamma(\alpha) - \log\Gamma(y+1) + \alpha\log\beta
    - (\alpha+y)\log(\beta+x) + y \log x$."""
    a, b = prior
    y, x = np.asarray(counts, float), np.asarray(exposure, float)
    return (
        gammaln(a + y)
        - gammaln(a)
        - gammaln(y + 1)
        + a * np.log(b)
        - (a + y) * np.log(b + x)
        + xlogy(y, x)
    )


def beta_binomial_log_marginal(prior: BetaParams, trials, successes) -> np.ndarray:
    r"""$\log \int \mathrm{Binomial}(y \mid n, p)\,\mathrm{Beta}(p \mid \alpha, \beta)\,dp
    = \log\binom{n}{y} + \log B(\alpha + y, \beta + n - y) - \log B(\alpha, \beta)$, for
    real-valued $0 \le y \le n$."""
    a, b = prior
    n, y = np.asarray(trials, float), np.asarray(successes, float)
    log_choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
    return log_choose + _log_beta(a + y, b + n - y) - _log_beta(a, b)


def _log_beta(a, b):
    return gammaln(a) + gammaln(b) - gammaln(a + b)


# --------------------------------------------------------------------------------------------
# Empirical Bayes: per-group Newton on (u, k)
# --------------------------------------------------------------------------------------------


def _gamma_from_uk(u, k) -> GammaParams:
    return GammaParams(np.exp(k), np.exp(k - u))


def _beta_from_uk(u, k) -> BetaParams:
    m, kappa = expit(u), np.exp(k)
    return BetaParams(m * kappa, (1 - m) * kappa)


def _trigamma(x):
    r"""$\psi_1(x)$ for $x > 0$: the recurrence $\psi_1(x) = \psi_1(x+1) + 1/x^2$ up to
    $x \ge 10$, then the asymptotic series (relative error < 1e-13); ~5x faster than
    ``polygamma(1, x)``."""
    x = np.asarray(x, float)
    shift = np.zeros_like(x)
    for _ in range(10):
        small = x < 10
        if not small.any():
            break
        shift = shift + np.where(small, 1.0 / np.where(small, x, 1.0) ** 2, 0.0)
        x = np.where(small, x + 1, x)
    inv = 1.0 / x
    inv2 = inv * inv
    series = (
        inv
        + 0.5 * inv2
        + inv * inv2 * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42 - inv2 * (1 / 30 - inv2 * 5 / 66))))
    )
    return shift + series


def _gamma_terms(u, k, exposure, counts):
    """Value, gradient (…, 2) and Hessian (…, 2, 2) in (u, k) of the NB log marginal."""
    a, b = _gamma_from_uk(u, k)
    y, x = counts, exposure
    # the log marginal less the terms free of (u, k): gammaln(y + 1) and y log x
    value = gammaln(a + y) - gammaln(a) + a * np.log(b) - (a + y) * np.log(b + x)
    ga = digamma(a + y) - digamma(a) + np.log(b) - np.log(b + x)
    gb = a / b - (a + y) / (b + x)
    haa = _trigamma(a + y) - _trigamma(a)
    hab = 1 / b - 1 / (b + x)
    hbb = -a / b**2 + (a + y) / (b + x) ** 2
    # a = e^k, b = e^(k - u): da/du = 0, da/dk = a, db/du = -b, db/dk = b.
    gu = -b * gb
    gk = a * ga + b * gb
    huu = b * b * hbb + b * gb
    huk = -b * (a * hab + b * hbb) - b * gb
    hkk = a * a * haa + 2 * a * b * hab + b * b * hbb + a * ga + b * gb
    return value, np.stack([gu, gk], -1), _sym(huu, huk, hkk)


def _beta_terms(u, k, trials, successes):
    """Value, gradient and Hessian in (u, k) of the beta-binomial log marginal."""
    m, kappa = expit(u), np.exp(k)
    a, b = m * kappa, (1 - m) * kappa
    n, y = trials, successes
    value = _log_beta(a + y, b + n - y) - _log_beta(a, b)  # less log C(n, y)
    common = digamma(a + b) - digamma(n + a + b)
    ga = digamma(a + y) - digamma(a) + common
    gb = digamma(b + n - y) - digamma(b) + common
    tcommon = _trigamma(a + b) - _trigamma(n + a + b)
    haa = _trigamma(a + y) - _trigamma(a) + tcommon
    hbb = _trigamma(b + n - y) - _trigamma(b) + tcommon
    hab = tcommon
    d = kappa * m * (1 - m)  # da/du = d, db/du = -d; da/dk = a, db/dk = b
    gu = d * (ga - gb)
    gk = a * ga + b * gb
    huu = d * d * (haa - 2 * hab + hbb) + d * (1 - 2 * m) * (ga - gb)
    huk = d * (a * haa + (b - a) * hab - b * hbb) + d * (ga - gb)
    hkk = a * a * haa + 2 * a * b * hab + b * b * hbb + a * ga + b * gb
    return value, np.stack([gu, gk], -1), _sym(huu, huk, hkk)


def _sym(huu, huk, hkk):
    return np.stack([np.stack([huu, huk], -1), np.stack([huk, hkk], -1)], -2)


def _hyper_terms(kind: str, u, k, centre, hyper: HyperPrior):
    """Log hyper-prior, gradient and Hessian per group (see the module docstring)."""
    c0, s, su = np.log(hyper.cv_median), hyper.cv_log_sd, hyper.mean_log_sd
    if kind == "gamma":
        log_cv = -0.5 * k
        dz = np.stack([np.zeros_like(k), np.full_like(k, -0.5 / s)], -1)
        d2z = np.zeros((*k.shape, 2, 2))
    else:
        log_cv = 0.5 * (-u - np.logaddexp(0.0, k))
        sk = expit(k)
        dz = np.stack([np.full_like(k, -0.5 / s), -0.5 * sk / s], -1)
        d2z = np.zeros((*k.shape, 2, 2))
        d2z[..., 1, 1] = -0.5 * sk * (1 - sk) / s
    z = (log_cv - c0) / s
    value = -0.5 * z**2 - 0.5 * ((u - centre) / su) ** 2
    grad = -z[..., None] * dz
    grad[..., 0] -= (u - centre) / su**2
    hess = -dz[..., :, None] * dz[..., None, :] - z[..., None, None] * d2z
    hess[..., 0, 0] -= 1 / su**2
    return value, grad, hess


def _group_sum(x: np.ndarray, group: np.ndarray, num_groups: int) -> np.ndarray:
    """Sum the leading (item) axis of ``x`` into groups."""
    flat = x.reshape(len(x), -1)
    out = np.stack(
        [
            np.bincount(group, weights=flat[:, j], minlength=num_groups)
            for j in range(flat.shape[1])
        ],
        -1,
    )
    return out.reshape((num_groups, *x.shape[1:]))


def _centre(kind: str, exposure, counts, group, num_groups) -> np.ndarray:
    """Each group's pooled rate on the u scale, $(y_c + r)/(x_c + 1)$, with $r = (Y + 0.5)/(X +
    1)$ the rate of all ad sets: one pseudo-trial (or unit of spend) at the overall rate."""
    overall = (counts.sum() + 0.5) / (exposure.sum() + 1.0)
    x = np.bincount(group, weights=exposure, minlength=num_groups)
    y = np.bincount(group, weights=counts, minlength=num_groups)
    rate = (y + overall) / (x + 1.0)
    if kind == "gamma":
        return np.log(rate)
    return logit(np.clip(rate, 1e-12, 1 - 1e-12))


def fit_stage_prior(
    kind: Literal["gamma", "beta"],
    exposure: AdsetArray,
    counts: AdsetArray,
    group: AdsetIndex,
    num_groups: int,
    hyper: HyperPrior = DEFAULT_HYPER,
    settings: EBSettings = DEFAULT_EB,
    init: GammaParams | BetaParams | None = None,
) -> tuple[GammaParams | BetaParams, np.ndarray, int]:
    r"""Empirical-Bayes prior of one stage for every group at once.

    Maximises, per group $c$, $\sum_{a \in c} \log m(y_a \mid x_a, \theta_c) + \log
    \pi(\theta_c)$ over $\theta_c = (u_c, k_c)$, with $m$ the negative-binomial (``"gamma"``) or
    beta-binomial (``"beta"``) marginal and $\pi$ the :class:`HyperPrior`, by damped Newton steps
    taken for all groups together (the Hessian is block diagonal, one 2×2 block per group).

    Args:
        kind: ``"gamma"`` (impressions per spend; ``exposure`` = spend, ``counts`` =
            impressions) or ``"beta"`` (a rate; ``exposure`` = trials, ``counts`` = successes).
        exposure, counts: discounted statistics per ad set.
        group: the group (campaign) of each ad set, in ``0..num_groups-1``.
        init: a starting prior per group (e.g. yesterday's), or None.

    Returns:
        ``(prior per group, converged per group, number of steps)``.
    """
    exposure = np.asarray(exposure, float)
    counts = np.asarray(counts, float)
    group = np.asarray(group, np.int64)
    terms = _gamma_terms if kind == "gamma" else _beta_terms
    to_params = _gamma_from_uk if kind == "gamma" else _beta_from_uk
    centre = _centre(kind, exposure, counts, group, num_groups)
    if init is None:
        u = centre.copy()
        if kind == "gamma":
            k = np.full(num_groups, -2 * np.log(hyper.cv_median))
        else:
            k = np.log(np.expm1(np.maximum(-u - 2 * np.log(hyper.cv_median), np.log1p(2.0))))
    else:
        a, b = (np.asarray(v, float) for v in init)
        if kind == "gamma":
            u, k = np.log(a / b), np.log(a)
        else:
            u, k = np.log(a) - np.log(b), np.log(a + b)
        u, k = np.broadcast_to(u, (num_groups,)).copy(), np.broadcast_to(k, (num_groups,)).copy()

    def objective(u, k, items, derivatives=True):
        """Per-group objective (and derivatives) from the ad sets ``items`` only (the groups
        not yet converged); hyper-prior terms for every group."""
        g = group[items]
        value, grad, hess = terms(u[g], k[g], exposure[items], counts[items])
        pv, pg, ph = _hyper_terms(kind, u, k, centre, hyper)
        total = np.bincount(g, weights=value, minlength=num_groups) + pv
        if not derivatives:
            return total
        return total, _group_sum(grad, g, num_groups) + pg, _group_sum(hess, g, num_groups) + ph

    items = np.arange(len(group))
    damping = np.full(num_groups, 1e-3)
    value, grad, hess = objective(u, k, items)
    done = np.zeros(num_groups, bool)
    eye = np.eye(2)
    steps = 0
    for steps in range(1, settings.max_steps + 1):  # noqa: B007
        neg_h = -hess
        decrement = 0.5 * np.einsum("gi,gi->g", grad, _solve_pd(neg_h, grad))
        done |= np.isfinite(decrement) & (decrement < settings.tol) & (_min_eig_2x2(neg_h) > 0)
        if done.all():
            break
        scale = np.abs(np.diagonal(neg_h, axis1=-2, axis2=-1)) + 1.0
        damped = neg_h + damping[:, None, None] * scale[:, :, None] * eye
        # make the damped matrix positive definite where -H is not
        damped = damped + np.maximum(0.0, 1e-8 - _min_eig_2x2(damped))[:, None, None] * eye
        delta = np.clip(_solve_pd(damped, grad), -5.0, 5.0)
        delta = np.where(done[:, None], 0.0, delta)
        items = np.flatnonzero(~done[group])
        trial = objective(u + delta[:, 0], k + delta[:, 1], items, derivatives=False)
        better = np.isfinite(trial) & (trial >= value) & ~done
        u = np.where(better, u + delta[:, 0], u)
        k = np.where(better, k + delta[:, 1], k)
        damping = np.where(better, np.maximum(damping / 3, 1e-9), np.minimum(damping * 10, 1e12))
        # a group whose damping has grown this large cannot improve: it is at the mode
        # to rounding (the decrement test failed only by round-off)
        done |= (damping >= 1e12) & np.isfinite(decrement) & (decrement < 1e3 * settings.tol)
        new_value, new_grad, new_hess = objective(u, k, items)
        keep = done[:, None]
        value = np.where(done, value, new_value)
        grad = np.where(keep, grad, new_grad)
        hess = np.where(keep[..., None], hess, new_hess)
    return to_params(u, k), done, steps


def _min_eig_2x2(m: np.ndarray) -> np.ndarray:
    a, b, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 1]
    return 0.5 * (a + d) - np.sqrt(0.25 * (a - d) ** 2 + b * b)


def _solve_pd(m: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve 2x2 systems; NaN where singular."""
    det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        x0 = (m[..., 1, 1] * g[..., 0] - m[..., 0, 1] * g[..., 1]) / det
        x1 = (m[..., 0, 0] * g[..., 1] - m[..., 0, 1] * g[..., 0]) / det
    return np.stack([x0, x1], -1)


VAGUE_PRIOR = FunnelParams(
    impressions_per_spend=GammaParams(np.asarray(1.0), np.asarray(1e-6)),
    ctr=BetaParams(np.asarray(1.0), np.asarray(1.0)),
    cvr=BetaParams(np.asarray(1.0), np.asarray(1.0)),
)


def fit_funnel_prior(
    stats: FunnelStats,
    group: AdsetIndex,
    num_groups: int,
    conversions_per: ConversionsPer = "click",
    hyper: HyperPrior = DEFAULT_HYPER,
    settings: EBSettings = DEFAULT_EB,
    init: FunnelParams | None = None,
) -> tuple[FunnelParams, EBStatus]:
    """Empirical-Bayes priors of the three stages for every group (:func:`fit_stage_prior`)."""
    fitted, converged, num_steps = {}, {}, {}
    for name, (x, y) in stage_data(stats, conversions_per).items():
        kind = "gamma" if name == "impressions_per_spend" else "beta"
        start = None if init is None else getattr(init, name)
        fitted[name], converged[name], num_steps[name] = fit_stage_prior(
            kind, x, y, group, num_groups, hyper, settings, start
        )
    return FunnelParams(**fitted), EBStatus(converged, num_steps)


def funnel_posterior(
    stats: FunnelStats,
    prior: FunnelParams,
    group: AdsetIndex | None = None,
    conversions_per: ConversionsPer = "click",
) -> FunnelParams:
    """Conjugate posterior of each ad set's three stages given its group's prior (``group`` None:
    one prior, or priors already per ad set)."""

    def pick(x):
        x = np.asarray(x, float)
        return x if group is None or x.ndim == 0 else x[group]

    data = stage_data(stats, conversions_per)
    g = prior.impressions_per_spend
    out = {
        "impressions_per_spend": gamma_poisson_posterior(
            GammaParams(pick(g.shape), pick(g.rate)), *data["impressions_per_spend"]
        )
    }
    for name in ("ctr", "cvr"):
        p = getattr(prior, name)
        out[name] = beta_binomial_posterior(BetaParams(pick(p.alpha), pick(p.beta)), *data[name])
    return FunnelParams(**out)


class FunnelDraws(NamedTuple):
    """Posterior draws, each ``(..., draws, adsets)``; ``conversions_per_spend`` is their
    product $\\lambda p q$ (or $\\lambda q$ per impression)."""

    impressions_per_spend: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    conversions_per_spend: np.ndarray


def sample_funnel(
    rng: np.random.Generator | int,
    posterior: FunnelParams,
    num_draws: int,
    conversions_per: ConversionsPer = "click",
) -> FunnelDraws:
    r"""Independent posterior draws of $\lambda_a, p_a, q_a$ and $\kappa_a$. Posterior arrays
    of shape ``(..., adsets)`` give draws of shape ``(..., num_draws, adsets)``."""
    rng = np.random.default_rng(rng)
    g = posterior.impressions_per_spend
    shape = np.shape(g.shape)
    size = (*shape[:-1], num_draws, shape[-1])

    def ins(x):
        return np.expand_dims(np.asarray(x, float), -2)

    lam = rng.gamma(ins(g.shape), 1.0, size=size) / ins(g.rate)
    ctr = rng.beta(ins(posterior.ctr.alpha), ins(posterior.ctr.beta), size=size)
    cvr = rng.beta(ins(posterior.cvr.alpha), ins(posterior.cvr.beta), size=size)
    cps = lam * cvr * (ctr if conversions_per == "click" else 1.0)
    return FunnelDraws(lam, ctr, cvr, cps)


def posterior_means(posterior: FunnelParams, conversions_per: ConversionsPer = "click"):
    """Posterior means of the three stages and of $\\kappa_a$ (the stages are independent a
    posteriori, so $E[\\kappa_a] = E[\\lambda_a]E[p_a]E[q_a]$)."""
    g, c, v = posterior
    lam = g.shape / g.rate
    ctr = c.alpha / (c.alpha + c.beta)
    cvr = v.alpha / (v.alpha + v.beta)
    cps = lam * cvr * (ctr if conversions_per == "click" else 1.0)
    return {"impressions_per_spend": lam, "ctr": ctr, "cvr": cvr, "conversions_per_spend": cps}


# --------------------------------------------------------------------------------------------
# Daily tables: reading and checking
# --------------------------------------------------------------------------------------------


class DailyColumns(NamedTuple):
    """Column names of a daily (or any-period) ad-set table. ``day``: a date or a day number
    (None: a column named ``date`` or ``day`` if there is one, else a single period); ``ad``:
    an ad column whose rows are summed into their ad set (None: none)."""

    adset: str = "adset"
    campaign: str = "campaign"
    spend: str = "spend"
    impressions: str = "impressions"
    clicks: str = "clicks"
    conversions: str = "conversions"
    day: str | None = None
    ad: str | None = None


KAGGLE_COLUMNS = DailyColumns(
    adset="fb_campaign_id",
    campaign="xyz_campaign_id",
    spend="Spent",
    impressions="Impressions",
    clicks="Clicks",
    conversions="Approved_Conversion",
    day=None,
    ad="ad_id",
)
"""The Kaggle "Sales Conversion Optimization" Facebook table: ``fb_campaign_id`` is the ad set,
``xyz_campaign_id`` the campaign, one row per ad, one period. ``Approved_Conversion`` (bought the
product) is the revenue-bearing conversion; ``Total_Conversion`` (enquiries) is the other choice."""


class NegativeValueError(InvalidDataError):
    kind = "negative_value"


class FunnelOrderError(InvalidDataError):
    """More clicks than impressions, or more conversions than clicks (or impressions)."""

    kind = "funnel_order"


_ERRORS = {
    cls.kind: cls
    for cls in (
        MissingColumnError,
        MissingValueError,
        NonNumericValueError,
        NonFiniteValueError,
        NegativeCountError,
        NonIntegerCountError,
        NegativeValueError,
        FunnelOrderError,
        AdsetCampaignConflictError,
    )
}


def resolve_columns(names, columns: DailyColumns | None = None, **overrides) -> DailyColumns:
    """The column set for a table with columns ``names``: ``columns`` if given, else the Kaggle
    names when the table has them (and no ``adset`` column), else the defaults; then
    ``overrides`` that are not None."""
    names = set(names)
    if columns is None:
        kaggle = {KAGGLE_COLUMNS.adset, KAGGLE_COLUMNS.campaign} <= names
        columns = KAGGLE_COLUMNS if kaggle and "adset" not in names else DailyColumns()
    columns = columns._replace(**{k: v for k, v in overrides.items() if v is not None})
    if columns.day is None:
        for candidate in ("date", "day"):
            if candidate in names:
                columns = columns._replace(day=candidate)
                break
    return columns


@dataclass(frozen=True)
class DailyData:
    """A validated daily table, summed per (ad set, day).

    Attributes:
        rows: one row per ad set and day: ``adset_index``, ``age`` (days before the latest day;
            0 for a single period), ``spend``, ``impressions``, ``clicks``, ``conversions``,
            ``paid_impressions`` (impressions of the summed rows that had spend).
        adsets: one row per ad set (campaign, then ad set order): ``adset``, ``campaign``,
            ``days``, the raw totals, ``last_spend`` (spend on the latest day) and the raw rates.
        campaigns: the campaign labels; ``adset_campaign`` indexes them.
        report: what was read, summed and dropped; ``invalid`` lists dropped problems.
    """

    rows: pd.DataFrame
    adsets: pd.DataFrame
    campaigns: np.ndarray
    adset_campaign: np.ndarray
    conversions_per: ConversionsPer
    source: str
    columns: DailyColumns
    report: dict = field(default_factory=dict)
    invalid: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def num_adsets(self) -> int:
        return len(self.adsets)

    @property
    def num_campaigns(self) -> int:
        return len(self.campaigns)

    def statistics(self, half_life: float | None = None) -> FunnelStats:
        """Discounted :class:`FunnelStats` (see :func:`discount_weights`)."""
        r = self.rows
        return funnel_statistics(
            r["adset_index"].to_numpy(),
            self.num_adsets,
            r["spend"].to_numpy(),
            r["impressions"].to_numpy(),
            r["clicks"].to_numpy(),
            r["conversions"].to_numpy(),
            discount_weights(r["age"].to_numpy(), half_life),
            r["paid_impressions"].to_numpy(),
        )

    def __str__(self) -> str:
        r = self.report
        text = (
            f"{self.source}: {r['rows_read']} rows read, {r['rows_used']} used "
            f"({self.num_adsets} ad sets, {self.num_campaigns} campaigns, {r['days']} period(s))"
        )
        if r.get("ads_summed"):
            text += f"; {r['ads_summed']} ads summed into their ad sets"
        if r.get("zero_spend_rows_with_impressions"):
            text += (
                f"; {r['zero_spend_rows_with_impressions']} rows with impressions but no spend "
                "(left out of impressions per spend)"
            )
        if r.get("rows_invalid"):
            text += f"; {r['rows_invalid']} invalid rows dropped"
        return text


def _parse_days(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Days as float day numbers (dates: days since the epoch); and a mask of unparsable."""
    numbers, missing, text = parse_numbers(values)
    if not text.any():
        return numbers.to_numpy(float), missing
    dates = pd.to_datetime(values.where(~missing_mask(values)), errors="coerce")
    bad = ~missing & dates.isna()
    days = (dates - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    return days.to_numpy(float), missing | bad


def load_daily(
    source: pd.DataFrame | str | Path,
    columns: DailyColumns | Mapping[str, str] | None = None,
    *,
    conversions_per: ConversionsPer = "click",
    on_invalid: Literal["raise", "drop"] = "raise",
    name: str | None = None,
) -> DailyData:
    """Read and check a table of (campaign, ad set, day, spend, impressions, clicks, conversions).

    Every row is checked at once; a problem raises a subclass of
    :class:`~jaxrev.data.InvalidDataError` naming the file, row and column: missing columns or
    identifiers, non-numeric or non-finite values, negative spend, negative or fractional counts,
    clicks above impressions, conversions above clicks (``conversions_per="click"``) or above
    impressions, an ad set under two campaigns, an unparsable day. With ``on_invalid="drop"``
    the bad rows are dropped and listed in ``.invalid``. Rows of one ad set and day (e.g. ads,
    placements) are summed. The Kaggle Facebook table is recognised by its column names
    (:data:`KAGGLE_COLUMNS`); ``columns`` may be a :class:`DailyColumns` or a dict of a few names
    that replace those of the recognised set. ``name`` labels the source in messages (default:
    the path).

    Example:
        >>> daily = load_daily("../shared/data/kag_conversion_data_fb_ads.csv",
        ...                    conversions_per="impression")  # doctest: +SKIP
    """
    if conversions_per not in ("click", "impression"):
        raise ValueError(
            f"conversions_per must be 'click' or 'impression', got {conversions_per!r}"
        )
    table, source_name, is_csv = read_table(source)
    name = source_name if name is None else name
    if isinstance(columns, Mapping):
        cols = resolve_columns(table.columns, None, **columns)
    else:
        cols = resolve_columns(table.columns, columns)
    required = [cols.adset, cols.campaign, cols.spend, cols.impressions, cols.clicks]
    required += [cols.conversions] + [c for c in (cols.day, cols.ad) if c is not None]
    missing_cols = [c for c in required if c not in table.columns]
    if missing_cols:
        problems = pd.DataFrame(
            {
                "row": pd.NA,
                "line": pd.NA,
                "column": missing_cols,
                "value": None,
                "kind": "missing_column",
                "reason": f"column not found (columns are {list(table.columns)})",
            }
        )
        raise MissingColumnError(name, problems)

    row_number = np.arange(1, len(table) + 1)
    problems = Problems(row_number, is_csv)
    ids = {}
    for col in (cols.campaign, cols.adset):
        miss = missing_mask(table[col])
        problems.add(miss, col, table[col], "missing_value", "missing identifier")
        ids[col] = table[col].astype("string").str.strip().to_numpy(dtype=object)

    values = {}
    for key in ("spend", "impressions", "clicks", "conversions"):
        col = getattr(cols, key)
        x, miss, text = parse_numbers(table[col])
        raw = table[col]
        problems.add(miss, col, raw, "missing_value", f"missing {key}")
        problems.add(text, col, raw, "non_numeric", f"{key} is not a number")
        finite = np.isfinite(x)
        problems.add(~x.isna() & ~finite, col, raw, "non_finite", f"{key} is not finite")
        if key == "spend":
            problems.add(finite & (x < 0), col, raw, "negative_value", "negative spend")
        else:
            problems.add(finite & (x < 0), col, raw, "negative_count", f"negative {key}")
            frac = finite & (x >= 0) & (x != np.floor(x))
            problems.add(frac, col, raw, "non_integer_count", f"{key} is not a whole number")
        values[key] = x.to_numpy(float)

    v = values
    problems.add(
        pd.Series(v["clicks"] > v["impressions"]),
        cols.clicks,
        table[cols.clicks],
        "funnel_order",
        f"more clicks than impressions (column {cols.impressions!r})",
    )
    if conversions_per == "click":
        problems.add(
            pd.Series(v["conversions"] > v["clicks"]),
            cols.conversions,
            table[cols.conversions],
            "funnel_order",
            f"more conversions than clicks (column {cols.clicks!r}); if conversions need not "
            "follow a click (view-through conversions), use conversions_per='impression' "
            "(CLI: --conversions-per impression)",
        )
    else:
        problems.add(
            pd.Series(v["conversions"] > v["impressions"]),
            cols.conversions,
            table[cols.conversions],
            "funnel_order",
            f"more conversions than impressions (column {cols.impressions!r})",
        )
    if cols.day is not None:
        days, bad_day = _parse_days(table[cols.day])
        problems.add(
            bad_day, cols.day, table[cols.day], "non_numeric", "day is not a number or a date"
        )
    else:
        days = np.zeros(len(table))
    bad = problems.bad_rows()
    check_campaigns(ids[cols.adset], ids[cols.campaign], ~bad, cols.campaign, problems)
    found = problems.table()
    if len(found) and on_invalid == "raise":
        raise _ERRORS[found.iloc[0]["kind"]](name, found)
    keep = ~problems.bad_rows()
    if not keep.any():
        raise ValueError(f"{name}: no valid rows")

    campaign = ids[cols.campaign][keep].astype(str)
    adset = ids[cols.adset][keep].astype(str)
    campaigns, campaign_of_row = np.unique(campaign, return_inverse=True)
    labels, first, adset_of_row = np.unique(adset, return_index=True, return_inverse=True)
    campaign_of_label = campaign_of_row[first]
    order = np.lexsort((labels, campaign_of_label))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    day = days[keep]
    latest = day.max()
    frame = pd.DataFrame(
        {
            "adset_index": rank[adset_of_row],
            "age": latest - day,
            **{k: v[k][keep] for k in ("spend", "impressions", "clicks", "conversions")},
        }
    )
    frame["paid_impressions"] = np.where(frame["spend"] > 0, frame["impressions"], 0.0)
    zero_spend = int(((frame["spend"] == 0) & (frame["impressions"] > 0)).sum())
    rows = frame.groupby(["adset_index", "age"], as_index=False, sort=True).sum()
    num_adsets = len(labels)
    adset_campaign = campaign_of_label[order]

    def total(col, where=None):
        w = rows[col].to_numpy(float) if where is None else np.where(where, rows[col], 0.0)
        return np.bincount(rows["adset_index"], weights=w, minlength=num_adsets)

    adsets = pd.DataFrame(
        {
            "adset": labels[order].astype(object),
            "campaign": campaigns[adset_campaign].astype(object),
            "days": np.bincount(rows["adset_index"], minlength=num_adsets),
            **{k: total(k) for k in ("spend", "impressions", "clicks", "conversions")},
            "last_spend": total("spend", rows["age"].to_numpy() == 0),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        adsets["raw_ctr"] = adsets["clicks"] / adsets["impressions"]
        base = adsets["clicks"] if conversions_per == "click" else adsets["impressions"]
        adsets["raw_cvr"] = adsets["conversions"] / base
        adsets["raw_conversions_per_spend"] = adsets["conversions"] / adsets["spend"]
    report = {
        "rows_read": len(table),
        "rows_used": int(keep.sum()),
        "rows_invalid": int((~keep).sum()),
        "ads_summed": int(len(frame) - len(rows)) if cols.ad is not None else 0,
        "rows_summed": int(len(frame) - len(rows)),
        "days": int(rows["age"].nunique()),
        "zero_spend_rows_with_impressions": zero_spend,
    }
    return DailyData(
        rows=rows,
        adsets=adsets,
        campaigns=campaigns.astype(object),
        adset_campaign=adset_campaign,
        conversions_per=conversions_per,
        source=name,
        columns=cols,
        report=report,
        invalid=found.reset_index(drop=True) if len(found) else None,
    )


# --------------------------------------------------------------------------------------------
# The fitted funnel
# --------------------------------------------------------------------------------------------


@dataclass
class FunnelFit:
    """The funnel of every ad set: priors (per pooling group), posteriors (per ad set), data.

    Use :meth:`sample` for draws of conversions per spend and :meth:`summary` for a table.
    """

    data: DailyData
    stats: FunnelStats
    prior: FunnelParams
    posterior: FunnelParams
    group: np.ndarray
    status: EBStatus | None
    pooling: Pooling
    half_life: float | None

    @property
    def conversions_per(self) -> ConversionsPer:
        return self.data.conversions_per

    def sample(self, rng: np.random.Generator | int, num_draws: int = 1000) -> FunnelDraws:
        """Posterior draws ``(num_draws, adsets)`` of each stage and of conversions per spend."""
        return sample_funnel(rng, self.posterior, num_draws, self.conversions_per)

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """One row per ad set: raw totals and rates, posterior means of each stage, and the
        posterior mean and central ``prob`` interval of conversions per unit spend (the
        interval from 4000 draws, seed 0)."""
        means = posterior_means(self.posterior, self.conversions_per)
        table = self.data.adsets.copy()
        for key, value in means.items():
            table[f"{key}_mean"] = value
        draws = self.sample(0, 4000).conversions_per_spend
        lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        table[f"conversions_per_spend_q{50 * (1 - prob):g}"] = lo
        table[f"conversions_per_spend_q{50 * (1 + prob):g}"] = hi
        return table

    def priors_table(self) -> pd.DataFrame:
        """The prior of each pooling group: mean and coefficient of variation of each stage."""
        g, c, v = self.prior
        labels = self.data.campaigns if self.pooling == "campaign" else np.array(["account"])
        if self.pooling == "none":
            labels = np.array(["vague"])

        def beta_cv(p):
            m = p.alpha / (p.alpha + p.beta)
            return np.sqrt((1 - m) / (m * (p.alpha + p.beta + 1)))

        return pd.DataFrame(
            {
                "group": labels,
                "impressions_per_spend_mean": np.broadcast_to(g.shape / g.rate, labels.shape),
                "impressions_per_spend_cv": np.broadcast_to(1 / np.sqrt(g.shape), labels.shape),
                "ctr_mean": np.broadcast_to(c.alpha / (c.alpha + c.beta), labels.shape),
                "ctr_cv": np.broadcast_to(beta_cv(c), labels.shape),
                "ctr_prior_size": np.broadcast_to(c.alpha + c.beta, labels.shape),
                "cvr_mean": np.broadcast_to(v.alpha / (v.alpha + v.beta), labels.shape),
                "cvr_cv": np.broadcast_to(beta_cv(v), labels.shape),
                "cvr_prior_size": np.broadcast_to(v.alpha + v.beta, labels.shape),
            }
        )


def fit_funnel(
    data: DailyData | pd.DataFrame | str | Path,
    *,
    half_life: float | None = None,
    pooling: Pooling = "campaign",
    hyper: HyperPrior = DEFAULT_HYPER,
    settings: EBSettings = DEFAULT_EB,
    conversions_per: ConversionsPer = "click",
    columns: DailyColumns | None = None,
) -> FunnelFit:
    """Fit the funnel of every ad set: discounted statistics, empirical-Bayes priors per
    campaign (``pooling="campaign"``), per account (``"account"``) or none (``"none"``: vague
    priors), and the conjugate posteriors.

    Args:
        data: a :class:`DailyData`, or a table / file read with :func:`load_daily` (then
            ``conversions_per`` and ``columns`` apply).
        half_life: discount half-life in days (None: every day counts fully).

    Example:
        >>> funnel = fit_funnel("daily.csv", half_life=7)  # doctest: +SKIP
        >>> draws = funnel.sample(0, 1000).conversions_per_spend  # (1000, adsets)
    """
    if not isinstance(data, DailyData):
        data = load_daily(data, columns, conversions_per=conversions_per)
    stats = data.statistics(half_life)
    if pooling == "campaign":
        group, num_groups = data.adset_campaign, data.num_campaigns
    elif pooling == "account":
        group, num_groups = np.zeros(data.num_adsets, np.int64), 1
    elif pooling == "none":
        group, num_groups = None, 0
    else:
        raise ValueError(f"pooling must be 'campaign', 'account' or 'none', got {pooling!r}")
    if group is None:
        prior, status = VAGUE_PRIOR, None
    else:
        prior, status = fit_funnel_prior(
            stats, group, num_groups, data.conversions_per, hyper, settings
        )
        if not status.all_converged:
            import warnings

            warnings.warn(
                f"empirical Bayes did not converge for some groups: {status.converged}",
                RuntimeWarning,
                stacklevel=2,
            )
    posterior = funnel_posterior(stats, prior, group, data.conversions_per)
    if group is None:
        posterior = FunnelParams(
            *(
                type(p)(*(np.broadcast_to(x, (data.num_adsets,)).copy() for x in p))
                for p in posterior
            )
        )
    return FunnelFit(
        data=data,
        stats=stats,
        prior=prior,
        posterior=posterior,
        group=np.zeros(data.num_adsets, np.int64) if group is None else np.asarray(group),
        status=status,
        pooling=pooling,
        half_life=half_life,
    )


__all__ = [
    "KAGGLE_COLUMNS",
    "VAGUE_PRIOR",
    "BetaParams",
    "DailyColumns",
    "DailyData",
    "EBSettings",
    "EBStatus",
    "FunnelDraws",
    "FunnelFit",
    "FunnelOrderError",
    "FunnelParams",
    "FunnelStats",
    "GammaParams",
    "HyperPrior",
    "NegativeValueError",
    "add_statistics",
    "beta_binomial_log_marginal",
    "beta_binomial_posterior",
    "discount_statistics",
    "discount_weights",
    "fit_funnel",
    "fit_funnel_prior",
    "fit_stage_prior",
    "funnel_posterior",
    "funnel_statistics",
    "gamma_poisson_log_marginal",
    "gamma_poisson_posterior",
    "load_daily",
    "posterior_means",
    "sample_funnel",
    "stage_data",
]
