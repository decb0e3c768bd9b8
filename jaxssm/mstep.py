r"""The M-step of Laplace-EM: emission parameters, dispersion, learned prior scales, transition,
and the normalisation that makes fits identifiable.

Under the Laplace posterior $f_{1:N} \sim N(\hat f, \hat V)$ the linear predictor of a cell is
Gaussian, $\eta_{i\ell} \sim N(a_{i\ell}, s^2_{i\ell})$ with
$a_{i\ell} = o_{i\ell} + \mu_\ell + \Lambda_\ell^\top \hat f_i$ and
$s^2_{i\ell} = \Lambda_\ell^\top \hat V_{ii} \Lambda_\ell$.

**Emission, per location** (all locations at once): damped Newton on the concave

$$\mathcal L_\ell(\mu_\ell, \Lambda_\ell) = \sum_i M_{i\ell}\, E\big[g(\eta_{i\ell})\big]
  - \tfrac{\tau_\mu}{2}(\mu_\ell - \bar\mu)^2 - \tfrac12 \sum_k P_{\ell k}\Lambda_{\ell k}^2,$$

with $g$ the emission kernel (:mod:`jaxssm.emissions`). It is concave because it is the
expectation over $f_i$ of a concave function of an affine map of $(\mu_\ell, \Lambda_\ell)$. With
$d_{i\ell} = E[g'(\eta)]$, $w_{i\ell} = -E[g''(\eta)] \ge 0$ (Stein's lemma: the derivative of
$E[g]$ in $s^2$ is $\tfrac12 E[g'']$) and $u_{i\ell} = \hat f_i + \hat V_{ii}\Lambda_\ell$, the
gradient is $\big(\sum_i M d - \tau_\mu(\mu_\ell - \bar\mu),\ \sum_i M(d\,\hat f_i -
w\,\hat V_{ii}\Lambda_\ell) - P_\ell \odot \Lambda_\ell\big)$ and the Newton matrix
$\sum_i M w \begin{pmatrix} 1 & u^\top \\ u & u u^\top + \hat V_{ii}\end{pmatrix}$ plus the prior
precisions. For the Poisson ($d = x - e^{a + s^2/2}$, $w = e^{a + s^2/2}$) this is the exact
negative Hessian (the seed's formulas, with $\mu$ kept in the first term and $\Lambda_\ell$ where
the seed writes $\Lambda$). For the negative binomial ($d, w$ by Gauss-Hermite quadrature) it
leaves out the third-derivative terms through $s^2$, a positive-definite approximation; a
location whose step does not increase $\mathcal L_\ell$ halves it, so each M-step is a
generalised one.

**Dispersion** (negative binomial): per location a safeguarded Newton step on
$\sum_i M[E g(\eta) + c(x, \psi_\ell)] - \tfrac{\tau_\psi}{2}(\psi_\ell - \bar\psi)^2$ in
$\psi_\ell = \log\phi_\ell$, then $\bar\psi$ = the mean of the $\psi_\ell$ (empirical Bayes).

**Learned loading scales** (:class:`~jaxssm.params.Priors` ``"ard"`` / ``"ard_local"``). The
loadings stay point estimates in the emission step, but the scales are set from their Laplace
posterior $N(\hat\Lambda_\ell, C_\ell)$, $C_\ell$ the inverse Newton matrix above — the
evidence approximation (MacKay; Bishop's Bayesian PCA): with $\gamma_k = \sum_\ell (1 - P_{\ell k}
C_{\ell,kk})$ the number of loadings the data determine,
$s_k^2 = (2b + \sum_\ell w_\ell \hat\Lambda_{\ell k}^2) / (\gamma_k + 2a + 2)$ under the
$\mathrm{InvGamma}(a, b)$ hyperprior, and for the local scales the EM weight of the
multivariate $t_\nu$,
$w_\ell = E[t_\ell^{-2}] = (\nu + q)/(\nu + \sum_k E[\Lambda_{\ell k}^2]/s_k^2)$
with $E[\Lambda_{\ell k}^2] = \hat\Lambda_{\ell k}^2 + C_{\ell,kk}$. A factor the data do not
support gets $\gamma_k \to 0$ and $s_k \to$ the hyperprior's floor.

**Transition**: closed form with $Q = I$ fixed (:func:`update_transition`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssm import emissions, small_linalg
from jaxssm.emissions import LOG_DISPERSION_MAX, LOG_DISPERSION_MIN
from jaxssm.laplace import LaplacePosterior
from jaxssm.params import MStepPrior, Panel, Params

# ---------------------------------------------------------------------------------------------
# Emission: (mu, Lambda)


def cell_moments(mu, Lambda, panel: Panel, mean, V_diag):
    r"""$a$ and $s^2$ of every cell's linear predictor, both (m, N), and
    $\hat V_{ii}\Lambda_\ell$ (m, N, q)."""
    VL = jnp.einsum("nkj,lj->lnk", V_diag, Lambda)
    a = panel.offset.T + mu[:, None] + Lambda @ mean.T
    var = jnp.einsum("lnk,lk->ln", VL, Lambda)
    return a, var, VL


def _dispersion_column(log_dispersion):
    return None if log_dispersion is None else log_dispersion[:, None]


def _emission_log_prior(mu, Lambda, prior: MStepPrior):
    return -0.5 * prior.mu_precision * (mu - prior.mu_mean) ** 2 - 0.5 * jnp.sum(
        prior.loading_precision * Lambda**2, axis=1
    )


def expected_emission_objective(
    mu: jax.Array,
    Lambda: jax.Array,
    panel: Panel,
    mean: jax.Array,
    V_diag: jax.Array,
    prior: MStepPrior,
    log_dispersion: jax.Array | None = None,
) -> jax.Array:
    r"""$\mathcal L_\ell(\mu_\ell, \Lambda_\ell)$ of every location at once, (m,) (the data
    constant left out)."""
    a, var, _ = cell_moments(mu, Lambda, panel, mean, V_diag)
    x = panel.counts.T
    value = emissions.expected_kernel(x, a, var, _dispersion_column(log_dispersion))
    loglik = jnp.sum(jnp.where(panel.mask.T, value, 0.0), axis=1)
    return loglik + _emission_log_prior(mu, Lambda, prior)


def emission_newton_terms(
    mu: jax.Array,
    Lambda: jax.Array,
    panel: Panel,
    posterior: LaplacePosterior,
    prior: MStepPrior,
    log_dispersion: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Gradient (m, q+1) and Newton matrix (m, q+1, q+1) of every location's
    $\mathcal L_\ell$ in $(\mu_\ell, \Lambda_\ell)$ (formulas in the module docstring)."""
    f, V = posterior.mean, posterior.V_diag
    q = Lambda.shape[-1]
    dtype = mu.dtype
    a, var, VL = cell_moments(mu, Lambda, panel, f, V)
    d, w = emissions.expected_kernel_derivatives(
        panel.counts.T, a, var, _dispersion_column(log_dispersion)
    )
    observed = panel.mask.T
    d = jnp.where(observed, d, 0.0)
    w = jnp.where(observed, w, 0.0)  # (m, N)
    u = f[None] + VL  # (m, N, q)
    grad_mu = d.sum(1) - prior.mu_precision * (mu - prior.mu_mean)
    grad_L = d @ f - jnp.einsum("ln,lnk->lk", w, VL) - prior.loading_precision * Lambda
    h_mm = w.sum(1)
    h_ml = jnp.einsum("ln,lnk->lk", w, u)
    h_ll = jnp.einsum("ln,lnk,lnj->lkj", w, u, u) + jnp.einsum("ln,nkj->lkj", w, V)
    top = jnp.concatenate([h_mm[:, None, None], h_ml[:, None, :]], axis=2)
    bottom = jnp.concatenate([h_ml[:, :, None], h_ll], axis=2)
    precision = jnp.concatenate(
        [jnp.broadcast_to(prior.mu_precision, mu.shape)[:, None], prior.loading_precision],
        axis=1,
    )  # (m, q+1)
    neg_hess = jnp.concatenate([top, bottom], axis=1) + precision[:, :, None] * jnp.eye(
        q + 1, dtype=dtype
    )
    eye = jnp.eye(q + 1, dtype=dtype)
    scale = jnp.max(jnp.abs(jnp.diagonal(neg_hess, axis1=1, axis2=2)), axis=1)
    neg_hess = neg_hess + 1e-10 * (1.0 + scale)[:, None, None] * eye
    grad = jnp.concatenate([grad_mu[:, None], grad_L], axis=1)
    return grad, neg_hess


def emission_parameter_covariance(
    params: Params, posterior: LaplacePosterior, panel: Panel, prior: MStepPrior
) -> jax.Array:
    r"""Approximate posterior covariance of each location's $(\mu_\ell, \Lambda_\ell)$, (m, q+1,
    q+1): the inverse Newton matrix of its M-step objective at the fit (a Laplace approximation
    over the emission parameters given the latent posterior). Adding it to the predictive
    variance of $\eta_{i\ell}$ accounts for how well each location's rate is known — little, for
    rare locations."""
    _, neg_hess = emission_newton_terms(
        params.mu, params.Lambda, panel, posterior, prior, params.log_dispersion
    )
    return spd_inverse(neg_hess)


def spd_inverse(A: jax.Array) -> jax.Array:
    """Inverses of symmetric positive-definite matrices (..., n, n)."""
    eye = jnp.broadcast_to(jnp.eye(A.shape[-1], dtype=A.dtype), A.shape)
    return small_linalg.spd_solve(A, eye)


def update_emission(
    panel: Panel,
    posterior: LaplacePosterior,
    params: Params,
    prior: MStepPrior,
    steps: int,
    start_terms: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""New $(\mu, \Lambda)$: ``steps`` damped Newton steps on each location's concave
    $\mathcal L_\ell$, all locations at once, warm-started at the current values. A location
    whose full step does not increase its objective halves it (up to 10 times, else keeps its
    values): the objective never decreases. ``start_terms``: the Newton terms at the current
    values, if already computed."""
    f, V = posterior.mean, posterior.V_diag
    psi = params.log_dispersion
    tiny = 1e-12 if params.mu.dtype == jnp.float64 else 1e-6

    def objective(mu, Lambda):
        return expected_emission_objective(mu, Lambda, panel, f, V, prior, psi)

    def newton(mu, Lambda, value, grad, neg_hess):
        step = small_linalg.spd_solve(neg_hess, grad)  # (m, q+1)

        def value_at(alpha):
            return objective(mu + alpha * step[:, 0], Lambda + alpha[:, None] * step[:, 1:])

        # at the optimum the gain of a step is below rounding: take it without the test
        negligible = jnp.sum(grad * step, axis=1) <= tiny * (1.0 + jnp.abs(value))

        def ok_at(args):
            _, trial, _ = args
            return jnp.isfinite(trial) & ((trial >= value) | negligible)

        def halve(args):  # only locations whose step did not increase their objective
            alpha, _, k = args
            alpha = jnp.where(ok_at(args), alpha, 0.5 * alpha)
            return alpha, value_at(alpha), k + 1

        alpha0 = jnp.ones_like(mu)
        alpha, trial, _ = jax.lax.while_loop(
            lambda args: ~jnp.all(ok_at(args)) & (args[2] < 10), halve,
            (alpha0, value_at(alpha0), 0),
        )  # fmt: skip
        alpha = jnp.where(ok_at((alpha, trial, 0)), alpha, 0.0)
        new_value = jnp.where(alpha > 0, trial, value)
        return mu + alpha * step[:, 0], Lambda + alpha[:, None] * step[:, 1:], new_value

    def body(_, carry):
        mu, Lambda, value = carry
        grad, neg_hess = emission_newton_terms(mu, Lambda, panel, posterior, prior, psi)
        return newton(mu, Lambda, value, grad, neg_hess)

    mu, Lambda = params.mu, params.Lambda
    value = objective(mu, Lambda)
    if steps == 0:
        return mu, Lambda
    grad, neg_hess = (
        start_terms
        if start_terms is not None
        else emission_newton_terms(mu, Lambda, panel, posterior, prior, psi)
    )
    carry = newton(mu, Lambda, value, grad, neg_hess)
    mu, Lambda, _ = jax.lax.fori_loop(1, steps, body, carry)
    return mu, Lambda


# ---------------------------------------------------------------------------------------------
# Dispersion (negative binomial)


def dispersion_terms(
    log_dispersion: jax.Array,
    mu: jax.Array,
    Lambda: jax.Array,
    panel: Panel,
    posterior: LaplacePosterior,
    prior: MStepPrior,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Per location (m,): the value, first and second derivative in $\psi_\ell$ of
    $\sum_i M[E g(\eta) + c(x, \psi_\ell)] - \tfrac{\tau_\psi}{2}(\psi_\ell - \bar\psi)^2$
    (closed form: :func:`jaxssm.emissions.expected_dispersion_derivatives`)."""
    a, var, _ = cell_moments(mu, Lambda, panel, posterior.mean, posterior.V_diag)
    x = panel.counts.T
    terms = emissions.expected_dispersion_derivatives(x, a, var, log_dispersion[:, None])
    observed = panel.mask.T
    value, first, second = (jnp.sum(jnp.where(observed, t, 0.0), axis=1) for t in terms)
    tau, centre = prior.dispersion_precision, prior.dispersion_mean
    return (
        value - 0.5 * tau * (log_dispersion - centre) ** 2,
        first - tau * (log_dispersion - centre),
        second - tau,
    )


def dispersion_value(log_dispersion, a, var, panel: Panel, prior: MStepPrior) -> jax.Array:
    """The per-location value of :func:`dispersion_terms` alone (m,), given the cell moments."""
    x = panel.counts.T
    value = emissions.expected_dispersion_value(x, a, var, log_dispersion[:, None])
    value = jnp.sum(jnp.where(panel.mask.T, value, 0.0), axis=1)
    tau, centre = prior.dispersion_precision, prior.dispersion_mean
    return value - 0.5 * tau * (log_dispersion - centre) ** 2


def update_dispersion(
    panel: Panel,
    posterior: LaplacePosterior,
    params: Params,
    prior: MStepPrior,
    steps: int = 2,
) -> tuple[jax.Array, jax.Array]:
    r"""New $(\psi, \bar\psi)$: ``steps`` safeguarded Newton steps per location in $\psi_\ell$
    (a gradient-sign step where the objective is not concave), each at most 2 in size and halved
    (up to 8 times, else not taken) until it does not decrease the location's objective; then
    the pooled $\bar\psi$."""
    mu, Lambda = params.mu, params.Lambda
    a, var, _ = cell_moments(mu, Lambda, panel, posterior.mean, posterior.V_diag)

    def terms(psi):
        return dispersion_terms(psi, mu, Lambda, panel, posterior, prior)

    def body(_, psi):
        value, grad, curvature = terms(psi)
        newton = -grad / jnp.minimum(curvature, -1e-8)
        step = jnp.clip(jnp.where(curvature < 0, newton, jnp.sign(grad)), -2.0, 2.0)

        def trial(alpha):
            return jnp.clip(psi + alpha * step, LOG_DISPERSION_MIN, LOG_DISPERSION_MAX)

        def ok(alpha):
            new = dispersion_value(trial(alpha), a, var, panel, prior)
            return jnp.isfinite(new) & (new >= value)

        def halve(args):
            alpha, k = args
            return jnp.where(ok(alpha), alpha, 0.5 * alpha), k + 1

        alpha, _ = jax.lax.while_loop(
            lambda args: ~jnp.all(ok(args[0])) & (args[1] < 8), halve, (jnp.ones_like(psi), 0)
        )
        return trial(jnp.where(ok(alpha), alpha, 0.0))

    psi = jax.lax.fori_loop(0, steps, body, params.log_dispersion)
    return psi, jnp.mean(psi)


# ---------------------------------------------------------------------------------------------
# Learned loading scales


def refresh_loading_precision(prior: MStepPrior, posterior: LaplacePosterior) -> MStepPrior:
    r"""For learned scales, $u_k = \frac1N\sum_i(\hat f_{ik}^2 + \hat V_{ii,kk})$ from the latest
    posterior and the precisions $P_{\ell k} = w_\ell u_k / s_k^2$ (a fixed prior is unchanged)."""
    if posterior.mean.shape[-1] == 0:
        return prior
    u = jnp.mean(posterior.mean**2 + jnp.diagonal(posterior.V_diag, axis1=1, axis2=2), axis=0)
    learn = prior.learn_scales
    precision = prior.location_weight[:, None] * u[None, :] / prior.loading_variance[None, :]
    return prior._replace(
        factor_scale=jnp.where(learn, u, prior.factor_scale),
        loading_precision=jnp.where(learn, precision, prior.loading_precision),
    )


def update_loading_prior(Lambda: jax.Array, covariance: jax.Array, prior: MStepPrior) -> MStepPrior:
    r"""The evidence update of the per-factor scales $s_k^2$ and the local weights $w_\ell$
    (module docstring, with the loadings in units of a typical factor move,
    $\Lambda_{\ell k}\sqrt{u_k}$) from the loadings and their Laplace covariance ``covariance``
    (m, q+1, q+1; the loadings' block is ``[:, 1:, 1:]``). A fixed prior is returned unchanged."""
    q = Lambda.shape[-1]
    if q == 0:
        return prior
    u = prior.factor_scale
    C = jnp.diagonal(covariance, axis1=1, axis2=2)[:, 1:]  # (m, q)
    s2 = prior.loading_variance
    nu = prior.local_df
    local = jnp.isfinite(nu)
    nu_ = jnp.where(local, nu, 1.0)
    delta = jnp.sum((Lambda**2 + C) * u / s2, axis=1)
    weight = jnp.where(local, (nu_ + q) / (nu_ + delta), 1.0)
    determined = jnp.clip(jnp.sum(1.0 - prior.loading_precision * C, axis=0), 0.0, None)  # (q,)
    a, b = prior.scale_shape, prior.scale_rate
    spread = jnp.sum(weight[:, None] * Lambda**2, axis=0) * u
    s2_new = (2.0 * b + spread) / (determined + 2.0 * a + 2.0)
    learn = prior.learn_scales
    s2 = jnp.where(learn, s2_new, s2)
    weight = jnp.where(learn, weight, prior.location_weight)
    precision = weight[:, None] * u[None, :] / s2[None, :]
    return prior._replace(
        loading_variance=s2,
        location_weight=weight,
        loading_precision=jnp.where(learn, precision, prior.loading_precision),
    )


def loading_log_prior(Lambda: jax.Array, prior: MStepPrior) -> jax.Array:
    r"""$\log p(\Lambda \mid s, \nu) + \log p(s)$ with normalising constants, for learned scales:
    independent $N(0, s_k^2/u_k)$ entries, or per location the multivariate $t_\nu$ with scales
    $s_k/\sqrt{u_k}$, plus the $\mathrm{InvGamma}(a, b)$ hyperprior of each $s_k^2$."""
    m, q = Lambda.shape
    if q == 0:
        return jnp.zeros((), Lambda.dtype)
    s2 = prior.loading_variance
    scale2 = s2 / prior.factor_scale
    quad = jnp.sum(Lambda**2 / scale2, axis=1)  # (m,)
    log_det = jnp.sum(jnp.log(scale2))
    gaussian = -0.5 * jnp.sum(quad) - 0.5 * m * (log_det + q * jnp.log(2 * jnp.pi))
    nu = jnp.where(jnp.isfinite(prior.local_df), prior.local_df, 1.0)
    lg = jax.scipy.special.gammaln
    student = jnp.sum(
        lg(0.5 * (nu + q)) - lg(0.5 * nu) - 0.5 * q * jnp.log(nu * jnp.pi) - 0.5 * log_det
        - 0.5 * (nu + q) * jnp.log1p(quad / nu)
    )  # fmt: skip
    value = jnp.where(jnp.isfinite(prior.local_df), student, gaussian)
    a, b = prior.scale_shape, prior.scale_rate
    hyper = jnp.sum(a * jnp.log(b) - lg(a) - (a + 1.0) * jnp.log(s2) - b / s2)
    return value + hyper


def log_prior(params: Params, prior: MStepPrior, neg_hess: jax.Array | None = None) -> jax.Array:
    r"""The prior part of the MAP-EM objective.

    Fixed loading scales: $\log p(\mu, \Lambda)$ up to a constant (the quadratic penalties).
    Learned scales: the Laplace evidence of each location's $(\mu_\ell, \Lambda_\ell)$ given the
    latent posterior, $\log p(\hat\mu_\ell) + \log p(\hat\Lambda_\ell \mid s, \nu)
    + \tfrac{q+1}2\log 2\pi - \tfrac12\log\det H_\ell$ (``neg_hess`` $= H$, (m, q+1, q+1)), plus
    the hyperprior: the quantity whose stationary points the scale updates seek. Negative
    binomial: plus $\log p(\psi \mid \bar\psi)$."""
    mu_part = -0.5 * prior.mu_precision * jnp.sum((params.mu - prior.mu_mean) ** 2)
    fixed = mu_part - 0.5 * jnp.sum(prior.loading_precision * params.Lambda**2)
    value = fixed
    if neg_hess is not None:
        m, q1 = neg_hess.shape[:2]
        chol = small_linalg.cholesky(neg_hess)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)))
        evidence = (
            mu_part
            + loading_log_prior(params.Lambda, prior)
            + 0.5 * m * q1 * jnp.log(2 * jnp.pi)
            - 0.5 * log_det
        )
        value = jnp.where(prior.learn_scales, evidence, fixed)
    if params.log_dispersion is not None:
        tau = prior.dispersion_precision
        value = value - 0.5 * tau * jnp.sum((params.log_dispersion - prior.dispersion_mean) ** 2)
    return value


# ---------------------------------------------------------------------------------------------
# Transition


def spectral_radius(A: jax.Array, squarings: int = 12) -> jax.Array:
    r"""$\rho(A) = \lim_k \lVert A^k\rVert^{1/k}$ by repeated squaring with rescaling
    ($k = 2^{12}$): no eigendecomposition, so it runs on every backend (``jnp.linalg.eig`` is
    CPU-only) and stays finite in float32."""
    tiny = jnp.finfo(A.dtype).tiny
    log_scale = jnp.zeros((), A.dtype)
    M = A
    for _ in range(squarings):
        norm = jnp.maximum(jnp.linalg.norm(M), tiny)
        M = M / norm
        log_scale = 2.0 * (log_scale + jnp.log(norm))
        M = M @ M
    log_norm = log_scale + jnp.log(jnp.maximum(jnp.linalg.norm(M), tiny))
    return jnp.exp(log_norm / 2.0**squarings)


def transition_size(Phi: jax.Array, bound: str) -> jax.Array:
    """The size of $\\Phi$ that ``max_norm`` bounds: its largest singular value (``bound="norm"``)
    or its spectral radius (``"radius"``)."""
    if bound == "norm":
        return jnp.linalg.norm(Phi, ord=2)  # largest singular value
    return spectral_radius(Phi)


def update_transition(
    posterior: LaplacePosterior, params: Params, max_norm: float = 1.0, bound: str = "norm"
) -> jax.Array:
    r"""$\Phi$ with $Q$ fixed: the regression of $f_i$ on $f_{i-1}$,
    $\Phi^* = S_{10} S_{00}^{-1}$ with
    $S_{10} = \sum_{i\ge2} \hat f_i \hat f_{i-1}^\top + \hat V_{i,i-1}$ and
    $S_{00} = \sum_{i\ge2} \hat f_{i-1}\hat f_{i-1}^\top + \hat V_{i-1,i-1}$, kept from letting
    the factors blow up.

    If $\lVert\Phi^*\rVert_2$ (``bound="norm"``, the default) or its spectral radius
    (``"radius"``) exceeds ``max_norm``, the step goes from the current $\Phi$ toward $\Phi^*$ only
    as far as the bound allows (bisection on the segment). The M-step objective is a concave
    quadratic in $\Phi$, so this still increases it (a generalised EM step). Without a bound,
    sparse panels find a degenerate optimum: a runaway factor with small loadings drives the
    log-rates of all-zero locations toward $-\infty$. The spectral radius is not enough: a
    non-normal $\Phi$ with radius 0.65 and entries of 13 was measured to amplify $f$ to 265 within a
    few windows (log-rates of -250 on a sparse panel); the norm bound keeps $\lVert f_i\rVert$ from
    growing faster than the innovations allow.
    """
    f, V, V_sub = posterior.mean, posterior.V_diag, posterior.V_sub
    S10 = jnp.einsum("ni,nj->ij", f[1:], f[:-1]) + jnp.sum(V_sub[1:], axis=0)
    S00 = jnp.einsum("ni,nj->ij", f[:-1], f[:-1]) + jnp.sum(V[:-1], axis=0)
    q = f.shape[-1]
    ridge = 1e-8 * (1.0 + jnp.trace(S00)) * jnp.eye(q, dtype=f.dtype)
    target = jnp.linalg.solve(S00 + ridge, S10.T).T
    current = params.Phi
    # start inside the bound (start values or a changed bound may lie outside it)
    current = current * jnp.minimum(1.0, max_norm / jnp.maximum(transition_size(current, bound),
                                                                 1e-30))  # fmt: skip

    def radius_at(t):
        return transition_size(current + t * (target - current), bound)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = radius_at(mid) <= max_norm
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    one = jnp.ones((), f.dtype)
    lo, _ = jax.lax.fori_loop(0, 40, bisect, (0.0 * one, one))
    t = jnp.where(radius_at(one) <= max_norm, one, lo)
    return current + t * (target - current)


# ---------------------------------------------------------------------------------------------
# Identifiability


def _transform(params: Params, f: jax.Array, R: jax.Array) -> tuple[Params, jax.Array]:
    new = params._replace(
        Lambda=params.Lambda @ R.T,
        Phi=R @ params.Phi @ R.T,
        Q=R @ params.Q @ R.T,
        a1=R @ params.a1,
        P1=R @ params.P1 @ R.T,
    )
    return new, f @ R.T


def _cube_signs(Lambda):
    return jnp.where(jnp.sum(Lambda**3, axis=0) < 0, -1.0, 1.0).astype(Lambda.dtype)


def normalize_rotation(params: Params, f: jax.Array) -> tuple[Params, jax.Array]:
    r"""Rotate to orthogonal loading columns of decreasing norm, signs fixed by the sum of cubes
    (for an isotropic loading prior, which the rotation leaves unchanged).

    $R = \mathrm{diag}(s) W^\top$ from $\Lambda = U S W^\top$: $\Lambda \to \Lambda R^\top$,
    $\Phi \to R \Phi R^\top$, $Q \to R Q R^\top$, $a_1 \to R a_1$, $P_1 \to R P_1 R^\top$,
    $f_i \to R f_i$.
    """
    _, _, Wt = jnp.linalg.svd(params.Lambda, full_matrices=False)
    R = _cube_signs(params.Lambda @ Wt.T)[:, None] * Wt
    return _transform(params, f, R)


def normalize(
    params: Params, f: jax.Array, prior: MStepPrior
) -> tuple[Params, jax.Array, MStepPrior]:
    r"""Remove the rotations the objective does not see.

    Fixed (isotropic) prior: :func:`normalize_rotation`. Learned per-factor scales break the
    rotation invariance (the prior picks a rotation), leaving only permutations and sign flips:
    order the factors by decreasing $s_k$, signs by the sum of cubes of each loading column, and
    permute the prior's scales with them.
    """
    q = params.num_factors
    if q == 0:
        return params, f, prior
    rotated, f_rotated = normalize_rotation(params, f)
    order = jnp.argsort(-prior.loading_variance)
    perm = jnp.eye(q, dtype=f.dtype)[order]
    signs = _cube_signs(params.Lambda @ perm.T)
    R = signs[:, None] * perm
    permuted, f_permuted = _transform(params, f, R)
    learn = prior.learn_scales
    pick = lambda a, b: jnp.where(learn, a, b)  # noqa: E731
    new = jax.tree.map(pick, permuted, rotated)
    prior = prior._replace(
        loading_precision=pick(prior.loading_precision[:, order], prior.loading_precision),
        loading_variance=pick(prior.loading_variance[order], prior.loading_variance),
        factor_scale=pick(prior.factor_scale[order], prior.factor_scale),
    )
    return new, pick(f_permuted, f_rotated), prior
