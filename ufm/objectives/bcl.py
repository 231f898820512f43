"""Balanced contrastive loss (BCL) of Zhu et al. (2022), one view, ufm's normalisation (docs/theory.md §2).

Their ``BalSCL`` has two parts, and this is both: **class-complement**, the ``K`` class prototypes ``C (K, d)``
join every batch as extra rows labelled ``0..K-1`` (each sample's own prototype is one of its positives, every
prototype a negative of the other classes' samples; prototypes are never anchors), and **class-averaging**, every
class enters the denominator as its mean over the batch's members of that class, the prototype counted. Per
anchor ``i`` of class ``c`` in batch ``B``, with ``B+`` the batch and the prototypes:
``mean_{p in P(i)} [-s_ip + log sum_{c'} (1/|B+_{c'} \\ {i}|) sum_{k in B+_{c'}, k != i} exp(s_ik)]``, ``P(i)``
the other class-``c`` samples and ``p_c``. In the UFM the prototypes are free variables on the features' set
(sphere or ball of the same radius, non-negative under UFM+): the problem's variables are ``Z`` and ``C``.

The claim (Zhu et al. 2022): the simplex ETF survives class imbalance; ufm's prediction states it for the full
batch without ReLU (features and prototypes at the class vertices), and ``ufm verify`` judges it by the
certificate.

Reference:
  Zhu et al., "Balanced contrastive learning for long-tailed visual recognition", CVPR 2022.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING


from . import _contrastive, bcl_avg
from .base import Objective, Prediction

if TYPE_CHECKING:
    from ..problem import Problem

__all__ = ["OBJECTIVE", "etf_loss"]


def value(x, h):
    from ..losses import bcl_loss

    return bcl_loss(x["Z"], h.labels, h.tau, h.batches, prototypes=x["C"])


# the weights of a batch with its prototypes appended (labels 0..K-1): the class-averaging weights of that batch
log_weights = bcl_avg.log_weights


def etf_loss(counts, tau, radius=1.0) -> float:
    """BCL at the simplex ETF with within-class collapse and each prototype at its class's vertex, full batch:
    every anchor (its prototype is always a positive) sees ``log(1 + (K-1) exp(-K rho^2/((K-1) tau)))``
    whatever the counts."""
    K = len(counts)
    t = tau / radius ** 2
    return float(math.log1p((K - 1) * math.exp(-K / ((K - 1) * t))))


def predict(p: Problem) -> Prediction:
    return _contrastive.etf_prediction(p, "BCL", etf_loss, "BCL, full batch: simplex ETF for any counts (the claim "
                                       "of Zhu et al. 2022)")


OBJECTIVE = Objective(name="bcl", title="balanced contrastive with class prototypes (Zhu et al. 2022)",
                      kind="contrastive", validate=_contrastive.validate, value=value, predict=predict,
                      log_weights=log_weights, class_log_weights=None, unit_radius=_contrastive.unit_radius,
                      prototypes=True, relaxation="contrastive", dual_bound="contrastive", class_level="prototypes",
                      summary_fields=("tau",))
