"""What theory predicts for a problem (docs/theory.md §4): the geometry, its minimum, and whether it is unique.

The closed forms themselves live in ``ufm.closed_forms`` (re-exported here); the uniqueness of the orthogonal
frame comes from the batch interaction graph (``ufm.interaction``), which depends only on the closed forms.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .batching import batch_list, epoch_batch_list, is_epoch_scheme, parse_scheme
from .closed_forms import (ce_classifier_radius, ce_etf_loss, etf_delta_gm, etf_gram, of_gram, sc_etf_loss,
                           sc_of_loss, sc_of_loss_subsets)
from .interaction import check

__all__ = ["sc_etf_loss", "sc_of_loss", "sc_of_loss_subsets", "ce_classifier_radius", "ce_etf_loss", "etf_gram",
           "of_gram", "etf_delta_gm", "Prediction", "predict", "of_unique"]


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


def of_unique(problem) -> tuple[bool | None, str]:
    """Whether the OF is the unique UFM+ minimiser (as a Gram) for ``problem``'s batching, and why
    (``ufm.interaction.check``; sphere only). Fixed batch sets and the full batch are checked as they are;
    ``binding`` on its first epoch (with ``K >= 2`` the verdict is the same for every epoch: each batch holds
    every class's binding example, so (a) always holds and (b) fails exactly for two single-sample classes);
    ``shuffled`` depends on the epochs drawn (None: check their union with ``ufm batches --epochs``)."""
    if problem.constraint != "sphere":
        return None, "the uniqueness analysis is for the sphere"
    if is_epoch_scheme(problem):
        if parse_scheme(problem.batching).name == "shuffled" or problem.K < 2:
            return None, "shuffled batches: depends on the epochs drawn (check their union: ufm batches --epochs)"
    v = check(epoch_batch_list(problem, 0), problem.label_array, problem.dim, problem.K, problem.tau,
              problem.radius, verify=False)
    return v.unique_of, v.reason


def predict(problem) -> Prediction:
    """The geometry and minimum theory predicts for ``problem`` (docs/theory.md §4), or ``"unknown"`` with why.

    For an epoch scheme (``shuffled``, ``binding``) the objective changes every epoch; under UFM+ the OF still
    minimises every epoch's objective (the bound holds batch by batch), so the geometry is ``"of"`` with
    ``loss`` None (the minimum of a run's batches: ``sc_of_loss(counts, tau, batches=union_batches(p, E))``).
    """
    p, K = problem, problem.K
    unknown = lambda why: Prediction("unknown", None, why)  # noqa: E731
    epochs = is_epoch_scheme(p)
    batches = None if epochs else batch_list(p)
    full = batches is None and not epochs
    if K < 2:
        return unknown("one class: no between-class geometry")
    if p.loss == "sc":
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
        return Prediction("etf", sc_etf_loss(n, K, p.tau, p.radius),
                          "SC, balanced, sphere: simplex ETF (Graf et al. 2021)")
    # cross-entropy
    if epochs:
        return unknown(f"batching {p.batching!r}: a new batch set every epoch; no fixed objective to predict")
    if p.nonneg:
        return unknown("CE with ReLU features: no closed form")
    if p.bias:
        return unknown("CE with a bias: the theorem is stated without one")
    if not p.balanced:
        return unknown("CE on imbalanced classes: no closed form (minority collapse)")
    if p.dim < K - 1:
        return unknown(f"dim={p.dim} < K-1={K - 1}: no simplex ETF fits")
    loss, r, rho = ce_etf_loss(K, p.weight_decay, p.radius, p.feature_decay, p.constraint)
    if r == 0:
        return Prediction("unknown", loss, "regularisation too strong: the minimiser is the zero solution")
    why = ("L2-regularised CE, balanced, feature decay: simplex ETF (Zhu et al. 2021)" if p.constraint == "none"
           else "L2-regularised CE, balanced: simplex ETF with classifier radius r_W (Graf et al. 2021)")
    return Prediction("etf", loss, why, r_W=r, feature_norm=rho)
