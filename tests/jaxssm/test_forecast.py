"""Uses of a fit: expected rates, posterior draws, forecasts, imputation and the held-out
predictive likelihood against Monte Carlo and closed forms; calibration of imputation and
forecast intervals on simulated data; the choice of q."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxssm import (
    expected_rates,
    fit_laplace_em,
    forecast,
    impute,
    log_rate_moments,
    posterior,
    predictive_log_likelihood,
    random_params,
    sample_posterior,
    select_num_factors,
    simulate_panel,
)

M, Q, N, H = 25, 2, 48, 6


@pytest.fixture(scope="module")
def truth():
    return random_params(7, M, Q, loading_scale=0.5)


@pytest.fixture(scope="module")
def heldout_fit(truth):
    """A fit on the first N windows of a longer simulated panel, 20% of cells held out."""
    sim = simulate_panel(8, truth, N + H)
    rng = np.random.default_rng(9)
    heldout = rng.uniform(size=(N, M)) < 0.2
    counts = np.where(heldout, np.nan, sim.counts[:N])
    return sim, heldout, fit_laplace_em(counts, Q)


def test_expected_rates_and_draws_match_monte_carlo(heldout_fit, key):
    _, _, fit = heldout_fit
    # the public posterior() recomputes the fit's posterior from parameters and counts
    again = posterior(fit.params, fit.panel)
    np.testing.assert_allclose(again.mean, fit.posterior.mean, atol=1e-5)  # Newton tolerance
    S = 20_000
    f = sample_posterior(key, fit.posterior, S)
    # draws have the posterior's blocks as covariance
    centred = np.asarray(f - fit.posterior.mean)
    cov = np.einsum("sni,snj->nij", centred, centred) / S
    V = np.asarray(fit.posterior.V_diag)
    se = np.sqrt((np.einsum("nii,njj->nij", V, V) + V**2) / S)
    assert np.all(np.abs(cov - V) < 5 * se)
    lag = np.einsum("sni,snj->nij", centred[:, 1:], centred[:, :-1]) / S
    np.testing.assert_allclose(lag, fit.posterior.V_sub[1:], atol=6 * np.sqrt(V.max() ** 2 / S))
    # E[lambda] in closed form against the mean of exp(log-rate) over draws
    rates_mc = np.exp(np.asarray(fit.params.mu + f @ fit.params.Lambda.T)).mean(0)
    np.testing.assert_allclose(expected_rates(fit.params, fit.posterior), rates_mc, rtol=0.02)


def test_predictive_likelihood_against_monte_carlo_and_exact_static(heldout_fit, key):
    sim, heldout, fit = heldout_fit
    x = sim.counts[:N]
    mean, var = (np.asarray(a) for a in log_rate_moments(fit.params, fit.posterior))
    cells = np.argwhere(heldout)[:20]
    got = np.asarray(predictive_log_likelihood(fit.params, fit.posterior, x, heldout))
    for i, ell in cells:
        z = np.asarray(jax.random.normal(jax.random.fold_in(key, i * M + ell), (200_000,)))
        draws = mean[i, ell] + np.sqrt(var[i, ell]) * z
        mc = np.log(np.mean(stats.poisson.pmf(x[i, ell], np.exp(draws))))
        assert abs(got[i, ell] - mc) < 0.01, (i, ell, got[i, ell], mc)
    assert np.all(np.isnan(got[~heldout]))
    static = fit_laplace_em(np.where(heldout, np.nan, x), 0)
    exact = stats.poisson.logpmf(x, np.exp(np.asarray(static.params.mu)))
    got0 = np.asarray(predictive_log_likelihood(static.params, static.posterior, x, heldout))
    np.testing.assert_allclose(got0[heldout], exact[heldout], rtol=1e-10)
    # the static model has no trajectory to draw; imputation draws Poisson(exp(mu)) counts
    assert sample_posterior(key, static.posterior, 3).shape == (3, N, 0)
    drawn = impute(key, static.params, static.posterior, static.panel, num_draws=4000)
    i, ell = np.argwhere(heldout)[0]
    rate = float(np.exp(static.params.mu[ell]))
    assert abs(float(drawn.counts[:, i, ell].mean()) - rate) < 5 * np.sqrt(rate / 4000)


def test_imputation_keeps_observed_cells_and_is_calibrated(heldout_fit, key):
    sim, heldout, fit = heldout_fit
    draws = impute(key, fit.params, fit.posterior, fit.panel, num_draws=2000)
    observed = ~heldout
    assert np.all(np.asarray(draws.counts)[:, observed] == sim.counts[:N][observed])
    np.testing.assert_allclose(np.asarray(draws.proportions).sum(-1), 1.0, rtol=1e-10)
    # 90% central intervals of the imputed counts cover the hidden true counts ~90% of the
    # time (discrete counts: inclusive intervals cover at least nominal; binomial sd ~ 1.2%
    # over ~240 cells, so [0.84, 0.99]).
    lo, hi = np.quantile(np.asarray(draws.counts), [0.05, 0.95], axis=0)
    truth_counts = sim.counts[:N]
    covered = (truth_counts >= lo) & (truth_counts <= hi)
    coverage = covered[heldout].mean()
    assert 0.84 <= coverage <= 0.99, coverage
    # mean of imputed counts ~ expected rates
    rates = np.asarray(expected_rates(fit.params, fit.posterior))
    np.testing.assert_allclose(
        np.asarray(draws.counts).mean(0)[heldout], rates[heldout], rtol=0.15, atol=0.3
    )


def test_forecast_moments_and_calibration(heldout_fit, key):
    sim, _, fit = heldout_fit
    S = 4000
    fc = forecast(key, fit.params, fit.posterior, H, num_draws=S)
    assert fc.counts.shape == (S, H, M)
    # closed form: E f_{N+k} = Phi^k f_N, Cov = Phi^k V_NN Phi^kT + sum_j Phi^j Q Phi^jT
    Phi = np.asarray(fit.params.Phi)
    mean = np.asarray(fit.posterior.mean[-1])
    cov = np.asarray(fit.posterior.V_diag[-1])
    for k in range(H):
        mean = Phi @ mean
        cov = Phi @ cov @ Phi.T + np.asarray(fit.params.Q)
        draws = np.asarray(fc.f[:, k])
        assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / S))
        se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / S)
        assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) < 5 * se)
    # the 90% interval of forecast counts covers the simulated future counts
    _, lo, hi = fc.interval(0.9)
    future = sim.counts[N:]
    coverage = ((future >= lo) & (future <= hi)).mean()
    assert 0.8 <= coverage <= 1.0, coverage


def test_select_num_factors_prefers_dynamics_when_present(truth, key):
    sim = simulate_panel(10, truth, N)
    choice = select_num_factors(
        key, sim.counts, candidates=(0, 1, 2), emissions=("poisson",), max_iterations=300
    )
    table = choice.table.set_index("num_factors")
    assert choice.best >= 1
    # the Laplace log-likelihood of the training cells rises from the static model to the true q
    assert table.loc[2, "train_laplace_loglik"] > table.loc[0, "train_laplace_loglik"] + 10
    gain = (
        table.loc[choice.best, "heldout_loglik_per_cell"] - table.loc[0, "heldout_loglik_per_cell"]
    )
    assert gain > 3 * table.loc[choice.best, "heldout_loglik_se"]
    assert choice.heldout.sum() > 0 and not np.any(choice.heldout & np.isnan(sim.counts))


def test_parameter_uncertainty_moments_match_joint_draws(heldout_fit, key):
    """Var(eta) with the emission parameters' covariance equals the variance of
    mu_s + Lambda_s f_s over joint draws of (mu, Lambda) and f (independent given the fit)."""
    from jaxssm.forecast import _draw_parameters

    _, _, fit = heldout_fit
    cov = fit.parameter_covariance()
    assert cov.shape == (M, Q + 1, Q + 1)
    assert np.all(np.linalg.eigvalsh(np.asarray(cov)) > 0)
    S = 20_000
    k_f, k_t = jax.random.split(key)
    f = sample_posterior(k_f, fit.posterior, S)
    mu, Lambda = _draw_parameters(k_t, fit.params, cov, S)
    from jaxssm.forecast import parameter_shift

    # the draws' log-rates subtract the mean-preserving shift, as impute and forecast do
    eta = np.asarray(
        mu[:, None, :] + jnp.einsum("snk,slk->snl", f, Lambda) - parameter_shift(cov, f)
    )
    mean, var = (np.asarray(a) for a in log_rate_moments(fit.params, fit.posterior, None, cov))
    _, plug_in = (np.asarray(a) for a in log_rate_moments(fit.params, fit.posterior))
    assert np.all(var >= plug_in)
    np.testing.assert_allclose(eta.mean(0), mean, atol=5 * np.sqrt(var.max() / S))
    np.testing.assert_allclose(eta.var(0), var, rtol=0.05)  # MC sd of a variance ~1%


def test_parameter_uncertainty_of_the_static_model_is_the_rate_uncertainty(heldout_fit):
    """q = 0: Var(log rate) = 1 / (sum of expected counts + prior precision), per location."""
    sim, heldout, _ = heldout_fit
    static = fit_laplace_em(np.where(heldout, np.nan, sim.counts[:N]), 0)
    cov = static.parameter_covariance()
    _, var = log_rate_moments(static.params, static.posterior, None, cov)
    rate = np.exp(np.asarray(static.params.mu))
    exposure = (~heldout).sum(0) * rate + float(static.prior.mu_precision)
    np.testing.assert_allclose(np.asarray(var)[0], 1.0 / exposure, rtol=1e-6)
