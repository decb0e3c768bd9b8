"""jaxrev: the multilevel log-normal revenue-per-conversion model (account > campaign > ad set).

Public API::

    from jaxrev import fit, load_revenue_data, Columns
    result = fit("hourly.csv", method="nuts")
    result.summary()
"""

from jaxrev.checks import compare
from jaxrev.compare import compare_models, heldout_calibration
from jaxrev.data import Columns, DataReport, RevenueArrays, RevenueData, load_revenue_data
from jaxrev.errors import (
    AdsetCampaignConflictError,
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
)
from jaxrev.inference import MAPOptions, NUTSOptions, SVIOptions, fit
from jaxrev.models import (
    MODELS,
    HierSigmaPriors,
    LocalLevelPriors,
    ModelSpec,
    MultilevelPriors,
    NoPoolingPriors,
    StudentTPriors,
    fenton_wilkinson,
    hier_sigma,
    local_level,
    multilevel,
    no_pooling,
    register_model,
    student_t,
)
from jaxrev.result import FitDiagnostics, Message, RevenueFit
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
    "Message",
    "MissingColumnError",
    "MissingValueError",
    "ModelSpec",
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
    "register_model",
    "simulate_account",
    "student_t",
]
