"""Settings of the three methods: :class:`SVIOptions`, :class:`NUTSOptions`, :class:`MAPOptions`.

Hashable (frozen dataclasses): they are static arguments of the compiled programs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

GuideKind = Literal["meanfield", "fullrank", "lowrank"]


@dataclass(frozen=True)
class SVIOptions:
    """Settings of SVI. ``guide``: ``"meanfield"`` (Stan ADVI's meanfield), ``"fullrank"`` or
    ``"lowrank"`` (rank ``rank``, default $\\lceil\\sqrt{d}\\rceil$)."""

    guide: GuideKind = "meanfield"
    max_steps: int = 30_000
    learning_rate: float = 0.05
    final_learning_rate: float = 0.001
    decay_steps: int = 6_000
    window: int = 500
    rtol: float = 1e-4
    noise_z: float = 2.0
    average_steps: int = 2_000
    num_particles: int = 1
    init_scale: float = 0.05
    rank: int | None = None

    def __post_init__(self):
        if self.guide not in ("meanfield", "fullrank", "lowrank"):
            raise ValueError(f"guide must be meanfield, fullrank or lowrank, got {self.guide!r}")
        if self.window < 10 or self.max_steps < self.window:
            raise ValueError("need window >= 10 and max_steps >= window")


@dataclass(frozen=True)
class NUTSOptions:
    """Settings of NUTS. ``chain_method="auto"`` runs chains in parallel when there are enough
    devices and vectorised (in lockstep, one program) otherwise."""

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    chain_method: Literal["auto", "sequential", "parallel", "vectorized"] = "auto"


@dataclass(frozen=True)
class MAPOptions:
    """Settings of MAP (L-BFGS): stop when the gradient norm is below ``gtol`` or the objective
    changes by less than ``ftol`` (relative; at least a few float epsilons) in a step. The second
    rule matters: a multilevel model's mode is at zero pooling scale, which the unconstrained
    parameters only approach (their log goes to minus infinity) while the density levels off."""

    max_steps: int = 5_000
    gtol: float = 1e-5
    ftol: float = 1e-9


Options = SVIOptions | NUTSOptions | MAPOptions
OPTIONS: dict[str, type] = {"svi": SVIOptions, "nuts": NUTSOptions, "map": MAPOptions}


def resolve_options(
    method: str, options: Options | None, guide: GuideKind | None, overrides: dict[str, Any]
) -> Options:
    """The options of ``method``: ``options`` (default: the method's defaults) with ``guide``
    (SVI only) and the named fields in ``overrides`` replaced; a clear error for a wrong method,
    a wrong options class or an unknown field."""
    if method not in OPTIONS:
        raise ValueError(f"method must be one of {sorted(OPTIONS)}, got {method!r}")
    cls = OPTIONS[method]
    options = options if options is not None else cls()
    if not isinstance(options, cls):
        raise TypeError(f"method {method!r} takes {cls.__name__}, got {type(options).__name__}")
    if guide is not None:
        if method != "svi":
            raise ValueError("guide= applies to method='svi' only")
        overrides = {**overrides, "guide": guide}
    unknown = set(overrides) - set(cls.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown {method} option(s) {sorted(unknown)}; see {cls.__name__}")
    return replace(options, **overrides) if overrides else options
