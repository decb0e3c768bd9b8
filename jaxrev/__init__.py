"""jaxrev: the multilevel log-normal revenue-per-conversion model (account > campaign > ad set).

Public API::

    from jaxrev import fit, load_revenue_data, Columns
    result = fit("hourly.csv", method="nuts")
    result.summary()
"""

from jaxrev.allocation import Allocation, allocate, run_allocate
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
from jaxrev.funnel import FunnelFit, fit_funnel, load_daily
from jaxrev.inference import MAPOptions, NUTSOptions, SVIOptions, fit
from jaxrev.market import replay, simulate_market
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
from jaxrev.roas import revenue_draws_from_fit, roas_draws
from jaxrev.simulate import SimulatedAccount, simulate_account

__all__ = [
    "MODELS",
    "AdsetCampaignConflictError",
    "Allocation",
    "Columns",
    "DataReport",
    "FitDiagnostics",
    "FunnelFit",
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
    "allocate",
    "compare",
    "compare_models",
    "fenton_wilkinson",
    "fit",
    "fit_funnel",
    "heldout_calibration",
    "hier_sigma",
    "load_daily",
    "load_revenue_data",
    "local_level",
    "multilevel",
    "no_pooling",
    "register_model",
    "replay",
    "revenue_draws_from_fit",
    "roas_draws",
    "run_allocate",
    "simulate_account",
    "simulate_market",
    "student_t",
]
