r"""The log joint density $\log p(X_{1:N}, f_{1:N} \mid \theta)$ and its local terms.

$$\log p(X, f) = \sum_{i=1}^N \ell_i(f_i) + \log N(f_1; a_1, P_1)
  + \sum_{i=2}^N \log N(f_i; \Phi f_{i-1}, Q),$$
$$\ell_i(f_i) = \sum_{\ell} M_{i\ell}\big[X_i(\ell)\,\eta_{i\ell} - e^{\eta_{i\ell}}
  - \log X_i(\ell)!\big], \qquad \eta_i = o_i + \mu + \Lambda f_i,$$

with $M_{i\ell}$ the observed-cell mask: a missing cell (or window) contributes nothing. The
emission is a plug-in function ``emission(f_i, x_i, mask_i, offset_i, params)`` so the same
Laplace machinery runs with a Gaussian emission (where it is exact, a test against the Kalman
smoother).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from jaxssm.params import Panel, Params

#: Upper clip of the linear predictor inside exp: far above any real log-rate (e^60 ~ 1e26),
#: it only keeps rejected Newton trial points finite in float32.
ETA_MAX = 60.0

Emission = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, Params], jax.Array]


def linear_predictor(params: Params, f: jax.Array, offset: jax.Array) -> jax.Array:
    r"""$\eta = o + \mu + \Lambda f$ for one window (f: (q,)) or a trajectory (f: (N, q))."""
    return offset + params.mu + f @ params.Lambda.T


def poisson_emission(f_i, x_i, mask_i, offset_i, params: Params) -> jax.Array:
    r"""The Poisson emission of window i,
    $\ell_i(f_i) = \sum_\ell M_{i\ell}[X_i(\ell)\eta_{i\ell} - e^{\eta_{i\ell}}
    - \log X_i(\ell)!]$."""
    eta = linear_predictor(params, f_i, offset_i)
    rate = jnp.exp(jnp.minimum(eta, ETA_MAX))
    return jnp.sum(jnp.where(mask_i, x_i * eta - rate - gammaln(x_i + 1.0), 0.0))


def gaussian_emission(noise_var: jax.Array) -> Emission:
    r"""$X_i(\ell) \sim N(\eta_{i\ell}, r_\ell)$: the linear-Gaussian model, for tests."""

    def emission(f_i, x_i, mask_i, offset_i, params: Params) -> jax.Array:
        eta = linear_predictor(params, f_i, offset_i)
        logp = -0.5 * ((x_i - eta) ** 2 / noise_var + jnp.log(2 * jnp.pi * noise_var))
        return jnp.sum(jnp.where(mask_i, logp, 0.0))

    return emission


def _mvn_logpdf_precision(x, mean, chol_cov):
    z = jax.scipy.linalg.solve_triangular(chol_cov, x - mean, lower=True)
    q = x.shape[-1]
    return -0.5 * (z @ z) - jnp.sum(jnp.log(jnp.diag(chol_cov))) - 0.5 * q * jnp.log(2 * jnp.pi)


def initial_log_density(f_1, params: Params) -> jax.Array:
    r"""$\log N(f_1; a_1, P_1)$."""
    return _mvn_logpdf_precision(f_1, params.a1, jnp.linalg.cholesky(params.P1))


def transition_log_density(f_prev, f_i, params: Params) -> jax.Array:
    r"""$\log N(f_i; \Phi f_{i-1}, Q)$."""
    return _mvn_logpdf_precision(f_i, params.Phi @ f_prev, jnp.linalg.cholesky(params.Q))


def log_joint(
    f: jax.Array, panel: Panel, params: Params, emission: Emission = poisson_emission
) -> jax.Array:
    r"""$\log p(X_{1:N}, f_{1:N} \mid \theta)$ for a trajectory f of shape (N, q)."""
    emissions = jax.vmap(emission, in_axes=(0, 0, 0, 0, None))(
        f, panel.counts, panel.mask, panel.offset, params
    )
    transitions = jax.vmap(transition_log_density, in_axes=(0, 0, None))(f[:-1], f[1:], params)
    return jnp.sum(emissions) + initial_log_density(f[0], params) + jnp.sum(transitions)
