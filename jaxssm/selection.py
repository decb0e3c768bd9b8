r"""The choice of the number of factors q and of the emission by the predictive log-likelihood
of held-out observed cells (:func:`select_num_factors`).

Each candidate (q, emission) is fitted on the training cells (:func:`jaxssm.fit.fit_laplace_em`)
and scored on the held-out ones (:meth:`~jaxssm.result.LaplaceEMResult.log_predictive`); one
random hold-out or K-fold cross-validation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from jaxssm.emissions import check_emission
from jaxssm.fit import WORST_CELL, fit_laplace_em
from jaxssm.params import Priors, make_panel


class FactorSelection(NamedTuple):
    r"""The choice of q and the emission by held-out cells.

    ``table``: one row per candidate (``num_factors``, ``emission``) with the mean held-out log
    predictive per cell, its standard error, the number of held-out cells below a log
    predictive of -50 and the worst one, the MAP-EM objective and the Laplace approximation of
    $\log p(X \mid \hat\theta)$ on the training cells, iterations and the fits' status;
    ``best``: the q with the highest held-out log predictive and ``best_emission`` its emission;
    ``heldout``: the (N, m) held-out mask; ``cell_loglik``: (candidates, held-out cells) the log
    predictive of each held-out cell under each candidate, rows in the table's order (for paired
    comparisons)."""

    table: pd.DataFrame
    best: int
    heldout: np.ndarray
    cell_loglik: np.ndarray | None = None
    best_emission: str = "poisson"

    def _row(self, q: int, emission: str | None) -> int:
        emission = emission or self.best_emission
        rows = self.table.index[
            (self.table["num_factors"] == q) & (self.table["emission"] == emission)
        ]
        if len(rows) == 0:
            raise KeyError(f"no candidate with q = {q} and emission {emission!r}")
        return int(self.table.index.get_loc(rows[0]))

    def difference(
        self, q: int, baseline: int = 0, *, emission: str | None = None,
        baseline_emission: str | None = None,
    ) -> tuple[float, float]:  # fmt: skip
        """Mean held-out log predictive per cell of (q, emission) minus (``baseline``,
        ``baseline_emission``) (emissions default to the chosen one), and its paired standard
        error (the same cells under both)."""
        d = (
            self.cell_loglik[self._row(q, emission)]
            - self.cell_loglik[self._row(baseline, baseline_emission)]
        )
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def holdout_cells(key: jax.Array, mask: np.ndarray, fraction: float) -> np.ndarray:
    """A random ``fraction`` of the observed cells, as a boolean (N, m) mask."""
    u = np.asarray(jax.random.uniform(key, mask.shape))
    return np.asarray(mask) & (u < fraction)


def select_num_factors(
    key: jax.Array,
    counts,
    candidates=(0, 1, 2, 3),
    *,
    emissions: tuple[str, ...] = ("poisson", "negbin"),
    mask=None,
    offset=None,
    holdout_fraction: float = 0.1,
    folds: int = 1,
    priors: Priors = Priors(),
    parameter_uncertainty: bool = True,
    **fit_options,
) -> FactorSelection:
    """Choose q and the emission by the predictive log-likelihood of randomly held-out observed
    cells.

    Every pair of ``candidates`` (numbers of factors) and ``emissions`` (``"poisson"``,
    ``"negbin"``) is fitted on the training cells and scored on the held-out ones. q = 0 is the
    static model $\\log\\lambda_{i\\ell} = o_{i\\ell} + \\mu_\\ell$ (with a per-window exposure
    offset: fixed proportions, time-varying total), so the chosen model is never worse on
    held-out cells than the static one by this criterion. With ``parameter_uncertainty`` the
    predictive distribution of a cell integrates over $(\\mu_\\ell, \\Lambda_\\ell)$ as well
    (:meth:`~jaxssm.result.LaplaceEMResult.parameter_covariance`), which matters for rare locations.

    ``folds = 1`` holds out ``holdout_fraction`` of the observed cells once; ``folds = K > 1``
    is K-fold cross-validation: the observed cells are split at random into K parts, each held
    out in turn (K fits per candidate, every cell scored once: more power to see dynamics on
    sparse panels, where one 10% hold-out leaves few informative cells). The table's training
    columns are then means over folds.
    """
    for emission in emissions:
        check_emission(emission)
    panel = make_panel(counts, mask, offset)
    observed = np.asarray(panel.mask)
    if folds > 1:
        u = np.asarray(jax.random.uniform(key, observed.shape))
        fold_of = np.minimum((u * folds).astype(int), folds - 1)
        parts = [observed & (fold_of == k) for k in range(folds)]
        heldout = observed.copy()
    else:
        heldout = holdout_cells(key, observed, holdout_fraction)
        parts = [heldout]
    x = np.where(observed, np.asarray(panel.counts), np.nan)
    rows, cells = [], []
    for emission in emissions:
        for q in candidates:
            per_fold, fits = [], []
            for part in parts:
                fit = fit_laplace_em(
                    x,
                    q,
                    emission=emission,
                    mask=observed & ~part,
                    offset=np.asarray(panel.offset),
                    priors=priors,
                    check=False,
                    **fit_options,
                )
                scores = fit.log_predictive(x, part, parameter_uncertainty=parameter_uncertainty)
                per_fold.append(scores[part])
                fits.append(fit)
            cell = np.concatenate(per_fold)
            cell = np.where(np.isfinite(cell), cell, -np.inf)
            cells.append(cell)
            rows.append(
                {
                    "num_factors": q,
                    "emission": emission,
                    "heldout_loglik_per_cell": float(cell.mean()),
                    "heldout_loglik_se": float(cell.std(ddof=1) / np.sqrt(cell.size))
                    if np.isfinite(cell).all()
                    else float("nan"),
                    "heldout_cells_below_-50": int(np.sum(cell < WORST_CELL)),
                    "heldout_worst_cell": float(cell.min()),
                    "train_objective": float(np.mean([f.objective[-1] for f in fits])),
                    "train_laplace_loglik": float(np.mean([f.posterior.objective for f in fits])),
                    "iterations": int(np.mean([f.num_iterations for f in fits])),
                    "status": "; ".join(dict.fromkeys(f.status for f in fits)),
                }
            )
    table = pd.DataFrame(rows)
    best_row = table.loc[table["heldout_loglik_per_cell"].idxmax()]
    return FactorSelection(
        table, int(best_row["num_factors"]), heldout, np.stack(cells), str(best_row["emission"])
    )
