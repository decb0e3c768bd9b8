r"""Return on ad spend per ad set: conversions per spend × mean revenue per conversion.

$$\mathrm{ROAS}_a = \kappa_a \cdot \bar R_a, \qquad \kappa_a = \lambda_a p_a q_a, \qquad
  \bar R_a = E[R_a] = e^{\theta_a + \sigma^2/2},$$

with $\kappa_a$ from the funnel (:mod:`jaxrev.roas.funnel`) and $\bar R_a$ the ``adset_mean`` of a
revenue fit (:mod:`jaxrev`, any method). The two are independent a posteriori (different data),
so draw $d$ of ROAS is draw $d$ of the funnel times draw $d$ of the revenue fit. Revenue draws
keep their alignment across ad sets (draw $d$ of every ad set comes from the same posterior
draw), so the revenue model's correlation between ad sets (shared $\sigma$, pooling) carries
into the probabilities of being best.

Ad sets are joined by their labels as text. An ad set of the daily table that the revenue fit
does not have raises :class:`MissingAdsetsError` naming it, unless ``fallback="campaign"`` (use
its campaign's ``campaign_mean``: a new ad set is, a priori, its campaign) or a ``mapping`` says
which revenue ad set stands for it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from jaxrev.result import RevenueFit, import_arviz
from jaxrev.roas.funnel import DrawArray
from jaxrev.roas.funnel_fit import FunnelFit


class RevenueDraws(NamedTuple):
    """Posterior draws of mean revenue per conversion from a revenue fit.

    Attributes:
        adsets: ad set labels (text), ``(adsets,)``.
        adset_campaign: each ad set's campaign label, or None if unknown.
        adset_mean: ``(draws, adsets)`` draws of $e^{\\theta_a + \\sigma^2/2}$.
        campaigns: campaign labels, or None (the ``no_pooling`` model has no campaign level).
        campaign_mean: ``(draws, campaigns)`` draws of $e^{\\mu_c + \\sigma^2/2}$, or None.
        method: the fit's method (``svi``, ``nuts``, ``map``).
    """

    adsets: np.ndarray
    adset_campaign: np.ndarray | None
    adset_mean: np.ndarray
    campaigns: np.ndarray | None
    campaign_mean: np.ndarray | None
    method: str


class MissingAdsetsError(KeyError):
    """Ad sets of the daily table that the revenue fit does not have."""

    def __init__(self, missing: list[str], *, source: str = "the revenue fit", hint: str = ""):
        self.missing = list(missing)
        shown = ", ".join(repr(str(a)) for a in self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        self.message = (
            f"{len(self.missing)} ad set(s) of the daily table are not in {source}: "
            f"{shown}{more}. {hint}"
        ).strip()
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def revenue_draws_from_fit(fit: RevenueFit) -> RevenueDraws:
    """:class:`RevenueDraws` of a :class:`~jaxrev.result.RevenueFit` (chains flattened)."""
    adsets = fit.data.adsets
    has_campaign = "campaign_mean" in fit.draws
    return RevenueDraws(
        adsets=adsets["adset"].astype(str).to_numpy(),
        adset_campaign=adsets["campaign"].astype(str).to_numpy(),
        adset_mean=np.asarray(fit.flat_draws("adset_mean"), float),
        campaigns=fit.data.campaigns["campaign"].astype(str).to_numpy() if has_campaign else None,
        campaign_mean=np.asarray(fit.flat_draws("campaign_mean"), float) if has_campaign else None,
        method=fit.method,
    )


def load_revenue_draws(directory: str | Path) -> RevenueDraws:
    """Read the draws that ``jaxrev fit ... --out DIR`` (:meth:`RevenueFit.save`) wrote:
    ``inference_data.nc`` (posterior ``adset_mean``, ``campaign_mean``), ``summary.csv`` (each
    ad set's campaign) and ``diagnostics.json`` (the method)."""
    directory = Path(directory)
    path = directory / "inference_data.nc"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; --revenue-fit must be the folder that "
            "`jaxrev fit DATA --out DIR` wrote"
        )
    idata = import_arviz().from_netcdf(str(path))
    post = idata.posterior
    if "adset_mean" not in post:
        raise ValueError(f"{path}: the posterior has no 'adset_mean'")

    def flat(name):
        x = post[name].values
        return x.reshape(-1, *x.shape[2:]).astype(float)

    adsets = np.asarray(post["adset"].values).astype(str)
    adset_campaign = None
    summary = directory / "summary.csv"
    if summary.exists():
        table = pd.read_csv(summary, dtype={"adset": str, "campaign": str, "level": str})
        rows = table[table["level"] == "adset"].set_index("adset")["campaign"]
        adset_campaign = rows.reindex(adsets).to_numpy(dtype=object)
        if pd.isna(adset_campaign).any():
            adset_campaign = None
    method = str(idata.attrs.get("method", ""))
    diag = directory / "diagnostics.json"
    if diag.exists():
        method = json.loads(diag.read_text()).get("fit", {}).get("method", method)
    has_campaign = "campaign_mean" in post
    return RevenueDraws(
        adsets=adsets,
        adset_campaign=None if adset_campaign is None else adset_campaign.astype(str),
        adset_mean=flat("adset_mean"),
        campaigns=np.asarray(post["campaign"].values).astype(str) if has_campaign else None,
        campaign_mean=flat("campaign_mean") if has_campaign else None,
        method=method,
    )


class MatchedRevenue(NamedTuple):
    """Revenue draws lined up with the daily table's ad sets: ``draws`` ``(draws, adsets)``,
    and for each ad set the revenue-fit ``key`` used and its ``source`` (``adset``,
    ``mapping`` or ``campaign``)."""

    draws: np.ndarray
    key: np.ndarray
    source: np.ndarray


def match_revenue(
    adsets,
    campaigns,
    revenue: RevenueDraws,
    *,
    mapping: Mapping[str, str] | None = None,
    fallback: Literal["raise", "campaign"] = "raise",
) -> MatchedRevenue:
    """Columns of ``revenue`` for the ad sets ``adsets`` (with campaigns ``campaigns``).

    Each ad set takes, in order: the revenue ad set ``mapping[adset]``; the revenue ad set of
    the same label; with ``fallback="campaign"``, the ``campaign_mean`` of its campaign. Anything
    else raises :class:`MissingAdsetsError` naming the ad sets.
    """
    adsets = np.asarray(adsets).astype(str)
    campaigns = np.asarray(campaigns).astype(str)
    column = {a: j for j, a in enumerate(revenue.adsets)}
    camp_column = (
        {} if revenue.campaigns is None else {c: j for j, c in enumerate(revenue.campaigns)}
    )
    mapping = {str(k): str(v) for k, v in (mapping or {}).items()}
    bad_map = sorted({v for v in mapping.values() if v not in column})
    if bad_map:
        raise MissingAdsetsError(
            bad_map,
            source="the revenue fit (named by the mapping)",
            hint="The mapping must name ad sets of the revenue fit.",
        )
    cols, keys, sources, missing = [], [], [], []
    for a, c in zip(adsets, campaigns, strict=True):
        if a in mapping:
            cols.append(revenue.adset_mean[:, column[mapping[a]]])
            keys.append(mapping[a])
            sources.append("mapping")
        elif a in column:
            cols.append(revenue.adset_mean[:, column[a]])
            keys.append(a)
            sources.append("adset")
        elif fallback == "campaign" and c in camp_column:
            cols.append(revenue.campaign_mean[:, camp_column[c]])
            keys.append(c)
            sources.append("campaign")
        else:
            missing.append(a)
    if missing:
        if fallback == "campaign":
            hint = (
                "Their campaigns are not in the revenue fit either"
                + (" (it has no campaign level)" if revenue.campaigns is None else "")
                + "; give a mapping (CLI: --revenue-map CSV with columns adset, revenue_adset)."
            )
        else:
            hint = (
                "Fit revenue for them, use their campaign's mean with fallback='campaign' "
                "(CLI: --revenue-fallback campaign), or give a mapping "
                "(CLI: --revenue-map CSV with columns adset, revenue_adset)."
            )
        raise MissingAdsetsError(missing, hint=hint)
    return MatchedRevenue(
        np.stack(cols, axis=-1), np.asarray(keys, dtype=object), np.asarray(sources, dtype=object)
    )


class RoasDraws(NamedTuple):
    """Aligned posterior draws ``(draws, adsets)`` of conversions per spend, mean revenue per
    conversion and their product, ROAS; ``adsets``/``campaigns`` label the columns."""

    adsets: np.ndarray
    campaigns: np.ndarray
    conversions_per_spend: DrawArray
    revenue_per_conversion: DrawArray
    roas: DrawArray
    revenue_source: np.ndarray


def roas_draws(
    rng: np.random.Generator | int,
    funnel: FunnelFit,
    revenue: RevenueDraws,
    *,
    num_draws: int | None = None,
    mapping: Mapping[str, str] | None = None,
    fallback: Literal["raise", "campaign"] = "raise",
) -> RoasDraws:
    r"""Posterior draws of $\mathrm{ROAS}_a = \kappa_a \bar R_a$ for every ad set of ``funnel``.

    Args:
        rng: seed or generator (funnel draws, and resampling of revenue draws).
        funnel: a :class:`~jaxrev.roas.funnel_fit.FunnelFit`.
        revenue: :class:`RevenueDraws` (:func:`revenue_draws_from_fit`,
            :func:`load_revenue_draws`).
        num_draws: number of draws (default: as many as the revenue fit has; at least 1000
            when that is a single MAP draw). Revenue draws are used in order if there are
            enough, else resampled with replacement (whole draws, so ad sets stay aligned).
        mapping, fallback: see :func:`match_revenue`.

    Example:
        >>> funnel, revenue = fit_funnel("daily.csv"), load_revenue_draws("fit/")  # doctest: +SKIP
        >>> roas = roas_draws(0, funnel, revenue)  # doctest: +SKIP
        >>> roas_summary(roas)  # doctest: +SKIP
    """
    rng = np.random.default_rng(rng)
    matched = match_revenue(
        funnel.data.adsets["adset"], funnel.data.adsets["campaign"], revenue,
        mapping=mapping, fallback=fallback,
    )  # fmt: skip
    available = matched.draws.shape[0]
    if available == 1:
        warnings.warn(
            f"revenue from a single draw ({revenue.method or 'point estimate'}): ROAS intervals "
            "show only the funnel's uncertainty",
            RuntimeWarning,
            stacklevel=2,
        )
    if num_draws is None:
        num_draws = available if available > 1 else 1000
    if available == 1:
        rev = np.broadcast_to(matched.draws, (num_draws, matched.draws.shape[1]))
    elif available >= num_draws:
        rev = matched.draws[:num_draws]
    else:
        rev = matched.draws[rng.integers(0, available, size=num_draws)]
    cps = funnel.sample(rng, num_draws).conversions_per_spend
    return RoasDraws(
        adsets=funnel.data.adsets["adset"].astype(str).to_numpy(),
        campaigns=funnel.data.adsets["campaign"].astype(str).to_numpy(),
        conversions_per_spend=cps,
        revenue_per_conversion=np.asarray(rev, float),
        roas=cps * rev,
        revenue_source=matched.source,
    )


def interval(draws: np.ndarray, prob: float = 0.9, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Central ``prob`` interval (quantiles) along ``axis``."""
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=axis)
    return lo, hi


def roas_summary(roas: RoasDraws, prob: float = 0.9) -> pd.DataFrame:
    """One row per ad set: posterior mean and central ``prob`` interval of conversions per spend,
    revenue per conversion and ROAS, and where its revenue came from."""
    lo_name, hi_name = f"q{50 * (1 - prob):g}", f"q{50 * (1 + prob):g}"
    out = {"adset": roas.adsets, "campaign": roas.campaigns}
    for name in ("conversions_per_spend", "revenue_per_conversion", "roas"):
        x = getattr(roas, name)
        lo, hi = interval(x, prob)
        out[f"{name}_mean"] = x.mean(axis=0)
        out[f"{name}_{lo_name}"] = lo
        out[f"{name}_{hi_name}"] = hi
    out["revenue_source"] = roas.revenue_source
    return pd.DataFrame(out)


__all__ = [
    "MatchedRevenue",
    "MissingAdsetsError",
    "RevenueDraws",
    "RoasDraws",
    "interval",
    "load_revenue_draws",
    "match_revenue",
    "revenue_draws_from_fit",
    "roas_draws",
    "roas_summary",
]
