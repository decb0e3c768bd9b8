"""The model registry: one :class:`ModelSpec` per model, owning everything about it.

A model is registered once, in its own module, with :func:`register_model`; the fitting driver,
the result object, model comparison, the batch runner and the CLI read everything they need
from :data:`MODELS` (nothing else names a model). Registration checks the spec against its
program, traced abstractly on a tiny account (no compilation, no device): every site it names
must be a sample or deterministic site of the program, and the initial values must be latent
sample sites. A mistake fails loudly, at import, with the model's name in the message.

Example:
    >>> register_model(ModelSpec(name="toy", program=toy, default_priors=ToyPriors(),
    ...     initial_values=toy_start, adset_sites=("adset_mu", "adset_mean"),
    ...     campaign_sites=(), checked_sites=("adset_mean",), has_campaign_level=False))
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform

from jaxrev.data import RevenueArrays

InitialValues = Callable[[RevenueArrays, Any], dict[str, jax.Array]]

OBSERVED_SITE = "log_revenue"  # the likelihood every program must have
REPORTED_ADSET_SITE = "adset_mean"  # E[revenue per conversion] per ad set (summary rows)
REPORTED_CAMPAIGN_SITE = "campaign_mean"  # and per campaign, for models with that level


# The README's symbol of each site of the built-in models (the Stan programs' names are kept as
# site names so draws compare one to one with Stan's). ``ModelSpec.symbols`` defaults to this.
SYMBOLS: dict[str, str] = {
    "account_mu": "λ",
    "account_mu_sd": "φ",
    "campaign_mu_sd": "τ",
    "revenue_sigma": "σ",
    "campaign_mu_z": "z_c",
    "adset_mu_z": "z_a",
    "campaign_mu": "μ_c",
    "adset_mu": "θ_a",
    "campaign_mean": "exp(μ_c + σ²/2)",
    "adset_mean": "exp(θ_a + σ²/2)",
    "adset_sigma": "σ_a",
    "campaign_sigma": "σ_c",
    "campaign_sigma_sd": "τ^σ_c",
    "adset_sigma_sd": "τ^σ_a",
    "campaign_sigma_z": "z^σ_c",
    "adset_sigma_z": "z^σ_a",
    "df": "ν",
    "df_minus_one": "ν - 1",
    "drift_sd": "ω",
    "level_z": "z_ℓ",
    "level": "ℓ(knot)",
    "level_now": "ℓ(t_last)",
}


class ModelSpecError(ValueError):
    """A model spec that cannot be registered (a missing field, a site the program lacks)."""


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything about one revenue model.

    Attributes:
        name: the registry key (``fit(..., model=name)``, ``--model name``).
        program: the NumPyro program ``program(arrays: RevenueArrays, priors)``: it must observe
            ``log_revenue`` and report ``adset_mean`` (and ``campaign_mean`` with a campaign
            level) as sample or deterministic sites.
        default_priors: an instance of the model's priors class (hashable: a static argument of
            the compiled programs); ``fit`` accepts priors of exactly this type.
        initial_values: ``(arrays, priors) -> {latent site: value}`` on the constrained scale,
            from the data (works on traced arrays); SVI, NUTS and MAP start there.
        adset_sites, campaign_sites: sites indexed by ad set / by campaign (their
            ``InferenceData`` dims).
        checked_sites: sites whose R-hat and ESS decide whether a NUTS fit converged (the
            reported quantities and the hyper-parameters).
        has_campaign_level: whether the model reports ``campaign_mean``.
        needs_time: whether the data must have a time column (``Columns(time=...)``).
        other_dims: dims of other indexed sites, e.g. ``{"level": ("knot",)}``.
        pooling_sites: pooling scales whose collapse to ~0 at the MAP means full pooling.
        symbols: site name -> the README's symbol (default :data:`SYMBOLS`; ``symbol(site)``).
    """

    name: str
    program: Callable[..., None]
    default_priors: Any
    initial_values: InitialValues
    adset_sites: tuple[str, ...]
    campaign_sites: tuple[str, ...]
    checked_sites: tuple[str, ...]
    has_campaign_level: bool
    needs_time: bool = False
    other_dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pooling_sites: tuple[str, ...] = ()
    symbols: Mapping[str, str] = field(default_factory=lambda: dict(SYMBOLS))

    def symbol(self, site: str) -> str:
        """The README's symbol of ``site`` (the site name when it has none)."""
        return self.symbols.get(site, site)

    @property
    def priors_class(self) -> type:
        return type(self.default_priors)

    def dims(self) -> dict[str, list[str]]:
        """``InferenceData`` dims of the model's indexed sites."""
        out = {name: ["adset"] for name in self.adset_sites}
        out |= {name: ["campaign"] for name in self.campaign_sites}
        return out | {name: list(d) for name, d in self.other_dims.items()}


MODELS: dict[str, ModelSpec] = {}

_REQUIRED = tuple(
    f.name for f in fields(ModelSpec) if f.default is MISSING and f.default_factory is MISSING
)
_SITE_FIELDS = ("adset_sites", "campaign_sites", "checked_sites", "pooling_sites")


def _tiny_arrays() -> RevenueArrays:
    """Abstract inputs of a 3-observation, 2-ad-set, 2-campaign account (shapes only)."""
    f, i, b = jnp.float32, jnp.int32, jnp.bool_
    s = jax.ShapeDtypeStruct
    return RevenueArrays(
        log_revenue=s((3,), f),
        conversions=s((3,), f),
        adset=s((3,), i),
        adset_campaign=s((2,), i),
        obs_mask=s((3,), b),
        adset_mask=s((2,), b),
        campaign_mask=s((2,), b),
        time=s((3,), f),
    )


def program_sites(spec: ModelSpec) -> dict[str, set[str]]:
    """The program's sites with default priors, traced abstractly (``jax.eval_shape``: nothing
    runs): ``{"latent": ..., "deterministic": ..., "observed": ..., "initial": ...}``, the last
    being the keys of ``spec.initial_values``."""
    found: dict[str, set[str]] = {}

    def trace(key, arrays):
        # Values from the supports (as NumPyro's init does): improper priors cannot be sampled.
        seeded = handlers.seed(spec.program, jax.random.wrap_key_data(key))
        program = handlers.substitute(seeded, substitute_fn=init_to_uniform)
        tr = handlers.trace(program).get_trace(arrays, priors=spec.default_priors)
        found["latent"] = {
            k for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]
        }
        found["observed"] = {k for k, v in tr.items() if v["type"] == "sample" and v["is_observed"]}
        found["deterministic"] = {k for k, v in tr.items() if v["type"] == "deterministic"}
        found["initial"] = set(spec.initial_values(arrays, spec.default_priors))
        return jnp.zeros(())

    jax.eval_shape(trace, jax.ShapeDtypeStruct((2,), jnp.uint32), _tiny_arrays())
    return found


def validate_spec(spec: ModelSpec) -> None:
    """Raise :class:`ModelSpecError` unless ``spec`` is complete and agrees with its program."""
    if not isinstance(spec, ModelSpec):
        raise ModelSpecError(f"register_model takes a ModelSpec, got {type(spec).__name__}")
    name = spec.name if isinstance(spec.name, str) and spec.name else "<unnamed>"
    missing = [f for f in _REQUIRED if getattr(spec, f) is None]
    if missing or name == "<unnamed>":
        raise ModelSpecError(f"model {name!r}: missing required field(s) {missing or ['name']}")
    for f in ("program", "initial_values"):
        if not callable(getattr(spec, f)):
            raise ModelSpecError(f"model {name!r}: {f} must be callable")
    for f in _SITE_FIELDS:
        value = getattr(spec, f)
        if not isinstance(value, tuple) or not all(isinstance(s, str) for s in value):
            raise ModelSpecError(f"model {name!r}: {f} must be a tuple of site names")
    try:
        hash(spec.default_priors)
    except TypeError:
        raise ModelSpecError(f"model {name!r}: default_priors must be hashable") from None
    try:
        sites = program_sites(spec)
    except Exception as err:
        raise ModelSpecError(f"model {name!r}: tracing its program failed: {err}") from err
    known = sites["latent"] | sites["deterministic"]
    named = {s for f in _SITE_FIELDS for s in getattr(spec, f)} | set(spec.other_dims)
    required = {REPORTED_ADSET_SITE} | (
        {REPORTED_CAMPAIGN_SITE} if spec.has_campaign_level else set()
    )
    unknown = sorted((named | required) - known)
    if unknown:
        raise ModelSpecError(
            f"model {name!r}: {unknown} are not sample or deterministic sites of its program "
            f"(it has {sorted(known)})"
        )
    if OBSERVED_SITE not in sites["observed"]:
        raise ModelSpecError(f"model {name!r}: its program must observe {OBSERVED_SITE!r}")
    stray = sorted(sites["initial"] - sites["latent"])
    if stray:
        raise ModelSpecError(f"model {name!r}: initial_values gives non-latent sites {stray}")


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Check ``spec`` (see :func:`validate_spec`) and add it to :data:`MODELS`; returns it.

    Raises:
        ModelSpecError: a required field is missing, a site it names is not a site of its
            program, or ``spec.name`` is taken (unless ``replace``).
    """
    validate_spec(spec)
    if spec.name in MODELS and not replace:
        raise ModelSpecError(f"model {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look up a model by name (see :data:`MODELS`)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
