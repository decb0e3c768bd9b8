"""The revenue models: one module per model, each registering a :class:`ModelSpec`.

:data:`MODELS` maps a name to its spec (program, priors, initial values, the sites it reports
and checks, what it needs from the data); :func:`register_model` adds one, checked against its
program. The equations of each model are in its module's docstring; the shared likelihood and
building blocks in :mod:`jaxrev.models.common`.
"""

# The import order is the registration order, which is the order of MODELS.
# isort: off
from jaxrev.models.common import MultilevelPriors, fenton_wilkinson
from jaxrev.models.multilevel import DEFAULT_MODEL, multilevel
from jaxrev.models.no_pooling import NoPoolingPriors, no_pooling
from jaxrev.models.hier_sigma import HierSigmaPriors, hier_sigma
from jaxrev.models.student_t import StudentTPriors, student_t
from jaxrev.models.local_level import LocalLevelPriors, level_at, local_level

# isort: on
from jaxrev.models.spec import (
    MODELS,
    SYMBOLS,
    ModelSpec,
    ModelSpecError,
    get_model,
    register_model,
    validate_spec,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "SYMBOLS",
    "HierSigmaPriors",
    "LocalLevelPriors",
    "ModelSpec",
    "ModelSpecError",
    "MultilevelPriors",
    "NoPoolingPriors",
    "StudentTPriors",
    "fenton_wilkinson",
    "get_model",
    "hier_sigma",
    "level_at",
    "local_level",
    "multilevel",
    "no_pooling",
    "register_model",
    "student_t",
    "validate_spec",
]
