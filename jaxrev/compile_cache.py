"""JAX's persistent compilation cache, and counters that say whether it hits.

A nightly job should not recompile what yesterday's compiled. :func:`enable_compilation_cache`
points JAX at a cache directory (every compilation is stored, however fast). NumPyro programs only
hit the cache across processes when ``PYTHONHASHSEED`` is fixed (their traced programs otherwise
differ in the order of some operations); ``jaxrev batch`` re-executes itself with
``PYTHONHASHSEED=0`` for that reason, and :func:`hash_seed_is_fixed` lets a caller check.

:class:`CompileCounter` counts XLA compilations and persistent-cache hits and misses between two
points in a program, from JAX's monitoring events.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax
from jax import monitoring

_COUNTS = {"backend_compiles": 0, "cache_hits": 0, "cache_misses": 0}
_LOCK = threading.Lock()
_EVENTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def _on_event(event: str, **kwargs) -> None:
    name = _EVENTS.get(event)
    if name:
        with _LOCK:
            _COUNTS[name] += 1


def _on_duration(event: str, duration: float, **kwargs) -> None:
    if event == _BACKEND_COMPILE:
        with _LOCK:
            _COUNTS["backend_compiles"] += 1


monitoring.register_event_listener(_on_event)
monitoring.register_event_duration_secs_listener(_on_duration)


def compile_counts() -> dict[str, int]:
    """Process-wide totals since import: XLA compilations run (``backend_compiles``, which
    includes executables loaded from the persistent cache) and persistent-cache hits/misses."""
    with _LOCK:
        return dict(_COUNTS)


class CompileCounter:
    """Counts between ``__enter__`` and ``__exit__`` (or now, while open)::

    with CompileCounter() as counter:
        run()
    counter.counts["cache_hits"]
    """

    def __enter__(self) -> CompileCounter:
        self._start = compile_counts()
        self._end: dict[str, int] | None = None
        return self

    def __exit__(self, *exc) -> None:
        self._end = compile_counts()

    @property
    def counts(self) -> dict[str, int]:
        end = self._end or compile_counts()
        return {k: end[k] - self._start[k] for k in end}


def hash_seed_is_fixed() -> bool:
    """Whether this interpreter runs with a fixed ``PYTHONHASHSEED`` (needed for cache hits)."""
    value = os.environ.get("PYTHONHASHSEED")
    return value is not None and value != "random"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jaxrev" / "xla"


def enable_compilation_cache(cache_dir: str | Path | None = None) -> Path:
    """Store every compiled program in ``cache_dir`` (default ``~/.cache/jaxrev/xla``) and read
    it back in later processes. Share a cache only with trusted writers (JAX's advice)."""
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


# --------------------------------------------------------------------------------------------
# Memory maps of compiled programs
# --------------------------------------------------------------------------------------------
#
# Every program XLA compiles for the CPU is loaded with its own memory mappings (measured here:
# ~100 for a vectorised SVI chunk, ~1,800 for a NUTS sampler). Linux caps a process at
# vm.max_map_count mappings (65,530 by default); past it, LLVM fails with "Cannot allocate memory"
# and the process crashes. A long job that meets many shapes (a notebook fitting 60 accounts one
# by one, a nightly batch with hundreds of buckets) would hit it, so jaxrev drops JAX's compiled
# programs when a process has used half of its allowance. With the persistent compilation cache
# enabled, programs needed again are reloaded from disk.

_CLEARERS: list = []


def register_cache(clear) -> None:
    """Register a callable that drops a cache of compiled functions (e.g. an ``lru_cache``'s
    ``cache_clear``), called with JAX's own when compiled programs are released."""
    _CLEARERS.append(clear)


def memory_map_usage() -> tuple[int, int] | None:
    """(mappings used by this process, the system's limit), where Linux exposes them."""
    try:
        with open(f"/proc/{os.getpid()}/maps", "rb") as f:
            used = sum(1 for _ in f)
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None
    return used, limit


def release_compiled_programs(fraction: float = 0.5, force: bool = False) -> bool:
    """Drop every compiled program (JAX's caches and the registered ones) once this process
    uses more than ``fraction`` of its memory-map allowance; returns whether it did."""
    if not force:
        usage = memory_map_usage()
        if usage is None or usage[0] < fraction * usage[1]:
            return False
    import gc

    for clear in _CLEARERS:
        clear()
    jax.clear_caches()
    gc.collect()
    return True
