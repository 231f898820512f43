"""Every public name has a docstring: the API reference of the documentation site (docs/mkdocs.yml) is generated
from ``ufm.__all__`` and ``solvers.__all__`` (docs/hooks.py), so a name without one would be an empty section.
The site itself is built by ``.ci/run`` with ``mkdocs build --strict`` (a broken link fails it)."""
from __future__ import annotations

import importlib
import inspect
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ufm", "solvers")


def public_names(package: str) -> list[str]:
    return [n for n in importlib.import_module(package).__all__ if not n.startswith("__")]


def undocumented(package: str) -> list[str]:
    module = importlib.import_module(package)
    missing = []
    for name in public_names(package):
        doc = inspect.getdoc(getattr(module, name))
        if not doc or not doc.strip():
            missing.append(f"{package}.{name}")
        elif inspect.ismodule(getattr(module, name)):
            mod = getattr(module, name)
            for member in getattr(mod, "__all__", []):
                obj = getattr(mod, member)
                if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (inspect.getdoc(obj) or "").strip():
                    missing.append(f"{package}.{name}.{member}")
    return missing


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package):
    assert public_names(package)
    assert undocumented(package) == []


def test_the_check_catches_a_missing_docstring(monkeypatch):
    import ufm

    def bare():
        pass

    monkeypatch.setattr(ufm, "predict", bare)
    assert "ufm.predict" in undocumented("ufm")


def test_every_public_name_is_in_the_api_pages():
    pytest.importorskip("mkdocs")
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    try:
        hooks = importlib.import_module("hooks")
    finally:
        sys.path.pop(0)
    for package in PACKAGES:
        page = hooks.api_page(package)
        for name in public_names(package):
            assert f"::: {hooks.object_path(package, name)}\n" in page, name
            assert f'heading: "{package}.{name}"' in page, name
