"""The network beside the UFM: solve the UFM with the network's counts, loss, tau and non-negativity, and measure
how far the network's class-mean Gram is from the UFM's.

**The UFM problem** (:func:`ufm_problem`): the training counts (after imbalance and label noise), the same loss
and ``tau``, ``nonneg`` that of the network, full batch, float64, dimension ``min(d, K)`` (the minimiser collapses every
class, so K dimensions lose nothing: for the digits STEP-10 counts the optimum at d = 10, 20 and 128 agrees to
1e-11). SC: the unit sphere (the network's embeddings are L2-normalised). CE: no norm constraint, with
``weight_decay = feature_decay =`` the network's weight decay (Zhu et al.'s regularised UFM).
Full batch: with ReLU the orthogonal frame is the minimiser batch by batch, so for every batching (binding
included); without ReLU, epoch-wise batchings have no fixed objective and the full batch is the reference.
When ``N`` exceeds ``max_n`` the counts are scaled down in proportion (each class keeps >= 2 samples) and the
report says so (``counts_scaled``).

**Distance** ``distance_to_ufm = ufm.geometry.gram_distance(G_net, G_ufm)``: the Frobenius distance between the
two Grams of normalised class means, each divided by its Frobenius norm (against an orthogonal frame it is
``ufm.geometry.delta_gm_renormalised``, which equals Kini et al.'s ``delta_gm`` when the class means have equal
norms).

**Certificate.** ``compare(..., certify=True)`` certifies the UFM solution with ``solvers.certify`` (the
symmetry-reduced relaxation: full batch) and stores ``lower_bound``, ``gap``, ``certified``, ``method`` and the
relaxation's ``rank`` under ``certificate`` (None with ``certify=False``).
"""
from __future__ import annotations

import numpy as np

from ufm import Problem, geometry, theory
from ufm.defaults import REFERENCE_STEPS

__all__ = ["ufm_problem", "scale_counts", "cosine_groups", "compare", "train_report"]


def scale_counts(counts, max_n):
    """``counts`` scaled so that they sum to at most ``max_n`` (each >= 2); unchanged when they already do."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() <= max_n:
        return tuple(int(c) for c in counts)
    return tuple(int(c) for c in np.maximum(2, np.floor(counts * max_n / counts.sum())))


def ufm_problem(counts, config, dim) -> Problem:
    """The UFM ``Problem`` of a training ``config`` (module doc) for ``counts`` in dimension ``dim``."""
    if config.loss_head == "sc":
        return Problem(counts=counts, loss="sc", tau=config.tau, dim=dim, constraint="sphere", nonneg=config.nonneg)
    if config.weight_decay <= 0:
        raise ValueError("the CE UFM needs weight_decay > 0 (without it no minimiser exists)")
    return Problem(counts=counts, loss="ce", dim=dim, constraint="none", nonneg=config.nonneg,
                   weight_decay=config.weight_decay, feature_decay=config.weight_decay, bias=config.bias)


def cosine_groups(G, counts) -> dict:
    """``ufm.geometry.cosine_groups`` of ``G`` with the classes of ``counts``: a *minority* class has fewer
    samples than the mean count."""
    counts = np.asarray(counts)
    return geometry.cosine_groups(G, counts >= counts.mean())


def _summary(G, counts) -> dict:
    G = np.asarray(G)
    off = G[~np.eye(len(G), dtype=bool)]
    return {"min_cosine": float(off.min()) if off.size else None,
            "max_cosine": float(off.max()) if off.size else None, "cosine_groups": cosine_groups(G, counts)}


def compare(net_cosines, counts, config, *, dim, max_n=2000, steps=REFERENCE_STEPS, seed=0, certify=True) -> dict:
    """Solve the UFM of ``config`` for ``counts`` (module doc) and return ``ufm_prediction``: ``problem``,
    ``counts_scaled``, ``loss``, ``converged``, ``steps``, ``seconds``, ``dtype``, ``mean_cosines``,
    ``delta_gm``, ``nc1``, ``etf_distance``, ``min_cosine``, ``max_cosine``, ``cosine_groups``, ``prediction``
    (``ufm.theory.predict``), ``certificate``, and ``distance_to_ufm`` (to ``net_cosines``)."""
    from ..pgd import solve

    K = len(counts)
    scaled = scale_counts(counts, max_n)
    problem = ufm_problem(scaled, config, min(dim, K))
    sol = solve(problem, steps=steps, seed=seed, dtype="float64", tol=1e-10)
    geo = geometry.report(sol.Z, problem.label_array, K, W=sol.W, normalize=True)
    out = {"problem": problem.to_dict(), "counts_scaled": scaled != tuple(int(c) for c in counts),
           "loss": sol.loss, "converged": sol.converged, "steps": sol.steps, "seconds": sol.seconds,
           "dtype": sol.dtype, **geo, **_summary(geo["mean_cosines"], scaled),
           "prediction": theory.predict(problem).to_dict(),
           "certificate": _certificate(problem, sol) if certify else None,
           "distance_to_ufm": geometry.gram_distance(net_cosines, geo["mean_cosines"])}
    return out


def _certificate(problem, sol) -> dict:
    from ..certificate import certify

    c = certify(problem, sol)
    return {"lower_bound": c.lower_bound, "gap": c.gap, "certified": c.certified, "method": c.method,
            "rank": c.rank, "seconds": c.seconds}


def train_report(result, comparison=None) -> dict:
    """The JSON of ``ufm train --json`` (a stable contract): ``train_accuracy``, ``test_accuracy``,
    ``ncc_test_accuracy``, ``probe_test_accuracy``, ``train_loss``, ``geometry`` (as in ``ufm solve``, of the
    normalised training embeddings) with ``min_cosine``/``max_cosine``/``cosine_groups``, ``ufm_prediction``
    (:func:`compare`, or None), ``distance_to_ufm``, ``epochs``, ``steps``, ``seconds``, ``seconds_per_step``,
    ``steps_to_fit``, ``device``, ``dtype``, ``config``, ``data``."""
    f, cfg = result.final, result.config
    counts = result.data.info["counts"]
    return {
        "train_accuracy": f["train_accuracy"], "test_accuracy": f["test_accuracy"],
        "ncc_test_accuracy": f["ncc_test_accuracy"], "probe_test_accuracy": f.get("probe_test_accuracy"),
        "train_loss": f["train_loss"],
        "geometry": {**f["geometry"], **_summary(f["geometry"]["mean_cosines"], counts)},
        "ufm_prediction": comparison,
        "distance_to_ufm": None if comparison is None else comparison["distance_to_ufm"],
        "epochs": cfg.epochs, "steps": result.steps, "seconds": result.seconds,
        "seconds_per_step": result.seconds_per_step, "steps_to_fit": result.steps_to_fit,
        "device": result.device, "dtype": "float32", "config": cfg.to_dict(), "data": result.data.info,
    }
