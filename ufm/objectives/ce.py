"""Cross-entropy with a linear classifier and L2 regularisation (docs/theory.md §2).

``(1/N) sum_i -log softmax(W z_i + b)_{y_i} + lambda_W ||W||_F^2 + lambda_Z ||Z||_F^2 / N``, features on the
sphere or ball (Graf et al.) or free with feature decay (Zhu et al.); bias optional and unregularised. The
objective is the full mean whatever the batching. Theorem: simplex ETF with classifier radius ``r_W`` for balanced
classes.

References:
  Graf et al., "Dissecting supervised contrastive learning", ICML 2021.
  Zhu et al., "A geometric analysis of neural collapse with unconstrained features", NeurIPS 2021.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constraints
from ..batching import is_epoch_scheme
from ..closed_forms import ce_etf_loss
from .base import Objective, Prediction

if TYPE_CHECKING:
    from ..problem import Problem, ProblemBase

__all__ = ["OBJECTIVE", "DEFAULT_WEIGHT_DECAY"]

DEFAULT_WEIGHT_DECAY = 5e-3


def validate(problem: ProblemBase) -> dict:
    wd = DEFAULT_WEIGHT_DECAY if problem.weight_decay is None else problem.weight_decay
    if wd == 0:
        raise ValueError("weight_decay must be > 0 for CE: without it the loss only tends to 0 as ||W|| grows "
                         "and no minimiser exists")
    if not constraints.get(problem.constraint).bounded and problem.feature_decay == 0:
        raise ValueError("constraint 'none' needs feature_decay > 0 (Zhu et al.); otherwise use 'sphere' or 'ball'")
    return {"weight_decay": wd}


def unit_radius(problem: ProblemBase, rho2) -> dict:
    """``Z = rho Z'``, ``W = W' / rho`` keeps the logits; the decays follow: ``lambda_W / rho^2``,
    ``lambda_Z rho^2``."""
    return {"weight_decay": problem.weight_decay / rho2, "feature_decay": problem.feature_decay * rho2}


def value(x, h):
    import jax.numpy as jnp

    from ..losses import ce_loss

    out = ce_loss(x["Z"], x["W"], h.labels, x.get("b"))
    out = out + h.weight_decay * jnp.sum(x["W"] ** 2)
    return out + h.feature_decay * jnp.sum(x["Z"] ** 2) / h.n


def predict(p: Problem) -> Prediction:
    unknown = lambda why: Prediction("unknown", None, why)  # noqa: E731
    K = p.K
    if K < 2:
        return unknown("one class: no between-class geometry")
    if is_epoch_scheme(p):
        return unknown(f"batching {p.batching!r}: a new batch set every epoch; no fixed objective to predict")
    if p.nonneg:
        return unknown("CE with ReLU features: no closed form")
    if p.bias:
        return unknown("CE with a bias: the theorem is stated without one")
    if not p.balanced:
        return unknown("CE on imbalanced classes: no closed form (minority collapse)")
    if p.dim < K - 1:
        return unknown(f"dim={p.dim} < K-1={K - 1}: no simplex ETF fits")
    # validate set CE's weight_decay (its default when None was given)
    loss, r, rho = ce_etf_loss(K, p.weight_decay, p.radius, p.feature_decay, p.constraint)  # type: ignore[arg-type]
    if r == 0:
        return Prediction("unknown", loss, "regularisation too strong: the minimiser is the zero solution")
    why = ("L2-regularised CE, balanced, feature decay: simplex ETF (Zhu et al. 2021)"
           if not constraints.get(p.constraint).bounded
           else "L2-regularised CE, balanced: simplex ETF with classifier radius r_W (Graf et al. 2021)")
    return Prediction("etf", loss, why, r_W=r, feature_norm=rho)


OBJECTIVE = Objective(name="ce", title="cross-entropy with an L2-regularised linear classifier", kind="classifier",
                      validate=validate, value=value, predict=predict, normalize_rows=False,
                      unit_radius=unit_radius, relaxation="ce", dual_bound="ce", class_level="ce",
                      summary_fields=("weight_decay", "feature_decay"), deepnet="ce")
