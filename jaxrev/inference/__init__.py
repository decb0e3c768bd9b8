"""Fitting the revenue models: SVI (mean-field, full-rank, low-rank guides), NUTS and MAP.

One entry point, :func:`fit`, returns a :class:`~jaxrev.result.RevenueFit`. Underneath, each
method is a module of pure functions of ``(key, arrays)`` whose settings are hashable and static
(:mod:`~jaxrev.inference.svi`, :mod:`~jaxrev.inference.nuts`, :mod:`~jaxrev.inference.map`), so
a second fit of an account of the same shape reuses the compiled program, and the SVI step can
be ``vmap``-ped over a batch of padded accounts; :mod:`~jaxrev.inference.driver` holds the host
loops and :func:`fit`.
"""

from jaxrev.inference.driver import fit, run_map, run_nuts, run_svi
from jaxrev.inference.map import MAPSolution, map_objective, map_solve
from jaxrev.inference.nuts import nuts_init, nuts_sample
from jaxrev.inference.options import (
    OPTIONS,
    GuideKind,
    MAPOptions,
    NUTSOptions,
    Options,
    SVIOptions,
    resolve_options,
)
from jaxrev.inference.posterior import with_predictions
from jaxrev.inference.svi import (
    SVIRunState,
    WindowStats,
    elbo_plateau,
    fitted_params,
    guide_draws,
    learning_rate_schedule,
    make_svi,
    prepared_svi,
    program_options,
    svi_chunk,
    svi_converged,
    svi_draws,
    svi_fit_fixed,
    svi_init,
    svi_summary_stats,
)

__all__ = [
    "OPTIONS",
    "GuideKind",
    "MAPOptions",
    "MAPSolution",
    "NUTSOptions",
    "Options",
    "SVIOptions",
    "SVIRunState",
    "WindowStats",
    "elbo_plateau",
    "fit",
    "fitted_params",
    "guide_draws",
    "learning_rate_schedule",
    "make_svi",
    "map_objective",
    "map_solve",
    "nuts_init",
    "nuts_sample",
    "prepared_svi",
    "program_options",
    "resolve_options",
    "run_map",
    "run_nuts",
    "run_svi",
    "svi_chunk",
    "svi_converged",
    "svi_draws",
    "svi_fit_fixed",
    "svi_init",
    "svi_summary_stats",
    "with_predictions",
]
