"""Choosing between revenue models: fit each on all the rows (PSIS-LOO) and on the earlier hours
(calibration on the later ones), then write the tables and one model-checking figure per model.

The checks themselves (pointwise log-likelihood, PSIS-LOO comparison, coverage, PIT) are in
:mod:`jaxrev.checks`; this module runs the fits they need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxrev.checks import (
    Calibration,
    ModelComparison,
    calibration,
    compare,
    mask_rows,
    time_split,
)
from jaxrev.data import RevenueData
from jaxrev.files import make_dir, save_figure, write_csv
from jaxrev.inference import fit
from jaxrev.models import DEFAULT_MODEL
from jaxrev.plots import plot_model_checks


def heldout_calibration(
    data: RevenueData,
    model: str = DEFAULT_MODEL,
    method: str = "svi",
    *,
    split: float = 0.75,
    level: float = 0.9,
    seed: int = 0,
    **fit_options,
) -> Calibration:
    """Fit ``model`` on the hours up to the ``split`` quantile of time and check its predictive
    intervals on the later hours (see :mod:`jaxrev.checks`)."""
    heldout = time_split(data, split)
    earlier = fit(mask_rows(data, heldout), model=model, method=method, seed=seed, **fit_options)
    return calibration(earlier, heldout, level)


# --------------------------------------------------------------------------------------------
# The whole comparison, as the CLI runs it
# --------------------------------------------------------------------------------------------


class ComparisonReport(NamedTuple):
    """``loo``: the :class:`ModelComparison`; ``calibration``: per model, its
    :class:`Calibration` on the later hours; ``fits``: per model, the fit on all the data."""

    loo: ModelComparison
    calibration: dict
    fits: dict

    def calibration_table(self) -> pd.DataFrame:
        """Per model: held-out rows, interval coverage (overall and the median / worst ad set),
        and the PIT's distance from uniform (Kolmogorov-Smirnov D)."""
        rows = []
        for name, cal in self.calibration.items():
            pit = np.sort(cal.rows["pit"].to_numpy())
            n = len(pit)
            grid = np.arange(1, n + 1) / n
            ks = float(np.max(np.maximum(grid - pit, pit - (grid - 1 / n)))) if n else np.nan
            rows.append(
                {
                    "model": name,
                    "heldout_rows": n,
                    "coverage": cal.coverage,
                    "nominal": cal.level,
                    "adset_coverage_median": float(cal.adsets["coverage"].median()),
                    "adset_coverage_min": float(cal.adsets["coverage"].min()),
                    "pit_ks": ks,
                }
            )
        return pd.DataFrame(rows).set_index("model")

    def ranking(self, top: int = 10) -> pd.DataFrame:
        """Ad sets ranked by posterior mean revenue per conversion under each model (1 = best),
        with the raw mean; largest raw revenue first."""
        frames = []
        for name, result in self.fits.items():
            s = result.summary()
            s = s[s["level"] == "adset"].set_index("adset")
            frames.append(s["mean"].rank(ascending=False).rename(f"rank_{name}"))
            frames.append(s["mean"].rename(f"mean_{name}"))
        first = next(iter(self.fits.values())).summary()
        first = first[first["level"] == "adset"].set_index("adset")
        table = pd.concat([first[["campaign", "n_obs", "raw_mean"]], *frames], axis=1)
        return table.sort_values("n_obs", ascending=False)


def compare_models(
    data: RevenueData,
    models: Sequence[str],
    method: str = "nuts",
    *,
    split: float = 0.75,
    level: float = 0.9,
    seed: int = 0,
    progress=None,
    **fit_options,
) -> ComparisonReport:
    """Fit every model on all the data (PSIS-LOO) and on the earlier hours (calibration)."""
    say = progress or (lambda _line: None)
    fits, calibrations = {}, {}
    for name in models:
        say(f"{name}: fitting all rows ({method}) ...")
        fits[name] = fit(data, model=name, method=method, seed=seed, **fit_options)
        say(f"{name}: fitting the rows up to the {split:.0%} time quantile ...")
        calibrations[name] = heldout_calibration(
            data, name, method, split=split, level=level, seed=seed, **fit_options
        )
    say("PSIS-LOO ...")
    return ComparisonReport(compare(fits), calibrations, fits)


def write_comparison(report: ComparisonReport, out_dir) -> dict:
    """``loo.csv``, ``calibration.csv``, ``calibration_by_adset.csv``, ``ranking.csv`` and one
    ``checks_<model>.png`` per model (:func:`jaxrev.plots.plot_model_checks`)."""
    import matplotlib.pyplot as plt

    out = make_dir(out_dir)
    written = {
        "loo": write_csv(report.loo.table, out / "loo.csv", index=True),
        "calibration": write_csv(report.calibration_table(), out / "calibration.csv", index=True),
    }
    by_adset = pd.concat(
        [cal.adsets.assign(model=name) for name, cal in report.calibration.items()],
        ignore_index=True,
    )
    written["calibration_by_adset"] = write_csv(by_adset, out / "calibration_by_adset.csv")
    written["ranking"] = write_csv(report.ranking(), out / "ranking.csv", index=True)
    for name, result in report.fits.items():
        fig = plot_model_checks(result, calibration=report.calibration[name])
        try:
            written[f"checks_{name}"] = save_figure(
                fig, out / f"checks_{name}.png", dpi=110, bbox_inches="tight"
            )
        finally:
            plt.close(fig)
    return written
