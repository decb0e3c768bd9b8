"""The funnel: conjugate stages against brute-force grids, empirical Bayes, pooling, discounting,
vectorisation, and reading daily tables (ours and the real Kaggle Facebook-ads table)."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats
from scipy.special import expit, gammaln

from jaxrev.errors import AdsetCampaignConflictError, MissingColumnError, NonNumericValueError
from jaxrev.roas.daily import FunnelOrderError, NegativeValueError, load_daily
from jaxrev.roas.funnel import (
    BetaParams,
    FunnelParams,
    GammaParams,
    HyperPrior,
    beta_binomial_log_marginal,
    discount_weights,
    fit_stage_prior,
    funnel_posterior,
    funnel_statistics,
    gamma_poisson_log_marginal,
    sample_funnel,
)
from jaxrev.roas.funnel_fit import fit_funnel

# Three days of one ad set (ages 2, 1, 0), with a zero-spend day that still shows impressions.
DAYS = pd.DataFrame(
    {
        "campaign": "c",
        "adset": "a",
        "day": [1, 2, 3, 3],
        "spend": [4.0, 2.5, 0.0, 3.0],
        "impressions": [420, 230, 50, 310],
        "clicks": [9, 4, 1, 8],
        "conversions": [2, 0, 1, 1],
    }
)
HALF_LIFE = 1.5
PRIOR = FunnelParams(
    impressions_per_spend=GammaParams(np.asarray(3.0), np.asarray(0.05)),
    ctr=BetaParams(np.asarray(2.0), np.asarray(60.0)),
    cvr=BetaParams(np.asarray(1.5), np.asarray(9.0)),
)


def _grid_moments(log_density, grid):
    """Mean, sd and the CDF of a density known up to a constant, on a fine grid."""
    logp = log_density(grid)
    p = np.exp(logp - logp.max())
    p /= integrate.trapezoid(p, grid)
    mean = integrate.trapezoid(grid * p, grid)
    sd = np.sqrt(integrate.trapezoid((grid - mean) ** 2 * p, grid))
    cdf = integrate.cumulative_trapezoid(p, grid, initial=0.0)
    return mean, sd, cdf


def test_discounted_conjugate_stages_equal_brute_force_grid_posteriors():
    daily = load_daily(DAYS)
    stats_ = daily.statistics(HALF_LIFE)
    post = funnel_posterior(stats_, PRIOR)
    rows = daily.rows  # per (ad set, day), latest first: day 3 sums spend 3.0, 360 impressions
    assert rows["age"].tolist() == [0.0, 1.0, 2.0]
    w = discount_weights(rows["age"].to_numpy(), HALF_LIFE)
    assert np.allclose(w, [1.0, 2 ** (-1 / 1.5), 2 ** (-2 / 1.5)])
    s = np.array([3.0, 2.5, 4.0])
    imp, clk, conv = np.array([360.0, 230, 420]), np.array([9.0, 4, 9]), np.array([2.0, 0, 2])
    # the zero-spend row's 50 impressions leave stage 1 but count for the click stage
    paid = np.array([310.0, 230.0, 420.0])

    def check(log_density, grid, dist):
        mean, sd, cdf = _grid_moments(log_density, grid)
        assert mean == pytest.approx(dist.mean(), rel=1e-6)
        assert sd == pytest.approx(dist.std(), rel=1e-5)
        for q in (0.05, 0.5, 0.95):
            x = dist.ppf(q)
            assert np.interp(x, grid, cdf) == pytest.approx(q, abs=1e-6)

    lam = np.linspace(1e-3, 400, 400_001)
    g = PRIOR.impressions_per_spend
    check(
        lambda x: (
            stats.gamma.logpdf(x, g.shape, scale=1 / g.rate)
            + sum(
                wi * stats.poisson.logpmf(k, x * si) for wi, k, si in zip(w, paid, s, strict=True)
            )
        ),
        lam,
        stats.gamma(post.impressions_per_spend.shape, scale=1 / post.impressions_per_spend.rate),
    )
    p = np.linspace(1e-7, 0.2, 400_001)
    check(
        lambda x: (
            stats.beta.logpdf(x, PRIOR.ctr.alpha, PRIOR.ctr.beta)
            + sum(wi * stats.binom.logpmf(k, n, x) for wi, k, n in zip(w, clk, imp, strict=True))
        ),
        p,
        stats.beta(post.ctr.alpha, post.ctr.beta),
    )
    q = np.linspace(1e-7, 1 - 1e-7, 400_001)
    check(
        lambda x: (
            stats.beta.logpdf(x, PRIOR.cvr.alpha, PRIOR.cvr.beta)
            + sum(wi * stats.binom.logpmf(k, n, x) for wi, k, n in zip(w, conv, clk, strict=True))
        ),
        q,
        stats.beta(post.cvr.alpha, post.cvr.beta),
    )


def test_conversions_per_spend_draws_have_the_moments_of_the_product(rng):
    post = funnel_posterior(load_daily(DAYS).statistics(None), PRIOR)
    draws = sample_funnel(rng, post, 200_000)
    g, c, v = post
    e1 = g.shape / g.rate * c.alpha / (c.alpha + c.beta) * v.alpha / (v.alpha + v.beta)

    def second(a, b):  # E[X^2] of a Beta
        return a * (a + 1) / ((a + b) * (a + b + 1))

    e2 = g.shape * (g.shape + 1) / g.rate**2 * second(c.alpha, c.beta) * second(v.alpha, v.beta)
    x = draws.conversions_per_spend[:, 0]
    se = np.sqrt((e2 - e1**2) / len(x))
    assert abs(x.mean() - e1) < 4 * se
    assert x.var() == pytest.approx(e2 - e1**2, rel=0.03)
    per_impression = sample_funnel(rng, post, 1000, "impression")
    assert np.allclose(
        per_impression.conversions_per_spend,
        per_impression.impressions_per_spend * per_impression.cvr,
    )


@pytest.mark.parametrize("y, x", [(0.0, 3.0), (7.0, 2.5), (13.4, 0.8)])
def test_negative_binomial_marginal_equals_the_integral(y, x):
    prior = GammaParams(2.5, 0.7)

    def integrand(lam):
        log = (
            stats.gamma.logpdf(lam, prior.shape, scale=1 / prior.rate)
            + y * np.log(lam * x)
            - lam * x
            - gammaln(y + 1)
        )
        return np.exp(log)

    value, _ = integrate.quad(integrand, 0, np.inf, limit=200)
    assert gamma_poisson_log_marginal(prior, x, y) == pytest.approx(np.log(value), abs=1e-8)


@pytest.mark.parametrize("y, n", [(0.0, 0.0), (3.0, 40.0), (2.5, 17.25)])
def test_beta_binomial_marginal_equals_the_integral(y, n):
    prior = BetaParams(1.7, 12.0)
    log_choose = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)

    def integrand(p):
        return np.exp(
            log_choose
            + stats.beta.logpdf(p, prior.alpha, prior.beta)
            + y * np.log(p)
            + (n - y) * np.log1p(-p)
        )

    value, _ = integrate.quad(integrand, 0, 1, limit=200, points=[y / max(n, 1)])
    assert beta_binomial_log_marginal(prior, n, y) == pytest.approx(np.log(value), abs=1e-8)


HYPER = HyperPrior()


def _penalised(kind, theta, x, y, centre, hyper=HYPER):
    """The EB objective written out independently: marginal likelihood + hyper-prior."""
    u, k = theta
    if kind == "gamma":
        prior = GammaParams(np.exp(k), np.exp(k - u))
        loglik = gamma_poisson_log_marginal(prior, x, y).sum()
        log_cv = -k / 2
    else:
        m = expit(u)
        prior = BetaParams(m * np.exp(k), (1 - m) * np.exp(k))
        loglik = beta_binomial_log_marginal(prior, x, y).sum()
        log_cv = 0.5 * np.log((1 - m) / (m * (np.exp(k) + 1)))
    z = (log_cv - np.log(hyper.cv_median)) / hyper.cv_log_sd
    return loglik - 0.5 * z**2 - 0.5 * ((u - centre) / hyper.mean_log_sd) ** 2


@pytest.mark.parametrize("kind", ["gamma", "beta"])
def test_empirical_bayes_is_the_mode_of_the_penalised_marginal_likelihood(kind, rng):
    n = 12
    if kind == "gamma":
        x = rng.uniform(5, 50, n)
        y = rng.poisson(rng.gamma(9.0, 80 / 9.0, n) * x).astype(float)
    else:
        x = rng.integers(50, 3000, n).astype(float)
        y = rng.binomial(x.astype(int), rng.beta(4.0, 150.0, n)).astype(float)
    group = np.zeros(n, int)
    prior, converged, _ = fit_stage_prior(kind, x, y, group, 1)
    assert converged.all()
    rate = (y.sum() + 0.5) / (x.sum() + 1)  # the documented centre: one pseudo-trial
    rate = (y.sum() + rate) / (x.sum() + 1)
    if kind == "gamma":
        ours = np.array([np.log(prior.shape / prior.rate), np.log(prior.shape)]).ravel()
        centre = np.log(rate)
    else:
        ours = np.array(
            [np.log(prior.alpha / prior.beta), np.log(prior.alpha + prior.beta)]
        ).ravel()
        centre = np.log(rate / (1 - rate))
    ref = optimize.minimize(
        lambda t: -_penalised(kind, t, x, y, centre), ours + 0.3, method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000},
    )  # fmt: skip
    assert np.allclose(ours, ref.x, atol=1e-4)
    assert _penalised(kind, ours, x, y, centre) >= -ref.fun - 1e-8


def test_empirical_bayes_recovers_each_campaigns_prior(rng):
    campaigns, per = 3, 200
    means, sizes = np.array([0.01, 0.03, 0.08]), np.array([400.0, 100.0, 40.0])
    group = np.repeat(np.arange(campaigns), per)
    p = rng.beta(means[group] * sizes[group], (1 - means[group]) * sizes[group])
    trials = rng.integers(500, 20_000, group.size).astype(float)
    clicks = rng.binomial(trials.astype(int), p).astype(float)
    prior, converged, _ = fit_stage_prior("beta", trials, clicks, group, campaigns)
    assert converged.all()
    fitted_mean = prior.alpha / (prior.alpha + prior.beta)
    np.testing.assert_allclose(fitted_mean, means, rtol=0.06)
    np.testing.assert_allclose(prior.alpha + prior.beta, sizes, rtol=0.3)


def _campaign_with_small_and_large_adsets(rng):
    """A campaign of 30 ad sets converting at ~3% of clicks, plus a small and a large ad set
    that both convert at 30% on their raw numbers."""
    cvr = rng.beta(30, 970, 30)
    clicks = rng.integers(500, 3000, 30)
    conv = rng.binomial(clicks, cvr)
    rows = pd.DataFrame(
        {
            "campaign": "c",
            "adset": [f"a{i:02d}" for i in range(30)] + ["small", "large"],
            "spend": 100.0,
            "impressions": 100_000,
            "clicks": np.r_[clicks, 10, 1000],
            "conversions": np.r_[conv, 3, 300],
        }
    )
    return rows


def test_pooling_shrinks_small_adsets_toward_their_campaign(rng):
    funnel = fit_funnel(_campaign_with_small_and_large_adsets(rng))
    table = funnel.summary().set_index("adset")
    campaign = funnel.prior.cvr.alpha / (funnel.prior.cvr.alpha + funnel.prior.cvr.beta)
    assert 0.025 < campaign[0] < 0.05  # the 30 typical ad sets, widened by the large outlier
    small, large = table.loc["small", "cvr_mean"], table.loc["large", "cvr_mean"]
    raw = 0.3
    assert campaign[0] < small < raw and campaign[0] < large < raw
    assert small - campaign[0] < 0.25 * (raw - campaign[0])  # shrunk most of the way
    assert raw - large < 0.1 * (raw - campaign[0])  # enough data to stand on its own
    alone = fit_funnel(funnel.data, pooling="none").summary().set_index("adset")
    assert alone.loc["small", "cvr_mean"] == pytest.approx((3 + 1) / (10 + 2))
    account = fit_funnel(funnel.data, pooling="account")
    assert account.prior.cvr.alpha.shape == (1,)


def test_discounting_follows_a_change_in_the_conversion_rate(rng):
    days = np.arange(30)
    cvr = np.where(days < 20, 0.02, 0.06)
    clicks = np.full(30, 400)
    table = pd.DataFrame(
        {
            "campaign": "c",
            "adset": "a",
            "day": days,
            "spend": 50.0,
            "impressions": 20_000,
            "clicks": clicks,
            "conversions": rng.binomial(clicks, cvr),
        }
    )
    table = pd.concat(
        [table, table.assign(adset="b", conversions=rng.binomial(clicks, 0.04))]
    )  # a second ad set, so the campaign prior is estimable
    data = load_daily(table)
    recent = fit_funnel(data, half_life=3).summary().set_index("adset")["cvr_mean"]
    everything = fit_funnel(data).summary().set_index("adset")["cvr_mean"]
    assert recent["a"] == pytest.approx(0.06, rel=0.15)
    assert everything["a"] == pytest.approx((20 * 0.02 + 10 * 0.06) / 30, rel=0.15)


def test_thousands_of_adsets_in_one_call_equal_one_campaign_at_a_time(rng):
    campaigns, per = 100, 50
    group = np.repeat(np.arange(campaigns), per)
    spend = rng.uniform(10, 500, group.size)
    imp = rng.poisson(rng.gamma(20, 5.0, group.size) * spend)
    clicks = rng.binomial(imp, rng.beta(10, 990, group.size))
    conv = rng.binomial(clicks, rng.beta(3, 97, group.size))
    stats_ = funnel_statistics(np.arange(group.size), group.size, spend, imp, clicks, conv)
    together, converged, _ = fit_stage_prior(
        "beta", stats_.clicks, stats_.conversions, group, campaigns
    )
    assert converged.all()
    for c in (0, 37, 99):
        m = group == c
        alone, _, _ = fit_stage_prior(
            "beta", stats_.clicks[m], stats_.conversions[m], np.zeros(m.sum(), int), 1
        )
        assert together.alpha[c] == pytest.approx(alone.alpha[0], rel=1e-5)
        assert together.beta[c] == pytest.approx(alone.beta[0], rel=1e-5)


# ---- reading daily tables ------------------------------------------------------------------


def test_days_as_dates_are_aged_from_the_latest_and_rows_of_a_day_are_summed():
    table = DAYS.assign(date=["2026-11-28", "2026-11-29", "2026-11-30", "2026-11-30"]).drop(
        columns="day"
    )
    data = load_daily(table)
    assert data.rows["age"].tolist() == [0.0, 1.0, 2.0]
    assert data.rows["spend"].tolist() == [3.0, 2.5, 4.0]
    assert data.rows["paid_impressions"].tolist() == [310.0, 230.0, 420.0]
    assert data.adsets.loc[0, "last_spend"] == 3.0
    assert data.report["zero_spend_rows_with_impressions"] == 1


def _write(tmp_path, table, name="daily.csv"):
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "change, error, row, column, words",
    [
        ({"spend": (1, -2.0)}, NegativeValueError, 2, "spend", "negative spend"),
        ({"clicks": (0, 500)}, FunnelOrderError, 1, "clicks", "more clicks than impressions"),
        (
            {"conversions": (3, 9)},
            FunnelOrderError,
            4,
            "conversions",
            "more conversions than clicks",
        ),
        ({"impressions": (2, "many")}, NonNumericValueError, 3, "impressions", "not a number"),
        ({"campaign": (3, "other")}, AdsetCampaignConflictError, 4, "campaign", "two campaigns"),
    ],
)
def test_bad_rows_are_named_by_file_row_and_column(tmp_path, change, error, row, column, words):
    table = DAYS.copy().astype({"impressions": object, "campaign": object})
    for col, (i, value) in change.items():
        table.loc[i, col] = value
    path = _write(tmp_path, table)
    with pytest.raises(error) as info:
        load_daily(path)
    message = str(info.value)
    assert f"{path}, row {row} (line {row + 1}), column {column!r}" in message
    if words != "two campaigns":
        assert words in message
    dropped = load_daily(path, on_invalid="drop")
    assert dropped.report["rows_invalid"] >= 1 and len(dropped.invalid)


def test_a_missing_column_is_named(tmp_path):
    path = _write(tmp_path, DAYS.drop(columns="clicks"))
    with pytest.raises(MissingColumnError, match="column 'clicks'"):
        load_daily(path)


def test_the_kaggle_table_reads_as_one_period_of_adsets(shared_data):
    path = shared_data / "kag_conversion_data_fb_ads.csv"
    raw = pd.read_csv(path)
    with pytest.raises(FunnelOrderError) as info:
        load_daily(path)  # Approved_Conversion, per click: some ads convert more than they click
    assert "column 'Approved_Conversion'" in str(info.value)
    assert "conversions_per='impression'" in str(info.value)
    data = load_daily(path, conversions_per="impression")
    assert data.num_adsets == raw["fb_campaign_id"].nunique() == 691
    assert data.num_campaigns == 3 and data.report["days"] == 1
    assert data.report["ads_summed"] == len(raw) - 691
    for ours, theirs in [
        ("spend", "Spent"),
        ("impressions", "Impressions"),
        ("conversions", "Approved_Conversion"),
    ]:
        assert data.adsets[ours].sum() == pytest.approx(raw[theirs].sum())
    total = load_daily(path, {"conversions": "Total_Conversion"}, conversions_per="impression")
    assert total.adsets["conversions"].sum() == raw["Total_Conversion"].sum()

    funnel = fit_funnel(data)
    assert funnel.status.all_converged
    table = funnel.summary()
    # pooling: ad sets with one conversion in a few thousand impressions are pulled toward their
    # campaign, never past it
    prior_cvr = funnel.prior.cvr.alpha / (funnel.prior.cvr.alpha + funnel.prior.cvr.beta)
    campaign_cvr = prior_cvr[data.adset_campaign]
    raw_cvr = table["raw_cvr"].to_numpy()
    post = table["cvr_mean"].to_numpy()
    lo, hi = np.minimum(raw_cvr, campaign_cvr), np.maximum(raw_cvr, campaign_cvr)
    assert np.all((post >= lo - 1e-12) & (post <= hi + 1e-12))
    small = (table["impressions"] < 5_000) & (table["conversions"] >= 1)
    assert small.sum() >= 3
    assert np.all(np.abs(post - campaign_cvr)[small] < 0.5 * np.abs(raw_cvr - campaign_cvr)[small])
