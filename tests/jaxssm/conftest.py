"""jaxssm tests run in float64 unless a module sets ``FLOAT32 = True`` (module-scoped, so the
compiled programs of a module are shared by its tests)."""

import jax
import numpy as np
import pytest


@pytest.fixture(scope="module", autouse=True)
def _module_precision(request):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", not getattr(request.module, "FLOAT32", False))
    yield
    jax.config.update("jax_enable_x64", previous)


def _dense_blocks(V: np.ndarray, N: int, q: int):
    W = np.asarray(V).reshape(N, q, N, q)
    diag = np.stack([W[i, :, i, :] for i in range(N)])
    sub = np.stack([np.zeros((q, q))] + [W[i, :, i - 1, :] for i in range(1, N)])
    return diag, sub


@pytest.fixture(scope="session")
def dense_blocks():
    """Diagonal and sub-diagonal blocks of a dense (Nq)x(Nq) matrix: ``f(V, N, q)``."""
    return _dense_blocks
