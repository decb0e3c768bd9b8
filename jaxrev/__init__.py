"""jaxrev: the multilevel log-normal revenue-per-conversion model (account > campaign > ad set).

Public API::

    from jaxrev import fit, load_revenue_data, Columns
    result = fit("hourly.csv", method="nuts")
    result.summary()

The names are loaded on first use (``jaxrev.fit`` imports JAX then), so that ``import jaxrev.cli``
and ``jaxrev --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxrev.lazy import lazy_exports

if TYPE_CHECKING:
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

_EXPORTS = {
    "compare": "jaxrev.checks",
    "compare_models": "jaxrev.compare",
    "heldout_calibration": "jaxrev.compare",
    "Columns": "jaxrev.data",
    "DataReport": "jaxrev.data",
    "RevenueArrays": "jaxrev.data",
    "RevenueData": "jaxrev.data",
    "load_revenue_data": "jaxrev.data",
    "AdsetCampaignConflictError": "jaxrev.errors",
    "InvalidDataError": "jaxrev.errors",
    "MissingColumnError": "jaxrev.errors",
    "MissingValueError": "jaxrev.errors",
    "MultipleAccountsError": "jaxrev.errors",
    "NegativeCountError": "jaxrev.errors",
    "NonFiniteValueError": "jaxrev.errors",
    "NonIntegerCountError": "jaxrev.errors",
    "NonNumericValueError": "jaxrev.errors",
    "NonPositiveRevenueError": "jaxrev.errors",
    "NoObservationsError": "jaxrev.errors",
    "MAPOptions": "jaxrev.inference",
    "NUTSOptions": "jaxrev.inference",
    "SVIOptions": "jaxrev.inference",
    "fit": "jaxrev.inference",
    "MODELS": "jaxrev.models",
    "HierSigmaPriors": "jaxrev.models",
    "LocalLevelPriors": "jaxrev.models",
    "ModelSpec": "jaxrev.models",
    "MultilevelPriors": "jaxrev.models",
    "NoPoolingPriors": "jaxrev.models",
    "StudentTPriors": "jaxrev.models",
    "fenton_wilkinson": "jaxrev.models",
    "hier_sigma": "jaxrev.models",
    "local_level": "jaxrev.models",
    "multilevel": "jaxrev.models",
    "no_pooling": "jaxrev.models",
    "register_model": "jaxrev.models",
    "student_t": "jaxrev.models",
    "FitDiagnostics": "jaxrev.result",
    "Message": "jaxrev.result",
    "RevenueFit": "jaxrev.result",
    "SimulatedAccount": "jaxrev.simulate",
    "simulate_account": "jaxrev.simulate",
}


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

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
