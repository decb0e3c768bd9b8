"""The investor report: one self-contained HTML page (figures embedded as PNG) and its tables
as CSV files, written step by step so that a failure late in the run keeps what came before."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from jaxssm.locations import country_name
from jaxssm.stargazers import plots
from jaxssm.stargazers.analysis import StargazerAnalysis, future_labels
from jaxssm.stargazers.regions import LATIN_AMERICA
from jaxssm.stargazers.windows import covering_set, describe_width

ASSUMPTIONS = (
    "Locations are missing at random within a window: a stargazer without a usable location "
    "(empty, non-geographic such as “Earth”, or not recognised) is located like the located "
    "stargazers who starred in the same window. The share of missing locations may change "
    "from window to window.",
    "Counts of located stargazers per window and location are Poisson, or negative binomial "
    "(a dispersion per location), with log-rate log Y_i + μ + Λ f_i, where Y_i is the window's "
    "number of located stargazers and the q latent factors follow f_i = Φ f_{i−1} + ε (Q = I). "
    "q = 0 is the static model with fixed proportions. q and the emission are chosen by the "
    "predictive log-likelihood of held-out cells (5-fold cross-validation). The loadings have "
    "learned prior scales, so a factor the data do not support is switched off.",
    "Uncertainty: the Laplace approximation of the posterior of f given the MAP-EM parameters, "
    "and of each location's (μ, Λ) given f; imputations are multinomial draws per window.",
    "Stargazers are a proxy for interest, not for sales; a GitHub location is self-reported.",
)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table_html(frame: pd.DataFrame, floatfmt: str = "{:,.1f}") -> str:
    def fmt(v):
        if isinstance(v, float | np.floating):
            return floatfmt.format(v)
        if isinstance(v, int | np.integer):
            return f"{v:,}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _names(codes) -> dict[str, str]:
    return {c: country_name(c) or c for c in codes}


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em} h1{margin-bottom:.2em} h2{margin-top:1.8em;
border-bottom:1px solid #ddd} table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left} img{max-width:100%} .verdict{background:#f7f7ef;
border-left:4px solid #b5a642;padding:.6em 1em} .small{color:#666;font-size:.85em}
"""


def write_report(
    analysis: StargazerAnalysis,
    out_dir: str | os.PathLike,
    *,
    repository: str | None = None,
    top: int = 20,
) -> Path:
    """Write ``report.html`` and the CSV tables into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s, w = analysis.settings, analysis.windows
    level = s.interval
    names = _names(analysis.locations) if s.level == "country" else {}
    labels = w.labels
    sections: list[str] = []

    def csv(frame: pd.DataFrame, name: str, index: bool = False) -> str:
        frame.to_csv(out / name, index=index)
        return f'<p class="small">Table: <a href="{name}">{name}</a></p>'

    # Growth
    growth = pd.DataFrame(
        {
            "window": labels,
            "start": w.edges[:-1],
            "end": w.edges[1:],
            "located": w.located,
            "unlocated": w.unlocated,
        }
    )
    growth["total"] = growth["located"] + growth["unlocated"]
    growth["cumulative"] = growth["total"].cumsum()
    total, n_loc = int(growth["total"].sum()), int(growth["located"].sum())
    sections.append(
        "<h2>Growth over time</h2>"
        f"<p>{total:,} stargazers in {w.num_windows} windows of {describe_width(s.freq)} from "
        f"{analysis.created_at:%Y-%m-%d}; {n_loc:,} ({n_loc / max(total, 1):.0%}) give a usable "
        f"location.</p><img src='data:image/png;base64,{_png(plots.plot_growth(w))}'>"
        + csv(growth, "growth.csv")
    )
    w.counts.set_axis(labels).to_csv(out / "counts.csv")

    # Top locations
    totals = w.counts.sum(axis=0)
    cover = covering_set(totals, 0.8)
    top_frame = pd.DataFrame(
        {
            "location": totals.index,
            "name": [names.get(c, c) for c in totals.index],
            "stargazers": totals.to_numpy(),
        }
    )
    top_frame["share"] = top_frame["stargazers"] / max(n_loc, 1)
    sections.append(
        f"<h2>Top locations</h2><p>{int((totals > 0).sum())} {s.level} locations; the "
        f"{len(cover)} largest cover 80% of the located stargazers.</p>"
        f"<img src='data:image/png;base64,{_png(plots.plot_top_locations(w, 0.8, names))}'>"
        + csv(top_frame, "top_locations.csv")
    )

    # Heatmap
    heat = cover[: max(top, 1)]
    props = w.counts.div(w.located.replace(0, np.nan), axis=0).set_axis(labels)
    sections.append(
        "<h2>Proportions over time</h2><img src='data:image/png;base64,"
        f"{_png(plots.plot_heatmap(w, heat, s.drop_first, names))}'>"
        + csv(props, "proportions.csv", index=True)
    )

    # Stationarity
    verdict = html.escape(analysis.verdict())
    sel = analysis.selection.table
    comparison = analysis.model_comparison()
    test = {k: v for k, v in analysis.homogeneity._asdict().items() if k != "contributions"}
    stationarity = {"homogeneity": test, "model_comparison": comparison}
    drift = analysis.drift
    if drift is not None:
        stationarity["drift_test"] = drift.as_dict()
    (out / "stationarity.json").write_text(json.dumps(stationarity, indent=2, default=float))
    two_tests = ""
    if drift is not None and drift.testable:
        two_tests = (
            "<p>Two tests, both with Monte Carlo p-values from tables that keep every window's "
            "total and every location's total: the <b>drift test</b> looks for a steady rise or "
            f"fall in the shares of a few {html.escape(s.level)} locations (a log-linear trend "
            f"per location; score statistic T = {drift.statistic:,.1f} on {drift.df:,} degrees "
            f"of freedom, p = {drift.score_p_value:.3g}; the largest single trend, |z| = "
            f"{drift.max_z:.1f} for {html.escape(str(drift.max_z_location))}, p = "
            f"{drift.max_z_p_value:.3g}; combined p = {drift.p_value:.3g}); the <b>G² test</b> "
            f"(p = {analysis.homogeneity.p_value:.3g}) looks for any change, with its power "
            f"spread over {analysis.homogeneity.df:,} degrees of freedom. The verdict above "
            "corrects for using both.</p>"
        )
    sections.append(
        "<h2>Has the geography changed over time?</h2>"
        f"<p class='verdict'>{verdict}</p>"
        + two_tests
        + f"<img src='data:image/png;base64,{_png(plots.plot_model_selection(sel))}'>"
        + _table_html(sel, "{:,.4f}")
        + csv(sel, "model_selection.csv")
    )
    contributions = analysis.homogeneity.contributions
    if contributions is not None and len(contributions):
        sections.append(
            "<p>Locations whose shares moved the most:</p>"
            + _table_html(contributions.head(10).reset_index(), "{:,.3f}")
            + csv(contributions, "share_changes.csv", index=True)
        )

    # Imputation
    model, base = analysis.imputation, analysis.baseline
    tm = model.totals(level)
    tb = base.totals(level).loc[tm.index]
    both = pd.DataFrame(
        {
            "location": tm.index,
            "name": [names.get(c, c) for c in tm.index],
            "located": tm["observed"].to_numpy(),
            "completed_mean": tm["completed_mean"].to_numpy(),
            "completed_low": tm["completed_low"].to_numpy(),
            "completed_high": tm["completed_high"].to_numpy(),
            "baseline_mean": tb["completed_mean"].to_numpy(),
            "baseline_low": tb["completed_low"].to_numpy(),
            "baseline_high": tb["completed_high"].to_numpy(),
        }
    )
    missing = int(w.unlocated.sum())
    sections.append(
        f"<h2>Imputed distribution</h2><p>{missing:,} stargazers without a location were "
        f"imputed {model.imputed.shape[0]:,} times with the {html.escape(model.method)}; beside "
        f"it the seed's baseline (one distribution for all windows). Intervals are central "
        f"{level:.0%}.</p><img src='data:image/png;base64,"
        f"{_png(plots.plot_imputed_totals(model, base, level, top, names))}'>"
        + _table_html(both.head(top))
        + csv(both, "imputed_totals.csv")
        + csv(model.per_window(level, labels), "imputed_by_window.csv")
        + csv(analysis.most_likely, "most_likely_locations.csv")
    )

    # Regions and forecasts
    groups = analysis.groups()
    regional = model.aggregate(groups)
    regional_base = base.aggregate(groups)
    fc = analysis.shares.aggregate(groups)
    flabels = future_labels(w, s.horizon, s.freq)
    rt = regional.totals(level)
    rtb = regional_base.totals(level).loc[rt.index]
    region_frame = rt.assign(
        baseline_mean=rtb["completed_mean"],
        baseline_low=rtb["completed_low"],
        baseline_high=rtb["completed_high"],
    )
    shown = [g for g in rt.index if g != "Other"][:8]
    if LATIN_AMERICA in regional.locations and LATIN_AMERICA not in shown:
        shown.append(LATIN_AMERICA)
    fc_table = fc.summary(level, flabels)
    latam = ""
    if LATIN_AMERICA in fc.locations:
        row = fc_table[fc_table["location"] == LATIN_AMERICA].iloc[-1]
        now = region_frame.loc[LATIN_AMERICA] if LATIN_AMERICA in region_frame.index else None
        latam = (
            f"<p class='verdict'>{LATIN_AMERICA}: {now['share_mean']:.1%} of all stargazers so far "
            f"({now['share_low']:.1%}–{now['share_high']:.1%}); forecast share of new stargazers "
            f"in {row['window']}: {row['share_mean']:.1%} ({row['share_low']:.1%}–"
            f"{row['share_high']:.1%}).</p>"
            if now is not None
            else ""
        )
    figure = plots.plot_share_forecast(w, regional, fc, shown, flabels, level, LATIN_AMERICA)
    sections.append(
        f"<h2>Region shares and forecasts</h2>{latam}"
        f"<img src='data:image/png;base64,{_png(figure)}'>"
        + _table_html(region_frame.reset_index(), "{:,.3f}")
        + csv(region_frame, "region_totals.csv", index=True)
        + csv(fc_table, "region_share_forecast.csv")
        + csv(analysis.shares.summary(level, flabels), "location_share_forecast.csv")
    )

    sections.append(
        "<h2>Assumptions</h2><ul>"
        + "".join(f"<li>{html.escape(a)}</li>" for a in ASSUMPTIONS)
        + "</ul><h2>Settings</h2>"
        + _table_html(
            pd.DataFrame({"setting": list(vars(s)), "value": [str(v) for v in vars(s).values()]})
        )
        + "<p class='small'>Fit: "
        + html.escape(str(analysis.fit.status))
        + "; step times: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in analysis.timings.items())
        + "</p>"
    )
    title = f"Stargazers of {repository}" if repository else "Stargazers report"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        + "".join(sections)
        + "</body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def bundled_path(name: str) -> Path:
    """The path of a table shipped with the package (``bundled:demo``)."""
    from importlib.resources import files

    tables = {"demo": "demo_stargazers.csv"}
    if name not in tables:
        raise ValueError(f"no bundled stargazers table {name!r}; there is: {', '.join(tables)}")
    return Path(str(files("jaxssm.stargazers.data").joinpath(tables[name])))


def report_from_file(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    settings=None,
    normalizer=None,
    created_at=None,
    repository: str | None = None,
    progress=None,
) -> Path:
    """Read a stargazers table (or ``bundled:demo``), run :func:`analyze` and write the report.

    $T_0$ and the repository's name come from the arguments, else from the table's sidecar
    ``.meta.json`` (written by the fetcher), else the first star and the file name.
    """
    from jaxssm.stargazers.analysis import AnalysisSettings, analyze
    from jaxssm.stargazers.ingest import read_metadata, read_stargazers

    text = str(source)
    path = bundled_path(text.split(":", 1)[1]) if text.startswith("bundled:") else Path(text)
    meta = read_metadata(path)
    table = read_stargazers(path)
    analysis = analyze(
        table,
        created_at=created_at or meta.get("created_at"),
        settings=settings or AnalysisSettings(),
        normalizer=normalizer,
        progress=progress,
    )
    if progress:
        progress("report ...")
    out = write_report(analysis, out_dir, repository=repository or meta.get("repository"))
    return out
