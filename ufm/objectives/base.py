"""The record every objective module exports, and the prediction it makes.

Two kinds, because the engines treat them differently:

* ``"contrastive"`` (SC, BCL): variables ``Z`` (BCL also the class prototypes ``C``, extra rows of every batch);
  anchors, positives and negatives inside each batch; logits ``<z_i, z_k> / tau`` plus a fixed additive log-weight per
  negative (0 for SC), so the loss written in the Gram matrix is linear terms plus log-sum-exps of affine functions of
  ``G``: the convex relaxation, its class-level reduction and the dual bound are shared, and an objective only states
  its ``log_weights``.
* ``"classifier"`` (CE): variables ``Z``, ``W`` (and ``b``); the joint Gram of ``[Z; W]`` relaxes it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

__all__ = ["Objective", "Prediction"]


class Objective(NamedTuple):
    """One loss. Fields (pure functions unless said otherwise):

    name: the registry key (``Problem.loss``). title: one line for people.
    kind: ``"contrastive"`` or ``"classifier"`` (module doc).
    validate: ``problem -> dict`` of the loss-specific fields, normalised (``weight_decay`` ...); raises
      ``ValueError`` naming the field.
    value: ``(x, h) -> scalar``, the objective in JAX (jit/vmap-safe, regularisers included); ``x`` holds the
      variables (``Z``; ``W``, ``b``), ``h`` the problem's numbers as attributes (``labels``, ``tau``,
      ``batches`` padded or None, ``weight_decay``, ``feature_decay``, ``n`` the real sample count: the engines
      pass a ``solvers.pgd.Hyper``).
    log_weights: contrastive only: ``(y (b,), valid (b,)) -> (b, b)`` additive log-weights of the negatives of
      each anchor in a batch with labels ``y`` (NumPy; 0 for SC). None for a classifier.
    class_log_weights: contrastive only: ``(k (K,), c) -> (K,)``: the same for an anchor of class ``c`` in a
      batch of class composition ``k``, per class of negative (the class-level programs).
    predict: ``problem -> Prediction``: what theory says.
    normalize_rows: whether the geometry is that of the normalised rows (contrastive losses see directions).
    prototypes: contrastive only: whether the ``K`` class prototypes ``C (K, d)`` are variables too (BCL):
      they lie on the features' set, join every batch as rows labelled ``0..K-1``, and are never anchors; the
      Gram relaxation is then over ``[Z; C]``.
    unit_radius: ``(problem, rho2) -> dict`` of the fields that make the problem at radius 1 the same problem
      (``Z = rho Z'``; contrastive losses read ``rho^2 / tau`` only; a classifier also maps ``W = W' / rho``);
      see ``Problem.at_unit_radius``.
    """

    name: str
    title: str
    kind: str
    validate: Callable
    value: Callable
    predict: Callable
    log_weights: Callable | None = None
    class_log_weights: Callable | None = None
    normalize_rows: bool = True
    unit_radius: Callable | None = None
    prototypes: bool = False

    @property
    def contrastive(self) -> bool:
        return self.kind == "contrastive"

    @property
    def variables(self) -> tuple:
        if self.contrastive:
            return ("Z", "C") if self.prototypes else ("Z",)
        return ("Z", "W", "b")


@dataclass(frozen=True)
class Prediction:
    """What theory says: ``geometry`` in ``{"etf", "of", "unknown"}``, the minimum ``loss`` when known, the
    theorem (``reason``), for CE the classifier radius ``r_W`` and feature norm, and for the OF whether it is
    the *unique* minimiser (``unique``: True / False / None when not known; ``ufm.interaction``)."""

    geometry: str
    loss: float | None
    reason: str
    r_W: float | None = None
    feature_norm: float | None = None
    unique: bool | None = None

    def to_dict(self):
        return asdict(self)
