"""Objectives: one module per loss, a registry by name.

Each module (``sc``, ``ce``, ``bcl``, ``bcl_avg`` for the loss ``bcl-avg``) exports ``OBJECTIVE``, an :class:`~ufm.objectives.base.Objective`: a
small record of pure functions (validation, value, start, prediction, and the pieces the convex relaxation and
the dual bound need). ``Problem``, the engines, the CLI choices and the tests read this registry; outside it no
code compares loss names. ``NAMES`` is a plain tuple, importable without JAX (the command line's choices).

Add a loss: write ``ufm/objectives/<name>.py`` (``-`` in the name is ``_`` in the module's) exporting ``OBJECTIVE`` and add its name to ``NAMES``
(docs/design.md lists the tests to add).
"""
from __future__ import annotations

import importlib

NAMES = ("sc", "ce", "bcl", "bcl-avg")

__all__ = ["NAMES", "get", "of", "gram_layout"]


def get(name: str):
    """The :class:`~ufm.objectives.base.Objective` registered as ``name``; ``ValueError`` naming ``loss``."""
    if name not in NAMES:
        raise ValueError(f"loss must be one of {', '.join(NAMES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").OBJECTIVE


def of(problem):
    """The objective of ``problem`` (``problem.loss``)."""
    return get(problem.loss)


def gram_layout(problem):
    """The rows of the Gram matrix a contrastive ``problem``'s loss reads: ``(R, batches, labels, anchor)``
    (``ufm.objectives._contrastive.gram_layout``: ``N`` rows, or ``N + K`` with the prototypes of BCL)."""
    from ._contrastive import gram_layout as layout

    return layout(problem)
