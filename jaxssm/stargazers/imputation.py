r"""Locations for the stargazers who did not give one, and shares ahead of the data.

Missing at random within a window: a stargazer of window $i$ without a usable location is
located like the located stargazers of the same window, with proportions
$p_i = \mathrm{softmax}(\mu + \Lambda f_i)$ over the $m$ locations. With the negative binomial
emission a cell's realised intensity is $\lambda_{i\ell} G_{i\ell}$ with a gamma shock
$G \sim \mathrm{Gamma}(r_\ell, r_\ell)$ (mean 1, variance $\phi_\ell$), and the located count
of the cell tells about it: $G \mid X \sim \mathrm{Gamma}(r_\ell + X_{i\ell},\ r_\ell +
\lambda_{i\ell})$; the proportions are then $p_i \propto \lambda_i G_i$, drawn with $G$. Each
imputation draws
$f_{1:N}$ from the Laplace posterior (and, by default, $(\mu_\ell, \Lambda_\ell)$ from their
Laplace approximation), then the $U_i$ missing locations of every window from
$\mathrm{Multinomial}(U_i, p_i)$; the completed counts are $X_i + $ the draw. The seed's simple
baseline assumes one distribution for all windows: $p \sim \mathrm{Dirichlet}(\tfrac12 +
\sum_i X_i)$, then $\mathrm{Multinomial}(U_i, p)$.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxssm.forecast import _draw_parameters, forecast, parameter_shift, sample_posterior
from jaxssm.result import LaplaceEMResult


def membership(
    locations: Sequence[str], groups: Mapping[str, str | None]
) -> tuple[np.ndarray, list[str]]:
    """A (m, g) 0/1 matrix putting each location in its group (``"Other"`` when it has none)
    and the g group names, sorted with ``"Other"`` last."""
    names = [groups.get(loc) or "Other" for loc in locations]
    order = sorted(set(names), key=lambda g: (g == "Other", g))
    member = np.zeros((len(names), len(order)))
    member[np.arange(len(names)), [order.index(g) for g in names]] = 1.0
    return member, order


class LocationImputation(NamedTuple):
    """Multiple imputations of the missing locations.

    ``imputed`` (S, N, m): the missing stargazers placed per draw; ``observed`` (N, m): the
    located counts; ``proportions`` (N, m): $E[p_i]$ (the chance that a missing stargazer of
    window $i$ is at each location); ``locations``: the m column names; ``method`` in words.
    """

    imputed: np.ndarray
    observed: np.ndarray
    proportions: np.ndarray
    locations: list[str]
    method: str

    @property
    def completed(self) -> np.ndarray:
        """Observed plus imputed counts, (S, N, m)."""
        return self.observed[None] + self.imputed

    def totals(self, level: float = 0.9) -> pd.DataFrame:
        """Per location over all windows: observed, imputed (mean) and completed count with its
        mean, central ``level`` interval and share of the completed total; largest first."""
        completed = self.completed.sum(axis=1)  # (S, m)
        tail = (1 - level) / 2
        grand = completed.sum(axis=1, keepdims=True)
        frame = pd.DataFrame(
            {
                "observed": self.observed.sum(axis=0).astype(int),
                "imputed_mean": self.imputed.sum(axis=1).mean(axis=0),
                "completed_mean": completed.mean(axis=0),
                "completed_low": np.quantile(completed, tail, axis=0),
                "completed_high": np.quantile(completed, 1 - tail, axis=0),
                "share_mean": (completed / grand).mean(axis=0),
                "share_low": np.quantile(completed / grand, tail, axis=0),
                "share_high": np.quantile(completed / grand, 1 - tail, axis=0),
            },
            index=pd.Index(self.locations, name="location"),
        )
        return frame.sort_values("completed_mean", ascending=False, kind="stable")

    def per_window(self, level: float = 0.9, labels: Sequence[str] | None = None) -> pd.DataFrame:
        """Long table: window, location, observed, completed mean and interval."""
        tail = (1 - level) / 2
        completed = self.completed
        N, m = self.observed.shape
        labels = list(range(N)) if labels is None else list(labels)
        return pd.DataFrame(
            {
                "window": np.repeat(labels, m),
                "location": np.tile(self.locations, N),
                "observed": self.observed.reshape(-1).astype(int),
                "completed_mean": completed.mean(axis=0).reshape(-1),
                "completed_low": np.quantile(completed, tail, axis=0).reshape(-1),
                "completed_high": np.quantile(completed, 1 - tail, axis=0).reshape(-1),
            }
        )

    def aggregate(self, groups: Mapping[str, str | None]) -> LocationImputation:
        """The same draws summed into groups (e.g. countries into regions); a location without
        a group goes to ``"Other"``."""
        member, order = membership(self.locations, groups)
        return LocationImputation(
            self.imputed @ member,
            self.observed @ member,
            self.proportions @ member,
            order,
            self.method,
        )


def _multinomial_draws(rng: np.random.Generator, missing: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Multinomial(missing_i, p[s, i]) for every draw s and window i: (S, N, m)."""
    p = np.clip(np.asarray(p, np.float64), 0.0, None)
    p = p / p.sum(axis=-1, keepdims=True)
    n = np.broadcast_to(np.asarray(missing, np.int64), p.shape[:-1])
    return rng.multinomial(n, p).astype(np.int64)


def gamma_shocks(key: jax.Array, fit: LaplaceEMResult, log_rate, counts=None, mask=None):
    r"""$\log G$ for the negative binomial's cell shocks, shaped like ``log_rate`` (S, n, m):
    from $\mathrm{Gamma}(r + X, r + \lambda)$ where ``mask`` marks an observed count, else from the
    prior $\mathrm{Gamma}(r, r)$. Zero for the Poisson."""
    if fit.params.log_dispersion is None:
        return jnp.zeros_like(log_rate)
    r = jnp.exp(-fit.params.log_dispersion)
    x = jnp.zeros_like(log_rate) if counts is None else jnp.where(mask, counts, 0.0)
    rate = jnp.exp(jnp.minimum(log_rate, 60.0))
    rate = rate if mask is None else jnp.where(mask, rate, 0.0)
    shape = jnp.broadcast_to(r + x, log_rate.shape)
    g = jax.random.gamma(key, shape, dtype=log_rate.dtype)
    return jnp.log(jnp.maximum(g, jnp.finfo(log_rate.dtype).tiny)) - jnp.log(r + rate)


def proportion_draws(
    key: jax.Array, fit: LaplaceEMResult, num_draws: int, parameter_uncertainty: bool = True
) -> np.ndarray:
    r"""Draws of $p_i = \mathrm{softmax}(\mu + \Lambda f_i)$ (times the gamma shocks given the
    located counts, for the negative binomial), (S, N, m), from the Laplace posterior of a fit
    (the per-window log-offset cancels in the softmax)."""
    key, k_g = jax.random.split(key)
    k_f, k_theta = jax.random.split(key)
    cov = fit.parameter_covariance() if parameter_uncertainty else None
    mu, Lambda = _draw_parameters(k_theta, fit.params, cov, num_draws)
    N = fit.panel.counts.shape[0]
    if fit.num_factors > 0:
        f = sample_posterior(k_f, fit.posterior, num_draws)  # (S, N, q)
        Lambda = jnp.broadcast_to(Lambda, (num_draws, *fit.params.Lambda.shape))
        eta = mu[:, None, :] + jnp.einsum("snk,slk->snl", f, Lambda)
    else:
        f = jnp.zeros((num_draws, N, 0), fit.params.mu.dtype)
        eta = jnp.broadcast_to(mu[:, None, :], (num_draws, N, fit.params.mu.shape[-1]))
    if cov is not None:
        eta = eta - parameter_shift(cov, f)
    panel = fit.panel
    eta = eta + gamma_shocks(k_g, fit, panel.offset + eta, panel.counts, panel.mask)
    return np.asarray(jax.nn.softmax(eta, axis=-1), np.float64)


def impute_locations(
    key: jax.Array,
    fit: LaplaceEMResult,
    observed: np.ndarray,
    missing: np.ndarray,
    locations: Sequence[str],
    *,
    num_draws: int = 1000,
    parameter_uncertainty: bool = True,
) -> LocationImputation:
    """Impute the missing locations of every window from the fitted model (see the module
    docstring). ``observed`` (N, m) located counts, ``missing`` (N,) stargazers without one."""
    k_p, k_draw = jax.random.split(key)
    p = proportion_draws(k_p, fit, num_draws, parameter_uncertainty)
    seed = int(jax.random.randint(k_draw, (), 0, 2**31 - 1))
    imputed = _multinomial_draws(np.random.default_rng(seed), missing, p)
    q = fit.num_factors
    method = "static model (q = 0)" if q == 0 else f"dynamic factor model (q = {q})"
    return LocationImputation(
        imputed, np.asarray(observed), p.mean(axis=0), list(locations), method
    )


def baseline_imputation(
    seed: int,
    observed: np.ndarray,
    missing: np.ndarray,
    locations: Sequence[str],
    *,
    num_draws: int = 1000,
) -> LocationImputation:
    r"""The seed's simple baseline: one distribution for every window, estimated from all the
    located stargazers ($p \sim \mathrm{Dirichlet}(\tfrac12 + \sum_i X_i)$ per draw)."""
    rng = np.random.default_rng(seed)
    observed = np.asarray(observed)
    alpha = 0.5 + observed.sum(axis=0)
    p = rng.dirichlet(alpha, size=num_draws)  # (S, m)
    N = observed.shape[0]
    imputed = _multinomial_draws(rng, missing, np.repeat(p[:, None, :], N, axis=1))
    mean = np.broadcast_to(alpha / alpha.sum(), observed.shape).copy()
    return LocationImputation(
        imputed, observed, mean, list(locations), "baseline: one distribution for all windows"
    )


def most_likely_locations(
    imputation: LocationImputation, users: Sequence[str], windows: Sequence[int]
) -> pd.DataFrame:
    """Per stargazer without a location: the most likely location of its window under the
    model, with its probability and the runner-up."""
    windows = np.asarray(windows, int)
    p = imputation.proportions[windows]  # (U, m)
    order = np.argsort(-p, axis=1)
    names = np.asarray(imputation.locations, dtype=object)
    rows = np.arange(len(windows))
    return pd.DataFrame(
        {
            "user": list(users),
            "window": windows,
            "most_likely": names[order[:, 0]],
            "probability": p[rows, order[:, 0]],
            "runner_up": names[order[:, 1]] if p.shape[1] > 1 else None,
            "runner_up_probability": p[rows, order[:, 1]] if p.shape[1] > 1 else np.nan,
        }
    )


class ShareForecast(NamedTuple):
    """Shares of new stargazers by location ``horizon`` windows past the data: ``draws``
    (S, h, m) and the location names; :meth:`aggregate` sums locations into groups."""

    draws: np.ndarray
    locations: list[str]

    def aggregate(self, groups: Mapping[str, str | None]) -> ShareForecast:
        member, order = membership(self.locations, groups)
        return ShareForecast(self.draws @ member, order)

    def summary(self, level: float = 0.9, labels: Sequence[str] | None = None) -> pd.DataFrame:
        """Long table: step ahead (or the label given), location, mean share and interval."""
        tail = (1 - level) / 2
        _, h, m = self.draws.shape
        labels = list(range(1, h + 1)) if labels is None else list(labels)
        return pd.DataFrame(
            {
                "window": np.repeat(labels, m),
                "location": np.tile(self.locations, h),
                "share_mean": self.draws.mean(axis=0).reshape(-1),
                "share_low": np.quantile(self.draws, tail, axis=0).reshape(-1),
                "share_high": np.quantile(self.draws, 1 - tail, axis=0).reshape(-1),
            }
        )


def forecast_shares(
    key: jax.Array,
    fit: LaplaceEMResult,
    locations: Sequence[str],
    horizon: int,
    *,
    num_draws: int = 1000,
    parameter_uncertainty: bool = True,
) -> ShareForecast:
    r"""$p_{N+k} = \mathrm{softmax}(\mu + \Lambda f_{N+k})$, $k = 1..h$, with $f$ run forward
    from its Laplace posterior at $N$ through $f_{N+k} = \Phi f_{N+k-1} + \varepsilon$ (times
    prior gamma shocks for the negative binomial: the shares of the stargazers who will come)."""
    key, k_g = jax.random.split(key)
    cov = fit.parameter_covariance() if parameter_uncertainty else None
    fc = forecast(key, fit.params, fit.posterior, horizon, num_draws, parameter_cov=cov)
    log_rate = fc.log_rate + gamma_shocks(k_g, fit, fc.log_rate)
    return ShareForecast(np.asarray(jax.nn.softmax(log_rate, axis=-1), np.float64), list(locations))
