"""The fitted funnel of every ad set: :func:`fit_funnel` (daily table -> discounted statistics
-> empirical-Bayes priors -> conjugate posteriors) and :class:`FunnelFit` (draws, tables).

The model and its empirical-Bayes fit are in :mod:`jaxrev.roas.funnel`; reading the daily table
in :mod:`jaxrev.roas.daily`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jaxrev.roas.daily import DailyColumns, DailyData, load_daily
from jaxrev.roas.funnel import (
    DEFAULT_EB,
    DEFAULT_HYPER,
    VAGUE_PRIOR,
    ConversionsPer,
    EBOptions,
    EBStatus,
    FunnelDraws,
    FunnelParams,
    FunnelStats,
    HyperPrior,
    Pooling,
    fit_funnel_prior,
    funnel_posterior,
    posterior_means,
    sample_funnel,
)


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
    options: EBOptions = DEFAULT_EB,
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
            stats, group, num_groups, data.conversions_per, hyper, options
        )
        if not status.all_converged:
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


__all__ = ["FunnelFit", "fit_funnel"]
