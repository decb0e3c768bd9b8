"""``jaxrev allocate DAILY --revenue-fit DIR --budget B --out DIR``: the ROAS application's command.

Daily table + revenue fit -> funnel (:mod:`jaxrev.roas.funnel_fit`) -> ROAS draws
(:mod:`jaxrev.roas.draws`) -> budget split (:mod:`jaxrev.roas.allocation`), written as
``allocation.csv``, ``allocation.json`` and ``allocation.png`` by
:func:`jaxrev.roas.run.run_allocate` (the same run from Python); ``jaxrev.cli`` dispatches the
subcommand here. The heavy imports happen when the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BUNDLED_PREFIX = "bundled:"  # as in jaxrev.cli: DAILY may name a bundled table


def add_allocate_parser(sub, formatter_class=argparse.HelpFormatter) -> None:
    """Add the ``allocate`` subcommand to the subparsers ``sub`` of ``jaxrev``."""
    a = sub.add_parser(
        "allocate",
        formatter_class=formatter_class,
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
        help="the current split: spend of the latest day, of all days, or even",
    )
    a.add_argument("--half-life", type=float, default=None, help="discount half-life in days")
    a.add_argument("--pooling", choices=("campaign", "account", "none"), default="campaign")
    a.add_argument(
        "--conversions-per",
        choices=("click", "impression"),
        default="click",
        help="conversion-rate stage per click or per impression (view-through)",
    )
    a.add_argument("--min-share", type=float, default=0.0, help="minimum exploration share")
    a.add_argument("--max-share", type=float, default=1.0, help="maximum share per ad set")
    a.add_argument("--caps", type=Path, default=None, help="CSV: adset, max_budget")
    a.add_argument(
        "--rule",
        choices=("thompson", "proportional"),
        default="thompson",
        help="thompson: each posterior draw's best split, averaged; proportional: "
        "shares ∝ P(best)^power within floors and caps",
    )
    a.add_argument(
        "--power", type=float, default=1.0, help="power of the proportional rule (<1 smoother)"
    )
    a.add_argument(
        "--revenue-fallback",
        choices=("raise", "campaign"),
        default="raise",
        help="ad sets missing from the revenue fit: error, or their campaign's mean",
    )
    a.add_argument("--revenue-map", type=Path, default=None, help="CSV: adset, revenue_adset")
    a.add_argument(
        "--num-draws", type=int, default=None, help="ROAS draws (default: the revenue fit's)"
    )
    a.add_argument("--seed", type=int, default=0, help="random seed")
    a.add_argument("--prob", type=float, default=0.9, help="interval probability")
    a.add_argument(
        "--on-invalid",
        choices=("raise", "drop"),
        default="raise",
        help="stop on invalid rows, or drop and list them",
    )
    a.add_argument("--no-plot", action="store_true", help="write no PNG figure")
    cols = a.add_argument_group("columns (default: our names, or the Kaggle table's)")
    for name in ("adset", "campaign", "day", "spend", "impressions", "clicks", "conversions", "ad"):
        cols.add_argument(f"--{name}-col", default=None, help=f"{name} column")


def allocate_command(args) -> int:
    """Run ``jaxrev allocate`` with the parsed ``args``; returns the exit status (2: bad input
    or an output that cannot be written)."""
    import pandas as pd

    from jaxrev.datasets.daily import load_daily_bundled
    from jaxrev.errors import InputFileError, InvalidDataError, OutputError
    from jaxrev.files import overlapping_input
    from jaxrev.roas.daily import DailyColumns, load_daily
    from jaxrev.roas.draws import MissingAdsetsError
    from jaxrev.roas.run import ALLOCATION_FILES, run_allocate

    source, name = args.daily, None
    daily_path = None if source.startswith(BUNDLED_PREFIX) else source
    clash = overlapping_input(args.out, [daily_path, args.caps, args.revenue_map], ALLOCATION_FILES)
    if clash is not None:
        print(f"error: --out {args.out} would overwrite the input {clash}", file=sys.stderr)
        return 2
    columns = {
        field: getattr(args, f"{field}_col")
        for field in DailyColumns._fields
        if getattr(args, f"{field}_col") is not None
    }
    try:
        if source.startswith(BUNDLED_PREFIX):
            name = source
            source = load_daily_bundled(source[len(BUNDLED_PREFIX) :])
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
    except (
        InvalidDataError,
        InputFileError,
        MissingAdsetsError,
        ValueError,
        OutputError,
        FileNotFoundError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = result.table.sort_values("budget", ascending=False)
    lo, hi = [c for c in table.columns if c.startswith("roas_q")]
    shown = ["adset", "campaign", "prob_best", "roas_mean", lo, hi, "current_budget", "budget"]
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table[shown].round(3).to_string(index=False, max_rows=40))
    print(result.summary_text())
    for label, path in written.items():
        print(f"wrote {label}: {path}")
    return 0


__all__ = ["add_allocate_parser", "allocate_command"]
