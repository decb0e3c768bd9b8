"""jaxrev: the multilevel log-normal revenue-per-conversion model (account > campaign > ad set).

Public API::

    from jaxrev import fit, load_revenue_data, Columns
    result = fit("hourly.csv", method="nuts")
    result.summary()
"""

from jaxrev.data import (
    AdsetCampaignConflictError,
    Columns,
    DataReport,
    InvalidDataError,
    MissingColumnError,
    MissingValueError,
    MultipleAccountsError,
    NegativeCountError,
    NonFiniteValueError,
    NonIntegerCountError,
    NonNumericValueError,
    NonPositiveRevenueError,
    NoObservationsError,
    RevenueData,
    load_revenue_data,
)
from jaxrev.inference import MAPOptions, NUTSOptions, SVIOptions, fit
from jaxrev.model import (
    MODELS,
    MultilevelPriors,
    NoPoolingPriors,
    RevenueArrays,
    fenton_wilkinson,
    multilevel,
    no_pooling,
)
from jaxrev.result import FitDiagnostics, RevenueFit
from jaxrev.simulate import SimulatedAccount, simulate_account

__all__ = [
    "MODELS",
    "AdsetCampaignConflictError",
    "Columns",
    "DataReport",
    "FitDiagnostics",
    "InvalidDataError",
    "MAPOptions",
    "MissingColumnError",
    "MissingValueError",
    "MultilevelPriors",
    "MultipleAccountsError",
    "NUTSOptions",
    "NegativeCountError",
    "NoObservationsError",
    "NoPoolingPriors",
    "NonFiniteValueError",
    "NonIntegerCountError",
    "NonNumericValueError",
    "NonPositiveRevenueError",
    "RevenueArrays",
    "RevenueData",
    "RevenueFit",
    "SVIOptions",
    "SimulatedAccount",
    "fenton_wilkinson",
    "fit",
    "load_revenue_data",
    "multilevel",
    "no_pooling",
    "simulate_account",
]
