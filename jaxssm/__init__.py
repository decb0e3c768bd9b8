r"""jaxssm: a dynamic factor state-space model for counts fitted by Laplace-EM in pure JAX.

$X_i(\ell) \mid f_i \sim \mathrm{Poisson}(\lambda_{i\ell})$ or
$\mathrm{NegBin}(\lambda_{i\ell}, \phi_\ell)$,
$\log \lambda_i = o_i + \mu + \Lambda f_i$,
$f_i = \Phi f_{i-1} + \varepsilon$, $\varepsilon \sim N(0, Q)$, $f_1 \sim N(a_1, P_1)$.

The public names are imported on first use (PEP 562), so ``import jaxssm.cli`` (the command
line's ``--help``) does not import JAX.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxssm.drift import DriftTest, drift_test
    from jaxssm.em import EMOptions
    from jaxssm.errors import DataError, OutputError
    from jaxssm.fit import check_fit, fit_laplace_em, initial_params, posterior
    from jaxssm.forecast import (
        Forecast,
        Imputation,
        expected_rates,
        forecast,
        impute,
        log_rate_moments,
        predictive_log_likelihood,
        sample_posterior,
    )
    from jaxssm.full_bayes import FullPosterior, sample_full_posterior
    from jaxssm.laplace import LaplacePosterior, laplace_posterior
    from jaxssm.params import Panel, Params, Priors, make_panel
    from jaxssm.result import FitCheck, LaplaceEMResult
    from jaxssm.selection import FactorSelection, select_num_factors
    from jaxssm.simulate import random_params, simulate_panel

#: Each public name → the module that defines it.
_EXPORTS = {
    "DriftTest": "jaxssm.drift",
    "drift_test": "jaxssm.drift",
    "EMOptions": "jaxssm.em",
    "DataError": "jaxssm.errors",
    "OutputError": "jaxssm.errors",
    "check_fit": "jaxssm.fit",
    "fit_laplace_em": "jaxssm.fit",
    "initial_params": "jaxssm.fit",
    "posterior": "jaxssm.fit",
    "Forecast": "jaxssm.forecast",
    "Imputation": "jaxssm.forecast",
    "expected_rates": "jaxssm.forecast",
    "forecast": "jaxssm.forecast",
    "impute": "jaxssm.forecast",
    "log_rate_moments": "jaxssm.forecast",
    "predictive_log_likelihood": "jaxssm.forecast",
    "sample_posterior": "jaxssm.forecast",
    "FullPosterior": "jaxssm.full_bayes",
    "sample_full_posterior": "jaxssm.full_bayes",
    "LaplacePosterior": "jaxssm.laplace",
    "laplace_posterior": "jaxssm.laplace",
    "Panel": "jaxssm.params",
    "Params": "jaxssm.params",
    "Priors": "jaxssm.params",
    "make_panel": "jaxssm.params",
    "FitCheck": "jaxssm.result",
    "LaplaceEMResult": "jaxssm.result",
    "FactorSelection": "jaxssm.selection",
    "select_num_factors": "jaxssm.selection",
    "random_params": "jaxssm.simulate",
    "simulate_panel": "jaxssm.simulate",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxssm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps a public name when its namesake submodule is imported later (``jaxssm.forecast``
    is the function, as with eager imports, not the module :mod:`jaxssm.forecast`)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "DataError",
    "DriftTest",
    "EMOptions",
    "FactorSelection",
    "FitCheck",
    "Forecast",
    "FullPosterior",
    "Imputation",
    "LaplaceEMResult",
    "LaplacePosterior",
    "OutputError",
    "Panel",
    "Params",
    "Priors",
    "check_fit",
    "drift_test",
    "expected_rates",
    "fit_laplace_em",
    "forecast",
    "impute",
    "initial_params",
    "laplace_posterior",
    "log_rate_moments",
    "make_panel",
    "posterior",
    "predictive_log_likelihood",
    "random_params",
    "sample_full_posterior",
    "sample_posterior",
    "select_num_factors",
    "simulate_panel",
]
