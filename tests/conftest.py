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

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
