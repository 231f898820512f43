"""``certify``: a solution's loss beside a lower bound on the problem's minimum, and what theory predicted.

Methods (``method=``):
  * ``"reduced"``: the symmetry-reduced class-level program (full batch, or a batch set invariant under
    permutations within classes; always for CE, whose objective is the full mean). O(K^2) unknowns for any N.
  * ``"full"``: the full Gram program (any fixed batching; the batches' cliques when they form a chordal pattern).
  * ``"first-order"``: the linearisation bound at the solution with an eigenvalue dual (any batching, large N;
    needs a solution).
  * ``"auto"``: reduced when the batching allows, else full when ``N <= 150``, else first-order.

**Proofs, not solver values.** A convex solver's optimal value is accurate only to its tolerances and can lie
above the true minimum; ``lower_bound`` never is that value. Each method yields a *candidate* (the relaxation's
primal point, or the solution's own Gram), and ``solvers.dual`` turns a candidate into a proved bound: a Fenchel
dual point, a Cholesky-certified eigenvalue, every floating-point error subtracted. With a solution the
solution's own Gram is tried too unless the relaxation's proof already certifies it, and the larger proved bound
is kept (``details["bound_from"]``). The solver's number is kept
as ``solver_bound`` and the subtracted margin as ``bound_margin``; when nothing could be proved ``lower_bound`` is
None, ``certified`` False and ``details["why"]`` says why.

A loss whose objective declares no relaxation or dual bound (``Objective.certifiable`` False) gets one result:
``status`` ``"not certifiable"``, no bound, ``certified`` False (None without a solution), ``details["why"]``
saying so; it is never routed to another loss's proof.

The gap is the solution's objective, recomputed in float64 from its arrays after projecting ``Z`` onto the feasible
set (``solvers.first_order.solution_loss``), minus the bound. ``certified`` means ``gap <= tol * max(1, |loss|)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ufm import constraints, geometry, objectives, theory
from ufm.batching import batch_list, is_epoch_scheme, union_batches

from . import dual, first_order, relaxation
from .relaxation import SolverFailure

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["Certificate", "certify", "not_certifiable", "choose_method", "prediction_check", "METHODS", "FULL_MAX",
           "SolverFailure"]

METHODS = ("auto", "full", "reduced", "first-order")
FULL_MAX = 150  # auto: the full program up to this many samples


@dataclass
class Certificate:
    """What ``certify`` found.

    ``lower_bound``: a proved lower bound on the problem's minimum (None: nothing proved, ``details["why"]``);
    ``gap`` = ``loss - lower_bound`` and ``certified`` (``gap <= tol * max(1, |loss|)``), None without a solution;
    ``loss`` the solution's objective in float64; ``solver_bound`` the convex solver's own value (information,
    not a proof; None for first-order) and ``bound_margin`` the floating-point margin subtracted; ``method``,
    ``solver`` (``CLARABEL``/``SCS``, or ``dual`` for first-order), ``status``, ``seconds``;
    ``mean_cosines`` ``(K, K)`` and ``rank``: the class-level geometry and numerical rank of the relaxed Gram
    (None for first-order, which certifies the solution's own Gram); ``prediction``: the check against the
    theorem (:func:`prediction_check`); ``details``: method-specific numbers.
    """

    lower_bound: float | None
    gap: float | None
    certified: bool | None
    method: str
    solver: str
    status: str
    seconds: float
    mean_cosines: np.ndarray | None
    rank: int | None
    loss: float | None = None
    tol: float = 1e-6
    prediction: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    solver_bound: float | None = None
    bound_margin: float | None = None

    def to_dict(self) -> dict:
        """The keys ``ufm certify --json`` adds to the solve report."""
        return {
            "lower_bound": self.lower_bound, "solver_bound": self.solver_bound, "bound_margin": self.bound_margin,
            "gap": self.gap, "certified": self.certified, "tol": self.tol,
            "method": self.method, "solver": self.solver, "status": self.status,
            "certificate_seconds": self.seconds, "certificate_loss": self.loss,
            "relaxation": {"mean_cosines": None if self.mean_cosines is None else np.asarray(self.mean_cosines).tolist(),
                           "rank": self.rank},
            "prediction_check": self.prediction, "details": self.details,
        }


def _fixed_batches(problem):
    try:
        return batch_list(problem)
    except ValueError:
        raise ValueError(f"batching {problem.batching!r} draws new batches every epoch: there is no fixed objective "
                         "to certify (use 'full', 'fixed:b' or explicit batches)") from None


def choose_method(problem: Problem, method: str = "auto", has_solution: bool = True) -> str:
    """Resolve ``"auto"`` (module doc) and check that the method applies; ``ValueError`` naming ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _fixed_batches(problem)
    symmetric = relaxation.class_orbits(problem) is not None
    if method == "auto":
        method = "reduced" if symmetric else "full" if problem.N <= FULL_MAX or not has_solution else "first-order"
    if method == "reduced" and not symmetric:
        raise ValueError("method 'reduced' needs a batch set invariant under permutations within classes (the full "
                         "batch); use 'full' or 'first-order'")
    if method == "first-order" and not has_solution:
        raise ValueError("method 'first-order' certifies a solution: solve first (no --bound-only), or use "
                         "'reduced' / 'full'")
    return method


def prediction_check(problem: Problem, lower_bound=None, solution_cosines=None, relaxation_cosines=None,
                     tol: float = 1e-3) -> dict:
    """Does the geometry match the theorem's prediction (``ufm.theory.predict``), and by how much?

    Returns ``geometry`` (``etf``/``of``/``unknown``), ``reason``, the predicted ``loss``,
    ``bound_minus_predicted``, and for the ``solution`` and the ``relaxation``: ``max_abs_diff`` (the largest
    entry-wise difference of ``mean_cosines`` to the predicted Gram, ``etf_gram`` or ``of_gram``) and ``matches``
    (``max_abs_diff <= tol``); ``solution_vs_relaxation`` the same between the two (useful where theory says
    ``unknown``: the relaxation's geometry is the optimum's when it is tight); None where there is nothing to
    compare.
    """
    pred = theory.predict(problem)
    gram_of = {"etf": theory.etf_gram, "of": theory.of_gram}.get(pred.geometry)
    target = None if gram_of is None else gram_of(problem.K)

    def side(cos):
        if cos is None or target is None:
            return {"max_abs_diff": None, "matches": None}
        diff = float(np.max(np.abs(np.asarray(cos) - target)))
        return {"max_abs_diff": diff, "matches": bool(diff <= tol)}

    both = solution_cosines is not None and relaxation_cosines is not None
    diff = float(np.max(np.abs(np.asarray(solution_cosines) - np.asarray(relaxation_cosines)))) if both else None
    return {"geometry": pred.geometry, "reason": pred.reason, "loss": pred.loss,
            "bound_minus_predicted": None if pred.loss is None or lower_bound is None else lower_bound - pred.loss,
            "tol": tol, "solution": side(solution_cosines), "relaxation": side(relaxation_cosines),
            "solution_vs_relaxation": {"max_abs_diff": diff, "matches": None if diff is None else bool(diff <= tol)}}


def _check_solution(problem, solution):
    Z = np.asarray(solution.Z)
    if Z.ndim != 2 or Z.shape[0] != problem.N:
        raise ValueError(f"solution: Z must be (N, d) = ({problem.N}, d), got shape {Z.shape}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("solution: Z holds NaN or infinite values")
    if "W" in objectives.of(problem).variables and getattr(solution, "W", None) is None:
        raise ValueError(f"solution: a {problem.loss!r} solution needs its classifier W")
    if objectives.of(problem).prototypes:
        C = getattr(solution, "C", None)
        if C is None:
            raise ValueError(f"solution: a {problem.loss!r} solution needs its class prototypes C")
        C = np.asarray(C)
        if C.shape != (problem.K, Z.shape[1]) or not np.all(np.isfinite(C)):
            raise ValueError(f"solution: C must be finite and (K, d) = ({problem.K}, {Z.shape[1]}), got shape "
                             f"{C.shape}")


def certify(problem: Problem, solution: Any = None, method: str = "auto", solver: str | None = None,
            tol: float = 1e-6, *, geometry_tol: float = 1e-3) -> Certificate:
    """Certify ``solution`` (anything with ``Z`` and, for CE, ``W``/``b``; None: the bound alone) for ``problem``.

    Args:
      method: ``"auto"``, ``"full"``, ``"reduced"`` or ``"first-order"`` (module doc).
      solver: ``"CLARABEL"`` or ``"SCS"`` for the convex programs (None: Clarabel, then SCS).
      tol: relative tolerance of ``certified``. geometry_tol: of the prediction check's ``matches``.
    Raises:
      ValueError: a bad argument (naming it); SolverFailure: the convex or eigenvalue solver failed or was
      inaccurate (``status`` names it).
    """
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if solution is not None:
        _check_solution(problem, solution)
        if is_epoch_scheme(problem) and getattr(solution, "epochs", None):
            # an epoch run minimises the mean loss over the batches of all its epochs: certify that objective
            batches = tuple(tuple(b) for b in union_batches(problem, solution.epochs))
            problem = problem.replace(batching="explicit", batches=batches)
            method = "first-order" if method == "auto" else method
    if not objectives.of(problem).certifiable:
        return not_certifiable(problem, solution, tol)
    method = choose_method(problem, method, solution is not None)
    start = time.perf_counter()
    details: dict = {}
    loss = gap = certified = sol_cos = None
    if solution is not None:
        loss = first_order.solution_loss(problem, solution.Z, getattr(solution, "W", None),
                                         getattr(solution, "b", None), C=getattr(solution, "C", None))
    solver_bound, proofs = None, []
    if method == "first-order":
        solver_name, status, cos, rank = "dual", "optimal", None, None
    else:
        rel = relaxation.solve_relaxation(problem, method, solver)
        solver_bound, solver_name, status, cos, rank = rel.value, rel.solver, rel.status, rel.mean_cosines, rel.rank
        details = {"dim": problem.dim, "tight_rank": bool(rank <= problem.dim)}
        proofs.append(("relaxation", _relaxation_proof(problem, rel, loss)))
    done = any(p.lower_bound is not None and loss is not None and loss - p.lower_bound <= tol * max(1.0, abs(loss))
               for _, p in proofs)
    if solution is not None and not done:  # the linearisation at the solution itself: tight at an optimum
        if method == "reduced" and not objectives.of(problem).prototypes:
            # the solution averaged over the class symmetry, with the best multipliers
            proofs.append(("solution (class-level)", _class_solution_proof(problem, solution, loss)))
        proofs.append(("solution", _solution_proof(problem, solution, loss)))
    proved = [(k, p) for k, p in proofs if p.lower_bound is not None]
    if proved:
        where, best = max(proved, key=lambda kp: kp[1].lower_bound)
        bound = best.lower_bound
        details.update(bound_from=where, bound_margin=best.margin, lambda_min=best.lambda_min,
                       blocks=best.blocks, largest_block=best.largest)
    else:
        bound, best = None, None
        details.update(bound_from=None, why="; ".join(f"{k}: {p.why}" for k, p in proofs))
    if solution is not None:
        gap = None if bound is None else loss - bound
        certified = bool(gap is not None and gap <= tol * max(1.0, abs(loss)))  # type: ignore[arg-type]  # set above
        sol_cos = geometry.mean_cosines(geometry.normalize_rows(solution.Z) if objectives.of(problem).normalize_rows
                                        else np.asarray(solution.Z, dtype=np.float64), problem.label_array,
                                        problem.K)
    pred = prediction_check(problem, bound, sol_cos, cos, geometry_tol)
    return Certificate(bound, gap, certified, method, solver_name, status, time.perf_counter() - start,
                       cos, rank, loss, tol, pred, details, solver_bound,
                       None if best is None else best.margin)


def not_certifiable(problem: Problem, solution=None, tol: float = 1e-6) -> Certificate:
    """The one result for a loss whose objective declares no certificate (``Objective.certifiable`` False):
    nothing proved, ``status`` ``"not certifiable"``; with a solution its float64 loss is still reported."""
    obj = objectives.of(problem)
    why = (f"loss {problem.loss!r} is not certifiable: its objective declares no convex relaxation and dual bound "
           f"(relaxation={obj.relaxation!r}, dual_bound={obj.dual_bound!r}; ufm.objectives)")
    loss = None
    if solution is not None:
        loss = first_order.solution_loss(problem, solution.Z, getattr(solution, "W", None),
                                         getattr(solution, "b", None), C=getattr(solution, "C", None))
    return Certificate(None, None, None if solution is None else False, "none", "none", "not certifiable", 0.0,
                       None, None, loss, tol, prediction_check(problem), {"why": why, "bound_from": None})


def _solution_proof(problem, solution, loss):
    """The dual bound at a solution's own Gram (``solvers.dual``), ``Z`` (and BCL's prototypes ``C``: the Gram of
    ``[Z; C]``) projected onto the feasible set."""
    Zp = first_order.feasible_rows(problem, solution.Z)
    if objectives.of(problem).dual_bound == "contrastive":
        X = first_order.gram_rows(problem, Zp, getattr(solution, "C", None))
        return dual.sc_bound(problem, lambda idx: X[idx] @ X[idx].T)
    W = np.asarray(solution.W, dtype=np.float64)
    logits = Zp @ W.T
    b = getattr(solution, "b", None)
    if problem.bias:
        logits = logits + first_order.best_bias(logits, b, problem.label_array, problem.K)
    return dual.ce_bound(problem, Zp @ Zp.T, logits, loss)


def _class_solution_proof(problem, solution, loss):
    """The class-level dual bound (``solvers.dual.sc_class_bound`` / ``ce_class_bound``) at a solution averaged
    over the within-class permutations: diagonal ``d_c``, within-class ``a_c`` and between-class ``M_cc'`` means of
    its Gram, class-level logits ``C_cc'`` (CE). Any candidate gives a valid bound; a converged solution gives a
    tight one, and the class-level proof picks its multipliers optimally (a K-variable program)."""
    labels, K = problem.label_array, problem.K
    Zp = first_order.feasible_rows(problem, solution.Z)
    n = np.bincount(labels, minlength=K).astype(np.float64)
    Y = np.zeros((problem.N, K))
    Y[np.arange(problem.N), labels] = 1.0
    S = Y.T @ Zp  # class sums
    norms = np.bincount(labels, weights=np.sum(Zp * Zp, axis=1), minlength=K)
    M = (S @ S.T) / np.outer(n, n)
    within = np.where(n >= 2, (np.sum(S * S, axis=1) - norms) / np.maximum(n * (n - 1), 1), norms / n)
    np.fill_diagonal(M, within)
    d = norms / n
    if objectives.of(problem).dual_bound == "contrastive":
        return dual.sc_class_bound(problem, relaxation.class_orbits(problem), d, within, M)
    W = np.asarray(solution.W, dtype=np.float64)
    C = (S @ W.T) / n[:, None]
    if problem.bias:
        return dual.DualBound(None, float("nan"), float("nan"), float("nan"), 0, 0,
                              "class-level: CE with a bias is proved from the full candidate")
    return dual.ce_class_bound(problem, d, within, M, C, loss)


def _relaxation_proof(problem, rel, loss):
    """The dual bound at the convex solver's primal point (``Relaxation.point``): the solver proposes, the
    dual arithmetic proves. CE needs an upper bound on the minimum: the solution's loss, else the relaxation's
    value (a bound on ``||W||`` only; raised by a safety factor, see ``solvers.dual.ce_bound``)."""
    pt = rel.point
    contrastive = objectives.of(problem).dual_bound == "contrastive"
    if rel.method == "reduced":
        if objectives.of(problem).prototypes:  # proved on the full Gram of [Z; C] the class-level point spans
            rows = problem.N + problem.K
            if rows > dual.DENSE_LIMIT:
                return dual.DualBound(None, float("nan"), float("nan"), float("nan"), 1, rows,
                                      f"the class-level candidate is proved on the full Gram of [Z; C], {rows} rows: "
                                      f"the smallest eigenvalue is proved only up to {dual.DENSE_LIMIT} (dense "
                                      "Cholesky)")
            return dual.sc_bound(problem, relaxation.expand_class_point(problem, pt))
        if contrastive:
            return dual.sc_class_bound(problem, relaxation.class_orbits(problem), pt["d"], pt["a"], pt["M"])
        upper = loss if loss is not None else _ce_upper(problem)
        return dual.ce_class_bound(problem, pt["d"], pt["a"], pt["M"], pt["C"], upper)
    if contrastive:
        return dual.sc_bound(problem, pt["G"])
    upper = loss if loss is not None else _ce_upper(problem)
    logits = pt["C"]
    if problem.bias:
        logits = logits + first_order.best_bias(logits, None, problem.label_array, problem.K)
    return dual.ce_bound(problem, pt["G"], logits, upper)


def _ce_upper(problem):
    """An upper bound on the CE minimum without a solution: the loss at ``Z = 0``, ``W = 0`` (``log K``), when
    that point is feasible (ball, no constraint); on the sphere, ``log K + lambda_Z rho^2`` (``W = 0``)."""
    extra = problem.feature_decay * problem.radius ** 2 if constraints.get(problem.constraint).equality else 0.0
    return float(np.log(problem.K)) + extra
