"""Full Bayes by NUTS started at a Laplace-EM fit: the log density against a plain NumPy loop,
the static model's posterior against 1-d quadrature, calibration of the log-rate intervals on
simulated data, and the held-out predictive against Monte Carlo by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from jaxssm import fit_laplace_em, random_params, simulate_panel
from jaxssm.full_bayes import (
    FullPosterior,
    Unconstrained,
    _start,
    log_density,
    sample_full_posterior,
    trajectory,
)


def numpy_log_density(theta, counts, mask, offset, prior, params, s_phi):
    """The module docstring's density with explicit loops."""
    mu, Lam, Phi, z = (np.asarray(a, float) for a in theta[:4])
    a1, P1, Q = (np.asarray(a, float) for a in (params.a1, params.P1, params.Q))
    N, q = z.shape
    f = np.zeros((N, q))
    f[0] = a1 + np.linalg.cholesky(P1) @ z[0]
    for i in range(1, N):
        f[i] = Phi @ f[i - 1] + np.linalg.cholesky(Q) @ z[i]
    total = 0.0
    for i in range(N):
        for ell in range(counts.shape[1]):
            if mask[i, ell]:
                eta = offset[i, ell] + mu[ell] + Lam[ell] @ f[i]
                total += counts[i, ell] * eta - np.exp(eta) - special.gammaln(counts[i, ell] + 1)
    m0, tm, tl = (np.asarray(a, float) for a in (prior.mu_mean, prior.mu_precision,
                                                   prior.loading_precision))  # fmt: skip
    total -= 0.5 * np.sum(tm * (mu - m0) ** 2) + 0.5 * np.sum(tl * Lam**2)
    total -= 0.5 * np.sum(Phi**2) / s_phi**2 + 0.5 * np.sum(z**2)
    return total


@pytest.fixture(scope="module")
def small():
    """N = 16 windows, m = 10 locations, q = 1, 25 % of the cells held out, a known offset."""
    truth = random_params(3, 10, 1, mean_count=4.0, loading_scale=0.6)
    N = 16
    offset = np.linspace(-0.3, 0.3, N)[:, None] * np.ones((1, 10))
    sim = simulate_panel(4, truth, N, offset=offset)
    heldout = np.random.default_rng(5).uniform(size=sim.counts.shape) < 0.25
    fit = fit_laplace_em(np.where(heldout, np.nan, sim.counts), 1, offset=offset)
    return sim, heldout, fit


@pytest.fixture(scope="module")
def full(small):
    _, _, fit = small
    return sample_full_posterior(jax.random.key(1), fit, num_warmup=200, num_samples=300,
                                 num_chains=2)  # fmt: skip


def test_log_density_matches_a_numpy_loop_and_ignores_masked_cells(small):
    sim, _, fit = small
    rng = np.random.default_rng(0)
    m, q = fit.params.Lambda.shape
    N = sim.counts.shape[0]
    z = Unconstrained(
        jnp.asarray(rng.normal(1, 0.5, m)),
        jnp.asarray(rng.normal(0, 0.5, (m, q))),
        jnp.asarray(rng.normal(0, 0.5, (q, q))),
        jnp.asarray(rng.normal(size=(N, q))),
    )
    params = fit.params._replace(P1=jnp.asarray([[2.0]]), a1=jnp.asarray([0.3]))
    ref = numpy_log_density(z, np.asarray(fit.panel.counts), np.asarray(fit.panel.mask),
                            np.asarray(fit.panel.offset), fit.prior, params, 0.7)  # fmt: skip
    got = float(log_density(z, fit.panel, fit.prior, params, 0.7, centered=False))
    assert got == pytest.approx(ref, rel=1e-12)
    # the centred coordinates (f itself) give the same density at the same point
    f = z._replace(latent=trajectory(z, params, centered=False))
    assert float(log_density(f, fit.panel, fit.prior, params, 0.7)) == pytest.approx(ref, rel=1e-12)
    # a count in a masked cell changes nothing
    moved = fit.panel._replace(counts=jnp.where(fit.panel.mask, fit.panel.counts, 999.0))
    assert float(log_density(f, moved, fit.prior, params, 0.7)) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("centered", [True, False])
def test_start_values_reproduce_the_laplace_em_mode(small, centered):
    _, _, fit = small
    f = trajectory(_start(fit, centered), fit.params, centered)
    np.testing.assert_allclose(f, fit.posterior.mean, atol=1e-10)


def test_static_posterior_matches_quadrature_per_location():
    """q = 0: p(mu_l | X) is one-dimensional, exp(S mu - n e^mu) N(mu; mu_bar, s^2), so its mean
    and sd follow from quadrature."""
    truth = random_params(11, 6, 0, mean_count=1.5)
    counts = simulate_panel(12, truth, 8).counts
    counts[:, 0] = 0.0  # an all-zero location: its posterior leans on the prior
    fit = fit_laplace_em(counts, 0)
    full = sample_full_posterior(jax.random.key(2), fit, num_warmup=200, num_samples=1000)
    mu_bar = float(fit.prior.mu_mean[0])
    s = 1.0 / np.sqrt(float(np.ravel(fit.prior.mu_precision)[0]))
    for ell in range(counts.shape[1]):
        S, n = counts[:, ell].sum(), counts.shape[0]

        def dens(u, k, S=S, n=n):
            return u**k * np.exp(S * u - n * np.exp(u) + stats.norm.logpdf(u, mu_bar, s) + 20)

        zz = [integrate.quad(dens, -15, 5, args=(k,), limit=200)[0] for k in (0, 1, 2)]
        mean = zz[1] / zz[0]
        sd = np.sqrt(zz[2] / zz[0] - mean**2)
        draws = full.mu[:, ell]
        assert abs(draws.mean() - mean) < 0.15 * sd, (ell, draws.mean(), mean, sd)
        assert 0.85 < draws.std() / sd < 1.15, (ell, draws.std(), sd)


def test_log_rate_intervals_cover_the_truth(small, full):
    sim, _, _ = small
    eta = full.log_rates()
    lo, hi = np.quantile(eta, [0.05, 0.95], axis=0)
    covered = (lo <= sim.log_rate) & (sim.log_rate <= hi)
    assert 0.8 <= covered.mean() <= 0.99, covered.mean()
    d = full.diagnostics()
    assert d["draws"] == 600 and d["chains"] == 2
    assert d["max_rhat_log_rate"] < 1.1, d
    assert d["divergences"] <= 5, d  # the centred default (non-centred: ~100 here)


def test_predictive_is_the_draws_average_and_agrees_with_laplace(small, full):
    from jaxssm import predictive_log_likelihood

    sim, heldout, fit = small
    got = full.predictive_log_likelihood(sim.counts, heldout)
    assert np.all(np.isnan(got[~heldout]))
    i, ell = np.argwhere(heldout)[0]
    eta = full.log_rates()[:, i, ell]
    by_hand = np.log(np.mean(stats.poisson.pmf(sim.counts[i, ell], np.exp(eta))))
    assert got[i, ell] == pytest.approx(by_hand, rel=1e-10)
    rates = full.expected_rates()
    np.testing.assert_allclose(rates[i, ell], np.exp(eta).mean(), rtol=1e-12)
    laplace = np.asarray(
        predictive_log_likelihood(fit.params, fit.posterior, sim.counts, heldout,
                                  offset=fit.panel, parameter_cov=fit.parameter_covariance())
    )  # fmt: skip
    # cell by cell the two posteriors predict alike here (an offset or mask slip would not)
    gap = np.abs(got - laplace)[heldout]
    assert np.median(gap) < 0.08 and gap.max() < 0.5, (np.median(gap), gap.max())


def test_rejects_a_batch_and_bad_settings(small):
    _, _, fit = small
    batch = fit._replace(params=jax.tree.map(lambda a: a[None], fit.params))  # a (1, ...) batch
    with pytest.raises(ValueError, match="single fit"):
        sample_full_posterior(jax.random.key(0), batch)
    with pytest.raises(ValueError, match="positive"):
        sample_full_posterior(jax.random.key(0), fit, num_samples=0)
    with pytest.raises(ValueError, match="transition_scale"):
        sample_full_posterior(jax.random.key(0), fit, transition_scale=0.0)
    with pytest.raises(ValueError, match="parametrization"):
        sample_full_posterior(jax.random.key(0), fit, parametrization="centred")


def test_diagnostics_cap_the_ess_of_antithetic_draws():
    """Alternating draws (lag-1 autocorrelation -1) make the autocorrelation ESS estimate
    degenerate; it is capped at S log10 S instead of coming out negative or infinite."""
    S, N, m = 200, 3, 2
    sign = np.where(np.arange(S) % 2 == 0, 1.0, -1.0)
    mu = sign[:, None] * np.ones((S, m)) + 1e-3 * np.random.default_rng(0).normal(size=(S, m))
    full = FullPosterior(mu=mu, Lambda=np.zeros((S, m, 1)), Phi=np.zeros((S, 1, 1)),
                         f=np.zeros((S, N, 1)), diverging=np.zeros(S, bool),
                         num_steps=np.full(S, 7), offset=np.zeros((N, m)), num_chains=1,
                         seconds=1.0)  # fmt: skip
    d = full.diagnostics()
    assert 0 < d["min_ess_log_rate"] <= S * np.log10(S)
    assert d["mean_leapfrog_steps"] == 7 and "max_rhat_log_rate" not in d
