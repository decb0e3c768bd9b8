"""ROAS draws and the Thompson-sampling allocation: shares are the probability of being best
(against an exact formula and a direct Monte Carlo count), floors and caps, expected revenue."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import betaln

from jaxrev.roas.allocation import (
    allocate,
    constrained_shares,
    greedy_shares,
    prob_best,
    proportional_shares,
    share_bounds,
    split_revenue,
    thompson_shares,
)
from jaxrev.roas.draws import (
    MissingAdsetsError,
    RevenueDraws,
    match_revenue,
    roas_draws,
    roas_summary,
)
from jaxrev.roas.funnel_fit import fit_funnel

DAILY = pd.DataFrame(
    {
        "campaign": ["c1", "c1", "c1", "c2", "c2"],
        "adset": ["a", "b", "c", "d", "e"],
        "spend": [100.0, 80.0, 120.0, 90.0, 60.0],
        "impressions": [10_000, 9_000, 11_000, 8_000, 7_000],
        "clicks": [120, 90, 100, 95, 70],
        "conversions": [6, 3, 4, 5, 2],
    }
)


def _revenue(rng, adsets=("a", "b", "c", "d", "e"), num_draws=4000):
    means = np.linspace(40.0, 60.0, len(adsets))
    draws = means * np.exp(0.1 * rng.standard_normal((num_draws, len(adsets))))
    campaign = np.array(["c1", "c1", "c1", "c2", "c2"][: len(adsets)])
    campaigns = np.unique(campaign)
    return RevenueDraws(
        adsets=np.array(adsets),
        adset_campaign=campaign,
        adset_mean=draws,
        campaigns=campaigns,
        campaign_mean=np.stack([draws[:, campaign == c].mean(1) for c in campaigns], 1),
        method="test",
    )


def test_prob_best_is_the_fraction_of_draws_won(rng):
    draws = rng.standard_normal((3, 500, 6)) + np.linspace(0, 1, 6)
    shares = prob_best(draws)
    for s in range(3):
        counts = np.zeros(6)
        for d in range(500):
            counts[np.argmax(draws[s, d])] += 1
        assert np.array_equal(shares[s], counts / 500)


def _p_b_beats_a(a_alpha, a_beta, b_alpha, b_beta):
    """P(p_B > p_A) for independent Beta posteriors, exact for integer b_alpha."""
    i = np.arange(int(b_alpha))
    terms = (
        betaln(a_alpha + i, a_beta + b_beta)
        - np.log(b_beta + i)
        - betaln(1 + i, b_beta)
        - betaln(a_alpha, a_beta)
    )
    return float(np.exp(terms).sum())


def test_two_arm_shares_equal_the_exact_probability_of_being_best(rng):
    (aa, ab), (ba, bb) = (13, 400), (17, 450)
    exact = _p_b_beats_a(aa, ab, ba, bb)
    draws = np.stack([rng.beta(aa, ab, 40_000), rng.beta(ba, bb, 40_000)], -1)
    shares = thompson_shares(draws)
    se = np.sqrt(exact * (1 - exact) / 40_000)
    assert shares[1] == pytest.approx(exact, abs=4 * se)
    assert shares.sum() == pytest.approx(1.0)


def test_roas_shares_equal_a_direct_monte_carlo_count_of_thompson_rounds(rng):
    funnel = fit_funnel(DAILY)
    revenue = _revenue(rng)
    roas = roas_draws(rng, funnel, revenue, num_draws=4000)
    result = allocate(roas, 1000.0)
    shares = result.table["share"].to_numpy()
    assert np.allclose(shares, result.table["prob_best"])  # no floors or caps: share = P(best)

    # Thompson sampling literally: each round draws every ad set's ROAS once from its posterior
    # (here with SciPy's samplers and another stream) and gives the round to the largest.
    other = np.random.default_rng(12345)
    rounds = 100_000
    g, c, v = funnel.posterior
    lam = stats.gamma.rvs(g.shape, scale=1 / g.rate, size=(rounds, 5), random_state=other)
    ctr = stats.beta.rvs(c.alpha, c.beta, size=(rounds, 5), random_state=other)
    cvr = stats.beta.rvs(v.alpha, v.beta, size=(rounds, 5), random_state=other)
    rev = revenue.adset_mean[other.integers(0, len(revenue.adset_mean), rounds)]
    winner = np.argmax(lam * ctr * cvr * rev, axis=1)
    counted = np.bincount(winner, minlength=5) / rounds
    se = np.sqrt(counted * (1 - counted) * (1 / 4000 + 1 / rounds)) + 1e-9
    assert np.all(np.abs(shares - counted) < 4 * se + 1e-3)
    assert counted.max() > 0.3 and (counted > 0.01).sum() >= 2  # a contest, not a foregone one


def test_floors_and_caps_hold_and_keep_the_ratios_of_the_rest(rng):
    for _ in range(200):
        num = int(rng.integers(2, 12))
        w = rng.dirichlet(np.full(num, 0.4))
        w[rng.random(num) < 0.2] = 0.0
        if w.sum() == 0:
            w[0] = 1.0
        floor = rng.uniform(0, 0.8 / num)
        cap = rng.uniform(max(1.0 / num, floor) + 1e-3, 1.0)
        lo, hi = share_bounds(num, 1.0, floor, cap)
        s = constrained_shares(w, lo, hi)
        assert s.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(s >= lo - 1e-12) and np.all(s <= hi + 1e-12)
        free = (s > lo + 1e-9) & (s < hi - 1e-9) & (w > 0)
        if free.sum() >= 2:
            ratio = s[free] / w[free]
            assert np.allclose(ratio, ratio[0], rtol=1e-8)
        # nobody inside its bounds gets less per unit of weight than a floored ad set with weight
        floored = (s <= lo + 1e-12) & (w > 0)
        if free.any() and floored.any():
            assert (s[floored] / w[floored]).max() >= (s[free] / w[free]).min() - 1e-9


def test_when_every_weighted_adset_is_capped_the_rest_is_split_evenly():
    lo, hi = share_bounds(4, 1000.0, 0.05, 0.4)
    s = constrained_shares(np.array([0.7, 0.3, 0.0, 0.0]), lo, hi)
    assert np.allclose(s, [0.4, 0.4, 0.1, 0.1])


@pytest.mark.parametrize(
    "floor, cap, budget, caps, words",
    [
        (0.3, 1.0, 100.0, None, "minimum shares sum to 1.2"),
        (0.0, 0.2, 100.0, None, "caps sum to 80"),
        (0.1, 1.0, 100.0, np.array([5.0, np.nan, np.nan, np.nan]), "above the cap"),
    ],
)
def test_infeasible_floors_and_caps_say_why(floor, cap, budget, caps, words):
    with pytest.raises(ValueError, match=words):
        share_bounds(4, budget, floor, cap, caps)


def test_proportional_rule_power_zero_is_even_and_one_is_prob_best(rng):
    draws = rng.standard_normal((2000, 5)) + np.array([0, 0.2, 0.4, 0.6, 0.8])
    assert np.allclose(proportional_shares(draws, power=0.0), 0.2)
    assert np.allclose(proportional_shares(draws, power=1.0), prob_best(draws))
    assert np.allclose(thompson_shares(draws), prob_best(draws))
    half = proportional_shares(draws, power=0.5)
    assert np.all(np.diff(half) >= 0) and half.max() < prob_best(draws).max()


def test_thompson_shares_with_floors_and_caps_are_thompson_rounds(rng):
    """Each round of constrained Thompson sampling takes one posterior draw and the split that
    is best if it were the truth; the shares are the average over rounds."""
    alpha, beta = np.array([30, 28, 25, 20, 12]), np.array([970, 972, 975, 980, 988])
    draws = rng.beta(alpha, beta, size=(20_000, 5))
    lo, hi = share_bounds(5, 1.0, 0.05, 0.4)
    shares = thompson_shares(draws, lo, hi)
    other = np.random.default_rng(99)
    rounds = stats.beta.rvs(alpha, beta, size=(20_000, 5), random_state=other)
    counted = np.zeros(5)
    for r in rounds:
        split = np.full(5, 0.05)
        left = 1 - split.sum()
        for a in np.argsort(-r):
            extra = min(0.4 - 0.05, left)
            split[a] += extra
            left -= extra
        counted += split / len(rounds)
    assert np.allclose(shares, counted, atol=0.01)
    assert shares.sum() == pytest.approx(1.0) and shares.max() <= 0.4 + 1e-12
    floor_only = thompson_shares(draws, 0.05, 1.0)
    assert np.allclose(floor_only, 0.05 + 0.75 * prob_best(draws))
    with pytest.raises(ValueError, match="power applies to rule='proportional'"):
        allocate(roas_draws(0, fit_funnel(DAILY), _revenue(rng)), 100.0, power=0.5)


def test_greedy_gives_the_best_their_caps_in_turn():
    s = greedy_shares(np.array([1.0, 5.0, 3.0, 4.0]), 0.1, 0.45)
    assert np.allclose(s, [0.1, 0.45, 0.1, 0.35])


def test_expected_revenue_of_the_recommended_and_current_splits(rng):
    funnel = fit_funnel(DAILY)
    roas = roas_draws(rng, funnel, _revenue(rng), num_draws=3000)
    current = np.array([100.0, 80.0, 120.0, 90.0, 60.0])
    result = allocate(roas, 5000.0, current, min_share=0.05, max_share=0.5, prob=0.8)
    t = result.table
    assert t["budget"].sum() == pytest.approx(5000.0)
    assert t["share"].min() >= 0.05 - 1e-12 and t["share"].max() <= 0.5 + 1e-12
    assert np.allclose(t["current_budget"], 5000.0 * current / current.sum())
    rec = split_revenue(roas.roas, t["budget"].to_numpy())
    assert result.totals["recommended"]["mean"] == pytest.approx(rec.mean())
    assert result.totals["recommended"]["mean"] == pytest.approx(t["expected_revenue"].sum())
    assert result.totals["recommended"]["low"] == pytest.approx(np.quantile(rec, 0.1))
    now = split_revenue(roas.roas, t["current_budget"].to_numpy())
    assert result.totals["current"]["high"] == pytest.approx(np.quantile(now, 0.9))
    gain = rec - now
    assert result.totals["gain"]["prob_positive"] == pytest.approx((gain > 0).mean())
    assert result.totals["gain"]["mean"] == pytest.approx(gain.mean())
    assert "P(gain > 0)" in result.summary_text()


# ---- ROAS draws and the join with the revenue fit ------------------------------------------


def test_roas_is_conversions_per_spend_times_aligned_revenue_draws(rng):
    funnel = fit_funnel(DAILY)
    revenue = _revenue(rng)
    roas = roas_draws(0, funnel, revenue, num_draws=1000)
    assert roas.roas.shape == (1000, 5)
    assert np.array_equal(roas.revenue_per_conversion, revenue.adset_mean[:1000])  # in order
    assert np.allclose(roas.roas, roas.conversions_per_spend * roas.revenue_per_conversion)
    summary = roas_summary(roas, prob=0.9)
    assert list(summary["adset"]) == ["a", "b", "c", "d", "e"]
    assert np.allclose(summary["roas_mean"], roas.roas.mean(0))
    assert np.allclose(summary["roas_q5"], np.quantile(roas.roas, 0.05, axis=0))
    more = roas_draws(0, funnel, revenue, num_draws=6000)  # resampled whole draws
    rows = {tuple(r) for r in revenue.adset_mean.round(10)}
    assert all(tuple(r) in rows for r in more.revenue_per_conversion[:50].round(10))


def test_missing_adsets_are_named_and_can_fall_back_to_their_campaign(rng):
    funnel = fit_funnel(DAILY)
    partial = _revenue(rng, adsets=("a", "b", "c"))
    with pytest.raises(MissingAdsetsError) as info:
        roas_draws(0, funnel, partial)
    assert "2 ad set(s)" in str(info.value) and "'d', 'e'" in str(info.value)
    assert "--revenue-fallback campaign" in str(info.value)
    assert list(partial.campaigns) == ["c1"]  # c2's ad sets d, e and c2 itself are missing
    with pytest.raises(MissingAdsetsError, match="campaigns are not in the revenue fit"):
        roas_draws(0, funnel, partial, fallback="campaign")
    full = _revenue(rng)._replace(adsets=np.array(["a", "b", "c", "x", "y"]))
    matched = match_revenue(["a", "d", "e"], ["c1", "c2", "c2"], full, fallback="campaign")
    assert list(matched.source) == ["adset", "campaign", "campaign"]
    assert np.array_equal(matched.draws[:, 1], full.campaign_mean[:, 1])
    mapped = match_revenue(["d"], ["c2"], full, mapping={"d": "y"})
    assert np.array_equal(mapped.draws[:, 0], full.adset_mean[:, 4])
    with pytest.raises(MissingAdsetsError, match="'zz'"):
        match_revenue(["d"], ["c2"], full, mapping={"d": "zz"})


def test_a_single_revenue_draw_is_broadcast_with_a_warning(rng):
    funnel = fit_funnel(DAILY)
    point = _revenue(rng, num_draws=1)._replace(method="map")
    with pytest.warns(RuntimeWarning, match="single draw"):
        roas = roas_draws(0, funnel, point)
    assert roas.roas.shape == (1000, 5)
    assert np.all(roas.revenue_per_conversion == point.adset_mean[0])
