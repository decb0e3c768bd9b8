r"""Choosing between revenue models honestly: PSIS-LOO, calibration on later hours, PIT.

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
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpyro.infer.util import log_likelihood

from jaxrev.data import RevenueData
from jaxrev.model import get_model
from jaxrev.result import RevenueFit, import_arviz

PARETO_K_BAD = 0.7


def pointwise_log_likelihood(fit: RevenueFit) -> np.ndarray:
    """$\\log p(\\log r_i \\mid \\text{draw})$, shaped (chain, draw, observation)."""
    program = get_model(fit.model).program
    latents = {k: v for k, v in fit.draws.items() if k != "log_revenue"}
    arrays = fit.data.device_arrays()
    values = log_likelihood(program, latents, arrays, priors=fit.priors, batch_ndims=2)
    out = np.asarray(values["log_revenue"], np.float64)
    mask = np.asarray(fit.data.arrays.obs_mask)
    return out[..., mask]


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


def heldout_calibration(
    data: RevenueData,
    model: str = "multilevel",
    method: str = "svi",
    *,
    split: float = 0.75,
    level: float = 0.9,
    seed: int = 0,
    **fit_options,
) -> Calibration:
    """Fit ``model`` on the hours up to the ``split`` quantile of time and check its predictive
    intervals on the later hours (see the module docstring)."""
    from jaxrev.inference import fit

    heldout = time_split(data, split)
    earlier = fit(mask_rows(data, heldout), model=model, method=method, seed=seed, **fit_options)
    return calibration(earlier, heldout, level)


def in_sample_pit(fit: RevenueFit) -> np.ndarray:
    """PIT of every fitted row under the posterior predictive (in-sample: a misfit of the
    spread shows as a U or a hump)."""
    mask = np.asarray(fit.data.arrays.obs_mask)
    return pit_values(
        fit.flat_draws("log_revenue")[:, mask], np.asarray(fit.data.arrays.log_revenue)[mask]
    )


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
        for name, fit in self.fits.items():
            s = fit.summary()
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
    from jaxrev.inference import fit

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
    from pathlib import Path

    import matplotlib.pyplot as plt

    from jaxrev.plots import plot_model_checks

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"loo": out / "loo.csv", "calibration": out / "calibration.csv"}
    report.loo.table.to_csv(written["loo"])
    report.calibration_table().to_csv(written["calibration"])
    by_adset = pd.concat(
        [cal.adsets.assign(model=name) for name, cal in report.calibration.items()],
        ignore_index=True,
    )
    written["calibration_by_adset"] = out / "calibration_by_adset.csv"
    by_adset.to_csv(written["calibration_by_adset"], index=False)
    written["ranking"] = out / "ranking.csv"
    report.ranking().to_csv(written["ranking"])
    for name, fit in report.fits.items():
        fig = plot_model_checks(fit, calibration=report.calibration[name])
        written[f"checks_{name}"] = out / f"checks_{name}.png"
        fig.savefig(written[f"checks_{name}"], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return written


def add_compare_arguments(parser) -> None:
    """The ``jaxrev compare`` arguments (see :func:`run_compare`)."""
    from pathlib import Path

    from jaxrev.model import MODELS

    parser.add_argument("data", help="CSV/TSV/Parquet file with a time column, or bundled:NAME")
    parser.add_argument(
        "--models",
        default="multilevel,hier_sigma,student_t,local_level",
        help=f"comma-separated, from {', '.join(MODELS)}",
    )
    parser.add_argument("--method", choices=("nuts", "svi"), default="nuts")
    parser.add_argument("--guide", choices=("meanfield", "fullrank", "lowrank"), default=None)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--time-col", default="hour", help="time column (default hour)")
    parser.add_argument("--split", type=float, default=0.75, help="time quantile of the split")
    parser.add_argument("--level", type=float, default=0.9, help="interval probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-chains", type=int, default=None)
    parser.add_argument("--num-warmup", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")


def run_compare(args, load) -> int:
    """Fit the models, print the PSIS-LOO and calibration tables, write the files."""
    import sys

    from jaxrev.data import Columns, InvalidDataError, load_revenue_data
    from jaxrev.model import MODELS

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        print(f"error: unknown model(s) {unknown}; choose from {sorted(MODELS)}", file=sys.stderr)
        return 2
    try:
        data = load_revenue_data(load(args.data), Columns(time=args.time_col))
        time_split(data, args.split)
    except (InvalidDataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = {}
    if args.method == "nuts":
        options = {
            k: getattr(args, k)
            for k in ("num_chains", "num_warmup", "num_samples")
            if getattr(args, k) is not None
        }
    elif args.guide:
        options["guide"] = args.guide
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    report = compare_models(
        data,
        models,
        args.method,
        split=args.split,
        level=args.level,
        seed=args.seed,
        progress=say,
        **options,
    )
    written = write_comparison(report, args.out)
    print("PSIS-LOO (higher elpd is better; dse = standard error of the difference from the best)")
    print(report.loo)
    print(
        f"\nCalibration on the hours after the {args.split:.0%} time quantile "
        f"(fitted on the earlier ones), {args.level:.0%} intervals:"
    )
    print(report.calibration_table().to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {len(written)} files to {args.out}")
    return 0
