"""The Laplace E-step: autodiff blocks against the dense Hessian and the analytic emission block,
the mode against a dense Newton reference, exactness against a Kalman/RTS smoother with a Gaussian
emission."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssm import block_tridiag as bt
from jaxssm import laplace_posterior, make_panel, random_params, simulate_panel
from jaxssm.laplace import (
    CONVERGED,
    dense_laplace_posterior,
    dense_precision,
    precision_blocks,
)
from jaxssm.model import gaussian_emission, log_joint

N, M, Q = 12, 9, 2


@pytest.fixture(scope="module")
def problem():
    true = random_params(3, M, Q, mean_count=4.0, loading_scale=0.5)
    sim = simulate_panel(4, true, N)
    rng = np.random.default_rng(5)
    counts = sim.counts.copy()
    counts[rng.uniform(size=counts.shape) < 0.2] = np.nan  # missing cells
    counts[5] = np.nan  # a missing window
    offset = rng.normal(0, 0.3, size=(N, M))
    panel = make_panel(counts, offset=offset)
    params = jax.tree.map(jnp.asarray, true)
    return panel, params, sim


def test_blocks_match_dense_hessian_and_analytic_emission(problem, rng):
    panel, params, _ = problem
    f = jnp.asarray(rng.normal(size=(N, Q)))
    A, C = jax.jit(precision_blocks)(f, panel, params)
    J = jax.jit(dense_precision)(f, panel, params)
    np.testing.assert_allclose(bt.to_dense(A, C), J, atol=1e-9)
    # emission part of A_i is Lambda^T diag(mask * lambda_i) Lambda: missing cells add nothing
    rate = np.exp(panel.offset + params.mu + f @ params.Lambda.T) * np.asarray(panel.mask)
    emission = np.einsum("lk,nl,lj->nkj", params.Lambda, rate, params.Lambda)
    Qi = np.linalg.inv(params.Q)
    P1i = np.linalg.inv(params.P1)
    Phi = np.asarray(params.Phi)
    transition = np.stack(
        [(P1i if i == 0 else Qi) + (Phi.T @ Qi @ Phi if i < N - 1 else 0) for i in range(N)]
    )
    np.testing.assert_allclose(A, emission + transition, atol=1e-9)
    np.testing.assert_allclose(A[5], transition[5], atol=1e-12)  # the missing window
    np.testing.assert_allclose(C[1:], np.broadcast_to(-Qi @ Phi, (N - 1, Q, Q)), atol=1e-12)


def test_mode_matches_dense_newton(problem, dense_blocks):
    panel, params, _ = problem
    f0 = jnp.zeros((N, Q))
    post = laplace_posterior(panel, params, f0, tol=1e-14)
    f_dense, V_dense, objective_dense = dense_laplace_posterior(panel, params, f0, tol=1e-14)
    assert int(post.status) == CONVERGED
    np.testing.assert_allclose(post.mean, f_dense, atol=1e-8)
    V_diag, V_sub = dense_blocks(V_dense, N, Q)
    np.testing.assert_allclose(post.V_diag, V_diag, atol=1e-9)
    np.testing.assert_allclose(post.V_sub, V_sub, atol=1e-9)
    np.testing.assert_allclose(post.objective, objective_dense, rtol=1e-10)
    grad = jax.grad(log_joint)(post.mean, panel, params)
    assert float(jnp.max(jnp.abs(grad))) < 1e-5  # vs O(10) entries of the gradient at f = 0


def test_newton_survives_a_bad_start_and_large_counts(problem):
    panel, params, _ = problem
    big = panel._replace(counts=panel.counts * 1000.0)
    params = params._replace(mu=params.mu + np.log(1000.0))
    post = laplace_posterior(big, params, jnp.full((N, Q), 8.0), max_steps=100)
    assert int(post.status) == CONVERGED
    assert np.isfinite(float(post.objective))


def kalman_rts(y, mask, params, r):
    """Plain NumPy Kalman filter + RTS smoother with missing cells dropped from each update;
    returns smoothed means, covariances, lag-one covariances Cov(f_i, f_{i-1}) and log p(y)."""
    mu, Lam, Phi, Qm, a1, P1 = (np.asarray(a) for a in params[:6])
    n, q = y.shape[0], Lam.shape[1]
    m_f, P_f, m_p, P_p = [], [], [], []
    loglik = 0.0
    m, P = a1, P1
    for i in range(n):
        if i:
            m, P = Phi @ m, Phi @ P @ Phi.T + Qm
        m_p.append(m)
        P_p.append(P)
        obs = mask[i]
        if obs.any():
            H = Lam[obs]
            S = H @ P @ H.T + np.diag(r[obs])
            resid = y[i, obs] - mu[obs] - H @ m
            K = P @ H.T @ np.linalg.inv(S)
            _, logdet = np.linalg.slogdet(S)
            loglik += -0.5 * (
                resid @ np.linalg.solve(S, resid) + logdet + obs.sum() * np.log(2 * np.pi)
            )
            m, P = m + K @ resid, P - K @ S @ K.T
        m_f.append(m)
        P_f.append(P)
    ms, Ps = [m_f[-1]], [P_f[-1]]
    lag = [None] * n
    for i in range(n - 2, -1, -1):
        G = P_f[i] @ Phi.T @ np.linalg.inv(P_p[i + 1])
        lag[i + 1] = Ps[0] @ G.T  # Cov(f_{i+1}, f_i)
        ms.insert(0, m_f[i] + G @ (ms[0] - m_p[i + 1]))
        Ps.insert(0, P_f[i] + G @ (Ps[0] - P_p[i + 1]) @ G.T)
    lag[0] = np.zeros((q, q))
    return np.array(ms), np.array(Ps), np.array(lag), loglik


def test_gaussian_emission_is_exact_and_matches_kalman_smoother(problem):
    panel, params, sim = problem
    r = np.linspace(0.2, 1.0, M)
    y = sim.log_rate + np.random.default_rng(0).normal(size=sim.log_rate.shape) * np.sqrt(r)
    mask = np.asarray(panel.mask)
    gpanel = panel._replace(counts=jnp.asarray(np.where(mask, y, 0.0)), offset=panel.offset * 0)
    post = laplace_posterior(
        gpanel, params, jnp.zeros((N, Q)), emission=gaussian_emission(jnp.asarray(r))
    )
    means, covs, lag, loglik = kalman_rts(y, mask, params, r)
    assert int(post.num_steps) <= 2  # a quadratic log joint: one Newton step is exact
    np.testing.assert_allclose(post.mean, means, atol=1e-9)
    np.testing.assert_allclose(post.V_diag, covs, atol=1e-9)
    np.testing.assert_allclose(post.V_sub, lag, atol=1e-9)
    np.testing.assert_allclose(post.objective, loglik, rtol=1e-10)
