"""What the contrastive objectives (SC, BCL) share: validation, and the closed-form predictions that hold for
them (the orthogonal frame under non-negativity is SC's theorem; BCL states its own)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import constraints
from ..batching import batch_list, is_epoch_scheme

if TYPE_CHECKING:
    from ..problem import Problem, ProblemBase

__all__ = ["validate", "unit_radius", "batches_of", "LOGIT_MAX"]

LOGIT_MAX = 1e9  # largest rho^2 / tau: float64 resolves a loss to ~1e-16 * rho^2 / tau


def validate(problem: ProblemBase) -> dict:
    """Contrastive losses have no classifier and need a bounded feature set; ``ValueError`` naming the field."""
    wd = 0.0 if problem.weight_decay is None else problem.weight_decay
    if wd != 0:
        raise ValueError(f"weight_decay applies to loss='ce' only ({problem.loss!r} has no classifier W)")
    if problem.feature_decay != 0:
        raise ValueError(f"feature_decay applies to loss='ce' only ({problem.loss!r} features lie on the sphere or "
                         "ball)")
    if problem.bias:
        raise ValueError("bias applies to loss='ce' only")
    if not constraints.get(problem.constraint).bounded:
        raise ValueError(f"constraint 'none' is for CE with feature_decay > 0; {problem.loss!r} needs 'sphere' or "
                         "'ball' (unbounded features have no minimiser)")
    scale = problem.radius ** 2 / problem.tau
    if scale > LOGIT_MAX:
        raise ValueError(f"tau: radius^2 / tau = {scale:.3g} exceeds {LOGIT_MAX:.0e}: logits that large cannot be "
                         "evaluated accurately even in float64 (a difference of two logits loses all its digits); "
                         "raise tau or lower the radius (only radius^2 / tau matters)")
    return {"weight_decay": 0.0}


def unit_radius(problem: ProblemBase, rho2) -> dict:
    """The loss reads ``<z_i, z_k> / tau`` only: radius ``rho`` and temperature ``tau`` are radius 1 and
    ``tau / rho^2``."""
    return {"tau": problem.tau / rho2}


def batches_of(problem: Problem):
    """``(epochs, batches, full)``: whether the batching is an epoch scheme, the fixed batch list (None for the
    full batch or an epoch scheme), and whether the objective is the full batch."""
    epochs = is_epoch_scheme(problem)
    batches = None if epochs else batch_list(problem)
    return epochs, batches, batches is None and not epochs


def etf_prediction(p: Problem, name: str, etf_value, claim: str, extra=None):
    """The prediction of a balanced contrastive loss whose literature claims the simplex ETF for any counts at full
    batch (BCL's forms): ``unknown`` with the reason outside that setting (one class, ReLU features, mini-batches,
    ``extra(p)``'s reason when it returns one, ``dim < K - 1``), else ``etf`` at ``etf_value(counts, tau,
    radius)``, its reason ``claim``."""
    from .base import Prediction

    _, _, full = batches_of(p)
    why = ("one class: no between-class geometry" if p.K < 2 else
           f"{name} with ReLU features: no theorem" if p.nonneg else
           f"{name} under mini-batches: no closed form" if not full else
           (extra(p) if extra is not None else None) or
           (f"dim={p.dim} < K-1={p.K - 1}: no simplex ETF fits" if p.dim < p.K - 1 else None))
    if why is not None:
        return Prediction("unknown", None, why)
    return Prediction("etf", etf_value(p.counts, p.tau, p.radius), claim)

