"""Objectives: one module per loss, a registry by name.

Each module (``sc``, ``ce``, ``bcl``) exports ``OBJECTIVE``, an :class:`~ufm.objectives.base.Objective`: a
small record of pure functions (validation, value, start, prediction, and the pieces the convex relaxation and
the dual bound need). ``Problem``, the engines, the CLI choices and the tests read this registry; outside it no
code compares loss names. ``NAMES`` is a plain tuple, importable without JAX (the command line's choices).

Add a loss: write ``ufm/objectives/<name>.py`` exporting ``OBJECTIVE`` and add its name to ``NAMES``
(docs/design.md lists the tests to add).
"""
from __future__ import annotations

import importlib

NAMES = ("sc", "ce", "bcl")

__all__ = ["NAMES", "get", "of"]


def get(name: str):
    """The :class:`~ufm.objectives.base.Objective` registered as ``name``; ``ValueError`` naming ``loss``."""
    if name not in NAMES:
        raise ValueError(f"loss must be one of {', '.join(NAMES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").OBJECTIVE


def of(problem):
    """The objective of ``problem`` (``problem.loss``)."""
    return get(problem.loss)
