"""Posterior summaries: mean, sd and quantiles of draws, and the tidy per-campaign / per-ad-set
table beside the raw data (used by :meth:`RevenueFit.summary` and by the batch runner, on the
host with NumPy or on the device with JAX)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxrev.data import RevenueData

PROBS = (0.025, 0.5, 0.975)


def describe_draws(draws, probs: tuple[float, ...] = PROBS):
    """(draw, item) -> (item, 2 + len(probs)): mean, sd (ddof 1) and quantiles.

    NumPy arrays give NumPy (NaN sd and quantiles from a single draw); JAX arrays (also traced,
    inside ``jit``/``vmap``) give JAX, computed where the draws live.
    """
    if isinstance(draws, jax.Array):
        stats = [draws.mean(0), draws.std(0, ddof=1)]
        stats += [jnp.quantile(draws, p, axis=0) for p in probs]
        return jnp.stack(stats, axis=-1)
    single = draws.shape[0] < 2
    stats = [draws.mean(axis=0)]
    stats.append(np.full(draws.shape[1], np.nan) if single else draws.std(axis=0, ddof=1))
    for p in probs:
        stats.append(np.full(draws.shape[1], np.nan) if single else np.quantile(draws, p, axis=0))
    return np.stack(stats, axis=-1)


def stat_names(probs: tuple[float, ...]) -> list[str]:
    """Column names of :func:`describe_draws`' statistics: ``mean``, ``sd``, ``q2.5``..."""
    return ["mean", "sd"] + [f"q{100 * p:g}" for p in probs]


def tidy_summary(
    data: RevenueData, adset: np.ndarray, campaign: np.ndarray | None, probs
) -> pd.DataFrame:
    """The summary table from per-item statistics (rows: mean, sd, quantiles for ``probs``):
    campaign rows first (if given), then ad-set rows, beside the raw data of each."""
    names = stat_names(probs)
    parts = []
    if campaign is not None:
        table = data.campaigns.drop(columns="n_adsets").assign(level="campaign", adset=pd.NA)
        parts.append(pd.concat([table, pd.DataFrame(campaign, columns=names)], axis=1))
    table = data.adsets.assign(level="adset")
    parts.append(pd.concat([table, pd.DataFrame(adset, columns=names)], axis=1))
    out = pd.concat(parts, ignore_index=True)
    first = ["level", "campaign", "adset", "n_obs", "conversions", "revenue", "raw_mean"]
    return out[first + names]
