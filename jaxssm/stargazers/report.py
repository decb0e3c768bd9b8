"""The investor report: one self-contained HTML page (figures embedded as PNG) and its tables
as CSV files, written step by step so that a failure late in the run keeps what came before.

Each section is computed here as plain values; the page's HTML is the Jinja2 template
``templates/report.html.j2``, rendered with autoescape."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
from importlib.resources import files
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from jaxssm.errors import InputError
from jaxssm.files import (
    csv_bytes,
    make_folder,
    overwritten_input,
    writable_folder,
    write_atomic,
)
from jaxssm.locations import country_name
from jaxssm.stargazers import plots
from jaxssm.stargazers.analysis import AnalysisOptions, StargazerAnalysis, analyze, future_labels
from jaxssm.stargazers.ingest import read_metadata, read_stargazers
from jaxssm.stargazers.regions import LATIN_AMERICA
from jaxssm.stargazers.windows import covering_set, describe_width

#: Every file the report writes into its folder, each atomically (a temporary file, then a rename).
OUTPUTS = (
    "growth.csv",
    "counts.csv",
    "top_locations.csv",
    "proportions.csv",
    "stationarity.json",
    "model_selection.csv",
    "share_changes.csv",
    "imputed_totals.csv",
    "imputed_by_window.csv",
    "most_likely_locations.csv",
    "region_totals.csv",
    "region_share_forecast.csv",
    "location_share_forecast.csv",
    "report.html",
)

#: The tables' floats: 10 significant digits; float32 columns as their shortest float32 text
#: (886.16, not 886.159973).
FLOAT_FORMAT = "%.10g"

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


def _cells(frame: pd.DataFrame, floatfmt: str = "{:,.1f}") -> dict:
    """A table for the template: header and rows as text (floats with ``floatfmt``, integers
    with thousands separators)."""

    def fmt(v) -> str:
        if isinstance(v, float | np.floating):
            return floatfmt.format(v)
        if isinstance(v, int | np.integer):
            return f"{v:,}"
        return str(v)

    return {
        "head": [str(c) for c in frame.columns],
        "rows": [[fmt(v) for v in row] for row in frame.itertuples(index=False)],
    }


def _names(codes) -> dict[str, str]:
    return {c: country_name(c) or c for c in codes}


@functools.cache
def _template() -> jinja2.Template:
    """``templates/report.html.j2``, with every value HTML-escaped."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("jaxssm.stargazers", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2")


class _Tables:
    """Writes the CSV tables into the report's folder as they are made; returns their names."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __call__(self, frame: pd.DataFrame, name: str, index: bool = False) -> str:
        single = [c for c in frame.columns if frame[c].dtype == np.float32]
        if single:  # float32 → float64 through its shortest text: no float32 noise digits
            frame = frame.copy()
            for c in single:
                frame[c] = frame[c].astype(str).astype(float)
        write_atomic(self.out / name, csv_bytes(frame, FLOAT_FORMAT, index=index))
        return name


def _growth(analysis: StargazerAnalysis, csv: _Tables) -> dict:
    s, w = analysis.settings, analysis.windows
    growth = pd.DataFrame(
        {
            "window": w.labels,
            "start": w.edges[:-1],
            "end": w.edges[1:],
            "located": w.located,
            "unlocated": w.unlocated,
        }
    )
    growth["total"] = growth["located"] + growth["unlocated"]
    growth["cumulative"] = growth["total"].cumsum()
    total, located = int(growth["total"].sum()), int(growth["located"].sum())
    section = {
        "total": total,
        "located": located,
        "located_share": located / max(total, 1),
        "num_windows": w.num_windows,
        "width": describe_width(s.freq),
        "created_at": analysis.created_at,
        "figure": _png(plots.plot_growth(w)),
        "csv": csv(growth, "growth.csv"),
    }
    csv(w.counts.set_axis(w.labels), "counts.csv", index=True)
    return section


def _top_locations(analysis: StargazerAnalysis, csv: _Tables, names: dict) -> dict:
    w = analysis.windows
    totals = w.counts.sum(axis=0)
    cover = covering_set(totals, 0.8)
    top_frame = pd.DataFrame(
        {
            "location": totals.index,
            "name": [names.get(c, c) for c in totals.index],
            "stargazers": totals.to_numpy(),
        }
    )
    top_frame["share"] = top_frame["stargazers"] / max(int(w.located.sum()), 1)
    return {
        "num_locations": int((totals > 0).sum()),
        "level": analysis.settings.level,
        "num_cover": len(cover),
        "figure": _png(plots.plot_top_locations(w, 0.8, names)),
        "csv": csv(top_frame, "top_locations.csv"),
        "cover": cover,
    }


def _proportions(analysis: StargazerAnalysis, csv: _Tables, shown, names: dict) -> dict:
    w = analysis.windows
    props = w.counts.div(w.located.replace(0, np.nan), axis=0).set_axis(w.labels)
    return {
        "figure": _png(plots.plot_heatmap(w, shown, analysis.settings.drop_first, names)),
        "csv": csv(props, "proportions.csv", index=True),
    }


def _stationarity(analysis: StargazerAnalysis, csv: _Tables, out: Path) -> dict:
    sel = analysis.selection.table
    comparison = analysis.model_comparison()
    test = {k: v for k, v in analysis.homogeneity._asdict().items() if k != "contributions"}
    stationarity = {"homogeneity": test, "model_comparison": comparison}
    drift = analysis.drift
    if drift is not None:
        stationarity["drift_test"] = drift.as_dict()
    text = json.dumps(stationarity, indent=2, default=float) + "\n"
    write_atomic(out / "stationarity.json", text.encode("utf-8"))
    section = {
        "verdict": analysis.verdict(),
        "level": analysis.settings.level,
        "drift": drift if drift is not None and drift.testable else None,
        "g2_p_value": analysis.homogeneity.p_value,
        "g2_df": analysis.homogeneity.df,
        "figure": _png(plots.plot_model_selection(sel)),
        "selection": _cells(sel, "{:,.4f}"),
        "csv": csv(sel, "model_selection.csv"),
        "changes": None,
    }
    contributions = analysis.homogeneity.contributions
    if contributions is not None and len(contributions):
        section["changes"] = _cells(contributions.head(10).reset_index(), "{:,.3f}")
        section["changes_csv"] = csv(contributions, "share_changes.csv", index=True)
    return section


def _imputation(analysis: StargazerAnalysis, csv: _Tables, top: int, names: dict) -> dict:
    s, w = analysis.settings, analysis.windows
    model, base, level = analysis.imputation, analysis.baseline, s.interval
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
    return {
        "missing": int(w.unlocated.sum()),
        "num_imputations": model.imputed.shape[0],
        "method": model.method,
        "level": level,
        "figure": _png(plots.plot_imputed_totals(model, base, level, top, names)),
        "totals": _cells(both.head(top)),
        "csvs": [
            csv(both, "imputed_totals.csv"),
            csv(model.per_window(level, w.labels), "imputed_by_window.csv"),
            csv(analysis.most_likely, "most_likely_locations.csv"),
        ],
    }


def _regions(analysis: StargazerAnalysis, csv: _Tables) -> dict:
    s, w, level = analysis.settings, analysis.windows, analysis.settings.interval
    groups = analysis.groups()
    regional = analysis.imputation.aggregate(groups)
    regional_base = analysis.baseline.aggregate(groups)
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
    latam = None
    if LATIN_AMERICA in fc.locations and LATIN_AMERICA in region_frame.index:
        row = fc_table[fc_table["location"] == LATIN_AMERICA].iloc[-1]
        now = region_frame.loc[LATIN_AMERICA]
        latam = {
            "name": LATIN_AMERICA,
            "share_mean": now["share_mean"],
            "share_low": now["share_low"],
            "share_high": now["share_high"],
            "window": row["window"],
            "forecast_mean": row["share_mean"],
            "forecast_low": row["share_low"],
            "forecast_high": row["share_high"],
        }
    figure = plots.plot_share_forecast(w, regional, fc, shown, flabels, level, LATIN_AMERICA)
    return {
        "latam": latam,
        "figure": _png(figure),
        "totals": _cells(region_frame.reset_index(), "{:,.3f}"),
        "csvs": [
            csv(region_frame, "region_totals.csv", index=True),
            csv(fc_table, "region_share_forecast.csv"),
            csv(analysis.shares.summary(level, flabels), "location_share_forecast.csv"),
        ],
    }


def write_report(
    analysis: StargazerAnalysis,
    out_dir: str | os.PathLike,
    *,
    repository: str | None = None,
    top: int = 20,
) -> Path:
    """Write ``report.html`` and the CSV tables into ``out_dir``; return the HTML path.

    The tables are written as each section is made (a failure late in the run keeps them); the
    page, ``templates/report.html.j2``, is rendered last. Every file is written atomically.

    Raises:
        OutputError: a file or the folder could not be written (one line naming the path).
    """
    out = make_folder(out_dir)
    s = analysis.settings
    names = _names(analysis.locations) if s.level == "country" else {}
    csv = _Tables(out)
    growth = _growth(analysis, csv)
    top_locations = _top_locations(analysis, csv, names)
    proportions = _proportions(analysis, csv, top_locations["cover"][: max(top, 1)], names)
    settings = pd.DataFrame({"setting": list(vars(s)), "value": [str(v) for v in vars(s).values()]})
    page = _template().render(
        title=f"Stargazers of {repository}" if repository else "Stargazers report",
        growth=growth,
        top_locations=top_locations,
        proportions=proportions,
        stationarity=_stationarity(analysis, csv, out),
        imputation=_imputation(analysis, csv, top, names),
        regions=_regions(analysis, csv),
        assumptions=ASSUMPTIONS,
        settings=_cells(settings),
        fit_status=str(analysis.fit.status),
        timings=analysis.timings,
    )
    path = out / "report.html"
    write_atomic(path, page.encode("utf-8"))
    return path


def bundled_path(name: str) -> Path:
    """The path of a table shipped with the package (``bundled:demo``)."""
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
    """Read a stargazers table (or ``bundled:demo``), run :func:`analyze` and write the report;
    the path of ``report.html`` (see :func:`analyze_and_report`)."""
    return analyze_and_report(
        source,
        out_dir,
        settings=settings,
        normalizer=normalizer,
        created_at=created_at,
        repository=repository,
        progress=progress,
    )[1]


def analyze_and_report(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    settings=None,
    normalizer=None,
    created_at=None,
    repository: str | None = None,
    progress=None,
) -> tuple[StargazerAnalysis, Path]:
    """Read a stargazers table (or ``bundled:demo``), run :func:`analyze` and write the report;
    the analysis and the path of ``report.html``.

    $T_0$ and the repository's name come from the arguments, else from the table's sidecar
    ``.meta.json`` (written by the fetcher), else the first star and the file name.

    Raises:
        InputError: ``out_dir`` would receive a file over the input.
        StargazersError: the table cannot be used (naming the file, line and column), or it
            spans too few windows.
        OutputError: the folder or an output could not be written (naming the path); the folder
            is checked before the analysis runs.
    """
    text = str(source)
    path = bundled_path(text.split(":", 1)[1]) if text.startswith("bundled:") else Path(text)
    clash = overwritten_input([Path(out_dir) / name for name in OUTPUTS], [path])
    if clash is not None:
        raise InputError(
            f"--out {out_dir}: would overwrite the input {clash[0]} (the report writes "
            f"{clash[1].name} there); choose another folder",
            file=clash[0],
        )
    meta = read_metadata(path)
    table = read_stargazers(path)
    writable_folder(out_dir)
    analysis = analyze(
        table,
        created_at=created_at or meta.get("created_at"),
        settings=settings or AnalysisOptions(),
        normalizer=normalizer,
        progress=progress,
    )
    if progress:
        progress("report ...")
    out = write_report(analysis, out_dir, repository=repository or meta.get("repository"))
    return analysis, out
