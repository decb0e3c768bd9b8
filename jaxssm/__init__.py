r"""jaxssm: a dynamic factor state-space model for counts fitted by Laplace-EM in pure JAX.

$X_i(\ell) \mid f_i \sim \mathrm{Poisson}(\lambda_{i\ell})$ or
$\mathrm{NegBin}(\lambda_{i\ell}, \phi_\ell)$,
$\log \lambda_i = o_i + \mu + \Lambda f_i$,
$f_i = \Phi f_{i-1} + \varepsilon$, $\varepsilon \sim N(0, Q)$, $f_1 \sim N(a_1, P_1)$.
"""

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
