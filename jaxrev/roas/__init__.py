"""jaxrev.roas: tomorrow's budget split from daily funnel data and a revenue fit.

Return on ad spend is conversions per spend (the funnel) times revenue per conversion (a
:func:`jaxrev.fit`); Thompson sampling over its posterior draws splits the budget, and a simulated
market replays the allocator day by day. The application sits on the :mod:`jaxrev` core, which
never imports it. Modules, in dependency order::

    funnel       the funnel model: conjugate stages, empirical-Bayes priors, posterior draws
    daily        daily ad-set tables: read, check every row, sum per (ad set, day)
    funnel_fit   fit_funnel, FunnelFit
    draws        ROAS draws: funnel draws x the revenue fit's draws
    allocation   the budget split: probability of being best, Thompson sampling, floors and caps
    market       a simulated market with known truth and the day-by-day replay
    cli          ``jaxrev allocate`` and run_allocate

Example:
    >>> from jaxrev import fit
    >>> from jaxrev.roas import allocate, fit_funnel, revenue_draws_from_fit, roas_draws
    >>> funnel = fit_funnel("daily.csv", half_life=14)  # doctest: +SKIP
    >>> revenue = revenue_draws_from_fit(fit("hourly.csv"))  # doctest: +SKIP
    >>> allocate(roas_draws(0, funnel, revenue), 10_000).table  # doctest: +SKIP
"""

from jaxrev.roas.allocation import Allocation, allocate, plot_allocation
from jaxrev.roas.cli import run_allocate
from jaxrev.roas.daily import (
    KAGGLE_COLUMNS,
    DailyColumns,
    DailyData,
    FunnelOrderError,
    NegativeValueError,
    load_daily,
)
from jaxrev.roas.draws import (
    MissingAdsetsError,
    RevenueDraws,
    RoasDraws,
    load_revenue_draws,
    revenue_draws_from_fit,
    roas_draws,
    roas_summary,
)
from jaxrev.roas.funnel import EBOptions, HyperPrior
from jaxrev.roas.funnel_fit import FunnelFit, fit_funnel
from jaxrev.roas.market import (
    MarketTruth,
    Policy,
    ReplayOptions,
    ReplayResult,
    plot_replay,
    replay,
    simulate_market,
)

__all__ = [
    "KAGGLE_COLUMNS",
    "Allocation",
    "DailyColumns",
    "DailyData",
    "EBOptions",
    "FunnelFit",
    "FunnelOrderError",
    "HyperPrior",
    "MarketTruth",
    "MissingAdsetsError",
    "NegativeValueError",
    "Policy",
    "ReplayOptions",
    "ReplayResult",
    "RevenueDraws",
    "RoasDraws",
    "allocate",
    "fit_funnel",
    "load_daily",
    "load_revenue_draws",
    "plot_allocation",
    "plot_replay",
    "replay",
    "revenue_draws_from_fit",
    "roas_draws",
    "roas_summary",
    "run_allocate",
    "simulate_market",
]
