"""The drift test: the score statistic against a brute-force quadratic form in the exact
hypergeometric covariance and against Patefield draws, the min-p calibration, size on stationary
tables, power against smooth drift (above G²'s), invariances and the p-value floor."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxssm import DriftTest, drift_test
from jaxssm.drift import (
    exceedance_counts,
    monte_carlo_p_values,
    null_tables,
    score_covariance,
    trend_scores,
)
from jaxssm.stargazers.homogeneity import homogeneity_test

ALPHA = 0.05


def zipf_shares(m: int, exponent: float = 1.0) -> np.ndarray:
    weights = np.arange(1, m + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def stationary_table(rng, N=12, m=10, mean_total=30) -> np.ndarray:
    totals = rng.poisson(mean_total, size=N)
    return np.stack([rng.multinomial(t, zipf_shares(m)) for t in totals])


def drifting_table(rng, rates, N=36, mean_total=100) -> np.ndarray:
    """Log shares move by ``rates`` per window (the others renormalised), Zipf base shares."""
    time_from_middle = np.arange(N) - (N - 1) / 2
    log_weights = np.log(zipf_shares(len(rates)))[None] + np.outer(time_from_middle, rates)
    shares = np.exp(log_weights)
    shares /= shares.sum(1, keepdims=True)
    totals = rng.poisson(mean_total, size=N)
    return np.stack([rng.multinomial(t, p) for t, p in zip(totals, shares, strict=True)])


def hypergeometric_cell_covariance(table: np.ndarray) -> np.ndarray:
    r"""Cov(vec X) given both margins, from the multivariate hypergeometric law of the cells:
    $Y_i(n\delta_{ij} - Y_j) C_\ell(n\delta_{\ell k} - C_k) / (n^2 (n-1))$, indexed (i l, j k)."""
    rows, cols = table.sum(1).astype(float), table.sum(0).astype(float)
    n = rows.sum()
    row_part = np.diag(n * rows) - np.outer(rows, rows)
    col_part = np.diag(n * cols) - np.outer(cols, cols)
    return np.kron(row_part, col_part) / (n**2 * (n - 1))


def brute_force_statistic(table: np.ndarray, positions: np.ndarray) -> tuple[float, np.ndarray]:
    """S^T pinv(Cov S) S with Cov S = A Cov(vec X) A^T, S = A vec X (A sums each column
    against the centred times), and z = S / sqrt(diag Cov S)."""
    m = table.shape[1]
    rows = table.sum(1)
    centred = positions - rows @ positions / rows.sum()
    A = np.kron(centred[None, :], np.eye(m))  # (m, N m): S_l = sum_i c_i X_il
    S = A @ table.reshape(-1).astype(float)
    cov = A @ hypergeometric_cell_covariance(table) @ A.T
    return float(S @ np.linalg.pinv(cov) @ S), S / np.sqrt(np.diag(cov))


# --- module-level draws: done once ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stationary_runs():
    """200 stationary tables (12 windows x 10 locations, ~360 counts), 99 draws each."""
    rng = np.random.default_rng(20240614)
    return [drift_test(stationary_table(rng), num_draws=99, seed=k) for k in range(200)]


@pytest.fixture(scope="module")
def drifting_runs():
    """30 tables of 36 windows x 40 locations (~100 a window) where 4 locations drift by
    ±2 % a month in log share; the drift test and G² on each, 99 draws."""
    rng = np.random.default_rng(7)
    rates = np.zeros(40)
    rates[[0, 2, 4, 6]] = [0.02, 0.02, 0.02, -0.02]
    runs = []
    for k in range(30):
        table = drifting_table(rng, rates)
        runs.append(
            (drift_test(table, num_draws=99, seed=k), homogeneity_test(table, num_draws=99, seed=k))
        )
    return runs


@pytest.fixture(scope="module")
def small_table():
    rng = np.random.default_rng(3)
    table = rng.poisson(2.0, size=(6, 5)) + (rng.random((6, 5)) < 0.3)
    table[:, 0] += 1
    return table


# --- the statistic -------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["uniform", "irregular"])
def test_score_statistic_is_the_quadratic_form_in_the_exact_covariance(small_table, positions):
    N = small_table.shape[0]
    s = np.arange(N, dtype=float) if positions == "uniform" else np.array([0, 1, 3, 4, 9, 10.5])
    expected_T, expected_z = brute_force_statistic(small_table, s)
    result = drift_test(small_table, num_draws=19, window_positions=s)
    assert result.statistic == pytest.approx(expected_T, rel=1e-10)
    z = result.trends["trend_z"].sort_index().to_numpy()
    np.testing.assert_allclose(z, expected_z, rtol=1e-10)
    assert result.df == small_table.shape[1] - 1
    # the closed form of the covariance, too
    rows, cols = small_table.sum(1), small_table.sum(0)
    centred = s - rows @ s / rows.sum()
    A = np.kron(centred[None, :], np.eye(len(cols)))
    np.testing.assert_allclose(
        score_covariance(rows, cols, s),
        A @ hypergeometric_cell_covariance(small_table) @ A.T,
        atol=1e-10,
    )


def test_score_covariance_matches_patefield_draws(small_table):
    """The covariance of S and the mean of T over many tables with the observed margins."""
    rows, cols = small_table.sum(1), small_table.sum(0)
    s = np.arange(len(rows), dtype=float)
    draws = np.concatenate(list(null_tables(rows, cols, 20_000, np.random.default_rng(1))))
    assert (draws.sum(2) == rows).all() and (draws.sum(1) == cols).all()
    centred = s - rows @ s / rows.sum()
    S = np.einsum("i,bil->bl", centred, draws)
    V = score_covariance(rows, cols, s)
    B = len(draws)
    se = np.sqrt((np.outer(np.diag(V), np.diag(V)) + V**2) / B)  # normal-theory se of Cov
    assert np.all(np.abs(np.cov(S.T) - V) <= 5 * se)
    # E[T] = m - 1 exactly under the conditional null; sd(T) is about sqrt(2(m - 1))
    T = trend_scores(draws, s).statistic
    m = len(cols)
    assert abs(T.mean() - (m - 1)) <= 5 * T.std() / np.sqrt(B)


def test_two_locations_score_statistic_is_z_squared(rng):
    table = rng.poisson(4.0, size=(9, 2)) + 1
    scores = trend_scores(table, np.arange(9.0))
    assert scores.statistic == pytest.approx(scores.z[0] ** 2, rel=1e-12)
    assert scores.z[0] == pytest.approx(-scores.z[1], rel=1e-12)


def test_trend_z_matches_the_homogeneity_tests_trend_scores(small_table):
    """An independent implementation of the per-location Cochran-Armitage z."""
    ours = drift_test(small_table, num_draws=9).trends["trend_z"].sort_index()
    theirs = homogeneity_test(small_table, num_draws=9).contributions["trend_z"].sort_index()
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-12)


def test_batched_scores_equal_a_loop(small_table, rng):
    tables = np.stack([rng.permutation(small_table.reshape(-1)).reshape(6, 5) for _ in range(4)])
    s = np.array([0, 1, 3, 4, 9, 10.5])
    batch = trend_scores(tables, s)
    for k, table in enumerate(tables):
        single = trend_scores(table, s)
        assert batch.statistic[k] == pytest.approx(single.statistic, rel=1e-12)
        np.testing.assert_allclose(batch.z[k], single.z, rtol=1e-12)


# --- invariances ---------------------------------------------------------------------------------


def test_permuting_locations_leaves_the_statistic_unchanged(small_table, rng):
    order = rng.permutation(small_table.shape[1])
    frame = pd.DataFrame(small_table, columns=list("abcde"))
    a = drift_test(frame, num_draws=9)
    b = drift_test(frame.iloc[:, order], num_draws=9)
    assert b.statistic == pytest.approx(a.statistic, rel=1e-12)
    assert b.max_z == pytest.approx(a.max_z, rel=1e-12)
    pd.testing.assert_series_equal(
        b.trends["trend_z"].sort_index(), a.trends["trend_z"].sort_index(), rtol=1e-12
    )


def test_reversing_time_keeps_the_statistic_and_flips_every_z(small_table):
    frame = pd.DataFrame(small_table, columns=list("abcde"))
    forward = drift_test(frame, num_draws=9)
    backward = drift_test(frame.iloc[::-1], num_draws=9)
    assert backward.statistic == pytest.approx(forward.statistic, rel=1e-12)
    np.testing.assert_allclose(
        backward.trends["trend_z"].sort_index(), -forward.trends["trend_z"].sort_index(), rtol=1e-12
    )
    # and so does any affine change of the time axis (up to the sign of its slope)
    rescaled = drift_test(frame, num_draws=9, window_positions=3.0 - 0.5 * np.arange(6))
    assert rescaled.statistic == pytest.approx(forward.statistic, rel=1e-12)


def test_empty_windows_are_dropped_and_keep_the_others_times(small_table):
    with_gap = np.insert(small_table, 2, 0, axis=0)
    frame = pd.DataFrame(with_gap, columns=[*"abcde"]).assign(f=0)
    result = drift_test(frame, num_draws=9)
    times = np.delete(np.arange(7.0), 2)
    assert result.statistic == pytest.approx(
        brute_force_statistic(small_table, times)[0], rel=1e-10
    )
    assert result.dropped_windows == (2,) and result.dropped_locations == ("f",)
    assert (result.num_windows, result.num_locations) == (6, 5)


# --- p-values ------------------------------------------------------------------------------------


def test_exceedance_counts_with_ties():
    assert exceedance_counts(np.array([2.0, 2.0 * (1 - 1e-9), 1.0, 5.0])).tolist() == [3, 3, 4, 1]


def test_min_p_combination_has_exact_size_and_plain_min_p_does_not():
    """Exchangeable rows of two independent statistics: the calibrated min-p is uniform on the
    grid (P(p <= 0.05) = 0.05), the raw min of the two p-values rejects about twice as often."""
    rng = np.random.default_rng(0)
    reps, draws = 2000, 99
    combined, raw = [], []
    for _ in range(reps):
        rows = rng.random((draws + 1, 2))
        result = monte_carlo_p_values(rows[0], rows[1:])
        combined.append(result.combined)
        raw.append(result.each.min())
        assert result.each.min() <= result.combined <= 2 * result.each.min() + 1e-12
    upper = stats.binom.ppf(0.999, reps, ALPHA) / reps
    lower = stats.binom.ppf(0.001, reps, ALPHA) / reps
    assert lower <= np.mean(np.array(combined) <= ALPHA) <= upper
    assert np.mean(np.array(raw) <= ALPHA) > upper


def test_size_on_stationary_tables(stationary_runs):
    upper = stats.binom.ppf(0.999, len(stationary_runs), ALPHA) / len(stationary_runs)
    for name in ("p_value", "score_p_value", "max_z_p_value"):
        p = np.array([getattr(r, name) for r in stationary_runs])
        assert np.mean(p <= ALPHA) <= upper, name
        assert abs(p.mean() - 0.5) < 0.08, name  # roughly uniform, not stuck at 1
    null_means = np.array([r.null_mean for r in stationary_runs])
    assert abs(null_means.mean() - 9) < 0.3  # E[T*] = m - 1


def test_power_against_smooth_drift_beats_g2(drifting_runs):
    drift_power = np.mean([d.p_value <= ALPHA for d, _ in drifting_runs])
    g2_power = np.mean([g.p_value <= ALPHA for _, g in drifting_runs])
    assert drift_power >= 0.8, drift_power
    assert drift_power >= g2_power + 0.4, (drift_power, g2_power)
    # the strongest mover (location 0, rising) is usually the one named
    named = [d.max_z_location for d, _ in drifting_runs]
    assert np.mean([name in (0, 2, 4, 6) for name in named]) >= 0.8


def test_p_values_never_below_the_floor_and_combined_between_min_and_twice_min(drifting_runs):
    for d, _ in drifting_runs:
        floor = 1 / (1 + d.num_draws)
        for p in (d.p_value, d.score_p_value, d.max_z_p_value):
            assert floor <= p <= 1
        smallest = min(d.score_p_value, d.max_z_p_value)
        assert smallest - 1e-12 <= d.p_value <= 2 * smallest + floor + 1e-12


def test_a_strong_trend_hits_the_floor_and_is_described(rng):
    table = drifting_table(rng, np.array([0.06, 0, 0, -0.06, 0, 0]), N=24, mean_total=200)
    frame = pd.DataFrame(table, columns=["BR", "DE", "FR", "US", "JP", "GB"])
    result = drift_test(frame, num_draws=49)
    assert result.p_value == result.score_p_value == result.max_z_p_value == pytest.approx(1 / 50)
    assert result.asymptotic_p_value < 1e-6
    up, down = result.movers()
    assert "BR" in up and "US" in down
    assert result.trends.loc["BR", "log_share_slope"] > 0.03  # true relative slope ~0.06
    text = result.verdict(locations="countries")
    assert text.startswith("The shares of some countries drifted") and "BR" in text
    record = json.loads(json.dumps(result.as_dict()))
    for key in ("statistic", "p_value", "df", "max_z", "max_z_p_value", "score_p_value",
                "asymptotic_p_value", "num_draws"):  # fmt: skip
        assert key in record
    assert record["df"] == 5 and record["num_draws"] == 49


def test_untestable_tables():
    one_window = drift_test(np.array([[3, 4, 5]]), num_draws=9)
    assert isinstance(one_window, DriftTest) and not one_window.testable
    assert one_window.p_value == 1.0 and one_window.num_draws == 0
    assert one_window.verdict().startswith("Cannot test")
    same_time = drift_test(np.array([[3, 4], [5, 1]]), num_draws=9, window_positions=[1.0, 1.0])
    assert not same_time.testable
    with pytest.raises(ValueError, match="nonnegative integers"):
        drift_test(np.array([[1, -1], [2, 3]]))


def test_merging_rare_locations():
    table = np.array([[10, 8, 1, 0], [12, 6, 0, 1], [9, 11, 0, 0]])
    frame = pd.DataFrame(table, columns=["US", "IN", "NA", "BR"])
    result = drift_test(frame, num_draws=9, min_total=2)
    assert result.merged_locations == ("NA", "BR")
    assert list(result.trends.sort_index().index) == ["IN", "US", "other"]
