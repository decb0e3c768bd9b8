"""The truncated priors: normalised densities, CDFs and samples inside the bounds."""

import jax
import numpy as np
from scipy import integrate, stats

from jaxrev.distributions import TruncatedExponential, TruncatedInverseGamma


def test_truncated_exponential_matches_scipy(key, x64):
    d = TruncatedExponential(20.0, 5.0)
    ref = stats.truncexpon(b=5.0 * 20.0, scale=1 / 20.0)
    x = np.array([1e-4, 0.01, 0.05, 0.3, 4.9])
    np.testing.assert_allclose(np.asarray(d.log_prob(x)), ref.logpdf(x), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(d.cdf(x)), ref.cdf(x), rtol=1e-10)
    s = np.asarray(d.sample(key, (20_000,)))
    assert s.min() > 0 and s.max() < 5
    assert stats.kstest(s, ref.cdf).pvalue > 1e-3


def test_truncated_inverse_gamma_is_normalised_and_samples(key, x64):
    low, high = 0.3, 1.2  # tight bounds, so that a missing normaliser would show
    d = TruncatedInverseGamma(6.0, 4.0, low, high)
    mass, _ = integrate.quad(lambda v: np.exp(float(d.log_prob(v))), low, high)
    np.testing.assert_allclose(mass, 1.0, rtol=1e-8)
    base = stats.invgamma(6.0, scale=4.0)
    x = np.array([0.35, 0.8, 1.1])
    z = base.cdf(high) - base.cdf(low)
    np.testing.assert_allclose(np.asarray(d.log_prob(x)), base.logpdf(x) - np.log(z), rtol=1e-10)
    s = np.asarray(d.sample(key, (20_000,)))
    assert s.min() >= low and s.max() <= high
    truncated_cdf = lambda v: (base.cdf(v) - base.cdf(low)) / z  # noqa: E731
    assert stats.kstest(s, truncated_cdf).pvalue > 1e-3


def test_inverse_cdf_sampling_is_the_same_under_jit(key, x64):
    d = TruncatedInverseGamma(6.0, 4.0, 0.001, 2.5)
    eager = np.asarray(d.sample(key, (5,)))
    jitted = np.asarray(jax.jit(lambda k: d.sample(k, (5,)))(key))
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    # and it inverts the CDF: F(F^{-1}(u)) = u
    u = np.array([0.01, 0.5, 0.99])
    np.testing.assert_allclose(np.asarray(d.cdf(d.icdf(u))), u, atol=1e-12)
