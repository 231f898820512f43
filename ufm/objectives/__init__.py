"""Objectives: one module per loss, a registry by name.

Each module (``sc``, ``ce``, ``bcl``, ``bcl_avg`` for the loss ``bcl-avg``) exports ``OBJECTIVE``, an
:class:`~ufm.objectives.base.Objective`: a small record of pure functions (validation, value, start, prediction, and the
pieces the convex relaxation and the dual bound need). ``Problem``, the engines, the CLI choices and the tests read this
registry; outside it no code compares loss names. ``NAMES`` is a plain tuple, importable without JAX (the command line's
choices).

Add a loss: write ``ufm/objectives/<name>.py`` (``-`` in the name is ``_`` in the module's) exporting
``OBJECTIVE``, declaring in it what the loss supports (``relaxation``, ``dual_bound``, ``class_level``,
``summary_fields``, ``deepnet``; the defaults declare no proof), and add its name to ``NAMES`` (docs/design.md
lists the tests to add).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..problem import Problem, ProblemBase
    from .base import Objective

NAMES = ("sc", "ce", "bcl", "bcl-avg")

__all__ = ["NAMES", "get", "of", "gram_layout"]


def get(name: str) -> Objective:
    """The :class:`~ufm.objectives.base.Objective` registered as ``name``; ``ValueError`` naming ``loss``."""
    if name not in NAMES:
        raise ValueError(f"loss must be one of {', '.join(NAMES)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}").OBJECTIVE


def of(problem: ProblemBase) -> Objective:
    """The objective of ``problem`` (``problem.loss``)."""
    return get(problem.loss)



def gram_layout(problem: Problem):
    """The rows of the Gram matrix a contrastive ``problem``'s loss reads, for the relaxation and the bound.

    Returns ``(R, batches, labels, anchor)``: ``R`` rows (``N``; ``N + K`` for a loss with prototypes, whose rows
    ``N + c`` are the prototypes of the classes ``c``), the fixed batches as lists of rows (the full batch is one;
    the prototypes appended to every batch), ``labels (R,)`` and ``anchor (R,)``: which rows are anchors (the
    samples).
    """
    import numpy as np

    from ..batching import batch_list

    N, K = problem.N, problem.K
    fixed = batch_list(problem)
    batches = [list(range(N))] if fixed is None else [list(B) for B in fixed]
    labels = np.asarray(problem.label_array)
    if not of(problem).prototypes:
        return N, batches, labels, np.ones(N, bool)
    protos = list(range(N, N + K))
    return (N + K, [B + protos for B in batches], np.concatenate([labels, np.arange(K, dtype=labels.dtype)]),
            np.arange(N + K) < N)
