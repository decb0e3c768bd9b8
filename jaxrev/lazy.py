"""Lazy public names for a package ``__init__`` (PEP 562): ``import jaxrev`` stays cheap (the
CLI's ``--help`` imports no JAX) and a name's module is imported on first use."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(
    package: dict, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package whose globals are ``package``: each name of
    ``exports`` (name → module) is imported from its module on first access and kept."""

    def getattr_(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        package[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(package) | set(exports))

    return getattr_, dir_
