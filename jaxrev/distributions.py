r"""Truncated priors the seed's Stan program implies through its parameter bounds.

Stan declares ``real<lower=0, upper=5> account_mu_sd`` with ``account_mu_sd ~ exponential(20)``:
the prior is the exponential density restricted to $(0, 5)$. NumPyro's ``TruncatedDistribution``
covers only location-scale families, so the two bounded priors of the seed live here:

* :class:`TruncatedExponential` — $\mathrm{Exponential}(\gamma)$ on $(0, h)$,
* :class:`TruncatedInverseGamma` — $\mathrm{InvGamma}(\alpha, \beta)$ on $(l, h)$.

Both are normalised (``log_prob`` subtracts $\log(F(h) - F(l))$), so their log densities are
proper and their samples (by inverse CDF) respect the bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaincc, gammaln
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes, validate_sample


class TruncatedExponential(Distribution):
    r"""$\mathrm{Exponential}(\gamma)$ truncated to $(0, h)$.

    ``rate`` is $\gamma$ (the mean before truncation is $1/\gamma$).

    $$p(x) = \frac{\gamma e^{-\gamma x}}{1 - e^{-\gamma h}}, \qquad 0 < x < h.$$
    """

    arg_constraints = {"rate": constraints.positive, "high": constraints.positive}
    reparametrized_params = ["rate", "high"]
    pytree_data_fields = ("rate", "high", "_support")

    def __init__(self, rate=1.0, high=1.0, *, validate_args=None):
        self.rate, self.high = promote_shapes(rate, high)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(rate), jnp.shape(high))
        self._support = constraints.interval(0.0, self.high)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return self._support

    def _log_mass(self):
        # log(1 - exp(-rate * high)), stable for small and large rate * high.
        return jnp.log(-jnp.expm1(-self.rate * self.high))

    @validate_sample
    def log_prob(self, value):
        return jnp.log(self.rate) - self.rate * value - self._log_mass()

    def cdf(self, value):
        return jnp.expm1(-self.rate * value) / jnp.expm1(-self.rate * self.high)

    def icdf(self, u):
        return -jnp.log1p(u * jnp.expm1(-self.rate * self.high)) / self.rate

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(float)).tiny)
        return jnp.clip(self.icdf(u), 0.0, self.high)


class TruncatedInverseGamma(Distribution):
    r"""$\mathrm{InvGamma}(\alpha, \beta)$ truncated to $(l, h)$.

    Stan's ``inv_gamma(alpha, beta)``: $\beta$ is a scale, as NumPyro's ``rate``.

    $$p(x) = \frac{\beta^\alpha x^{-\alpha-1} e^{-\beta/x} / \Gamma(\alpha)}{F(h) - F(l)},
      \qquad F(x) = Q(\alpha, \beta / x),$$

    with $Q$ the regularised upper incomplete gamma function. Sampling inverts $F$ by bisection
    (60 halvings of $(l, h)$: exact to float64 resolution, fine for priors and predictive checks).
    """

    arg_constraints = {
        "concentration": constraints.positive,
        "rate": constraints.positive,
        "low": constraints.positive,
        "high": constraints.positive,
    }
    reparametrized_params = ["concentration", "rate", "low", "high"]
    pytree_data_fields = ("concentration", "rate", "low", "high", "_support")

    def __init__(self, concentration, rate, low, high, *, validate_args=None):
        self.concentration, self.rate, self.low, self.high = promote_shapes(
            concentration, rate, low, high
        )
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(concentration), jnp.shape(rate), jnp.shape(low), jnp.shape(high)
        )
        self._support = constraints.interval(self.low, self.high)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return self._support

    def _untruncated_cdf(self, x):
        return gammaincc(self.concentration, self.rate / x)

    def _log_mass(self):
        return jnp.log(self._untruncated_cdf(self.high) - self._untruncated_cdf(self.low))

    @validate_sample
    def log_prob(self, value):
        a, b = self.concentration, self.rate
        log_pdf = a * jnp.log(b) - gammaln(a) - (a + 1.0) * jnp.log(value) - b / value
        return log_pdf - self._log_mass()

    def cdf(self, value):
        lo = self._untruncated_cdf(self.low)
        return (self._untruncated_cdf(value) - lo) / (self._untruncated_cdf(self.high) - lo)

    def icdf(self, u):
        shape = jnp.broadcast_shapes(jnp.shape(u), self.batch_shape)
        lo = jnp.broadcast_to(self.low, shape)
        hi = jnp.broadcast_to(self.high, shape)

        def halve(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < u
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 60, halve, (lo, hi))
        return 0.5 * (lo + hi)

    def sample(self, key, sample_shape=()):
        u = jax.random.uniform(key, sample_shape + self.batch_shape)
        return self.icdf(u)

    @property
    def mean(self):
        raise NotImplementedError("the truncated inverse-gamma mean has no closed form here")
