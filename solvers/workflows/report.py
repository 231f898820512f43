"""A solution as a JSON-ready report: problem, loss, solver facts, geometry found, geometry predicted."""
from __future__ import annotations

import numpy as np

from ufm import geometry, objectives, theory

__all__ = ["solution_report", "save_arrays"]


def solution_report(solution) -> dict:
    """The keys of ``ufm solve --json`` (a stable contract):
    ``problem``, ``loss``, ``steps``, ``converged``, ``seconds``, ``dtype``, ``seed``, ``optimizer``,
    ``gradient_mapping``, ``start_losses`` (the final loss of each random start; None for epoch runs),
    ``continuation_steps`` (of the start kept), ``geometry``
    {``mean_cosines``, ``nc1``, ``delta_gm``, ``etf_distance``, ``classifier_norms``}, ``prediction``
    {``geometry``, ``loss``, ``reason``, ``unique``, ...}, and ``gap_to_prediction`` (loss minus predicted minimum,
    or None). A run over epochs (``solvers.epochs``) adds ``batching`` (``EpochSolution.batching_report``).
    SC geometry is that of the normalised rows; CE geometry that of the raw rows.
    """
    p = solution.problem
    pred = theory.predict(p)
    geo = geometry.report(solution.Z, p.label_array, K=p.K, W=solution.W, normalize=objectives.of(p).normalize_rows)
    return {
        "problem": p.to_dict(),
        "loss": solution.loss,
        "steps": solution.steps,
        "converged": solution.converged,
        "seconds": solution.seconds,
        "dtype": solution.dtype,
        "seed": solution.seed,
        "optimizer": solution.optimizer,
        "gradient_mapping": solution.gradient_mapping,
        "start_losses": list(getattr(solution, "start_losses", ())) or None,
        "continuation_steps": getattr(solution, "continuation_steps", 0),
        "geometry": geo,
        "prediction": pred.to_dict(),
        "gap_to_prediction": None if pred.loss is None else solution.loss - pred.loss,
        **({"batching": solution.batching_report()} if hasattr(solution, "batching_report") else {}),
    }


def save_arrays(path, solution):
    """``solution.npz``: ``Z``, ``labels``, ``history`` and, for CE, ``W`` (and ``b``), for BCL the prototypes
    ``C``."""
    arrays = {"Z": solution.Z, "labels": solution.problem.label_array, "history": solution.history}
    if getattr(solution, "C", None) is not None:
        arrays["C"] = solution.C
    if solution.W is not None:
        arrays["W"] = solution.W
    if solution.b is not None:
        arrays["b"] = solution.b
    np.savez(path, **arrays)
