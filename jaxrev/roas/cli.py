"""``jaxrev allocate DAILY --revenue-fit DIR --budget B --out DIR``: the ROAS application's command.

Daily table + revenue fit -> funnel (:mod:`jaxrev.roas.funnel_fit`) -> ROAS draws
(:mod:`jaxrev.roas.draws`) -> budget split (:mod:`jaxrev.roas.allocation`), written as
``allocation.csv``, ``allocation.json`` and ``allocation.png``. :func:`run_allocate` is the same
run from Python; ``jaxrev.cli`` dispatches the subcommand here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from jaxrev.datasets.daily import load_daily_bundled
from jaxrev.errors import InvalidDataError
from jaxrev.roas.allocation import Allocation, allocate, plot_allocation
from jaxrev.roas.daily import DailyColumns, DailyData, load_daily
from jaxrev.roas.draws import (
    MissingAdsetsError,
    RevenueDraws,
    load_revenue_draws,
    revenue_draws_from_fit,
    roas_draws,
)
from jaxrev.roas.funnel_fit import fit_funnel

BUNDLED_PREFIX = "bundled:"  # as in jaxrev.cli: DAILY may name a bundled table


def read_caps(path: str | Path, adsets) -> np.ndarray:
    """Per-ad-set maximum budgets from a CSV with columns ``adset``, ``max_budget`` (NaN for
    ad sets it does not list)."""
    table = pd.read_csv(path, dtype={"adset": str})
    for col in ("adset", "max_budget"):
        if col not in table.columns:
            raise ValueError(f"{path}: column {col!r} not found (columns: {list(table.columns)})")
    caps = table.set_index(table["adset"].str.strip())["max_budget"].astype(float)
    unknown = sorted(set(caps.index) - set(map(str, adsets)))
    if unknown:
        raise ValueError(f"{path}: ad sets not in the daily table: {unknown[:10]}")
    return caps.reindex([str(a) for a in adsets]).to_numpy(float)


def read_mapping(path: str | Path) -> dict[str, str]:
    """An ad-set mapping from a CSV with columns ``adset``, ``revenue_adset``."""
    table = pd.read_csv(path, dtype=str)
    for col in ("adset", "revenue_adset"):
        if col not in table.columns:
            raise ValueError(f"{path}: column {col!r} not found (columns: {list(table.columns)})")
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
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written["table"] = out / "allocation.csv"
        result.table.to_csv(written["table"], index=False)
        written["summary"] = out / "allocation.json"
        payload = {
            "totals": result.totals,
            "settings": result.settings,
            "data": daily.report,
            "priors": funnel.priors_table().to_dict(orient="records"),
        }
        written["summary"].write_text(json.dumps(payload, indent=2, default=str))
        if plot:
            import matplotlib.pyplot as plt

            fig = plot_allocation(result)
            written["plot"] = out / "allocation.png"
            fig.savefig(written["plot"], dpi=120, bbox_inches="tight")
            plt.close(fig)
    return result, written


def add_allocate_parser(sub) -> None:
    """Add the ``allocate`` subcommand to the subparsers ``sub`` of ``jaxrev``."""
    a = sub.add_parser(
        "allocate",
        help="recommend tomorrow's budget split from daily funnel data and a revenue fit",
        description="Funnel (empirical-Bayes pooled per campaign) x revenue per conversion "
        "(a `jaxrev fit` output folder) -> ROAS draws -> Thompson-sampling budget split, with "
        "the expected revenue of the recommended and the current split.",
    )
    a.add_argument(
        "daily",
        help="daily table (CSV/Parquet: campaign, adset, date|day, spend, impressions, clicks, "
        "conversions; the Kaggle Facebook-ads column names work too) or bundled:NAME",
    )
    a.add_argument(
        "--revenue-fit", required=True, type=Path, help="folder `jaxrev fit --out` wrote"
    )
    a.add_argument("--budget", required=True, type=float, help="tomorrow's total budget")
    a.add_argument("--out", required=True, type=Path, help="output directory")
    a.add_argument(
        "--current",
        choices=("last", "total", "even"),
        default="last",
        help="the current split: spend of the latest day (default), of all days, or even",
    )
    a.add_argument("--half-life", type=float, default=None, help="discount half-life in days")
    a.add_argument("--pooling", choices=("campaign", "account", "none"), default="campaign")
    a.add_argument(
        "--conversions-per",
        choices=("click", "impression"),
        default="click",
        help="conversion-rate stage per click (default) or per impression (view-through)",
    )
    a.add_argument("--min-share", type=float, default=0.0, help="minimum exploration share")
    a.add_argument("--max-share", type=float, default=1.0, help="maximum share per ad set")
    a.add_argument("--caps", type=Path, default=None, help="CSV: adset, max_budget")
    a.add_argument(
        "--rule",
        choices=("thompson", "proportional"),
        default="thompson",
        help="thompson: each posterior draw's best split, averaged (default); proportional: "
        "shares ∝ P(best)^power within floors and caps",
    )
    a.add_argument(
        "--power", type=float, default=1.0, help="power of the proportional rule (<1 smoother)"
    )
    a.add_argument(
        "--revenue-fallback",
        choices=("raise", "campaign"),
        default="raise",
        help="ad sets missing from the revenue fit: error (default) or their campaign's mean",
    )
    a.add_argument("--revenue-map", type=Path, default=None, help="CSV: adset, revenue_adset")
    a.add_argument("--num-draws", type=int, default=None)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--prob", type=float, default=0.9, help="interval probability")
    a.add_argument("--on-invalid", choices=("raise", "drop"), default="raise")
    a.add_argument("--no-plot", action="store_true")
    cols = a.add_argument_group("columns (default: our names, or the Kaggle table's)")
    for name in ("adset", "campaign", "day", "spend", "impressions", "clicks", "conversions", "ad"):
        cols.add_argument(f"--{name}-col", default=None)


def allocate_command(args) -> int:
    """Run ``jaxrev allocate`` with the parsed ``args``; returns the exit status (2: bad input)."""
    source, name = args.daily, None
    if source.startswith(BUNDLED_PREFIX):
        name = source
        source = load_daily_bundled(source[len(BUNDLED_PREFIX) :])
    columns = {
        field: getattr(args, f"{field}_col")
        for field in DailyColumns._fields
        if getattr(args, f"{field}_col") is not None
    }
    try:
        daily = load_daily(
            source,
            columns or None,
            conversions_per=args.conversions_per,
            on_invalid=args.on_invalid,
            name=name,
        )
        print(daily)
        result, written = run_allocate(
            daily,
            args.revenue_fit,
            args.budget,
            args.out,
            current=args.current,
            half_life=args.half_life,
            pooling=args.pooling,
            rule=args.rule,
            power=args.power,
            min_share=args.min_share,
            max_share=args.max_share,
            max_budget=args.caps,
            mapping=args.revenue_map,
            fallback=args.revenue_fallback,
            num_draws=args.num_draws,
            seed=args.seed,
            prob=args.prob,
            plot=not args.no_plot,
        )
    except (InvalidDataError, MissingAdsetsError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = result.table.sort_values("budget", ascending=False)
    lo, hi = [c for c in table.columns if c.startswith("roas_q")]
    shown = ["adset", "campaign", "prob_best", "roas_mean", lo, hi, "current_budget", "budget"]
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table[shown].round(3).to_string(index=False, max_rows=40))
    print(result.summary_text())
    for name, path in written.items():
        print(f"wrote {name}: {path}")
    return 0


__all__ = ["add_allocate_parser", "allocate_command", "read_caps", "read_mapping", "run_allocate"]
