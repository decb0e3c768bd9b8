r"""Checks of a fit's predictions: PSIS-LOO (and the comparison of fits by it), calibration on
held-out rows, PIT.

**PSIS-LOO.** For each fit, the pointwise log-likelihood $\log p(\log r_i \mid \text{draw } s)$
of every observation (ad set-hour) under the model's own Fenton-Wilkinson likelihood, then
ArviZ's Pareto-smoothed importance-sampling leave-one-out: $\widehat{\mathrm{elpd}}_{\mathrm{loo}}$
per model, its standard error, Pareto $\hat k$ per observation (above 0.7 the estimate for that
observation is unreliable) and the standard error of each difference (paired over
observations). NUTS draws are the reference; SVI draws come from the fitted guide, whose
approximation error LOO does not see — :func:`compare` says which.

**Calibration.** A time-based split: fit on the hours up to the ``split`` quantile of time,
predict the later hours (their rows are masked out of the likelihood, so the posterior
predictive of each is a genuine forecast), and report how often the central ``level``
interval of the predictive for an hour's log revenue covers the observed value — overall and
per ad set — and the PIT values $u_i = P(\log r_i^{\mathrm{rep}} \le \log r_i)$, uniform when
the predictive is calibrated. Revenue per conversion is $r_i / n_i$ with $n_i$ known, so its
intervals and PIT are those of $\log r_i$.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxrev.data import RevenueData
from jaxrev.result import RevenueFit, import_arviz

PARETO_K_BAD = 0.7


def pointwise_log_likelihood(fit: RevenueFit) -> np.ndarray:
    """$\\log p(\\log r_i \\mid \\text{draw})$ of the fitted rows, shaped (chain, draw,
    observation)."""
    mask = np.asarray(fit.data.arrays.obs_mask)
    return fit.pointwise_log_likelihood()[..., mask]


def inference_data_with_log_likelihood(fit: RevenueFit):
    """The fit's ``InferenceData`` with a ``log_likelihood`` group over the fitted rows."""
    mask = np.asarray(fit.data.arrays.obs_mask)
    ll = pointwise_log_likelihood(fit)
    observed = np.asarray(fit.data.arrays.log_revenue)[mask]
    replicated = fit.draws["log_revenue"][..., mask]
    az = import_arviz()
    fitted = az.from_dict(
        posterior={k: v for k, v in fit.draws.items() if k != "log_revenue"},
        log_likelihood={"log_revenue": ll},
        posterior_predictive={"log_revenue": replicated},
        observed_data={"log_revenue": observed},
        dims={"log_revenue": ["obs"]},
        coords={"obs": np.flatnonzero(mask)},
        attrs={"model": fit.model, "method": fit.method},
    )
    return fitted


def draws_source(fit: RevenueFit) -> str:
    """How the draws were made, in words (LOO's caveat for SVI)."""
    if fit.method == "nuts":
        return "NUTS"
    if fit.method == "svi":
        guide = getattr(fit.options, "guide", "meanfield")
        return f"SVI ({guide} guide draws: approximate)"
    return "MAP (a point: LOO is not meaningful)"


class ModelComparison(NamedTuple):
    """``table``: one row per model, best first — ``elpd_loo``, its ``se``, ``elpd_diff`` from
    the best and its paired ``dse``, ``p_loo``, the Pareto-k counts and the draws' source;
    ``loo``: ArviZ's ``ELPDData`` per model (pointwise values and $\\hat k$)."""

    table: pd.DataFrame
    loo: dict

    def __str__(self) -> str:
        cols = ["elpd_loo", "se", "elpd_diff", "dse", "p_loo", "k_over_0.7", "max_k", "draws"]
        return self.table[cols].to_string(float_format=lambda v: f"{v:,.1f}")


def compare(fits: Mapping[str, RevenueFit]) -> ModelComparison:
    """PSIS-LOO of each fit (same data) and the standard errors of their differences.

    Example:
        >>> table = compare({"multilevel": fit_a, "hier_sigma": fit_b}).table  # doctest: +SKIP
    """
    if len(fits) < 1:
        raise ValueError("compare() needs at least one fit")
    sizes = {name: int(np.asarray(f.data.arrays.obs_mask).sum()) for name, f in fits.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the fits are not on the same observations: {sizes}")
    az = import_arviz()
    idatas = {name: inference_data_with_log_likelihood(f) for name, f in fits.items()}
    loos = {name: az.loo(idata, pointwise=True) for name, idata in idatas.items()}
    rows = []
    for name, result in loos.items():
        k = np.asarray(result.pareto_k)
        rows.append(
            {
                "model": name,
                "elpd_loo": float(result.elpd_loo),
                "se": float(result.se),
                "p_loo": float(result.p_loo),
                "k_over_0.7": int((k > PARETO_K_BAD).sum()),
                "max_k": float(k.max()),
                "draws": draws_source(fits[name]),
            }
        )
    table = pd.DataFrame(rows).sort_values("elpd_loo", ascending=False).reset_index(drop=True)
    best = table.loc[0, "model"]
    best_pointwise = np.asarray(loos[best].loo_i)
    diffs, dses = [], []
    for name in table["model"]:
        d = best_pointwise - np.asarray(loos[name].loo_i)
        diffs.append(float(d.sum()))
        dses.append(float(np.sqrt(d.size * d.var(ddof=1))) if name != best else 0.0)
    table.insert(3, "elpd_diff", diffs)
    table.insert(4, "dse", dses)
    return ModelComparison(table.set_index("model"), loos)


# --------------------------------------------------------------------------------------------
# Calibration on later hours
# --------------------------------------------------------------------------------------------


def time_split(data: RevenueData, split: float = 0.75) -> np.ndarray:
    """True for the rows after the ``split`` quantile of time (the held-out later hours)."""
    t = np.asarray(data.arrays.time)
    if not np.ptp(t) > 0:
        raise ValueError("a time-based split needs a time column (Columns(time=...))")
    return t > np.quantile(t, split)


def mask_rows(data: RevenueData, heldout: np.ndarray) -> RevenueData:
    """The same data with the ``heldout`` rows masked out of the likelihood (their posterior
    predictive is still drawn)."""
    obs_mask = np.asarray(data.arrays.obs_mask) & ~np.asarray(heldout)
    return dataclasses.replace(data, arrays=data.arrays._replace(obs_mask=obs_mask))


def pit_values(replicated: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """$u_i = P(y^{\\mathrm{rep}}_i \\le y_i)$ over draws (ties count half): (draws, n) → (n,)."""
    below = (replicated < observed).mean(axis=0)
    ties = (replicated == observed).mean(axis=0)
    return below + 0.5 * ties


class Calibration(NamedTuple):
    """Held-out calibration of one model: per held-out row its ad set, observed log revenue,
    PIT and whether the interval covered it (``rows``); per ad set the coverage (``adsets``);
    ``coverage`` overall; ``level``; the ``fit`` on the earlier hours."""

    rows: pd.DataFrame
    adsets: pd.DataFrame
    coverage: float
    level: float
    fit: RevenueFit


def calibration(fit_earlier: RevenueFit, heldout: np.ndarray, level: float = 0.9) -> Calibration:
    """Coverage and PIT of a fit's posterior predictive on its masked (held-out) rows."""
    heldout = np.asarray(heldout)
    observed = np.asarray(fit_earlier.data.arrays.log_revenue)[heldout]
    replicated = fit_earlier.flat_draws("log_revenue")[:, heldout]
    tail = (1 - level) / 2
    lo, hi = np.quantile(replicated, [tail, 1 - tail], axis=0)
    covered = (observed >= lo) & (observed <= hi)
    adset_index = np.asarray(fit_earlier.data.arrays.adset)[heldout]
    names = fit_earlier.data.adsets["adset"].astype(str).to_numpy()
    rows = pd.DataFrame(
        {
            "adset": names[adset_index],
            "log_revenue": observed,
            "pit": pit_values(replicated, observed),
            "low": lo,
            "high": hi,
            "covered": covered,
        }
    )
    adsets = (
        rows.groupby("adset", sort=False)
        .agg(n_heldout=("covered", "size"), coverage=("covered", "mean"))
        .reset_index()
    )
    return Calibration(rows, adsets, float(covered.mean()), level, fit_earlier)


def in_sample_pit(fit: RevenueFit) -> np.ndarray:
    """PIT of every fitted row under the posterior predictive (in-sample: a misfit of the
    spread shows as a U or a hump)."""
    mask = np.asarray(fit.data.arrays.obs_mask)
    return pit_values(
        fit.flat_draws("log_revenue")[:, mask], np.asarray(fit.data.arrays.log_revenue)[mask]
    )
