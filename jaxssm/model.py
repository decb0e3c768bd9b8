r"""The log joint density $\log p(X_{1:N}, f_{1:N} \mid \theta)$ and its local terms.

$$\log p(X, f) = \sum_{i=1}^N \ell_i(f_i) + \log N(f_1; a_1, P_1)
  + \sum_{i=2}^N \log N(f_i; \Phi f_{i-1}, Q),$$
$$\ell_i(f_i) = \sum_{\ell} M_{i\ell}\,\log p\big(X_i(\ell) \mid \eta_{i\ell}\big), \qquad
  \eta_i = o_i + \mu + \Lambda f_i,$$

with $M_{i\ell}$ the observed-cell mask: a missing cell (or window) contributes nothing, and
$\log p$ the Poisson or negative binomial log density of :mod:`jaxssm.emissions` (chosen by
``params.log_dispersion``). Newton's method sees only the kernel $g(\eta)$ of each cell
(:func:`emission_kernel`); the data's constant $\sum M c(x, \psi)$ is added once
(:func:`emission_constant`). An emission can also be a plug-in function
``emission(f_i, x_i, mask_i, offset_i, params)`` returning a window's full log density, so the
same Laplace machinery runs with a Gaussian emission (where it is exact, a test against the
Kalman smoother).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from jaxssm import emissions
from jaxssm.emissions import ETA_MAX
from jaxssm.params import Panel, Params

__all__ = ["ETA_MAX"]

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


def emission_kernel(f_i, x_i, mask_i, offset_i, params: Params) -> jax.Array:
    r"""The $\eta$-dependent part of window i's emission, $\sum_\ell M_{i\ell}\,
    g(\eta_{i\ell})$, for the family of ``params`` (Poisson or negative binomial)."""
    eta = linear_predictor(params, f_i, offset_i)
    value = emissions.kernel(x_i, eta, params.log_dispersion)
    return jnp.sum(jnp.where(mask_i, value, 0.0))


def emission_constant(panel: Panel, params: Params) -> jax.Array:
    r"""$\sum_{i\ell} M_{i\ell}\, c(X_i(\ell), \psi_\ell)$: the part of the log likelihood that
    does not depend on $f$ (computed once per E-step, not in every Newton evaluation)."""
    value = emissions.log_normalizer(panel.counts, params.log_dispersion)
    return jnp.sum(jnp.where(panel.mask, value, 0.0))


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


def log_joint_kernel(
    f: jax.Array, panel: Panel, params: Params, emission: Emission | None = None
) -> jax.Array:
    r"""$\log p(X_{1:N}, f_{1:N} \mid \theta)$ up to the data constant
    (:func:`emission_constant`; none for a plug-in ``emission``): what Newton maximises."""
    emission = emission_kernel if emission is None else emission
    terms = jax.vmap(emission, in_axes=(0, 0, 0, 0, None))(
        f, panel.counts, panel.mask, panel.offset, params
    )
    transitions = jax.vmap(transition_log_density, in_axes=(0, 0, None))(f[:-1], f[1:], params)
    return jnp.sum(terms) + initial_log_density(f[0], params) + jnp.sum(transitions)


def log_joint(
    f: jax.Array, panel: Panel, params: Params, emission: Emission | None = None
) -> jax.Array:
    r"""$\log p(X_{1:N}, f_{1:N} \mid \theta)$ for a trajectory f of shape (N, q); ``emission``
    None is the family of ``params``, else a plug-in window log density."""
    value = log_joint_kernel(f, panel, params, emission)
    return value + (emission_constant(panel, params) if emission is None else 0.0)
