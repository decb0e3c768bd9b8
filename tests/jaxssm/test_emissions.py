"""The emission families cell by cell: the negative binomial's density against SciPy, its Poisson
limit, closed-form derivatives against autodiff, Gaussian expectations against quadrature and
Monte Carlo, the adaptive predictive against brute-force integration, draws against moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxssm import emissions

# counts from 0 to 10^6 and sizes r = 1/phi from 0.05 (very overdispersed) to 1e7 (Poisson-like),
# so both branches of the stable log-gamma ratio (r < 10 and r >= 10) are exercised
X = np.array([0, 1, 2, 5, 17, 140, 3_000, 1_000_000], float)
LOG_PHI = np.array([3.0, 0.5, -1.0, -2.0, -2.4, -5.0, -9.0, -16.0])
ETA = np.array([-3.0, 0.0, 1.5, 4.0])


def grid():
    x, psi, eta = np.meshgrid(X, LOG_PHI, ETA, indexing="ij")
    return x.ravel(), psi.ravel(), eta.ravel()


def test_negative_binomial_density_matches_scipy():
    x, psi, eta = grid()
    r = np.exp(-psi)
    lam = np.exp(eta)
    expected = stats.nbinom.logpmf(x, r, r / (r + lam))
    got = np.asarray(emissions.log_density(x, eta, psi))
    finite = np.isfinite(expected)
    assert finite.mean() > 0.9
    # SciPy itself loses digits for huge r; compare relative to the magnitude of the terms
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-8, atol=1e-6)
    # kernel + normaliser is the density, and the normaliser does not depend on eta
    k = emissions.kernel(x, eta, psi) + emissions.log_normalizer(x, psi)
    np.testing.assert_allclose(k, got, rtol=1e-12, atol=1e-9)
    # the kernel is near zero where the rate equals the count (float32-safe sums)
    at_count = np.asarray(emissions.kernel(X, np.log(np.maximum(X, 1e-300)), -3.0))
    np.testing.assert_allclose(at_count[X > 0], 0.0, atol=1e-9)


def test_poisson_is_the_limit_of_small_dispersion():
    x, _, eta = grid()
    lam = np.exp(eta)
    poisson = stats.poisson.logpmf(x, lam)
    for psi in (-10.0, -14.0, -20.0):
        got = np.asarray(emissions.log_density(x, eta, psi))
        # to first order in phi the gap is phi * ((x - lambda)^2 - x) / 2
        bound = np.exp(psi) * ((x - lam) ** 2 + x) + 1e-8
        assert np.all(np.abs(got - poisson) <= bound), np.max(np.abs(got - poisson) / bound)
    np.testing.assert_allclose(emissions.log_density(x, eta), poisson, rtol=1e-10, atol=1e-8)


def test_closed_form_derivatives_match_autodiff():
    x, psi, eta = grid()
    d1, w = emissions.kernel_derivatives(x, eta, psi)

    def kernel(e, xx, p):
        return emissions.kernel(xx, e, p)

    g = jax.jit(jax.vmap(jax.grad(kernel)))(eta, x, psi)
    h = jax.jit(jax.vmap(jax.hessian(kernel)))(eta, x, psi)
    np.testing.assert_allclose(d1, g, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(-np.asarray(w), h, rtol=1e-9, atol=1e-9)
    assert np.all(np.asarray(w) > 0)  # concave in eta for every count
    # the r-derivatives of the stable log-gamma ratio against the plain lgamma form (r small
    # enough for it to be accurate) and against finite differences of the stable form
    r = np.exp(-psi)
    d_r, d_rr = emissions.log_rising_ratio_derivatives(x, r)
    from scipy import special

    plain = special.digamma(x + r) - special.digamma(r) - x / r
    plain2 = special.polygamma(1, x + r) - special.polygamma(1, r) + x / r**2
    ok = r < 1e4
    np.testing.assert_allclose(np.asarray(d_r)[ok], plain[ok], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.asarray(d_rr)[ok], plain2[ok], rtol=1e-6, atol=1e-10)
    big = r >= 1e4
    step = 1e-3 * r[big]
    fd = (
        np.asarray(emissions.log_rising_ratio(x[big], r[big] + step))
        - np.asarray(emissions.log_rising_ratio(x[big], r[big] - step))
    ) / (2 * step)
    np.testing.assert_allclose(np.asarray(d_r)[big], fd, rtol=1e-4, atol=1e-12)


def _quad_expectation(fn, mean, var):
    z, w = np.polynomial.hermite.hermgauss(120)
    return np.sum(w / np.sqrt(np.pi) * fn(mean + np.sqrt(2 * var) * z))


@pytest.mark.parametrize("psi", [None, -1.0, 1.5])
def test_gaussian_expectations_and_stein(psi):
    x, mean, var = 7.0, 1.3, 0.4
    value = float(emissions.expected_kernel(x, mean, var, psi, num_nodes=40))

    def g(eta):
        return np.asarray(emissions.kernel(x, eta, psi))

    assert value == pytest.approx(_quad_expectation(g, mean, var), rel=1e-10)
    d, w = emissions.expected_kernel_derivatives(x, mean, var, psi, num_nodes=40)
    grad_mean, grad_var = jax.grad(
        lambda a, v: emissions.expected_kernel(x, a, v, psi, num_nodes=40), argnums=(0, 1)
    )(mean, var)
    assert float(d) == pytest.approx(float(grad_mean), rel=1e-9)  # E[g'] = d/da E[g]
    assert -0.5 * float(w) == pytest.approx(float(grad_var), rel=1e-7)  # d/dv E[g] = E[g'']/2


def test_dispersion_derivatives_match_autodiff():
    x = jnp.asarray([0.0, 3.0, 40.0, 900.0])
    a = jnp.asarray([0.2, 1.0, 3.5, 6.9])
    var = jnp.asarray([0.3, 0.1, 0.05, 0.01])

    def total(p):
        return jnp.sum(emissions.expected_kernel(x, a, var, p) + emissions.log_normalizer(x, p))

    @jax.jit
    def both(psi):
        closed = emissions.expected_dispersion_derivatives(x, a, var, psi)
        value = emissions.expected_kernel(x, a, var, psi) + emissions.log_normalizer(x, psi)
        g, h = jax.jvp(jax.grad(total), (psi,), (jnp.ones_like(psi),))
        return closed, (value, g, h)

    for psi0 in (-8.0, -2.3, 0.0, 2.0):  # both branches of the log-gamma ratio
        (value, first, second), (expected, g, h) = both(jnp.full(x.shape, psi0))
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(first, g, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(second, h, rtol=1e-5, atol=1e-7)


def _brute(x, a, s, psi):
    def log_pmf(e):  # SciPy's densities: an independent reference
        if psi is None:
            return stats.poisson.logpmf(x, np.exp(e))
        r = np.exp(-psi)
        return stats.nbinom.logpmf(x, r, r / (r + np.exp(e)))

    def density(e):
        return np.exp(log_pmf(e) + stats.norm.logpdf(e, a, s))

    points = [np.log(x + 0.5)] if a - 12 * s < np.log(x + 0.5) < a + 12 * s else None
    value, _ = integrate.quad(
        density, a - 12 * s, a + 12 * s, points=points, limit=400, epsabs=0, epsrel=1e-11
    )
    return np.log(value)


def test_adaptive_predictive_matches_brute_force_where_plain_quadrature_fails():
    cases = [
        (5e4, np.log(5e4) - 0.22, 0.2, None),  # plain 32-node Gauss-Hermite: -80.4 (exact -10.7)
        (3.0, 0.5, 1.0, None),
        (0.0, -2.0, 0.5, None),
        (120.0, 4.0, 0.7, -1.0),
        (5e4, np.log(5e4) + 0.3, 0.5, -6.0),
        (7.0, 1.0, 2.0, 0.5),
    ]
    for x, a, s, psi in cases:
        got = float(emissions.predictive_log_pmf(x, a, s**2, psi))
        assert got == pytest.approx(_brute(x, a, s, psi), abs=1e-8), (x, a, s, psi)
    # no uncertainty: the emission's own density
    assert float(emissions.predictive_log_pmf(4.0, 1.2, 0.0)) == pytest.approx(
        stats.poisson.logpmf(4, np.exp(1.2)), rel=1e-12
    )


def test_negative_binomial_draws_have_its_mean_and_variance(key):
    eta = jnp.full((50_000,), np.log(6.0))
    draws = np.asarray(emissions.sample_counts(key, eta, jnp.asarray(np.log(0.5))))
    # mean 6, variance 6 + 0.5 * 36 = 24; Monte Carlo se of the mean 0.022, of the variance ~0.4
    assert draws.mean() == pytest.approx(6.0, abs=0.1)
    assert draws.var() == pytest.approx(24.0, abs=2.0)
    poisson = np.asarray(emissions.sample_counts(key, eta))
    assert poisson.var() == pytest.approx(6.0, abs=0.3)
