"""Compiled programs are released before a long run exhausts the process's memory maps."""

import sys

import jax
import jax.numpy as jnp
import pytest

from jaxrev.compile_cache import (
    CompileCounter,
    memory_map_usage,
    release_compiled_programs,
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_release_frees_the_memory_maps_of_compiled_programs():
    functions = [jax.jit(lambda x, k=k: jnp.sin(x) * k + jnp.cos(x) ** k) for k in range(40)]
    before = memory_map_usage()[0]
    for k, f in enumerate(functions):
        f(jnp.ones(k + 2)).block_until_ready()
    grown = memory_map_usage()[0]
    assert grown - before >= 40  # each executable maps memory
    assert not release_compiled_programs(fraction=1.0)  # far below the limit: nothing dropped
    assert release_compiled_programs(fraction=0.0)
    assert memory_map_usage()[0] < grown - 30
    x = jnp.ones(7)
    with CompileCounter() as counter:  # dropped programs compile again when used
        functions[5](x).block_until_ready()
    assert counter.counts["backend_compiles"] == 1
