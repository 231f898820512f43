"""``verify``: every theorem that speaks about a set of label counts, checked numerically.

For counts (and tau, dim, a batching), each theorem of REFERENCE.md §4 is either *not applicable* (with the
reason) or checked: solve (float64 PGD), certify (convex relaxation), compare the geometry found with the
predicted one and the loss with the predicted minimum. A row *holds* when the found geometry is the predicted
one (mean cosines within ``GEOMETRY_TOL``), the loss is within ``LOSS_TOL`` of the predicted minimum and the
certificate proves it global (gap <= 1e-6, relative); otherwise it *fails*, with what broke.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ufm import Problem, geometry, interaction, theory
from ufm.batching import is_epoch_scheme

__all__ = ["Row", "verify", "found_geometry", "GEOMETRY_TOL", "LOSS_TOL", "DEFAULT_EXAMPLE"]

GEOMETRY_TOL = 1e-3
LOSS_TOL = 1e-6
DEFAULT_EXAMPLE = {"counts": (20, 20, 2, 2), "tau": 0.5, "dim": 6}


@dataclass
class Row:
    """One theorem's verdict. ``verdict`` in ``{"holds", "fails", "not applicable"}``."""

    theorem: str
    prediction: str
    found: str | None = None
    loss: float | None = None
    predicted_loss: float | None = None
    loss_difference: float | None = None
    lower_bound: float | None = None
    gap: float | None = None
    certified: bool | None = None
    verdict: str = "not applicable"
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self):
        return asdict(self)


def found_geometry(mean_cosines) -> tuple[str, float, float]:
    """``("etf"|"of"|"other", distance to ETF, distance to OF)``: max-abs distances of the mean-cosine
    matrix to the ETF Gram and to the identity."""
    C = np.asarray(mean_cosines)
    K = C.shape[0]
    d_etf = float(np.abs(C - theory.etf_gram(K)).max()) if K > 1 else 0.0
    d_of = float(np.abs(C - np.eye(K)).max())
    name = "etf" if d_etf <= GEOMETRY_TOL else "of" if d_of <= GEOMETRY_TOL else "other"
    return name, d_etf, d_of


def _describe(name, d_etf, d_of, cos):
    C = np.asarray(cos)
    off = C[~np.eye(C.shape[0], dtype=bool)]
    spread = f"; off-diagonal cosines {off.min():.3f} .. {off.max():.3f}" if name == "other" and off.size else ""
    return f"{name} (max |cos - ETF| {d_etf:.1e}, max |cos - OF| {d_of:.1e}{spread})"


def _solve_and_certify(problem, steps, seed, certify_fn):
    from . import solve

    kw = {} if is_epoch_scheme(problem) else {"steps": steps}
    sol = solve(problem, dtype="float64", seed=seed, **kw)
    return sol, None if certify_fn is None else certify_fn(problem, sol)


def _check(row: Row, problem, want: str | None, steps, seed, certify_fn) -> Row:
    """Solve, certify and judge ``problem`` against the geometry ``want`` (None: only the certificate)."""
    start = time.perf_counter()
    sol, cert = _solve_and_certify(problem, steps, seed, certify_fn)
    cos = geometry.mean_cosines(geometry.normalize_rows(sol.Z) if problem.loss == "sc" else sol.Z,
                                problem.label_array, problem.K)
    name, d_etf, d_of = found_geometry(cos)
    row.found = _describe(name, d_etf, d_of, cos)
    row.loss = sol.loss
    if cert is not None:
        row.lower_bound, row.gap, row.certified = cert.lower_bound, cert.gap, cert.certified
    if row.predicted_loss is None and want == "of":  # an epoch run: the OF minimum of its batch set
        row.predicted_loss = getattr(sol, "of_loss", None)
    if row.predicted_loss is None and cert is not None:
        row.predicted_loss = cert.lower_bound
    if row.predicted_loss is not None:
        row.loss_difference = sol.loss - row.predicted_loss
    broken = []
    if want is not None and name != want:
        broken.append(f"found {name}, predicted {want}")
    if row.loss_difference is not None and abs(row.loss_difference) > LOSS_TOL * max(1.0, abs(sol.loss)):
        broken.append(f"loss misses the predicted minimum by {row.loss_difference:.1e}")
    if cert is None:
        broken.append("not certified (certificates off)")
    elif not cert.certified:
        broken.append(f"certificate gap {cert.gap:.1e} above tolerance")
    row.verdict = "fails" if broken else "holds"
    row.reason = "; ".join(broken) if broken else "geometry, minimum and certificate agree"
    row.seconds = time.perf_counter() - start
    return row


def verify(counts, *, tau=0.5, dim=None, radius=1.0, batching="full", batches=None, batch_seed=0,
           weight_decay=None, steps=5000, seed=0, certify=True) -> list[Row]:
    """Check every theorem of REFERENCE §4 that applies to ``counts`` (module doc). Returns one row per
    theorem, applicable or not."""
    from .certify import certify as certify_fn

    cert = certify_fn if certify else None
    common = dict(counts=counts, tau=tau, dim=dim, radius=radius, batching=batching, batches=batches,
                  batch_seed=batch_seed)
    sc = Problem(**common)
    K, d, n = sc.K, sc.dim, sc.counts[0]
    full = sc.batches is None and sc.batching == "full"
    rows = []

    # 1. Graf et al.: balanced SC on the sphere -> simplex ETF
    row = Row("SC, sphere: simplex ETF (Graf et al. 2021)", "etf")
    why = ("counts are imbalanced" if not sc.balanced else "classes of one sample" if n < 2 else
           f"dim {d} < K-1" if d < K - 1 else "mini-batches (the theorem is full-batch)" if not full else "")
    if why:
        row.reason = why
    else:
        row.predicted_loss = theory.sc_etf_loss(n, K, tau, radius)
        row.prediction = f"simplex ETF, loss {row.predicted_loss:.8f}"
        _check(row, sc, "etf", steps, seed, cert)
    rows.append(row)

    # 2. Behnia & Thrampoulidis: SC UFM with d > K has no spurious local minima; the relaxation is tight
    row = Row("SC landscape: every local minimum is global (Behnia & Thrampoulidis 2024)",
              "PGD's point is the global minimum (certified)")
    why = f"dim {d} <= K" if d <= K else "mini-batches (the theorem is full-batch)" if not full else ""
    if why:
        row.reason = why
    else:
        _check(row, sc, None, steps, seed, cert)
    rows.append(row)

    # 3. Kini et al.: UFM+ (ReLU) -> orthogonal frame, any counts, any batching (as a minimiser)
    plus = sc.replace(nonneg=True) if d >= K else None
    row = Row("SC + ReLU: orthogonal frame (Kini et al. 2024)", "of")
    if plus is None:
        row.reason = f"dim {d} < K: no orthogonal frame fits"
    else:
        pred = theory.predict(plus)
        row.predicted_loss = pred.loss
        row.prediction = "orthogonal frame" + (f", loss {pred.loss:.8f}" if pred.loss is not None else "")
        _check(row, plus, "of", steps, seed, cert)
    rows.append(row)

    # 4. Kini et al.: the batch interaction graph decides whether the OF is the unique minimiser
    row = Row("Batch graph: OF unique iff conditions (a), (b) (Kini et al. 2024)", "")
    if full:
        row.reason = "full batch (no batching given)"
    elif plus is None:
        row.reason = f"dim {d} < K"
    else:
        start = time.perf_counter()
        v = interaction.check_problem(plus)
        rep = interaction.report(v)
        w = rep["witness"]
        if v.unique_of is None:
            row.prediction, row.verdict, row.reason = "undecided", "not applicable", rep["reason"]
        elif v.unique_of:
            row.prediction = "OF is the unique minimiser"
            _check(row, plus, "of", steps, seed, cert)
        else:
            row.prediction = "OF not unique: " + rep["reason"]
            ok = bool(w and w.get("verified"))
            row.found = ("witness: " + w["changes"]) if w else "no witness"
            row.loss, row.predicted_loss = (w["loss"], w["of_loss"]) if w else (None, None)
            row.loss_difference = None if not w else w["loss"] - w["of_loss"]
            row.verdict = "holds" if ok else "fails"
            row.reason = "a different embedding keeps the OF loss" if ok else "no verified witness"
        row.seconds = time.perf_counter() - start
    rows.append(row)

    # 5. Graf et al.: L2-regularised CE, balanced -> ETF with classifier radius r_W
    ce = Problem(counts=counts, loss="ce", dim=dim, radius=radius, constraint="ball", weight_decay=weight_decay)
    row = Row("L2-regularised CE: simplex ETF, classifier radius r_W (Graf et al. 2021)", "etf")
    why = ("counts are imbalanced" if not ce.balanced else f"dim {d} < K-1" if d < K - 1 else
           "mini-batches (the theorem is full-batch)" if not full else "")
    if why:
        row.reason = why
    else:
        pred = theory.predict(ce)
        row.predicted_loss = pred.loss
        row.prediction = f"simplex ETF, r_W {pred.r_W:.6f}, loss {pred.loss:.8f}"
        _check(row, ce, "etf", steps, seed, cert)
    rows.append(row)
    return rows
