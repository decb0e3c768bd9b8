"""The seed's next models (per-ad-set spread, Student-t effects, a drifting level) and the tools
to choose between them: each recovers its own parameters, PSIS-LOO picks ``hier_sigma`` when the
spreads differ and the multilevel model's PIT shows the misfit, the pointwise log-likelihood
equals a NumPy computation, held-out calibration is near nominal, the batch job runs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jaxrev.checks import compare, in_sample_pit, pointwise_log_likelihood
from jaxrev.compare import heldout_calibration
from jaxrev.data import Columns, days_since_start, load_revenue_data
from jaxrev.inference import fit
from jaxrev.simulate import simulate_account

STRUCTURE = (4, 4, 4, 4)  # 16 ad sets
SVI = dict(guide="fullrank", num_draws=1000)  # full-rank: calibrated enough to test coverage
SIMULATIONS = {
    "multilevel": {},
    "hier_sigma": dict(revenue_sigma=0.7, campaign_sigma_sd=0.3, adset_sigma_sd=0.6),
    "student_t": dict(effects_df=2.5, account_mu_sd=0.5, campaign_mu_sd=0.3),
    "local_level": dict(drift_sd=0.03),
}


def _simulate(model: str, seed: int = 11):
    return simulate_account(
        seed,
        STRUCTURE,
        num_hours=60,
        conversions_per_hour=(1.0, 4.0),
        freq="12h",
        **SIMULATIONS[model],
    )


@pytest.fixture(scope="module")
def fits():
    """Each model fitted (SVI, full-rank guide) to data simulated from it, and the multilevel
    model fitted to the hier_sigma data. (NUTS fits of the multilevel, hier_sigma and student_t
    data passed the same recovery checks when run by hand; the suite uses SVI because each new
    data shape costs NUTS ~20 s of compilation.)"""
    out = {}
    for model in SIMULATIONS:
        sim = _simulate(model)
        data = load_revenue_data(sim.table, Columns(time="hour"))
        out[model] = (sim, data, fit(data, model=model, method="svi", seed=1, **SVI))
    sim, data, _ = out["hier_sigma"]
    out["multilevel_on_hier_sigma"] = (sim, data, fit(data, method="svi", seed=1, **SVI))
    return out


def _coverage(fit_result, truth: pd.Series, site: str, level: float = 0.9) -> float:
    draws = fit_result.flat_draws(site)
    tail = (1 - level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail], axis=0)
    names = fit_result.data.adsets["adset"].to_numpy()
    t = truth.loc[names].to_numpy()
    return float(np.mean((t >= lo) & (t <= hi)))


@pytest.mark.parametrize("model", list(SIMULATIONS))
def test_each_model_recovers_its_own_ad_set_means(fits, model):
    sim, _, result = fits[model]
    truth = sim.adsets.set_index("adset")["adset_mean"]
    # 16 ad sets at nominal 0.9: P(fewer than 12 covered) < 0.02 for a calibrated fit
    assert _coverage(result, truth, "adset_mean") >= 0.75


def test_hier_sigma_recovers_each_ad_sets_spread(fits):
    sim, _, result = fits["hier_sigma"]
    truth = sim.adsets.set_index("adset")["adset_sigma"]
    assert _coverage(result, truth, "adset_sigma") >= 0.75
    estimate = result.flat_draws("adset_sigma").mean(axis=0)
    order = result.data.adsets["adset"].to_numpy()
    assert stats.spearmanr(estimate, truth.loc[order]).statistic > 0.6


def test_local_level_tracks_the_drift(fits):
    sim, _, result = fits["local_level"]
    now = result.flat_draws("level_now")
    lo, hi = np.quantile(now, [0.05, 0.95])
    assert lo <= sim.hyper["level_now"] <= hi
    drift = result.flat_draws("drift_sd")
    lo, hi = np.quantile(drift, [0.05, 0.95])
    assert lo <= 0.03 <= hi  # the daily step sd of the simulated walk
    # the whole path: the true level at the knots inside the data, within the 90% bands
    knots = np.arange(5) * 7.0  # days 0..28 of 30
    path = np.asarray(result.flat_draws("level"))[:, :5]
    truth = np.interp(knots, sim.level_days, sim.level)
    lo, hi = np.quantile(path, [0.05, 0.95], axis=0)
    assert np.mean((truth >= lo - 1e-9) & (truth <= hi + 1e-9)) >= 0.8


def test_student_t_learns_heavy_tails(fits):
    _, _, result = fits["student_t"]
    df = result.flat_draws("df")
    assert np.median(df) < 21  # below the prior median (about 17 + 1) with tails in the data
    assert np.isfinite(df).all()


def test_loo_prefers_hier_sigma_and_the_multilevel_pit_shows_the_misfit(fits):
    sim, _, hier = fits["hier_sigma"]
    _, _, multi = fits["multilevel_on_hier_sigma"]
    result = compare({"multilevel": multi, "hier_sigma": hier})
    table = result.table
    assert table.index[0] == "hier_sigma"
    gap, se = table.loc["multilevel", "elpd_diff"], table.loc["multilevel", "dse"]
    assert gap > 4 * se and gap > 10, table  # "clearly"
    assert table["draws"].str.contains("approximate").all()  # SVI draws, said so
    # PIT per row: ad sets with a large true spread get PITs near 0 and 1 under one shared sigma
    # (variance above 1/12), small ones bunch in the middle (below); hier_sigma is near 1/12.
    sigma = sim.adsets.set_index("adset")["adset_sigma"]
    names = multi.data.adsets["adset"].to_numpy()
    adset = np.asarray(multi.data.arrays.adset)
    wide = np.isin(adset, np.flatnonzero(sigma.loc[names].to_numpy() > np.quantile(sigma, 0.75)))
    narrow = np.isin(adset, np.flatnonzero(sigma.loc[names].to_numpy() < np.quantile(sigma, 0.25)))
    multi_pit, hier_pit = in_sample_pit(multi), in_sample_pit(hier)
    assert multi_pit[wide].var() > 1.25 / 12 and multi_pit[narrow].var() < 0.75 / 12
    assert abs(hier_pit[wide].var() - 1 / 12) < abs(multi_pit[wide].var() - 1 / 12)
    assert abs(hier_pit[narrow].var() - 1 / 12) < abs(multi_pit[narrow].var() - 1 / 12)


def test_pointwise_log_likelihood_equals_numpy(fits):
    """log N(log r_i; mu_i, sigma_i) with the Fenton-Wilkinson moments, by hand, per draw."""
    _, data, result = fits["hier_sigma"]
    ll = pointwise_log_likelihood(result)
    theta = result.draws["adset_mu"]  # (chain, draw, adset)
    sigma = result.draws["adset_sigma"]
    a = np.asarray(data.arrays.adset)
    n = np.asarray(data.arrays.conversions)
    y = np.asarray(data.arrays.log_revenue)
    s2 = np.log1p(np.expm1(sigma[..., a] ** 2) / n)
    mu = theta[..., a] + np.log(n) + 0.5 * (sigma[..., a] ** 2 - s2)
    expected = stats.norm.logpdf(y, mu, np.sqrt(s2))
    np.testing.assert_allclose(ll, expected, rtol=2e-4, atol=2e-4)


def test_heldout_calibration_is_near_nominal(fits):
    """Fit on the first 75% of the time, predict the last 25%: the 90% intervals of an hour's
    log revenue cover the held-out hours at about 90%."""
    _, data, _ = fits["multilevel"]
    cal = heldout_calibration(data, "multilevel", "svi", seed=2, **SVI)
    n = len(cal.rows)
    assert n > 150
    se = np.sqrt(0.9 * 0.1 / n)
    assert abs(cal.coverage - 0.9) < 4 * se + 0.02
    assert set(cal.adsets.columns) == {"adset", "n_heldout", "coverage"}
    assert 0.05 < cal.rows["pit"].mean() < 0.95  # PIT values, not coverage flags
    assert stats.kstest(cal.rows["pit"], "uniform").statistic < 0.12


def test_days_since_start():
    hours = pd.Series(["2026-01-01 00:00", "2026-01-01 12:00", "2026-01-03 06:00"])
    np.testing.assert_allclose(days_since_start(hours.to_numpy(), 3), [0.0, 0.5, 2.25])
    np.testing.assert_allclose(days_since_start(np.array([3, 5, 4]), 3), [0.0, 2.0, 1.0])
    np.testing.assert_allclose(days_since_start(None, 2), [0.0, 0.0])


def test_the_batch_job_fits_the_new_models(tmp_path):
    from jaxrev.batch import BatchOptions, fit_accounts

    frames = []
    for k in range(2):
        sim = simulate_account(
            40 + k, (2, 2), num_hours=12, conversions_per_hour=(1.5, 4.0), freq="6h", drift_sd=0.05
        )
        frames.append(sim.table.assign(account=f"acct-{k}"))
    table = pd.concat(frames, ignore_index=True)
    columns = Columns(account="account", time="hour")
    for model in ("local_level",):  # the model that uses the padded time field
        result = fit_accounts(
            table,
            columns=columns,
            model=model,
            options=BatchOptions(max_batch=2),
            out_dir=tmp_path / model,
        )
        assert sorted(result.status["account"]) == ["acct-0", "acct-1"]
        assert result.status["status"].isin(["converged", "max_steps"]).all(), result.status
        adsets = result.summary.query("level == 'adset'")
        assert len(adsets) == 8 and np.isfinite(adsets["mean"]).all()
        assert (adsets["mean"] > 0).all()


def test_compare_cli_prints_the_loo_table_and_writes_the_checks(fits, tmp_path, capsys):
    """On the fixture's multilevel data (its compiled programs are reused)."""
    from jaxrev.cli import main

    sim, _, _ = fits["multilevel"]
    path = tmp_path / "hourly.csv"
    sim.table.to_csv(path, index=False)
    out = tmp_path / "compare"
    code = main(
        [
            "compare",
            str(path),
            "--models",
            "multilevel",
            "--method",
            "svi",
            "--guide",
            "fullrank",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "PSIS-LOO" in printed and "approximate" in printed and "Calibration" in printed
    loo = pd.read_csv(out / "loo.csv", index_col="model")
    assert list(loo.index) == ["multilevel"] and (loo["elpd_loo"] < 0).all()
    calibration = pd.read_csv(out / "calibration.csv", index_col="model")
    assert calibration.loc["multilevel", "heldout_rows"] > 100
    assert 0.75 < calibration.loc["multilevel", "coverage"] < 0.98
    assert (out / "checks_multilevel.png").stat().st_size > 10_000
    assert set(pd.read_csv(out / "ranking.csv").columns) >= {"adset", "rank_multilevel"}
    assert main(["compare", str(path), "--models", "nope", "--out", str(out)]) == 2


def test_loo_on_nuts_and_on_svi_draws_of_the_same_model(nuts_fit, svi_fit):
    """The session's NUTS and SVI fits of one account: LOO labels the draws and the two elpd
    estimates of the same model agree within their paired noise."""
    result = compare({"nuts": nuts_fit, "svi": svi_fit})
    table = result.table
    assert table.loc["nuts", "draws"] == "NUTS"
    assert "approximate" in table.loc["svi", "draws"]
    worse = table.index[1]
    assert table.loc[worse, "elpd_diff"] < 3 * table.loc[worse, "dse"] + 2.0
    assert table.loc["nuts", "k_over_0.7"] <= 2  # guide draws can be worse proposals
    pointwise = np.asarray(result.loo["nuts"].loo_i)
    assert pointwise.shape == (nuts_fit.data.num_observations,)
    np.testing.assert_allclose(pointwise.sum(), table.loc["nuts", "elpd_loo"], rtol=1e-9)
