"""Test setup: CPU only, headless plots, seeded randomness, float64 on request.

The environment variables must be set before anything imports jax or matplotlib.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from shared_data_location import SHARED_DATA_ENV, shared_data_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's name (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def key(request) -> jax.Array:
    """A JAX key seeded from the test's name."""
    return jax.random.key(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def x64():
    """Run the test in float64 (restored afterwards)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory) -> Path:
    """A persistent compilation cache for this session, shared with the subprocesses and Dask
    workers that tests start (through JAX's environment variables), so they load what this
    process compiled instead of compiling again. Cache keys of NumPyro programs only match
    across processes with a fixed PYTHONHASHSEED (`make test` sets it)."""
    from jaxrev.compile_cache import enable_compilation_cache

    path = tmp_path_factory.mktemp("xla-cache")
    enable_compilation_cache(path)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The tests-only data folder (``../shared/data``, not shipped); the test skips without it."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"needs the tests-only data at {path} (not shipped; see {SHARED_DATA_ENV})")
    return path
