"""Bundled daily funnel tables for ``jaxrev allocate`` (columns ``campaign``, ``adset``, ``date``,
``spend``, ``impressions``, ``clicks``, ``conversions``, ``revenue``; see ``README.md``)."""

from __future__ import annotations

import pandas as pd

from jaxrev.datasets import _read


def load_simulated_daily() -> pd.DataFrame:
    """28 days of the 19 ad sets of the bundled simulated account, from
    :func:`jaxrev.roas.market.simulate_market` (regenerate: ``python -m
    jaxrev.roas.make_simulated_daily``)."""
    return _read("simulated_daily.csv")


def load_simulated_daily_truth() -> pd.DataFrame:
    """The true funnel rates, revenue per conversion and ROAS of each ad set on the last day."""
    return _read("simulated_daily_truth.csv")


DAILY = {"simulated_daily": load_simulated_daily}
DAILY_DESCRIPTIONS = {
    "simulated_daily": "simulated: daily funnel (spend, impressions, clicks, conversions) of the "
    "simulated account's 19 ad sets, 28 days (for `jaxrev allocate`)",
}


def load_daily_bundled(name: str) -> pd.DataFrame:
    """Load a bundled daily table by name (see ``DAILY``)."""
    try:
        return DAILY[name]()
    except KeyError:
        raise ValueError(
            f"no bundled daily table {name!r}; choose one of {sorted(DAILY)}"
        ) from None
