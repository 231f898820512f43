"""What the contrastive objectives (SC, BCL) share: validation, and the closed-form predictions that hold for
them (the orthogonal frame under non-negativity is SC's theorem; BCL states its own)."""
from __future__ import annotations

from .. import constraints
from ..batching import batch_list, is_epoch_scheme

__all__ = ["validate", "batches_of"]


def validate(problem) -> dict:
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
    return {"weight_decay": 0.0}


def batches_of(problem):
    """``(epochs, batches, full)``: whether the batching is an epoch scheme, the fixed batch list (None for the
    full batch or an epoch scheme), and whether the objective is the full batch."""
    epochs = is_epoch_scheme(problem)
    batches = None if epochs else batch_list(problem)
    return epochs, batches, batches is None and not epochs
