"""jaxrev: the multilevel log-normal revenue-per-conversion model (account > campaign > ad set).

Public API::

    from jaxrev import fit, load_revenue_data, Columns
    result = fit("hourly.csv", method="nuts")
    result.summary()
"""

from jaxrev.compare import compare, compare_models, heldout_calibration
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
    HierSigmaPriors,
    LocalLevelPriors,
    MultilevelPriors,
    NoPoolingPriors,
    RevenueArrays,
    StudentTPriors,
    fenton_wilkinson,
    hier_sigma,
    local_level,
    multilevel,
    no_pooling,
    student_t,
)
from jaxrev.result import FitDiagnostics, RevenueFit
from jaxrev.simulate import SimulatedAccount, simulate_account

__all__ = [
    "MODELS",
    "AdsetCampaignConflictError",
    "Columns",
    "DataReport",
    "FitDiagnostics",
    "HierSigmaPriors",
    "InvalidDataError",
    "LocalLevelPriors",
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
    "StudentTPriors",
    "compare",
    "compare_models",
    "fenton_wilkinson",
    "fit",
    "heldout_calibration",
    "hier_sigma",
    "load_revenue_data",
    "local_level",
    "multilevel",
    "no_pooling",
    "simulate_account",
    "student_t",
]
