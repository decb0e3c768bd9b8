r"""Simulate panels from the Poisson dynamic factor model (tests, benchmarks, notebooks)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxssm.params import Params


class SimulatedPanel(NamedTuple):
    """``counts`` (N, m), true ``f`` (N, q), true ``log_rate`` (N, m) and ``params``."""

    counts: np.ndarray
    f: np.ndarray
    log_rate: np.ndarray
    params: Params


def random_params(
    seed: int,
    num_locations: int,
    num_factors: int,
    *,
    mean_count: float = 5.0,
    loading_scale: float = 0.3,
    persistence: float = 0.9,
) -> Params:
    """Parameters like the seed's setting: log base rates spread around ``log(mean_count)`` (sd 1),
    loadings N(0, loading_scale²), a stable rotation-damped $\\Phi$, $Q = I$, $a_1 = 0$, and $P_1$
    the stationary covariance."""
    rng = np.random.default_rng(seed)
    m, q = num_locations, num_factors
    mu = np.log(mean_count) + rng.normal(0, 1.0, m)
    Lambda = rng.normal(0, loading_scale, (m, q))
    A = rng.normal(size=(q, q))
    Qr, _ = np.linalg.qr(A)
    Phi = persistence * Qr @ np.diag(rng.uniform(0.7, 1.0, q)) @ Qr.T if q else np.zeros((0, 0))
    Q = np.eye(q)
    P1 = np.eye(q)
    for _ in range(500):  # stationary covariance: P = Phi P Phi^T + Q
        P1 = Phi @ P1 @ Phi.T + Q
    return Params(mu, Lambda, Phi, Q, np.zeros(q), P1)


def simulate_panel(seed: int, params: Params, num_windows: int, offset=None) -> SimulatedPanel:
    r"""Draw $f_{1:N}$ and counts from the model: Poisson, or negative binomial with mean
    $\lambda$ and variance $\lambda + \phi_\ell\lambda^2$ when ``params.log_dispersion`` is set
    (a gamma-Poisson mixture)."""
    rng = np.random.default_rng(seed)
    mu, Lambda, Phi, Q, a1, P1 = (np.asarray(a, np.float64) for a in params[:6])
    q = Lambda.shape[1]
    f = np.zeros((num_windows, q))
    if q:
        f[0] = rng.multivariate_normal(a1, P1)
        chol = np.linalg.cholesky(Q)
        for i in range(1, num_windows):
            f[i] = Phi @ f[i - 1] + chol @ rng.normal(size=q)
    log_rate = mu + f @ Lambda.T + (0.0 if offset is None else offset)
    rate = np.exp(log_rate)
    if params.log_dispersion is not None:
        phi = np.exp(np.asarray(params.log_dispersion, np.float64))
        rate = rate * rng.gamma(1.0 / phi, phi, size=rate.shape)
    counts = rng.poisson(rate).astype(float)
    return SimulatedPanel(counts, f, log_rate, params)
