"""The result of a fit: tidy summaries, draws, ``arviz.InferenceData``, diagnostics, plots.

The contract shared with ``jaxssm``: a fit has ``status`` (words), ``converged``, ``messages``,
``summary()`` (a DataFrame) and ``save(dir)``. Its diagnostics are an immutable record
(:class:`FitDiagnostics`) whose messages are :class:`Message` entries with a ``kind``; a NUTS
fit's convergence verdict (R-hat, ESS, divergences over the model's checked sites) is computed
once, by :func:`nuts_diagnostics`, into a new record.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpyro.infer.util import log_likelihood

from jaxrev.data import RevenueData
from jaxrev.figures import campaign_means_figure, pooling_figure, ppc_figure
from jaxrev.files import make_dir, save_figure, write_csv, write_json, write_with
from jaxrev.models import ModelSpec, get_model
from jaxrev.models.spec import REPORTED_ADSET_SITE, REPORTED_CAMPAIGN_SITE
from jaxrev.summaries import PROBS, describe_draws, stat_names, tidy_summary


def import_arviz():
    """ArviZ without its import-time FutureWarning about the 1.0 refactor (we pin arviz < 1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


class Message(NamedTuple):
    """One finding about a fit: ``kind`` (e.g. ``"rhat"``, ``"svi_not_converged"``,
    ``"point_estimate"``), the ``text`` shown to people, and whether it is a problem that
    ``warn``-s (a MAP fit's "point estimate" note is not)."""

    kind: str
    text: str
    warn: bool = True


# Kinds that :func:`nuts_diagnostics` computes (and replaces when it runs again).
NUTS_CHECK_KINDS = frozenset({"rhat", "ess", "divergences"})


@dataclass(frozen=True, eq=False)
class FitDiagnostics:
    """How the fit went (immutable). ``converged`` is the verdict: SVI's windowed ELBO criterion,
    MAP's gradient norm, or for NUTS R-hat < ``rhat_max``, bulk and tail ESS >= ``min_ess`` and no
    divergences. ``entries`` say what is wrong when it is not (``messages``: their texts)."""

    method: str
    converged: bool
    num_steps: int
    seconds: float
    fit_seconds: float
    entries: tuple[Message, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    loss_trace: np.ndarray | None = field(default=None, repr=False)
    parameters: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def messages(self) -> list[str]:
        return [m.text for m in self.entries]

    @property
    def problems(self) -> list[str]:
        """The texts of the entries that are problems (those that warn)."""
        return [m.text for m in self.entries if m.warn]

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


def pointwise_log_likelihood(
    spec: ModelSpec, priors, data: RevenueData, draws: dict[str, np.ndarray]
) -> np.ndarray:
    """$\\log p(\\log r_i \\mid \\text{draw})$ of every observation, shaped (chain, draw, obs)
    (0 on rows masked out of the likelihood)."""
    latents = {k: v for k, v in draws.items() if k != "log_revenue"}
    values = log_likelihood(
        spec.program, latents, data.device_arrays(), priors=priors, batch_ndims=2
    )
    return np.asarray(values["log_revenue"], np.float64)


def inference_data(
    data: RevenueData,
    spec: ModelSpec,
    draws: dict[str, np.ndarray],
    sample_stats: dict[str, np.ndarray] | None,
    method: str,
    log_likelihood: np.ndarray | None = None,
):
    """``arviz.InferenceData`` of draws ``(chain, draw, ...)``: posterior, posterior_predictive
    (``log_revenue``), observed_data, constant_data, (NUTS) sample_stats and, when given, the
    pointwise ``log_likelihood`` (so ``az.loo`` works), with the ad set / campaign coords on the
    sites the model's spec names; each posterior variable's ``symbol`` attribute is the
    README's symbol (``account_mu_sd`` → φ)."""
    az = import_arviz()
    posterior = {k: v for k, v in draws.items() if k != "log_revenue"}
    coords = {
        "adset": data.adsets["adset"].astype(str).to_list(),
        "campaign": data.campaigns["campaign"].astype(str).to_list(),
        "obs": np.arange(data.num_observations),
    }
    dims = spec.dims()
    dims |= {"log_revenue": ["obs"], "conversions": ["obs"], "adset_index": ["obs"]}
    arrays = data.arrays
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive={"log_revenue": draws["log_revenue"]},
        observed_data={"log_revenue": np.asarray(arrays.log_revenue)},
        constant_data={
            "conversions": np.asarray(arrays.conversions),
            "adset_index": np.asarray(arrays.adset),
        },
        sample_stats=sample_stats,
        log_likelihood=None if log_likelihood is None else {"log_revenue": log_likelihood},
        coords=coords,
        dims=dims,
        attrs={"model": spec.name, "method": method},
    )
    for name in idata.posterior.data_vars:
        idata.posterior[name].attrs["symbol"] = spec.symbol(str(name))
    return idata


def nuts_diagnostics(
    diagnostics: FitDiagnostics,
    idata,
    num_divergent: int,
    checked_sites: tuple[str, ...],
    rhat_max: float = 1.01,
    min_ess: float = 400.0,
) -> FitDiagnostics:
    """A NUTS fit's diagnostics with its convergence verdict: R-hat (rank-normalised split),
    bulk and tail ESS over ``checked_sites`` and the divergences (pure: returns a new record;
    entries of the kinds it computes are replaced, not repeated)."""
    az = import_arviz()
    names = [n for n in checked_sites if n in idata.posterior]
    table = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    details = {
        **diagnostics.details,
        "max_rhat": float(table["r_hat"].max()),
        "min_ess_bulk": float(table["ess_bulk"].min()),
        "min_ess_tail": float(table["ess_tail"].min()),
        "num_divergent": num_divergent,
    }
    found = []
    if details["max_rhat"] > rhat_max:
        worst = table["r_hat"].idxmax()
        found.append(Message("rhat", f"R-hat {details['max_rhat']:.3f} > {rhat_max} ({worst})"))
    ess = min(details["min_ess_bulk"], details["min_ess_tail"])
    if ess < min_ess:
        found.append(
            Message(
                "ess",
                f"ESS {ess:.0f} < {min_ess:.0f}: run more samples (CLI: --num-samples)",
            )
        )
    if num_divergent:
        found.append(
            Message(
                "divergences",
                f"{num_divergent} divergent transitions: raise target_accept_prob "
                "(CLI: --target-accept, e.g. 0.95) or check the data",
            )
        )
    kept = tuple(m for m in diagnostics.entries if m.kind not in NUTS_CHECK_KINDS)
    entries = kept + tuple(found)
    return replace(
        diagnostics,
        converged=not any(m.warn for m in entries),
        entries=entries,
        details=details,
        parameters=table,
    )


@dataclass
class RevenueFit:
    """A fitted revenue model for one account.

    Attributes:
        data: the validated input (with the raw per-ad-set table and the data report).
        model, priors, method, options: what was fitted and how.
        draws: every sample and deterministic site, shaped ``(chain, draw, ...)``; the
            replicated observations (posterior predictive) are under ``log_revenue``.
        sample_stats: NUTS statistics per draw (``diverging``, ``tree_depth``, ...) or None.
        diagnostics: :class:`FitDiagnostics` (see :meth:`check`).
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

    # ---- the contract ----------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        return get_model(self.model)

    @property
    def converged(self) -> bool:
        return self.diagnostics.converged

    @property
    def messages(self) -> list[str]:
        return self.diagnostics.messages

    @property
    def status(self) -> str:
        """``"converged"``, or ``"not converged: "`` and the problems."""
        if self.diagnostics.converged:
            return "converged"
        return "not converged: " + "; ".join(self.diagnostics.problems or ["unknown"])

    # ---- diagnostics -----------------------------------------------------------------------

    def check(self) -> FitDiagnostics:
        """Compute the convergence verdict (for NUTS: R-hat, ESS and divergences of the model's
        checked sites; see :func:`nuts_diagnostics`), keep it as :attr:`diagnostics` and warn
        about each problem. Calling it again gives the same record."""
        if self.method == "nuts":
            self.diagnostics = nuts_diagnostics(
                self.diagnostics,
                self.to_inference_data(log_likelihood=False),
                int(self.sample_stats["diverging"].sum()),
                self.spec.checked_sites,
                self.rhat_max,
                self.min_ess,
            )
        for message in self.diagnostics.entries:
            if message.warn:
                warnings.warn(f"{self.method}: {message.text}", RuntimeWarning, stacklevel=3)
        return self.diagnostics

    # ---- tables ----------------------------------------------------------------------------

    @property
    def num_draws(self) -> int:
        first = next(iter(self.draws.values()))
        return first.shape[0] * first.shape[1]

    def flat_draws(self, name: str) -> np.ndarray:
        """Draws of one site with chains flattened: ``(chain * draw, ...)``."""
        x = self.draws[name]
        return x.reshape(-1, *x.shape[2:])

    def summary(self, probs: tuple[float, ...] = PROBS) -> pd.DataFrame:
        """Tidy table: one row per campaign (``campaign_mean``) and per ad set (``adset_mean``).

        Columns: ``level``, ``campaign``, ``adset``, ``n_obs``, ``conversions``, ``revenue``,
        ``raw_mean`` (revenue / conversions), and the posterior ``mean``, ``sd`` and quantiles
        (``q2.5``, ``q50``, ``q97.5``) of the mean revenue per conversion. A MAP fit has no
        uncertainty: ``sd`` and the quantiles are NaN and ``mean`` is the mode's value.
        """
        campaign = None
        if REPORTED_CAMPAIGN_SITE in self.draws:
            campaign = describe_draws(self.flat_draws(REPORTED_CAMPAIGN_SITE), probs)
        adset = describe_draws(self.flat_draws(REPORTED_ADSET_SITE), probs)
        return tidy_summary(self.data, adset, campaign, probs)

    def parameters(self, probs: tuple[float, ...] = PROBS) -> pd.DataFrame:
        """The scalar parameters (λ, φ, τ, σ, ... as the model has them): ``site``, ``symbol``
        (the README's), ``mean``, ``sd`` and the quantiles."""
        names = [k for k, v in self.draws.items() if k != "log_revenue" and v.ndim == 2]
        if not names:
            return pd.DataFrame(columns=["site", "symbol", *stat_names(probs)])
        stats = describe_draws(np.stack([self.flat_draws(n) for n in names], axis=1), probs)
        table = pd.DataFrame(stats, columns=stat_names(probs))
        table.insert(0, "symbol", [self.spec.symbol(n) for n in names])
        table.insert(0, "site", names)
        return table

    # ---- ArviZ -----------------------------------------------------------------------------

    def pointwise_log_likelihood(self) -> np.ndarray:
        """$\\log p(\\log r_i \\mid \\text{draw})$, shaped (chain, draw, observation)."""
        return pointwise_log_likelihood(self.spec, self.priors, self.data, self.draws)

    def to_inference_data(self, *, log_likelihood: bool = True):
        """``arviz.InferenceData`` with posterior, posterior_predictive (``log_revenue``),
        observed_data, constant_data, (NUTS) sample_stats and the pointwise ``log_likelihood``
        (so ``az.loo(idata)`` works; left out when rows are masked out of the fit, or with
        ``log_likelihood=False``), with ad set / campaign coords."""
        ll = None
        if log_likelihood and bool(np.all(self.data.arrays.obs_mask)):
            ll = self.pointwise_log_likelihood()
        return inference_data(
            self.data, self.spec, self.draws, self.sample_stats, self.diagnostics.method, ll
        )

    # ---- plots -----------------------------------------------------------------------------

    def plot_ppc(self, num_replicates: int = 50, seed: int = 0):
        """Posterior predictive check (see :func:`jaxrev.figures.ppc_figure`)."""
        return ppc_figure(
            np.asarray(self.data.arrays.log_revenue),
            self.flat_draws("log_revenue"),
            f"Posterior predictive check ({self.model}, {self.diagnostics.method})",
            num_replicates,
            seed,
        )

    def plot_pooling(self, prob: float = 0.95):
        """Raw vs model mean per ad set (see :func:`jaxrev.figures.pooling_figure`)."""
        summary = self.summary(probs=((1 - prob) / 2, 0.5, (1 + prob) / 2))
        return pooling_figure(self.data, summary, prob)

    def plot_campaign_means(self):
        """Distributions of the ad set and campaign means (see :mod:`jaxrev.figures`)."""
        return campaign_means_figure(
            self.data,
            self.flat_draws(REPORTED_ADSET_SITE),
            self.flat_draws(REPORTED_CAMPAIGN_SITE),
        )

    # ---- output ----------------------------------------------------------------------------

    def save(self, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write ``summary.csv``, ``parameters.csv``, ``inference_data.nc``,
        ``diagnostics.json`` and the plots, each atomically (:mod:`jaxrev.files`).

        Raises:
            OutputError: a file or the folder cannot be written (one line naming the path).
        """
        out = make_dir(out_dir)
        written = {
            "summary": write_csv(self.summary(), out / "summary.csv"),
            "parameters": write_csv(self.parameters(), out / "parameters.csv"),
            "inference_data": write_with(
                out / "inference_data.nc", lambda tmp: self.to_inference_data().to_netcdf(str(tmp))
            ),
        }
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
            "symbols": {k: v for k, v in self.spec.symbols.items() if k in self.draws},
        }
        written["diagnostics"] = write_json(out / "diagnostics.json", payload)
        if len(self.data.report.invalid):
            written["invalid_rows"] = write_csv(self.data.report.invalid, out / "invalid_rows.csv")
        if plots:
            import matplotlib.pyplot as plt

            for name, make in (
                ("ppc", self.plot_ppc),
                ("pooling", self.plot_pooling),
                ("campaign_means", self.plot_campaign_means),
            ):
                if name == "campaign_means" and REPORTED_CAMPAIGN_SITE not in self.draws:
                    continue
                fig = make()
                try:
                    written[name] = save_figure(
                        fig, out / f"{name}.png", dpi=120, bbox_inches="tight"
                    )
                finally:
                    plt.close(fig)
        return written
