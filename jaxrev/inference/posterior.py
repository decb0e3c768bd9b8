"""From latent draws to every site: deterministic sites and the posterior predictive (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from numpyro.infer import Predictive

from jaxrev.data import RevenueArrays
from jaxrev.models import get_model


def with_predictions(
    model: str,
    priors,
    key: jax.Array,
    latents: dict,
    arrays: RevenueArrays,
    sites: Sequence[str] | None = None,
) -> dict[str, jax.Array]:
    """Latent draws plus the deterministic sites and a replicated ``log_revenue`` (posterior
    predictive) per draw (pure). ``sites``: compute only these (default: every site)."""
    predictive = Predictive(
        get_model(model).program,
        posterior_samples=latents,
        return_sites=None if sites is None else list(sites),
    )
    return {**latents, **predictive(key, arrays._replace(log_revenue=None), priors=priors)}
