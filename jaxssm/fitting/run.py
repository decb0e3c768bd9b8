"""The run of ``jaxssm fit``: choose the model, fit it, score the held-out cells, impute,
forecast, draw, and write every output as soon as it is computed (:func:`fit_wide_table`; the
command and its outputs are described in :mod:`jaxssm.fitting`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from jaxssm.emissions import EMISSIONS
from jaxssm.files import csv_bytes, json_bytes, write_atomic
from jaxssm.fit import WORST_CELL, fit_laplace_em
from jaxssm.fitting.inputs import Inputs, candidate_factors
from jaxssm.forecast import forecast, impute
from jaxssm.plots import plot_factors, plot_rates
from jaxssm.result import LaplaceEMResult
from jaxssm.selection import FactorSelection, select_num_factors

#: Every file a run may write, relative to DIR (an earlier run's copies are removed first).
OUTPUTS = (
    "summary.json",
    "selection.csv",
    "params/mu.csv",
    "params/loadings.csv",
    "params/transition.csv",
    "expected_counts.csv",
    "heldout_scores.csv",
    "heldout_score.json",
    "imputation.csv",
    "forecast.csv",
    "figures/fit.png",
    "figures/factors.png",
)

#: The interval of imputed and forecast counts: 5 % and 95 % quantiles of the draws.
LEVEL = 0.9

#: The outputs' floats: 10 significant digits.
FLOAT_FORMAT = "%.10g"


def _csv(frame: pd.DataFrame) -> bytes:
    return csv_bytes(frame, FLOAT_FORMAT)


class FitRun(NamedTuple):
    """What :func:`fit_wide_table` computed: the fit, the selection (or None), the summary
    dict as written, the held-out score (or None), the files written and the figure errors."""

    fit: LaplaceEMResult
    selection: FactorSelection | None
    summary: dict
    heldout_score: dict | None
    files: list[str]
    figure_errors: list[str]


def fit_wide_table(
    inputs: Inputs,
    out: Path,
    *,
    factors: str = "auto",
    candidates: str = "0,1,2,3",
    emission: str = "auto",
    folds: int = 5,
    horizon: int = 0,
    draws: int = 1000,
    seed: int = 0,
    max_iterations: int = 1000,
    options: dict | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> FitRun:
    """Fit, score and write every output into ``out`` (:mod:`jaxssm.fitting`). Runs in
    float64. ``options`` are recorded in ``summary.json``; ``say`` gets the progress lines."""
    with jax.enable_x64(True):
        return _fit_and_write(
            inputs, out, factors, candidates, emission, folds, horizon, draws, seed,
            max_iterations, options or {}, say,
        )  # fmt: skip


def _fit_and_write(
    inputs, out, factors, candidates, emission, folds, horizon, draws, seed, max_iterations,
    options, say,
) -> FitRun:  # fmt: skip
    table = inputs.counts
    windows, locations = table.windows, table.locations
    N, m = table.values.shape
    x = inputs.train
    written: list[str] = []

    def put(name: str, payload) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, payload)
        if name not in written:
            written.append(name)
        say(f"wrote {path}")

    k_select, k_impute, k_forecast = jax.random.split(jax.random.key(seed), 3)
    qs, too_large = candidate_factors(factors, candidates, (N, m), table.path)
    if too_large:
        say(f"skipping q = {', '.join(map(str, too_large))}: at most {min(N, m)} factors here")
    emissions = EMISSIONS if emission == "auto" else (emission,)
    offset = inputs.offset

    selection = None
    if len(qs) * len(emissions) > 1:
        say(
            f"choosing q in {{{', '.join(map(str, qs))}}} and the emission "
            f"({', '.join(emissions)}) by {folds}-fold cross-validation: "
            f"{len(qs) * len(emissions) * folds} fits"
        )
        start = time.perf_counter()
        selection = select_num_factors(
            k_select, x, qs, emissions=emissions, offset=offset, folds=folds,
            max_iterations=max_iterations,
        )  # fmt: skip
        q, chosen = selection.best, selection.best_emission
        say(f"chose q = {q}, {chosen} ({time.perf_counter() - start:.1f} s)")
        put("selection.csv", _csv(selection.table))
    else:
        q, chosen = qs[0], emissions[0]

    say(f"fitting q = {q}, {chosen} emission")
    start = time.perf_counter()
    fit = fit_laplace_em(x, q, emission=chosen, offset=offset, max_iterations=max_iterations)
    say(f"{fit.status} after {fit.num_iterations} iterations ({time.perf_counter() - start:.1f} s)")

    check = fit.check._asdict() if fit.check is not None else {}
    if check:
        i, j = check.pop("worst_window"), check.pop("worst_location")
        check["worst_window"] = windows[i] if 0 <= i < N else None
        check["worst_location"] = locations[j] if 0 <= j < m else None
        check["problems"] = list(check["problems"])
    summary = {
        "finished": False,
        "counts_file": str(table.path),
        **fit.figures(),  # num_factors, emission, status, converged, iterations, ...
        "selection": None if selection is None else selection.table.to_dict("records"),
        "check": check,
        "loading_variance": np.asarray(fit.prior.loading_variance).tolist(),
        "data": {
            "windows": N,
            "locations": m,
            "cells": N * m,
            "missing_cells": int(np.isnan(table.values).sum()),
            "heldout_cells": 0
            if inputs.heldout is None
            else int((~np.isnan(inputs.heldout)).sum()),
            "heldout_cells_present_in_counts": inputs.heldout_in_counts,
            "fitted_cells": int(np.isfinite(x).sum()),
            "first_window": windows[0],
            "last_window": windows[-1],
            "offset": offset is not None,
        },
        "float64": True,
        "options": options,
        "files": written,
    }
    put("summary.json", lambda h: h.write(json_bytes(summary)))

    tables = fit.parameter_tables(locations)  # the tables of fit.save, 10 digits here
    for name in ("params/mu.csv", "params/loadings.csv", "params/transition.csv"):
        put(name, _csv(tables[name]))

    expected = pd.DataFrame(fit.expected_counts(), columns=locations)
    expected.insert(0, table.label_column, windows)
    put("expected_counts.csv", _csv(expected))

    def long(values: dict) -> pd.DataFrame:
        frame = pd.DataFrame({"window": np.repeat(windows, m), "location": np.tile(locations, N)})
        for name, value in values.items():
            frame[name] = np.asarray(value).reshape(-1)
        return frame

    score = None
    if inputs.heldout is not None:
        say("scoring the held-out cells")
        cells = ~np.isnan(inputs.heldout)
        logp = fit.log_predictive(inputs.heldout, cells)
        scores = long({"count": inputs.heldout, "log_predictive": logp})[cells.reshape(-1)]
        put("heldout_scores.csv", _csv(scores.reset_index(drop=True)))
        values = logp[cells]
        worst = int(np.argmin(np.where(np.isfinite(values), values, -np.inf)))
        score = {
            "log_predictive_per_cell": float(np.mean(values)),
            "log_predictive_se": float(np.std(values, ddof=1) / math.sqrt(values.size))
            if values.size > 1
            else None,
            "num_cells": int(values.size),
            "cells_below_minus_50": int(np.sum(~(values >= WORST_CELL))),
            "worst_cell": scores.iloc[worst][
                ["window", "location", "count", "log_predictive"]
            ].to_dict(),
            "num_factors": q,
            "emission": chosen,
        }
        put("heldout_score.json", json_bytes(score))
        summary["heldout_score"] = score
        if score["cells_below_minus_50"]:
            # a cell the model cannot explain, held out or not, means the fit is not usable
            w = score["worst_cell"]
            summary["converged"] = False
            summary["status"] = (
                f"not converged: {score['cells_below_minus_50']} held-out cell(s) have a log "
                f"predictive below {WORST_CELL:g} (worst {w['log_predictive']:,.1f} at window "
                f"{w['window']!r}, location {w['location']!r}) (fit: {fit.status})"
            )

    say(f"imputing the missing cells ({draws} draws)")
    cov = fit.parameter_covariance()
    imputed = np.asarray(
        impute(k_impute, fit.params, fit.posterior, fit.panel, draws, parameter_cov=cov).counts
    )
    tail = (1 - LEVEL) / 2
    imputation = long(
        {
            "observed": x,
            "mean": imputed.mean(0),
            "q05": np.quantile(imputed, tail, axis=0),
            "q95": np.quantile(imputed, 1 - tail, axis=0),
        }
    )
    del imputed
    put("imputation.csv", _csv(imputation))

    if horizon > 0:
        say(f"forecasting {horizon} windows ahead ({draws} draws)")
        future_offset = None if offset is None else np.broadcast_to(offset[-1], (horizon, m))
        ahead = forecast(
            k_forecast, fit.params, fit.posterior, horizon, draws, offset=future_offset,
            parameter_cov=cov,
        )  # fmt: skip
        mean, lo, hi = ahead.interval(LEVEL)
        steps = np.arange(1, horizon + 1)
        table_ahead = pd.DataFrame(
            {
                "step": np.repeat(steps, m),
                "location": np.tile(locations, horizon),
                "mean": mean.reshape(-1),
                "q05": lo.reshape(-1),
                "q95": hi.reshape(-1),
            }
        )
        put("forecast.csv", _csv(table_ahead))

    figure_errors = []
    shown = np.where(np.isnan(x), inputs.heldout if inputs.heldout is not None else np.nan, x)
    for name, draw in (
        ("figures/fit.png", lambda: _figure_fit(fit, shown, locations)),
        ("figures/factors.png", lambda: _figure_factors(fit)),
    ):
        try:
            fig = draw()
        except Exception as err:  # a figure is not worth the rest of the run
            figure_errors.append(f"{name}: {type(err).__name__}: {err}")
            say(f"warning: {name} not drawn: {err}")
            continue
        try:
            put(name, lambda h, fig=fig: fig.savefig(h, format="png", dpi=110))
        finally:
            import matplotlib.pyplot as plt

            plt.close(fig)

    summary["finished"] = True
    summary["figure_errors"] = figure_errors
    put("summary.json", lambda h: h.write(json_bytes(summary)))
    return FitRun(fit, selection, summary, score, written, figure_errors)


def _figure_fit(fit, counts: np.ndarray, locations: list[str]):
    top = list(np.argsort(-np.nansum(counts, axis=0), kind="stable")[:6])
    return plot_rates(fit, counts, top, names=locations, level=LEVEL)


def _figure_factors(fit):
    import matplotlib.pyplot as plt

    if fit.num_factors == 0:
        fig, ax = plt.subplots(figsize=(6, 1.6))
        ax.text(0.5, 0.5, "q = 0: the static model has no latent factors", ha="center")
        ax.axis("off")
        return fig
    two_sd = math.erf(2 / math.sqrt(2))  # the level of mean ± 2 sd
    return plot_factors(fit, level=two_sd)
