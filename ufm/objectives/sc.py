"""Supervised contrastive loss (SC), ufm's normalisation: the mean over anchor slots (docs/theory.md §2).

Per anchor ``i`` of batch ``B`` with positives ``P_B(i)``: ``mean_{j in P} [-s_ij + log sum_{k in B, k != i}
exp(s_ik)]``, ``s = <z_i, z_k>/tau``; no extra weights on the negatives (``log_weights`` 0). Theorems: simplex ETF
for balanced classes (Graf et al. 2021), orthogonal frame under non-negativity for any counts and batching
(Kini et al. 2024).

References:
  Khosla et al., "Supervised contrastive learning", NeurIPS 2020.
  Graf et al., "Dissecting supervised contrastive learning", ICML 2021.
  Kini et al., "Symmetric neural-collapse representations with supervised contrastive loss", ICLR 2024.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..closed_forms import sc_etf_loss, sc_of_loss
from ..interaction import of_unique
from . import _contrastive
from .base import Objective, Prediction

if TYPE_CHECKING:
    from ..problem import Problem

__all__ = ["OBJECTIVE"]


def value(x, h):
    from ..losses import sc_loss

    return sc_loss(x["Z"], h.labels, h.tau, h.batches)


def log_weights(y, valid):
    return np.zeros((len(y), len(y)))


def class_log_weights(k, c):
    return np.zeros(len(k))


def predict(p: Problem) -> Prediction:
    """ETF (balanced, full batch, no ReLU) or OF (ReLU, any counts, any batching), else ``unknown`` with why."""
    K = p.K
    unknown = lambda why: Prediction("unknown", None, why)  # noqa: E731
    epochs, batches, full = _contrastive.batches_of(p)
    if K < 2:
        return unknown("one class: no between-class geometry")
    if p.nonneg:
        if p.dim < K:
            return unknown(f"UFM+ with dim={p.dim} < K={K}: no orthogonal frame fits")
        unique, _ = of_unique(p)
        why = {True: "; the OF is the unique minimiser", False: "; the OF is not the unique minimiser "
               "(ufm batches shows a witness)", None: ""}[unique]
        if epochs:
            return Prediction("of", None, f"SC + ReLU (UFM+): orthogonal frame, the minimiser of every epoch's "
                              f"batches (Kini et al. 2024); batching {p.batching!r} changes the objective "
                              "every epoch" + why, unique=unique)
        loss = sc_of_loss(p.counts, p.tau, p.radius, batches=batches,
                          labels=None if batches is None else p.label_array)
        return Prediction("of", loss, "SC + ReLU (UFM+), any counts: orthogonal frame (Kini et al. 2024)" + why,
                          unique=unique)
    if epochs:
        return unknown(f"batching {p.batching!r}: a new batch set every epoch; no fixed objective to predict")
    if not full:
        return unknown("SC without ReLU under mini-batches: no closed form")
    if not p.balanced:
        return unknown("SC on imbalanced classes: no closed form; the convex relaxation gives the optimum")
    n = p.counts[0]
    if n < 2:
        return unknown("single-sample classes: no anchor has a positive, the loss is 0 everywhere")
    if p.dim < K - 1:
        return unknown(f"dim={p.dim} < K-1={K - 1}: no simplex ETF fits")
    return Prediction("etf", sc_etf_loss(n, K, p.tau, p.radius), "SC, balanced, sphere: simplex ETF (Graf et al. 2021)")


OBJECTIVE = Objective(name="sc", title="supervised contrastive (Khosla et al. 2020)", kind="contrastive",
                      validate=_contrastive.validate, value=value, predict=predict, log_weights=log_weights,
                      class_log_weights=class_log_weights, unit_radius=_contrastive.unit_radius,
                      relaxation="contrastive", dual_bound="contrastive", class_level="contrastive",
                      summary_fields=("tau",), deepnet="sc", slot_kernel=True)
