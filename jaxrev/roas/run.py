"""``run_allocate``: a daily table and a revenue fit -> funnel, ROAS draws, the budget split, and
the files ``allocation.csv``, ``allocation.json`` and ``allocation.png`` (each written
atomically). ``jaxrev allocate`` (:mod:`jaxrev.roas.cli`) runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from jaxrev.errors import InputFileError
from jaxrev.files import make_dir, save_figure, write_csv, write_json
from jaxrev.roas.allocation import Allocation, allocate, plot_allocation
from jaxrev.roas.daily import DailyData, load_daily
from jaxrev.roas.draws import (
    RevenueDraws,
    load_revenue_draws,
    revenue_draws_from_fit,
    roas_draws,
)
from jaxrev.roas.funnel_fit import fit_funnel
from jaxrev.tables import read_table

ALLOCATION_FILES = ("allocation.csv", "allocation.json", "allocation.png")


def read_caps(path: str | Path, adsets) -> np.ndarray:
    """Per-ad-set maximum budgets from a CSV with columns ``adset``, ``max_budget`` (NaN for
    ad sets it does not list)."""
    table, name, _ = read_table(path)
    for col in ("adset", "max_budget"):
        if col not in table.columns:
            raise ValueError(f"{name}: column {col!r} not found (columns: {list(table.columns)})")
    values = pd.to_numeric(table["max_budget"].str.strip(), errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
        raise InputFileError(
            name,
            f"max_budget is not a number: {table['max_budget'].iloc[row - 1]!r}",
            line=row + 1,
            column="max_budget",
        )
    caps = pd.Series(values.to_numpy(float), index=table["adset"].str.strip())
    unknown = sorted(set(caps.index) - set(map(str, adsets)))
    if unknown:
        raise ValueError(f"{path}: ad sets not in the daily table: {unknown[:10]}")
    return caps.reindex([str(a) for a in adsets]).to_numpy(float)


def read_mapping(path: str | Path) -> dict[str, str]:
    """An ad-set mapping from a CSV with columns ``adset``, ``revenue_adset``."""
    table, name, _ = read_table(path)
    for col in ("adset", "revenue_adset"):
        if col not in table.columns:
            raise ValueError(f"{name}: column {col!r} not found (columns: {list(table.columns)})")
    return dict(zip(table["adset"].str.strip(), table["revenue_adset"].str.strip(), strict=True))


def run_allocate(
    daily,
    revenue_fit,
    budget: float,
    out_dir: str | Path | None = None,
    *,
    current: Literal["last", "total", "even"] | np.ndarray = "last",
    half_life: float | None = None,
    pooling: Literal["campaign", "account", "none"] = "campaign",
    conversions_per: Literal["click", "impression"] = "click",
    columns=None,
    on_invalid: Literal["raise", "drop"] = "raise",
    rule: Literal["thompson", "proportional"] = "thompson",
    power: float = 1.0,
    min_share: float = 0.0,
    max_share: float = 1.0,
    max_budget: np.ndarray | str | Path | None = None,
    mapping: Mapping[str, str] | str | Path | None = None,
    fallback: Literal["raise", "campaign"] = "raise",
    num_draws: int | None = None,
    seed: int = 0,
    prob: float = 0.9,
    plot: bool = True,
) -> tuple[Allocation, dict[str, Path]]:
    """Daily table + revenue fit -> funnel, ROAS draws, allocation, and (with ``out_dir``) the
    files ``allocation.csv``, ``allocation.json`` and ``allocation.png``.

    Args:
        daily: a :class:`~jaxrev.roas.daily.DailyData`, DataFrame or CSV/Parquet path.
        revenue_fit: the folder ``jaxrev fit --out DIR`` wrote, a
            :class:`~jaxrev.result.RevenueFit`, or :class:`~jaxrev.roas.draws.RevenueDraws`.
        current: the current split: ``"last"`` (spend of the latest day; the default),
            ``"total"`` (spend over the whole table), ``"even"``, or amounts per ad set.
        max_budget: per-ad-set maximum budgets (array in ad-set order, or a CSV with columns
            ``adset``, ``max_budget``); ``mapping``: daily ad set -> revenue ad set (dict or
            CSV with ``adset``, ``revenue_adset``).
        Other arguments: see :func:`~jaxrev.roas.funnel_fit.fit_funnel`,
        :func:`~jaxrev.roas.draws.roas_draws`
        and :func:`~jaxrev.roas.allocation.allocate`.
    """
    if not isinstance(daily, DailyData):
        daily = load_daily(daily, columns, conversions_per=conversions_per, on_invalid=on_invalid)
    if isinstance(revenue_fit, RevenueDraws):
        revenue = revenue_fit
    elif isinstance(revenue_fit, (str, Path)):
        revenue = load_revenue_draws(revenue_fit)
    else:
        revenue = revenue_draws_from_fit(revenue_fit)
    if isinstance(mapping, (str, Path)):
        mapping = read_mapping(mapping)
    adsets = daily.adsets["adset"].to_numpy()
    if isinstance(max_budget, (str, Path)):
        max_budget = read_caps(max_budget, adsets)
    funnel = fit_funnel(daily, half_life=half_life, pooling=pooling)
    roas = roas_draws(
        seed, funnel, revenue, num_draws=num_draws, mapping=mapping, fallback=fallback
    )
    if isinstance(current, str):
        current = {
            "last": daily.adsets["last_spend"].to_numpy(float),
            "total": daily.adsets["spend"].to_numpy(float),
            "even": None,
        }[current]
    result = allocate(
        roas,
        budget,
        current,
        rule=rule,
        power=power,
        min_share=min_share,
        max_share=max_share,
        max_budget=max_budget,
        prob=prob,
    )
    funnel_table = funnel.summary(prob)
    keep = ["days", "spend", "impressions", "clicks", "conversions", "last_spend"]
    keep += ["raw_ctr", "raw_cvr", "ctr_mean", "cvr_mean", "impressions_per_spend_mean"]
    result.table = pd.concat([result.table, funnel_table[keep].reset_index(drop=True)], axis=1)
    result.settings.update(
        half_life=half_life,
        pooling=pooling,
        conversions_per=daily.conversions_per,
        revenue_method=revenue.method,
        seed=seed,
        daily=daily.source,
        empirical_bayes_converged=None if funnel.status is None else funnel.status.all_converged,
    )
    written: dict[str, Path] = {}
    if out_dir is not None:
        out = make_dir(out_dir)
        written["table"] = write_csv(result.table, out / "allocation.csv", significant=10)
        payload = {
            "totals": result.totals,
            "settings": result.settings,
            "data": daily.report,
            "priors": funnel.priors_table().to_dict(orient="records"),
        }
        written["summary"] = write_json(out / "allocation.json", payload)
        if plot:
            import matplotlib.pyplot as plt

            fig = plot_allocation(result)
            try:
                written["plot"] = save_figure(
                    fig, out / "allocation.png", dpi=120, bbox_inches="tight"
                )
            finally:
                plt.close(fig)
    return result, written


__all__ = ["ALLOCATION_FILES", "read_caps", "read_mapping", "run_allocate"]
