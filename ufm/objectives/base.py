"""The record every objective module exports, and the prediction it makes.

Two kinds, because the engines treat them differently:

* ``"contrastive"`` (SC, BCL): variables ``Z`` (BCL also the class prototypes ``C``, extra rows of every batch);
  anchors, positives and negatives inside each batch; logits ``<z_i, z_k> / tau`` plus a fixed additive log-weight per
  negative (0 for SC), so the loss written in the Gram matrix is linear terms plus log-sum-exps of affine functions of
  ``G``: the convex relaxation, its class-level reduction and the dual bound are shared, and an objective only states
  its ``log_weights``.
* ``"classifier"`` (CE): variables ``Z``, ``W`` (and ``b``); for CE the joint Gram of ``[Z; W]`` relaxes it.

``kind`` names the variables only. Which relaxation, proof, class-level value and deep-net head apply, an objective
declares in its own fields (``relaxation``, ``dual_bound``, ``class_level``, ``deepnet``; None by default): another
classifier loss (focal, label smoothing) is not CE, and must not be proved with CE's bound.
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

    What the loss supports. The engines and the command line ask these fields, never the name or the ``kind``:
    a classifier loss is not cross-entropy, and a loss that declares nothing gets no proof (the defaults).

    relaxation: which convex program relaxes it: ``"contrastive"`` (the Gram of ``Z``, or ``[Z; C]``, with the
      loss's ``log_weights``), ``"ce"`` (the joint Gram of ``[Z; W]`` of L2-regularised cross-entropy), or None.
    dual_bound: which proof turns a candidate into a lower bound (``solvers.dual``): ``"contrastive"``,
      ``"ce"``, or None.
    class_level: which class-level value exists (``ufm.classlevel``, the phase diagrams): ``"contrastive"``
      (the class means and ``class_log_weights``), ``"prototypes"`` (BCL's: the class means and the prototypes,
      full batch), ``"ce"``, or None.
    summary_fields: the problem's fields ``ufm solve`` prints in its one-line summary (``tau`` for a
      contrastive loss, the weight decays for a classifier).
    deepnet: the deep-net path's loss head (``solvers.deepnet``: ``"sc"``, ``"ce"``), or None where ``ufm train``
      has none for this loss.
    slot_kernel: whether ``solvers.pgd``'s batched slot kernel (plain SC over padded batch slots) computes it.
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
    relaxation: str | None = None
    dual_bound: str | None = None
    class_level: str | None = None
    summary_fields: tuple = ()
    deepnet: str | None = None
    slot_kernel: bool = False

    @property
    def contrastive(self) -> bool:
        return self.kind == "contrastive"

    @property
    def certifiable(self) -> bool:
        """A proved lower bound exists: a convex relaxation proposes a candidate and a dual bound proves it."""
        return self.relaxation is not None and self.dual_bound is not None

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
