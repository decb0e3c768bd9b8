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
    run          run_allocate: daily table + revenue fit -> the split and its files
    cli          ``jaxrev allocate``

Example:
    >>> from jaxrev import fit
    >>> from jaxrev.roas import allocate, fit_funnel, revenue_draws_from_fit, roas_draws
    >>> funnel = fit_funnel("daily.csv", half_life=14)  # doctest: +SKIP
    >>> revenue = revenue_draws_from_fit(fit("hourly.csv"))  # doctest: +SKIP
    >>> allocate(roas_draws(0, funnel, revenue), 10_000).table  # doctest: +SKIP

The names are loaded on first use, so that ``jaxrev --help`` does not import JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxrev.lazy import lazy_exports

if TYPE_CHECKING:
    from jaxrev.roas.allocation import Allocation, allocate, plot_allocation
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
    from jaxrev.roas.run import run_allocate

_EXPORTS = {
    "Allocation": "jaxrev.roas.allocation",
    "allocate": "jaxrev.roas.allocation",
    "plot_allocation": "jaxrev.roas.allocation",
    "run_allocate": "jaxrev.roas.run",
    "KAGGLE_COLUMNS": "jaxrev.roas.daily",
    "DailyColumns": "jaxrev.roas.daily",
    "DailyData": "jaxrev.roas.daily",
    "FunnelOrderError": "jaxrev.roas.daily",
    "NegativeValueError": "jaxrev.roas.daily",
    "load_daily": "jaxrev.roas.daily",
    "MissingAdsetsError": "jaxrev.roas.draws",
    "RevenueDraws": "jaxrev.roas.draws",
    "RoasDraws": "jaxrev.roas.draws",
    "load_revenue_draws": "jaxrev.roas.draws",
    "revenue_draws_from_fit": "jaxrev.roas.draws",
    "roas_draws": "jaxrev.roas.draws",
    "roas_summary": "jaxrev.roas.draws",
    "EBOptions": "jaxrev.roas.funnel",
    "HyperPrior": "jaxrev.roas.funnel",
    "FunnelFit": "jaxrev.roas.funnel_fit",
    "fit_funnel": "jaxrev.roas.funnel_fit",
    "MarketTruth": "jaxrev.roas.market",
    "Policy": "jaxrev.roas.market",
    "ReplayOptions": "jaxrev.roas.market",
    "ReplayResult": "jaxrev.roas.market",
    "plot_replay": "jaxrev.roas.market",
    "replay": "jaxrev.roas.market",
    "simulate_market": "jaxrev.roas.market",
}


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

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
