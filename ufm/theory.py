"""What theory predicts for a problem (docs/theory.md §4): the geometry, its minimum, and whether it is unique.

The closed forms themselves live in ``ufm.closed_forms`` (re-exported here); the uniqueness of the orthogonal
frame comes from the batch interaction graph (``ufm.interaction``), which depends only on the closed forms.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import objectives
from .closed_forms import (ce_classifier_radius, ce_etf_loss, etf_delta_gm, etf_gram, of_gram, sc_etf_loss,
                           sc_of_loss, sc_of_loss_subsets)
from .interaction import of_unique
from .objectives.base import Prediction

if TYPE_CHECKING:
    from .problem import Problem

__all__ = ["sc_etf_loss", "sc_of_loss", "sc_of_loss_subsets", "ce_classifier_radius", "ce_etf_loss", "etf_gram",
           "of_gram", "etf_delta_gm", "Prediction", "predict", "of_unique"]


def predict(problem: Problem) -> Prediction:
    """The geometry and minimum theory predicts for ``problem`` (docs/theory.md §4), or ``"unknown"`` with why:
    the problem's objective states it (``ufm.objectives``).

    For an epoch scheme (``shuffled``, ``binding``) the objective changes every epoch; under UFM+ the OF still
    minimises every epoch's objective (the bound holds batch by batch), so the geometry is ``"of"`` with
    ``loss`` None (the minimum of a run's batches: ``sc_of_loss(counts, tau, batches=union_batches(p, E))``).
    """
    return objectives.of(problem).predict(problem)
