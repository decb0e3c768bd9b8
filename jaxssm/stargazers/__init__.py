"""The stargazers application: from a repository's stargazers to an investor report.

fetch (GitHub GraphQL) → :func:`read_stargazers` → locations (:mod:`jaxssm.locations`) →
:func:`windowed_counts` → :func:`homogeneity_test` → the Poisson dynamic factor model →
:func:`impute_locations` beside :func:`baseline_imputation` → :func:`forecast_shares` →
:func:`write_report`. :func:`analyze` runs the steps in order.

Its dependencies are the optional extra ``apps``: ``pip install 'jaxmodels[apps]'``.
"""

import importlib

for _module in ("httpx", "jinja2"):
    try:
        importlib.import_module(_module)
    except ImportError as _err:
        raise ImportError(
            f"jaxssm.stargazers needs {_module!r}, of the optional extra 'apps': "
            "pip install 'jaxmodels[apps]'"
        ) from _err

from jaxssm.stargazers.analysis import (
    AnalysisOptions,
    StargazerAnalysis,
    analyze,
    future_labels,
    locate,
)
from jaxssm.stargazers.fetch import fetch_stargazers
from jaxssm.stargazers.github import FetchError
from jaxssm.stargazers.homogeneity import HomogeneityTest, homogeneity_test
from jaxssm.stargazers.imputation import (
    LocationImputation,
    ShareForecast,
    baseline_imputation,
    forecast_shares,
    impute_locations,
    most_likely_locations,
    proportion_draws,
)
from jaxssm.stargazers.ingest import StargazersError, read_stargazers
from jaxssm.stargazers.regions import LATIN_AMERICA, group_of, region_table
from jaxssm.stargazers.report import report_from_file, write_report
from jaxssm.stargazers.simulate import (
    SimulatedStargazers,
    imputation_scores,
    simulate_stargazers,
)
from jaxssm.stargazers.windows import WindowedCounts, covering_set, windowed_counts

__all__ = [
    "LATIN_AMERICA",
    "AnalysisOptions",
    "FetchError",
    "HomogeneityTest",
    "LocationImputation",
    "ShareForecast",
    "SimulatedStargazers",
    "StargazerAnalysis",
    "StargazersError",
    "WindowedCounts",
    "analyze",
    "baseline_imputation",
    "covering_set",
    "fetch_stargazers",
    "forecast_shares",
    "future_labels",
    "group_of",
    "homogeneity_test",
    "imputation_scores",
    "impute_locations",
    "locate",
    "most_likely_locations",
    "proportion_draws",
    "read_stargazers",
    "region_table",
    "report_from_file",
    "simulate_stargazers",
    "windowed_counts",
    "write_report",
]
