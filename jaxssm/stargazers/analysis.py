r"""The seed's analysis as one pipeline: located stargazers → windows and counts → "has the
geography changed?" → the Poisson dynamic factor model with q chosen on held-out cells →
imputed locations with intervals, beside the simple baseline → shares h windows ahead.

The model of the located counts is $X_i(\eta) \sim \mathrm{Poisson}(Y_i \exp(\mu_\eta +
\Lambda_\eta^\top f_i))$: the per-window log-offset $\log Y_i$ carries the total, so the
factors describe the *proportions* $p_i = \mathrm{softmax}(\mu + \Lambda f_i)$ and $q = 0$ is
the static model (fixed proportions, time-varying total). The held-out comparison uses the
offsets of all located stargazers of a window (held-out cells included) for every q alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np
import pandas as pd

from jaxssm.drift import DriftTest, drift_test, format_p
from jaxssm.fit import fit_laplace_em
from jaxssm.locations import LocationNormalizer, country_name, default_gazetteer
from jaxssm.result import LaplaceEMResult
from jaxssm.selection import FactorSelection, select_num_factors
from jaxssm.stargazers.homogeneity import HomogeneityTest, homogeneity_test
from jaxssm.stargazers.imputation import (
    LocationImputation,
    ShareForecast,
    baseline_imputation,
    forecast_shares,
    impute_locations,
    most_likely_locations,
)
from jaxssm.stargazers.ingest import StargazersError
from jaxssm.stargazers.regions import group_of, region_table
from jaxssm.stargazers.windows import WindowedCounts, window_width, windowed_counts

LOCATED_STATUSES = ("ok", "multi")

#: The fewest windows an analysis accepts: it compares windows over time.
MIN_WINDOWS = 3


@dataclass(frozen=True)
class AnalysisOptions:
    """Choices of an analysis (plain values, recorded in the report).

    Attributes:
        freq: window width $w$ (a pandas frequency; calendar months by default).
        level: what a location is: ``country`` or a region level of
            :mod:`jaxssm.stargazers.regions`.
        region_level: the grouping for region shares and forecasts.
        candidates: numbers of factors q compared on held-out cells (0 = static model).
        emissions: emissions compared with them (``"poisson"``, ``"negbin"``).
        folds: q is chosen by K-fold cross-validation over the observed cells (every cell
            held out once); 1 holds out ``holdout_fraction`` of them once.
        holdout_fraction: share of the observed cells held out when ``folds`` is 1.
        num_imputations: draws of the missing locations.
        horizon: windows forecast past the data.
        interval: central interval level of every reported interval.
        homogeneity_draws: Monte Carlo tables of the homogeneity test.
        drop_first: earliest windows left out of the heatmap and the homogeneity test.
        max_iterations: EM iteration limit per fit.
        seed: the seed of every random step.
    """

    freq: str = "MS"
    level: str = "country"
    region_level: str = "subregion"
    candidates: tuple[int, ...] = (0, 1, 2, 3)
    emissions: tuple[str, ...] = ("poisson", "negbin")
    folds: int = 5
    holdout_fraction: float = 0.1
    num_imputations: int = 1000
    horizon: int = 6
    interval: float = 0.9
    homogeneity_draws: int = 2000
    drop_first: int = 0
    max_iterations: int = 500
    seed: int = 0


@dataclass
class StargazerAnalysis:
    """Everything the report shows; each step's result as computed."""

    table: pd.DataFrame
    windows: WindowedCounts
    settings: AnalysisOptions
    created_at: pd.Timestamp
    homogeneity: HomogeneityTest | None = None
    drift: DriftTest | None = None
    selection: FactorSelection | None = None
    fit: LaplaceEMResult | None = None
    imputation: LocationImputation | None = None
    baseline: LocationImputation | None = None
    shares: ShareForecast | None = None
    most_likely: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def locations(self) -> list[str]:
        return list(self.windows.counts.columns)

    def groups(self, level: str | None = None) -> dict[str, str | None]:
        """Location → its group at ``level`` (default: the settings' region level)."""
        level = level or self.settings.region_level
        if self.settings.level == level:
            return {loc: loc for loc in self.locations}
        if self.settings.level == "country":
            return dict(zip(self.locations, group_of(self.locations, level), strict=True))
        # locations are groups already: map each to the coarser group that contains it, or keep
        # it when ``level`` is not coarser (a group spread over several)
        codes = list(region_table().index)
        parents: dict[str, set] = {}
        for own, parent in zip(
            group_of(codes, self.settings.level), group_of(codes, level), strict=True
        ):
            parents.setdefault(own, set()).add(parent)
        return {
            loc: next(iter(parents[loc])) if len(parents.get(loc, ())) == 1 else loc
            for loc in self.locations
        }

    def model_comparison(self) -> dict:
        """The best dynamic model (q > 0) against the static one on held-out cells (paired)."""
        sel = self.selection
        table = sel.table
        score = table["heldout_loglik_per_cell"]
        static = table.loc[score[table["num_factors"] == 0].idxmax()]
        dynamic_rows = table["num_factors"] > 0
        dynamic, emission = 0, str(static["emission"])
        diff, se = 0.0, 0.0
        if dynamic_rows.any():
            row = table.loc[score[dynamic_rows].idxmax()]
            dynamic, emission = int(row["num_factors"]), str(row["emission"])
            diff, se = sel.difference(
                dynamic, 0, emission=emission, baseline_emission=str(static["emission"])
            )
        cells = int(sel.heldout.sum())
        return {
            "best_q": int(sel.best),
            "best_emission": sel.best_emission,
            "best_dynamic_q": dynamic,
            "best_dynamic_emission": emission,
            "static_emission": str(static["emission"]),
            "difference_per_cell": diff,
            "difference_se": se,
            "heldout_cells": cells,
            "difference_total": diff * cells,
        }

    def geography_verdict(self, alpha: float = 0.05) -> str:
        """Has the geography changed? The drift test (a smooth trend in the shares of a few
        locations) and G² (any change), corrected for using two tests: a test rejects when its
        p-value is at most alpha/2, or when both are at most alpha (Hochberg's step-up form of
        Holm's correction, valid for these positively dependent tests). The geography changed
        when either rejects."""
        names = "countries" if self.settings.level == "country" else "regions"
        drift, g2 = self.drift, self.homogeneity
        if drift is None or not (drift.testable and g2.testable):
            return g2.verdict(alpha=alpha, locations=names)
        both = max(drift.p_value, g2.p_value) <= alpha
        drift_found = both or drift.p_value <= alpha / 2
        g2_found = both or g2.p_value <= alpha / 2
        level = f"{100 * alpha:g}% level, corrected for using two tests"
        smooth = f"a smooth trend in the shares of a few {names}"
        if drift_found and g2_found:
            head = (
                f"The geography changed over time: both the drift test, which looks for {smooth},"
                f" and the G² test, which looks for any change, reject ({level})."
            )
        elif drift_found:
            head = (
                f"The geography changed over time: the drift test finds {smooth}, while the G²"
                " test for any change does not (its power is spread over"
                f" {g2.df:,} degrees of freedom, most of them in cells that did not move); {level}."
            )
        elif g2_found:
            head = (
                "The geography changed over time: the G² test finds a change, but the drift test"
                f" does not see it as {smooth} (it may be a jump, a cycle or many small moves);"
                f" {level}."
            )
        else:
            head = (
                "No evidence that the geography changed over time: neither the drift test for"
                f" {smooth} nor the G² test for any change rejects ({level})."
            )
        g2_numbers = (
            f"G² test: {g2.statistic_name} = {g2.statistic:,.1f} (df = {g2.df:,}), Monte Carlo"
            f" p = {format_p(g2.p_value)} ({g2.num_draws:,} tables with the same margins);"
            f" Cramér's V = {g2.cramers_v:.3f} against {g2.cramers_v_null:.3f} expected with no"
            " change."
        )
        return " ".join(
            [
                head,
                f"Drift test: {drift.evidence(names)}.",
                g2_numbers,
                drift.movers_sentence(alpha, names) + drift.left_out(names),
            ]
        )

    def verdict(self) -> str:
        """The seed's question answered in plain words, with the numbers behind it."""
        parts = []
        if self.homogeneity is not None:
            parts.append(self.geography_verdict(alpha=0.05))
        if self.selection is not None:
            c = self.model_comparison()
            if c["best_dynamic_q"] == 0:
                parts.append("No dynamic model was compared.")
            else:
                z = c["difference_per_cell"] / c["difference_se"] if c["difference_se"] else 0.0
                better = "better" if c["difference_per_cell"] > 0 else "worse"
                noun = {"poisson": "Poisson", "negbin": "negative binomial"}
                parts.append(
                    f"On {c['heldout_cells']:,} held-out cells the dynamic factor model with "
                    f"q = {c['best_dynamic_q']} ({noun[c['best_dynamic_emission']]}) predicts "
                    f"{better} than the static model (fixed proportions): "
                    f"{c['difference_per_cell']:+.4f} nats per cell "
                    f"(± {c['difference_se']:.4f}, z = {z:.1f}; "
                    f"{c['difference_total']:+.1f} in total)"
                    + ("; a difference within its noise." if abs(z) < 2 else ".")
                )
                emission = noun[c["best_emission"]]
                if c["best_q"] == 0:
                    parts.append(
                        f"The imputation uses the static model ({emission}), which predicts best."
                    )
                else:
                    parts.append(
                        f"The imputation uses the dynamic model with q = {c['best_q']} "
                        f"({emission}), which predicts held-out cells best"
                        + (" (by a margin within its noise)." if abs(z) < 2 else ".")
                    )
        return " ".join(parts)


def locate(
    table: pd.DataFrame,
    normalizer: LocationNormalizer | None = None,
) -> pd.DataFrame:
    """Add ``country`` (ISO alpha-2 or None) and ``location_status`` to a stargazers frame.

    A frame that already has a ``country`` column keeps it (status ``given``); otherwise the
    ``location`` strings go through ``normalizer`` (default: the offline gazetteer). Statuses
    ``ok`` and ``multi`` (the first place named) count as located; ``non_geo``, ``unknown`` and
    ``failed`` as no usable location.
    """
    out = table.copy()
    if "country" in out.columns:
        out["location_status"] = np.where(out["country"].notna(), "given", "missing")
        return out
    normalizer = normalizer or default_gazetteer()
    results = normalizer.normalize(out["location"].tolist())
    located = [r.status in LOCATED_STATUSES and r.country is not None for r in results]
    out["country"] = [r.country if ok else None for r, ok in zip(results, located, strict=True)]
    out["location_status"] = [r.status if r.text else "empty" for r in results]
    return out


def _log_offset(located: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Offset $\\log Y_i$ broadcast over locations, and the observed mask (windows with no
    located stargazer are missing windows)."""
    has = located > 0
    offset = np.where(has, np.log(np.maximum(located, 1)), 0.0)[:, None] * np.ones((1, m))
    return offset, np.repeat(has[:, None], m, axis=1)


def analyze(
    table: pd.DataFrame,
    *,
    created_at=None,
    settings: AnalysisOptions = AnalysisOptions(),
    normalizer: LocationNormalizer | None = None,
    progress: Callable[[str], None] | None = None,
) -> StargazerAnalysis:
    """Run every step of the analysis on a stargazers frame (see :func:`read_stargazers`).

    Args:
        table: the canonical stargazers frame; a ``country`` column skips normalization.
        created_at: $T_0$, the repository's creation (default: the first star).
        settings: the analysis choices.
        normalizer: location normalizer (default: the offline gazetteer).
        progress: called with a line of text as each step starts and ends.
    """
    say = progress or (lambda _line: None)
    timings: dict[str, float] = {}

    def step(name: str):
        say(f"{name} ...")
        timings[name] = time.perf_counter()

    def done(name: str, detail: str = ""):
        timings[name] = time.perf_counter() - timings[name]
        say(f"{name}: done in {timings[name]:.1f} s{'; ' + detail if detail else ''}")

    step("locations")
    located = locate(table, normalizer)
    n_loc = int(located["country"].notna().sum())
    done("locations", f"{n_loc:,} of {len(located):,} stargazers located")

    start = pd.Timestamp(created_at) if created_at is not None else located["starred_at"].min()
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    start = min(start, located["starred_at"].min())
    loc_values = located["country"].tolist()
    if settings.level != "country":
        loc_values = group_of(loc_values, settings.level)
    windows = windowed_counts(
        located["starred_at"],
        pd.Series(loc_values, dtype=object),
        start=start,
        freq=settings.freq,
        level=settings.level,
    )
    result = StargazerAnalysis(located, windows, settings, start, timings=timings)
    X = windows.counts.to_numpy(float)
    N, m = X.shape
    if N - settings.drop_first < MIN_WINDOWS:
        raise StargazersError(
            f"the stars span {N} window(s) of width {settings.freq!r}"
            + (f", {settings.drop_first} dropped" if settings.drop_first else "")
            + f": the analysis compares windows over time and needs at least {MIN_WINDOWS}; "
            "pass a shorter --freq (e.g. W or D) or a table with more stars"
        )
    if m == 0:
        raise StargazersError(
            "no stargazer could be located (every location is empty or unrecognised): there "
            "are no counts to model"
        )
    candidates = usable_candidates(settings.candidates, N, m)
    if candidates != tuple(settings.candidates):
        say(
            f"only q in {{{', '.join(map(str, candidates))}}} compared: {N} windows and {m} "
            f"locations allow at most {min(N - 1, m)} factors"
        )
    key = jax.random.key(settings.seed)
    k_sel, k_imp, k_fc = jax.random.split(key, 3)

    step("homogeneity test")
    kept = windows.counts.iloc[settings.drop_first :].set_axis(
        windows.labels[settings.drop_first :], axis=0
    )
    if settings.level == "country":
        kept = kept.rename(columns=lambda code: country_name(code) or code)
    result.homogeneity = homogeneity_test(
        kept.astype(int), num_draws=settings.homogeneity_draws, seed=settings.seed
    )
    done("homogeneity test", f"p = {result.homogeneity.p_value:.4g}")
    step("drift test")
    result.drift = drift_test(
        kept.astype(int), num_draws=settings.homogeneity_draws, seed=settings.seed
    )
    done("drift test", f"p = {result.drift.p_value:.4g}")

    offset, observed = _log_offset(windows.located.to_numpy(), m)
    step("choosing q")
    result.selection = select_num_factors(
        k_sel,
        X,
        candidates=candidates,
        emissions=settings.emissions,
        mask=observed,
        offset=offset,
        holdout_fraction=settings.holdout_fraction,
        folds=settings.folds,
        max_iterations=settings.max_iterations,
    )
    done("choosing q", f"q = {result.selection.best}, {result.selection.best_emission}")

    step("fit")
    result.fit = fit_laplace_em(
        X,
        result.selection.best,
        emission=result.selection.best_emission,
        mask=observed,
        offset=offset,
        max_iterations=settings.max_iterations,
    )
    done("fit", f"{result.fit.status} after {int(result.fit.num_iterations)} iterations")

    step("imputation")
    missing = windows.unlocated.to_numpy()
    S = settings.num_imputations
    result.imputation = impute_locations(
        k_imp, result.fit, X, missing, result.locations, num_draws=S
    )
    result.baseline = baseline_imputation(settings.seed, X, missing, result.locations, num_draws=S)
    unlocated = located["country"].isna().to_numpy() & (windows.window >= 0)
    if settings.level != "country":
        unlocated = np.asarray([v is None for v in loc_values]) & (windows.window >= 0)
    result.most_likely = most_likely_locations(
        result.imputation, located.loc[unlocated, "user"].tolist(), windows.window[unlocated]
    )
    done("imputation", f"{int(missing.sum()):,} stargazers without a location, {S} draws")

    step("forecast")
    result.shares = forecast_shares(
        k_fc, result.fit, result.locations, settings.horizon, num_draws=S
    )
    done("forecast", f"{settings.horizon} windows ahead")
    return result


def usable_candidates(candidates: tuple[int, ...], N: int, m: int) -> tuple[int, ...]:
    """The numbers of factors q of ``candidates`` that N windows and m locations can identify,
    q <= min(N - 1, m) (a factor needs two windows to have dynamics), in their order; the
    static model q = 0 when none is left."""
    kept = tuple(q for q in candidates if q <= min(N - 1, m))
    return kept or (0,)


def future_labels(windows: WindowedCounts, horizon: int, freq: str) -> list[str]:
    """Labels of the ``horizon`` windows after the data, like :attr:`WindowedCounts.labels`."""
    width = window_width(freq)
    last = windows.edges[-1]
    fmt = "%Y-%m" if (windows.edges[1] - windows.edges[0]) >= pd.Timedelta(days=28) else "%Y-%m-%d"
    return [(last + k * width).strftime(fmt) for k in range(horizon)]
