"""The stargazers simulator: the truth is self-consistent, the drift is there (or exactly absent),
the written locations read as the true country, and the bundled demo is what the script writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxssm.locations import default_gazetteer
from jaxssm.stargazers.simulate import (
    DEFAULT_BASE_SHARES,
    NON_GEO_TEXTS,
    RISING_COUNTRIES,
    STEADY_COUNTRIES,
    country_base_shares,
    expected_totals,
    hidden_rates,
    location_vocabularies,
    simulate_stargazers,
    simulated_window_edges,
    trend_shares,
)

SEED = 7
DATA = Path(__file__).resolve().parents[3] / "jaxssm" / "stargazers" / "data"


@pytest.fixture(scope="module")
def gazetteer():
    return default_gazetteer()


@pytest.fixture(scope="module")
def sim():
    return simulate_stargazers(SEED)


@pytest.fixture(scope="module")
def stationary():
    return simulate_stargazers(SEED, drift=False)


def _share_ratio(sim, country: str, width: int = 3) -> float:
    """Mean share over the last ``width`` windows over the mean over the first ``width``."""
    p = sim.proportions[:, sim.countries.index(country)]
    return float(p[-width:].mean() / p[:width].mean())


def _pooled_homogeneity_p(counts: np.ndarray, min_expected: float = 5.0) -> float:
    """Pearson's chi-square p-value of windows × countries, with the countries whose expected
    count in the smallest window is below ``min_expected`` pooled into one column."""
    share = counts.sum(axis=0) / counts.sum()
    large = share * counts.sum(axis=1).min() >= min_expected
    table = np.column_stack([counts[:, large], counts[:, ~large].sum(axis=1)])
    return float(stats.chi2_contingency(table)[1])


def test_table_and_truth_shapes(sim):
    table, truth = sim.table, sim.truth
    assert list(table.columns) == ["user", "starred_at", "location"]
    assert list(truth.columns) == ["user", "country", "hidden", "window"]
    assert len(table) == len(truth) == sim.counts.sum()
    assert (table["user"].to_numpy() == truth["user"].to_numpy()).all()
    assert table["user"].is_unique
    assert str(table["starred_at"].dt.tz) == "UTC"
    assert table["starred_at"].is_monotonic_increasing
    assert set(truth["country"]) <= set(sim.countries)
    assert truth["hidden"].dtype == bool
    N, m = sim.counts.shape
    assert (N, m) == (36, len(DEFAULT_BASE_SHARES)) == sim.proportions.shape
    assert sim.hidden_rate.shape == sim.expected_totals.shape == (N,)
    assert len(sim.window_edges) == N + 1 and sim.created_at == sim.window_edges[0]
    assert sim.created_at == pd.Timestamp("2023-01-01", tz="UTC")
    np.testing.assert_allclose(sim.proportions.sum(axis=1), 1.0)
    locations = table["location"]
    assert all(x is None or isinstance(x, str) for x in locations)
    assert locations[~truth["hidden"]].notna().all()


def test_counts_equal_recount_of_truth(sim):
    recount = pd.crosstab(sim.truth["window"], sim.truth["country"])
    recount = recount.reindex(index=range(len(sim.counts)), columns=sim.countries, fill_value=0)
    np.testing.assert_array_equal(recount.to_numpy(), sim.counts)


def test_totals_follow_a_growth_curve(sim):
    totals = sim.counts.sum(axis=1)
    assert sim.expected_totals.mean() == pytest.approx(300.0)
    assert 0.8 * 300 * 36 < totals.sum() < 1.2 * 300 * 36
    # Poisson noise around r_i: standardized residuals of ordinary size
    z = (totals - sim.expected_totals) / np.sqrt(sim.expected_totals)
    assert np.abs(z).max() < 5
    rate = expected_totals(np.random.default_rng(0), 24, mean_total=50.0, spike_rate=0.0)
    assert rate.mean() == pytest.approx(50.0)
    assert rate[-1] / rate[0] == pytest.approx(np.e)  # growth = log(r_N / r_1) = 1


def test_hidden_rate_matches_within_binomial_error(sim):
    np.testing.assert_allclose(sim.hidden_rate[[0, -1]], [0.35, 0.55])
    assert (np.diff(sim.hidden_rate) > 0).all()
    per_window = sim.truth.groupby("window")["hidden"].agg(["sum", "size"])
    n = per_window["size"].to_numpy()
    rho = sim.hidden_rate[per_window.index.to_numpy()]
    z = (per_window["sum"].to_numpy() - n * rho) / np.sqrt(n * rho * (1 - rho))
    assert np.abs(z).max() < 4.5
    assert stats.chi2.sf((z**2).sum(), df=len(z)) > 1e-3


def test_window_assignment_from_times_and_edges(sim):
    times = sim.table["starred_at"].to_numpy()
    edges = sim.window_edges.to_numpy()
    window = np.searchsorted(edges, times, side="left") - 1  # (left, right]
    np.testing.assert_array_equal(window, sim.truth["window"].to_numpy())
    assert (times > edges[0]).all() and (times <= edges[-1]).all()
    assert (sim.table["starred_at"].dt.microsecond == 0).all()  # whole seconds, as GitHub's
    assert sim.table["starred_at"].is_unique  # no ties: the star order is well defined


def test_window_edges_follow_the_calendar():
    edges = simulated_window_edges("2023-01-15", 3, "MS")
    assert list(edges.strftime("%Y-%m-%d")) == ["2023-01-15", "2023-02-15", "2023-03-15",
                                                 "2023-04-15"]  # fmt: skip
    weekly = simulated_window_edges(pd.Timestamp("2024-03-01 12:00", tz="UTC"), 2, "7D")
    assert (np.diff(weekly.asi8) == pd.Timedelta(days=7).value // 1000).all()  # microseconds


def test_stationary_without_drift(stationary):
    assert (stationary.proportions == stationary.proportions[0]).all()
    _, base = country_base_shares()
    np.testing.assert_allclose(stationary.proportions[0], base)
    assert _pooled_homogeneity_p(stationary.counts) > 1e-3


def test_drift_rising_and_steady_countries(sim):
    for country in RISING_COUNTRIES:
        assert _share_ratio(sim, country) >= 1.5, country
    for country in STEADY_COUNTRIES:
        assert 0.7 < _share_ratio(sim, country) < 1.4, country
    assert _pooled_homogeneity_p(sim.counts) < 1e-8
    visible = ~sim.truth["hidden"]
    observed = pd.crosstab(sim.truth["window"][visible], sim.truth["country"][visible])
    assert _pooled_homogeneity_p(observed.to_numpy()) < 1e-4


def test_trend_shares_keep_steady_countries():
    countries, base = country_base_shares()
    trend = trend_shares(base, countries, 10, rise_factor=2.0)
    np.testing.assert_allclose(trend.sum(axis=1), 1.0)
    for c in STEADY_COUNTRIES:
        np.testing.assert_allclose(trend[:, countries.index(c)], base[countries.index(c)])
    for c in RISING_COUNTRIES:
        k = countries.index(c)
        assert trend[-1, k] / trend[0, k] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no share"):
        trend_shares(base, countries, 10, rise_factor=10.0)


def test_sparse_like_the_seed(sim):
    small = [sim.countries.index(c) for c, s in DEFAULT_BASE_SHARES.items() if s <= 0.4]
    cells = sim.counts[:, small]
    assert (cells <= 1).mean() > 0.5


def test_visible_locations_read_as_the_true_country(sim, gazetteer):
    visible = ~sim.truth["hidden"].to_numpy()
    texts = sim.table["location"].to_numpy()[visible].tolist()
    readings = gazetteer.normalize(texts)
    truth = sim.truth["country"][visible]
    agree = np.array([r.country == c for r, c in zip(readings, truth, strict=True)])
    assert agree.mean() >= 0.98
    assert len(set(texts)) > 500  # varied, not a handful of strings


def test_hidden_locations_are_empty_or_not_places(sim, gazetteer):
    hidden = sim.table["location"][sim.truth["hidden"]]
    assert 0.75 < hidden.isna().mean() < 0.95
    written = hidden.dropna().tolist()
    assert written
    assert {r.status for r in gazetteer.normalize(written)} <= {"non_geo", "unknown"}
    assert {r.status for r in gazetteer.normalize(list(NON_GEO_TEXTS))} <= {"non_geo", "unknown"}


def test_vocabularies_are_checked(gazetteer):
    vocabularies = location_vocabularies(tuple(DEFAULT_BASE_SHARES))
    for country, vocabulary in vocabularies.items():
        assert vocabulary.probabilities.sum() == pytest.approx(1.0)
        readings = gazetteer.normalize(list(vocabulary.texts))
        assert all(r.country == country and r.status == "ok" for r in readings), country
    for ambiguous in ("Cambridge", "Valencia", "Santiago", "San Jose", "Paris, TX"):
        assert all(ambiguous not in v.texts for v in vocabularies.values())


def test_deterministic_for_a_seed(sim):
    again = simulate_stargazers(SEED)
    pd.testing.assert_frame_equal(again.table, sim.table)
    pd.testing.assert_frame_equal(again.truth, sim.truth)
    np.testing.assert_array_equal(again.proportions, sim.proportions)
    other = simulate_stargazers(SEED + 1)
    assert len(other.table) != len(sim.table) or not other.table.equals(sim.table)
    assert not np.array_equal(other.proportions, sim.proportions)


def test_custom_countries_and_hidden_rates():
    small = simulate_stargazers(
        3, num_windows=5, countries=["br", "PT", "AO"], base_shares=[6, 3, 1], drift=False,
        hidden_rate=0.2, mean_total=40.0,
    )  # fmt: skip
    assert small.countries == ["BR", "PT", "AO"]
    np.testing.assert_allclose(small.proportions[0], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(small.hidden_rate, 0.2)
    np.testing.assert_allclose(hidden_rates([0.1, 0.3], 3), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(hidden_rates([0.1, 0.2, 0.4], 3), [0.1, 0.2, 0.4])
    with pytest.raises(ValueError):
        hidden_rates([0.1, 0.2, 0.3], 4)
    with pytest.raises(ValueError):
        hidden_rates(1.5, 4)
    with pytest.raises(ValueError):
        country_base_shares(["US", "US"])


def test_bundled_demo_is_what_the_script_writes(gazetteer):
    """Users, times and the truth are exactly what ``make_demo`` writes now; the location
    strings (whose vocabulary depends on the gazetteer's tables) must read as the truth."""
    from jaxssm.stargazers.data import make_demo
    from jaxssm.stargazers.ingest import read_metadata, read_stargazers

    files = make_demo.demo_files()
    table_path, truth_path = DATA / make_demo.TABLE_NAME, DATA / make_demo.TRUTH_NAME
    assert truth_path.read_text(encoding="utf-8") == files.truth_csv
    assert (DATA / make_demo.META_NAME).read_text(encoding="utf-8") == files.meta_json
    for path in (table_path, truth_path):
        assert path.stat().st_size < 1_000_000
    raw = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    expected = pd.read_csv(io.StringIO(files.table_csv), dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(raw[["user", "starred_at"]], expected[["user", "starred_at"]])
    table = read_stargazers(table_path)
    truth = make_demo.read_demo_truth(truth_path)
    meta = read_metadata(table_path)
    assert meta["repository"] == "example/simulated-crm" and meta["freq"] == "MS"
    assert 6_000 <= len(table) <= 10_000 and len(truth) == len(table)
    assert (table["user"].to_numpy() == truth["user"].to_numpy()).all()
    assert truth["window"].max() == meta["num_windows"] - 1
    edges = simulated_window_edges(meta["created_at"], meta["num_windows"], meta["freq"])
    window = np.searchsorted(edges.to_numpy(), table["starred_at"].to_numpy(), side="left") - 1
    np.testing.assert_array_equal(window, truth["window"].to_numpy())
    hidden = truth["hidden"].to_numpy()
    assert (table["location"].isna().to_numpy() <= hidden).all()
    readings = gazetteer.normalize(table["location"][~hidden].tolist())
    agree = np.mean(
        [r.country == c for r, c in zip(readings, truth["country"][~hidden], strict=True)]
    )
    assert agree >= 0.98
