"""The homogeneity test: statistics against scipy, draws that keep both margins, Monte Carlo
p-values against exact enumeration, level on sparse stationary data and power under drift."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxssm import drift
from jaxssm.stargazers import homogeneity as hom
from jaxssm.stargazers.homogeneity import (
    homogeneity_statistic,
    homogeneity_test,
    location_contributions,
    merge_rare_locations,
    sample_tables,
)


def zipf_shares(m: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, m + 1) ** exponent
    return weights / weights.sum()


def stationary_table(rng, N=12, m=30, mean_total=40) -> np.ndarray:
    totals = rng.poisson(mean_total, size=N)
    return np.stack([rng.multinomial(t, zipf_shares(m)) for t in totals])


def drifting_table(rng, N=12, m=30, mean_total=40) -> np.ndarray:
    """Location 0 grows from 5% to 45% of each window, location 1 shrinks from 35% to 2%."""
    base = zipf_shares(m)
    rows = []
    for i, total in enumerate(rng.poisson(mean_total, size=N)):
        t = i / (N - 1)
        p = base.copy()
        p[0], p[1] = 0.05 + 0.40 * t, 0.35 - 0.33 * t
        rest = np.arange(2, m)
        p[rest] *= (1 - p[0] - p[1]) / p[rest].sum()
        rows.append(rng.multinomial(total, p))
    return np.stack(rows)


def plain_g2(table: np.ndarray) -> float:
    observed = table.astype(float)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    cells = observed > 0
    return float(2 * np.sum(observed[cells] * np.log(observed[cells] / expected[cells])))


# --- (a) the statistics -------------------------------------------------------------------------


def test_statistics_match_numpy_and_scipy(rng):
    table = rng.poisson(1.5, size=(5, 7))
    table[0, :] += 1  # no empty column
    table[:, 0] += 1  # no empty row
    assert (table == 0).any()  # 0 log 0 is exercised
    g2 = float(homogeneity_statistic(table, "g2"))
    x2 = float(homogeneity_statistic(table, "x2"))
    scipy_g2 = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    scipy_x2 = stats.chi2_contingency(table, correction=False)
    np.testing.assert_allclose(g2, plain_g2(table), rtol=1e-12)
    np.testing.assert_allclose(g2, scipy_g2.statistic, rtol=1e-12)
    np.testing.assert_allclose(x2, scipy_x2.statistic, rtol=1e-12)
    result = homogeneity_test(table, num_draws=99)
    np.testing.assert_allclose(result.statistic, g2, rtol=1e-12)
    np.testing.assert_allclose(result.asymptotic_p_value, scipy_g2.pvalue, rtol=1e-9)
    assert result.df == scipy_g2.dof == 4 * 6
    np.testing.assert_allclose(
        result.sparse_fraction, np.mean(scipy_g2.expected_freq < 5), rtol=1e-12
    )
    np.testing.assert_allclose(
        result.cramers_v, stats.contingency.association(table, method="cramer"), rtol=1e-10
    )


def test_contributions_split_the_statistic(rng):
    table = stationary_table(rng, N=6, m=9)
    table = table[:, table.sum(0) > 0]
    for kind in ("g2", "x2"):
        parts = location_contributions(table, kind)
        assert (parts >= -1e-12).all()
        np.testing.assert_allclose(parts.sum(), homogeneity_statistic(table, kind), rtol=1e-12)
    result = homogeneity_test(table, num_draws=49)
    c = result.contributions
    np.testing.assert_allclose(c["contribution"].sum(), result.statistic, rtol=1e-10)
    np.testing.assert_allclose(c["share"].sum(), 1.0)
    assert c["excess"].is_monotonic_decreasing


def test_statistic_is_vectorised_over_leading_axes(rng):
    tables = rng.poisson(2.0, size=(4, 3, 5, 6)) + 1
    batched = homogeneity_statistic(tables)
    looped = np.array([[homogeneity_statistic(t) for t in row] for row in tables])
    np.testing.assert_allclose(batched, looped, rtol=1e-12)


def test_statistic_ignores_the_order_of_windows_and_locations(rng):
    table = stationary_table(rng, N=8, m=10) + 1
    shuffled = table[rng.permutation(8)][:, rng.permutation(10)]
    np.testing.assert_allclose(homogeneity_statistic(shuffled), homogeneity_statistic(table))


# --- (b) the draws ------------------------------------------------------------------------------


def test_draws_keep_both_margins_exactly(rng, monkeypatch):
    monkeypatch.setattr(drift, "_CELLS_PER_CHUNK", 200)  # several chunks
    table = stationary_table(rng, N=7, m=11)
    table = table[:, table.sum(0) > 0]
    rows, cols = table.sum(1), table.sum(0)
    draws = sample_tables(rows, cols, 300, seed=3)
    assert draws.shape == (300, *table.shape)
    assert np.issubdtype(draws.dtype, np.integer) and (draws >= 0).all()
    np.testing.assert_array_equal(draws.sum(2), np.broadcast_to(rows, (300, len(rows))))
    np.testing.assert_array_equal(draws.sum(1), np.broadcast_to(cols, (300, len(cols))))
    assert len({d.tobytes() for d in draws}) > 250  # they vary
    # E[X_il] = Y_i C_l / n under the multivariate hypergeometric law
    expected = np.outer(rows, cols) / rows.sum()
    se = np.sqrt(expected / 300) + 1e-9
    assert np.all(np.abs(draws.mean(0) - expected) < 5 * se + 0.05)


def test_draws_are_reproducible_from_the_seed():
    a = sample_tables([5, 3, 4], [6, 2, 4], 20, seed=11)
    b = sample_tables([5, 3, 4], [6, 2, 4], 20, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    table = np.array([[5, 1, 0], [1, 3, 2], [0, 4, 4]])
    assert homogeneity_test(table, seed=4).p_value == homogeneity_test(table, seed=4).p_value


def test_trend_scores_are_standardised_under_the_null(rng):
    table = stationary_table(rng, N=10, m=6, mean_total=30)
    draws = sample_tables(table.sum(1), table.sum(0), 4000, seed=5)
    z = np.stack([hom._trend_scores(d, np.arange(10.0)) for d in draws])
    np.testing.assert_allclose(z.mean(0), 0.0, atol=4 / np.sqrt(4000))
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.05)


# --- (c) Monte Carlo against exact enumeration --------------------------------------------------


def tables_with_margins(rows, cols):
    """Every 2 × m table with these margins and its probability under the null."""
    n = sum(rows)
    log_const = sum(math.lgamma(v + 1) for v in (*rows, *cols)) - math.lgamma(n + 1)
    for first in itertools.product(*(range(c + 1) for c in cols)):
        if sum(first) != rows[0]:
            continue
        table = np.array([first, [c - x for c, x in zip(cols, first, strict=True)]])
        log_p = log_const - sum(math.lgamma(x + 1) for x in table.ravel())
        yield table, math.exp(log_p)


@pytest.mark.parametrize("kind", ["g2", "x2"])
def test_monte_carlo_p_agrees_with_exact_enumeration(kind):
    table = np.array([[3, 0, 2], [0, 3, 1]])
    enumerated = list(tables_with_margins(table.sum(1).tolist(), table.sum(0).tolist()))
    np.testing.assert_allclose(sum(p for _, p in enumerated), 1.0)
    observed = float(homogeneity_statistic(table, kind))
    exact = sum(
        p
        for t, p in enumerated
        if float(homogeneity_statistic(t, kind)) >= observed - 1e-7 * max(1.0, observed)
    )
    B = 20_000
    result = homogeneity_test(table, statistic=kind, num_draws=B, seed=7)
    se = math.sqrt(exact * (1 - exact) / B)
    assert 0.01 < exact < 0.5
    assert abs(result.p_value - exact) < 4 * se + 1 / B, (result.p_value, exact)


# --- (d) level and (e) power --------------------------------------------------------------------


def rejection_rates(rng, make_table, reps: int, B: int = 199, alpha: float = 0.05):
    monte_carlo = asymptotic = 0
    for _ in range(reps):
        result = homogeneity_test(make_table(rng), num_draws=B, seed=rng)
        monte_carlo += result.p_value <= alpha
        asymptotic += result.asymptotic_p_value <= alpha
    return monte_carlo / reps, asymptotic / reps


def test_level_on_sparse_stationary_data(rng, record_property, capsys):
    monte_carlo, asymptotic = rejection_rates(rng, stationary_table, reps=200)
    record_property("level_monte_carlo", monte_carlo)
    record_property("level_asymptotic_chi2", asymptotic)
    with capsys.disabled():
        print(
            f"\nlevel at 5%: Monte Carlo {monte_carlo:.3f}, asymptotic chi-square {asymptotic:.3f}"
        )
    # Binomial(200, 0.05): 10 ± 3; 0.09 and 0.01 are both about 2.6 standard deviations out.
    assert 0.01 <= monte_carlo <= 0.09


def test_power_under_drift(rng, record_property, capsys):
    monte_carlo, asymptotic = rejection_rates(rng, drifting_table, reps=100)
    record_property("power_monte_carlo", monte_carlo)
    record_property("power_asymptotic_chi2", asymptotic)
    with capsys.disabled():
        print(
            f"\npower at 5%: Monte Carlo {monte_carlo:.3f}, asymptotic chi-square {asymptotic:.3f}"
        )
    assert monte_carlo >= 0.8


def test_movers_and_verdict_name_the_drifting_locations(rng):
    table = pd.DataFrame(
        drifting_table(rng, N=24, mean_total=200),
        columns=[f"L{j}" for j in range(30)],
    )
    result = homogeneity_test(table, num_draws=499, seed=1)
    up, down = result.movers()
    assert up[0] == "L0" and down[0] == "L1"
    c = result.contributions
    assert c.loc["L0", "trend_z"] > 3 and c.loc["L1", "trend_z"] < -3
    assert c.loc["L0", "change"] > 0.1 and c.loc["L1", "change"] < -0.1
    verdict = result.verdict(locations="countries")
    assert verdict.startswith("The geography changed over time: G² = ")
    assert "24 windows × 30 countries" in verdict
    assert "Monte Carlo p = 0.002 (499 tables with the same margins; none as extreme" in verdict
    assert "grew: L0" in verdict and "shrank: L1" in verdict


def test_verdict_without_change_is_plain(rng):
    result = homogeneity_test(stationary_table(rng), num_draws=199, seed=2)
    if result.p_value > 0.05:
        assert result.verdict().startswith("No evidence that the geography changed over time")
    assert "unreliable here" in result.verdict()  # sparse: the chi-square rule fails
    assert not result.asymptotic_reliable and result.sparse_fraction > 0.5
    assert 0 <= result.cramers_v <= 1 and 0 < result.cramers_v_null <= 1


def test_verdict_when_the_approximation_is_fine():
    table = np.array([[60, 40, 50], [40, 60, 50]])
    result = homogeneity_test(table, num_draws=999)
    assert result.asymptotic_reliable and result.sparse_fraction == 0
    assert "the chi-square approximation gives p = " in result.verdict()
    assert abs(result.p_value - result.asymptotic_p_value) < 0.02


# --- empty rows and columns, merging, bad input -------------------------------------------------


def test_empty_windows_and_locations_are_dropped_and_reported():
    table = pd.DataFrame(
        [[3, 0, 1, 0], [0, 0, 0, 0], [1, 0, 4, 2], [2, 0, 0, 5]],
        index=["w1", "w2", "w3", "w4"],
        columns=["US", "FR", "BR", "IN"],
    )
    result = homogeneity_test(table, num_draws=199)
    assert result.dropped_windows == ("w2",) and result.dropped_locations == ("FR",)
    assert (result.num_windows, result.num_locations, result.total_count) == (3, 3, 18)
    kept = table.drop(index="w2", columns="FR")
    np.testing.assert_allclose(result.statistic, homogeneity_statistic(kept.to_numpy()))
    assert result.df == 4
    verdict = result.verdict(locations="countries")
    assert verdict.endswith(
        " Left out: 1 window(s) with no counts and 1 of the countries with no counts."
    )


def test_nothing_to_test_when_one_window_or_location_is_left():
    result = homogeneity_test(np.array([[0, 0], [3, 4], [0, 0]]))
    assert not result.testable and result.p_value == 1.0 and result.num_draws == 0
    assert result.verdict().startswith("Cannot test whether the geography changed")
    assert homogeneity_test(np.array([[3, 0], [4, 0]])).num_locations == 1


def test_merge_rare_locations():
    table = pd.DataFrame({"US": [5, 6], "BR": [1, 0], "IN": [0, 1], "other": [2, 0]})
    merged = merge_rare_locations(table, min_total=2)
    assert merged.columns.tolist() == ["US", "other"]
    assert merged["other"].tolist() == [3, 1]
    result = homogeneity_test(table, min_total=2, num_draws=99)
    assert result.merged_locations == ("BR", "IN") and result.num_locations == 2
    assert result.verdict().endswith(
        " Merged into 'other': 2 of the locations with fewer than 2 counts each."
    )
    assert merge_rare_locations(table, min_total=0).equals(table)


@pytest.mark.parametrize(
    "bad",
    [np.array([[1, -1], [2, 3]]), np.array([[1.5, 1], [2, 3]]), np.array([[np.nan, 1], [2, 3]])],
)
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="counts must be"):
        homogeneity_test(bad)


def test_unknown_statistic_is_refused():
    with pytest.raises(ValueError, match="unknown statistic"):
        homogeneity_test(np.eye(2, dtype=int), statistic="cressie")
    with pytest.raises(ValueError, match="num_draws"):
        homogeneity_test(np.eye(2, dtype=int), num_draws=0)


def test_speed_on_a_report_sized_table(rng):
    """36 windows × 163 locations, ~20k stargazers, B = 2000: a few seconds at most."""

    totals = rng.integers(300, 900, size=36)
    table = np.stack([rng.multinomial(t, zipf_shares(163, 1.1)) for t in totals])
    result = homogeneity_test(table, num_draws=2000, seed=0)
    assert result.num_draws == 2000 and result.num_locations <= 163
