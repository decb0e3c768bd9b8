"""Fenton-Wilkinson: the log-normal it implies has the mean and variance of the real sum."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrev.models import fenton_wilkinson


@pytest.mark.parametrize("n", [1, 3, 12])
@pytest.mark.parametrize("sigma", [0.4, 1.0])
def test_moments_match_monte_carlo_sums(n, sigma, rng, x64):
    theta = 2.5
    draws = 400_000
    sums = rng.lognormal(theta, sigma, size=(draws, n)).sum(axis=1)
    mu_i, sigma_i = fenton_wilkinson(jnp.array(theta), sigma, jnp.array(float(n)))
    mu_i, sigma_i = float(mu_i), float(sigma_i)
    fw_mean = np.exp(mu_i + sigma_i**2 / 2)
    fw_var = np.expm1(sigma_i**2) * np.exp(2 * mu_i + sigma_i**2)
    # Standard errors of the Monte Carlo mean and variance (the latter from the 4th moment).
    se_mean = sums.std() / np.sqrt(draws)
    centred = sums - sums.mean()
    se_var = np.sqrt((np.mean(centred**4) - np.var(sums) ** 2) / draws)
    assert abs(fw_mean - sums.mean()) < 4 * se_mean
    assert abs(fw_var - sums.var()) < 4 * se_var
    # And exactly the closed forms:
    # E = n e^{theta + s^2/2}, Var = n (e^{s^2} - 1) e^{2 theta + s^2}.
    np.testing.assert_allclose(fw_mean, n * np.exp(theta + sigma**2 / 2), rtol=1e-12)
    np.testing.assert_allclose(
        fw_var, n * np.expm1(sigma**2) * np.exp(2 * theta + sigma**2), rtol=1e-10
    )


def test_single_conversion_is_the_purchase_distribution(x64):
    mu_i, sigma_i = fenton_wilkinson(jnp.array([1.7]), 0.9, jnp.array([1.0]))
    np.testing.assert_allclose([float(mu_i[0]), float(sigma_i[0])], [1.7, 0.9], rtol=1e-12)


def test_float32_small_sigma_is_accurate():
    # expm1/log1p keep sigma_i^2 = log(1 + (e^{s^2} - 1)/n) accurate where exp(s^2) - 1 is not.
    sigma, n = 0.001, 50.0
    _, sigma_i = fenton_wilkinson(jnp.array([0.0], jnp.float32), sigma, jnp.array([n], jnp.float32))
    np.testing.assert_allclose(float(sigma_i[0]), sigma / np.sqrt(n), rtol=1e-3)
