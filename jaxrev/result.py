"""The result of a fit: tidy summaries, draws, ``arviz.InferenceData``, diagnostics, plots."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jaxrev.data import RevenueData

# Sites indexed by ad set or campaign (for InferenceData dims).
_ADSET_SITES = ("adset_mu_z", "adset_mu", "adset_mean", "adset_sigma", "adset_sigma_z")
_CAMPAIGN_SITES = (
    "campaign_mu_z",
    "campaign_mu",
    "campaign_mean",
    "campaign_sigma",
    "campaign_sigma_z",
)
# Sites checked for NUTS convergence (the quantities reported, and the hyper-parameters).
_CHECKED_SITES = (
    "account_mu",
    "account_mu_sd",
    "campaign_mu_sd",
    "revenue_sigma",
    "adset_mean",
    "campaign_mean",
    "adset_sigma",
    "campaign_sigma",
    "campaign_sigma_sd",
    "adset_sigma_sd",
    "df",
    "drift_sd",
    "level_now",
)


def import_arviz():
    """ArviZ without its import-time FutureWarning about the 1.0 refactor (we pin arviz < 1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


@dataclass
class FitDiagnostics:
    """How the fit went. ``converged`` is the verdict: SVI's windowed ELBO criterion, MAP's
    gradient norm, or for NUTS R-hat < ``rhat_max``, bulk and tail ESS >= ``min_ess`` and no
    divergences. ``messages`` say what is wrong when it is not."""

    method: str
    converged: bool
    num_steps: int
    seconds: float
    fit_seconds: float
    messages: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    loss_trace: np.ndarray | None = field(default=None, repr=False)
    parameters: pd.DataFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "converged": self.converged,
            "num_steps": self.num_steps,
            "seconds": round(self.seconds, 3),
            "fit_seconds": round(self.fit_seconds, 3),
            "messages": self.messages,
            **{k: _jsonable(v) for k, v in self.details.items()},
        }


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


@dataclass
class RevenueFit:
    """A fitted revenue model for one account.

    Attributes:
        data: the validated input (with the raw per-ad-set table and the data report).
        model, priors, method, options: what was fitted and how.
        draws: every sample and deterministic site, shaped ``(chain, draw, ...)``; the
            replicated observations (posterior predictive) are under ``log_revenue``.
        sample_stats: NUTS statistics per draw (``diverging``, ``tree_depth``, ...) or None.
        diagnostics: :class:`FitDiagnostics`.
    """

    data: RevenueData
    model: str
    priors: Any
    method: str
    options: Any
    draws: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray] | None
    diagnostics: FitDiagnostics

    rhat_max: float = 1.01
    min_ess: float = 400.0

    # ---- diagnostics -----------------------------------------------------------------------

    def check(self) -> FitDiagnostics:
        """Fill in convergence diagnostics (R-hat, ESS, divergences for NUTS) and warn."""
        d = self.diagnostics
        if self.method == "nuts":
            az = import_arviz()
            idata = self.to_inference_data()
            names = [n for n in _CHECKED_SITES if n in idata.posterior]
            table = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
            d.parameters = table
            num_div = int(self.sample_stats["diverging"].sum())
            d.details.update(
                max_rhat=float(table["r_hat"].max()),
                min_ess_bulk=float(table["ess_bulk"].min()),
                min_ess_tail=float(table["ess_tail"].min()),
                num_divergent=num_div,
            )
            if d.details["max_rhat"] > self.rhat_max:
                worst = table["r_hat"].idxmax()
                d.messages.append(f"R-hat {d.details['max_rhat']:.3f} > {self.rhat_max} ({worst})")
            ess = min(d.details["min_ess_bulk"], d.details["min_ess_tail"])
            if ess < self.min_ess:
                d.messages.append(f"ESS {ess:.0f} < {self.min_ess:.0f}: run more samples")
            if num_div:
                d.messages.append(
                    f"{num_div} divergent transitions: raise target_accept_prob or check the data"
                )
            d.converged = not d.messages
        for message in d.messages:
            if "point estimate" not in message and "full pooling" not in message:
                warnings.warn(f"{self.method}: {message}", RuntimeWarning, stacklevel=3)
        return d

    # ---- tables ----------------------------------------------------------------------------

    @property
    def num_draws(self) -> int:
        first = next(iter(self.draws.values()))
        return first.shape[0] * first.shape[1]

    def flat_draws(self, name: str) -> np.ndarray:
        """Draws of one site with chains flattened: ``(chain * draw, ...)``."""
        x = self.draws[name]
        return x.reshape(-1, *x.shape[2:])

    def summary(self, probs: tuple[float, ...] = (0.025, 0.5, 0.975)) -> pd.DataFrame:
        """Tidy table: one row per campaign (``campaign_mean``) and per ad set (``adset_mean``).

        Columns: ``level``, ``campaign``, ``adset``, ``n_obs``, ``conversions``, ``revenue``,
        ``raw_mean`` (revenue / conversions), and the posterior ``mean``, ``sd`` and quantiles
        (``q2.5``, ``q50``, ``q97.5``) of the mean revenue per conversion. A MAP fit has no
        uncertainty: ``sd`` and the quantiles are NaN and ``mean`` is the mode's value.
        """
        campaign = None
        if "campaign_mean" in self.draws:
            campaign = describe_draws(self.flat_draws("campaign_mean"), probs)
        adset = describe_draws(self.flat_draws("adset_mean"), probs)
        return tidy_summary(self.data, adset, campaign, probs)

    # ---- ArviZ -----------------------------------------------------------------------------

    def to_inference_data(self):
        """``arviz.InferenceData`` with posterior, posterior_predictive (``log_revenue``),
        observed_data, constant_data and (NUTS) sample_stats, with ad set / campaign coords."""
        az = import_arviz()
        posterior = {k: v for k, v in self.draws.items() if k != "log_revenue"}
        coords = {
            "adset": self.data.adsets["adset"].astype(str).to_list(),
            "campaign": self.data.campaigns["campaign"].astype(str).to_list(),
            "obs": np.arange(self.data.num_observations),
        }
        dims = {name: ["adset"] for name in _ADSET_SITES}
        dims |= {name: ["campaign"] for name in _CAMPAIGN_SITES}
        dims |= {"level": ["knot"], "level_z": ["knot_step"]}
        dims |= {"log_revenue": ["obs"], "conversions": ["obs"], "adset_index": ["obs"]}
        arrays = self.data.arrays
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive={"log_revenue": self.draws["log_revenue"]},
            observed_data={"log_revenue": np.asarray(arrays.log_revenue)},
            constant_data={
                "conversions": np.asarray(arrays.conversions),
                "adset_index": np.asarray(arrays.adset),
            },
            sample_stats=self.sample_stats,
            coords=coords,
            dims=dims,
            attrs={"model": self.model, "method": self.diagnostics.method},
        )
        return idata

    # ---- plots -----------------------------------------------------------------------------

    def plot_ppc(self, **kwargs):
        """Posterior predictive check (see :func:`jaxrev.plots.plot_ppc`)."""
        from jaxrev.plots import plot_ppc

        return plot_ppc(self, **kwargs)

    def plot_pooling(self, **kwargs):
        """Raw vs model mean per ad set (see :func:`jaxrev.plots.plot_pooling`)."""
        from jaxrev.plots import plot_pooling

        return plot_pooling(self, **kwargs)

    def plot_campaign_means(self, **kwargs):
        """Distributions of the ad set and campaign means (see :func:`jaxrev.plots`)."""
        from jaxrev.plots import plot_campaign_means

        return plot_campaign_means(self, **kwargs)

    # ---- output ----------------------------------------------------------------------------

    def save(self, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write ``summary.csv``, ``inference_data.nc``, ``diagnostics.json`` and the plots."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {"summary": out / "summary.csv", "inference_data": out / "inference_data.nc"}
        self.summary().to_csv(written["summary"], index=False)
        tmp = out / ".inference_data.nc.tmp"
        self.to_inference_data().to_netcdf(str(tmp))
        tmp.replace(written["inference_data"])
        written["diagnostics"] = out / "diagnostics.json"
        payload = {
            "model": self.model,
            "data": {
                "source": self.data.report.source,
                "rows_read": self.data.report.rows_read,
                "rows_used": self.data.report.rows_used,
                "zero_conversion_rows": self.data.report.zero_conversion_rows,
                "invalid_rows": self.data.report.rows_invalid,
                "adsets": self.data.num_adsets,
                "campaigns": self.data.num_campaigns,
            },
            "fit": self.diagnostics.to_dict(),
        }
        written["diagnostics"].write_text(json.dumps(payload, indent=2, default=str))
        if len(self.data.report.invalid):
            written["invalid_rows"] = out / "invalid_rows.csv"
            self.data.report.invalid.to_csv(written["invalid_rows"], index=False)
        if plots:
            import matplotlib.pyplot as plt

            for name, make in (
                ("ppc", self.plot_ppc),
                ("pooling", self.plot_pooling),
                ("campaign_means", self.plot_campaign_means),
            ):
                if name == "campaign_means" and "campaign_mean" not in self.draws:
                    continue
                fig = make()
                written[name] = out / f"{name}.png"
                fig.savefig(written[name], dpi=120, bbox_inches="tight")
                plt.close(fig)
        return written


def describe_draws(draws: np.ndarray, probs) -> np.ndarray:
    """(draw, item) -> (item, 2 + len(probs)): mean, sd and quantiles (NaN from a single draw)."""
    single = draws.shape[0] < 2
    stats = [draws.mean(axis=0)]
    stats.append(np.full(draws.shape[1], np.nan) if single else draws.std(axis=0, ddof=1))
    for p in probs:
        stats.append(np.full(draws.shape[1], np.nan) if single else np.quantile(draws, p, axis=0))
    return np.stack(stats, axis=-1)


def tidy_summary(
    data: RevenueData, adset: np.ndarray, campaign: np.ndarray | None, probs
) -> pd.DataFrame:
    """The summary table from per-item statistics (rows: mean, sd, quantiles for ``probs``):
    campaign rows first (if given), then ad-set rows, beside the raw data of each."""
    names = ["mean", "sd"] + [f"q{100 * p:g}" for p in probs]
    parts = []
    if campaign is not None:
        table = data.campaigns.drop(columns="n_adsets").assign(level="campaign", adset=pd.NA)
        parts.append(pd.concat([table, pd.DataFrame(campaign, columns=names)], axis=1))
    table = data.adsets.assign(level="adset")
    parts.append(pd.concat([table, pd.DataFrame(adset, columns=names)], axis=1))
    out = pd.concat(parts, ignore_index=True)
    first = ["level", "campaign", "adset", "n_obs", "conversions", "revenue", "raw_mean"]
    return out[first + names]
