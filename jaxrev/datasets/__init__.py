"""Bundled data: the UCI Online Retail hourly aggregates (real) and a simulated account.

``load_bundled(name)`` returns a DataFrame with the columns ``campaign``, ``adset``, ``hour``,
``conversions`` and ``revenue`` (the default :class:`~jaxrev.data.Columns`). Provenance and
licences are in ``README.md`` beside this file.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

UK = "United Kingdom"
# Region grouping used as the "campaign" level for the UCI data (country = "ad set").
REST_OF_EUROPE = frozenset(
    {
        "Austria", "Belgium", "Channel Islands", "Cyprus", "Czech Republic", "Denmark", "EIRE",
        "European Community", "Finland", "France", "Germany", "Greece", "Iceland", "Italy",
        "Lithuania", "Malta", "Netherlands", "Norway", "Poland", "Portugal", "Spain", "Sweden",
        "Switzerland",
    }
)  # fmt: skip


def region_of(country: str) -> str:
    """UK / rest of Europe / rest of world (incl. the shop's "Unspecified")."""
    if country == UK:
        return UK
    return "Rest of Europe" if country in REST_OF_EUROPE else "Rest of world"


def _read(name: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open("rb") as f:
        return pd.read_csv(f)


def load_uci_online_retail() -> pd.DataFrame:
    """UCI Online Retail (Dec 2010 - Dec 2011) per country per hour: conversions = invoices with
    revenue > 0, revenue = their sum in GBP. Country is the ad set, its region the campaign."""
    table = _read("uci_online_retail_hourly_by_country.csv")
    return pd.DataFrame(
        {
            "campaign": table["Country"].map(region_of),
            "adset": table["Country"],
            "hour": table["hour"],
            "conversions": table["conversions"],
            "revenue": table["revenue"],
        }
    )


def load_simulated_account() -> pd.DataFrame:
    """A simulated account (5 campaigns, 19 ad sets, 24 hours each) from
    :func:`jaxrev.simulate.simulate_account`; revenue is the exact sum of log-normal purchases."""
    return _read("simulated_account.csv")


def load_simulated_truth() -> pd.DataFrame:
    """The true ``adset_mean`` (and ``adset_mu``, ``campaign``) of the simulated account."""
    return _read("simulated_account_truth.csv")


BUNDLED = {
    "uci_online_retail": load_uci_online_retail,
    "simulated_account": load_simulated_account,
}
DESCRIPTIONS = {
    "uci_online_retail": "real: UCI Online Retail per country per hour (38 countries as ad sets, "
    "3 regions as campaigns, 4,566 rows)",
    "simulated_account": "simulated: 5 campaigns, 19 ad sets, 24 hours, exact log-normal sums",
}


def load_bundled(name: str) -> pd.DataFrame:
    """Load a bundled data set by name (see ``BUNDLED``)."""
    try:
        return BUNDLED[name]()
    except KeyError:
        raise ValueError(f"no bundled data set {name!r}; choose one of {sorted(BUNDLED)}") from None
