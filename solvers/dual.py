"""Rigorous lower bounds: a dual-feasible point, evaluated with its floating-point error subtracted.

Every ``lower_bound`` that ``solvers.certify`` reports comes from here (docs/theory.md, "How the bounds are made
rigorous"). The convex solvers only *propose* a point; the proof is this module's arithmetic.

**Affine minorant (Fenchel).** For any probability vector ``q``, ``logsumexp(x) >= <q, x> - sum_k q_k log q_k``.
For float weights ``q >= 0`` with real sum ``S`` (not exactly 1 in floating point) the exact statement is
``logsumexp(x) >= <q, x>/S + H(q)/S + log S``; the distance to ``<q, x> + H(q)`` is bounded by ``|S - 1|`` and
subtracted. Applied to every anchor (SC) or sample (CE) with ``q`` the softmax at a candidate Gram ``Ĝ`` (a
solution's ``Z Zᵀ`` or a convex solver's optimum), the loss is ``>= <Q, G> + c`` for every feasible ``G``.

**The constraint set.** For any ``mu`` (``<= 0`` on the ball) and symmetric ``Lambda >= 0`` (only with
non-negative features, where ``G >= 0``): ``<Q, G> >= rho^2 sum(mu) + sum_blocks n_b rho^2 min(0,
lambda_min(A_b))`` with ``A = Q - Diag(mu) - Lambda`` split into its connected blocks (samples that never share a
batch do not interact). ``mu``, ``Lambda`` are chosen from ``Ĝ`` (tight at an optimum) but any choice is valid;
``A``'s off-diagonal entries are ``Q``'s (or ``min(Q, 0)`` where ``Lambda`` acts) exactly, and ``mu`` is *defined*
as ``Q_ii - A_ii`` from the stored diagonal, so ``A`` is exactly the matrix that is factorised.

**lambda_min from below** (:func:`lambda_min_lower`). A floating-point Cholesky factorisation of ``Ã = fl(A - s
I)`` that runs to completion proves ``Ã + ΔA ⪰ 0`` with ``||ΔA||_2 <= gamma_{n+1}/(1 - gamma_{n+1}) tr(Ã)``
(Demmel 1989; Higham 2002, Thm 10.5), so ``lambda_min(A) >= s - u max|Ã_ii| - gamma_{n+1}/(1-gamma_{n+1})
tr(Ã)``, doubled for safety. ``s`` starts just below an estimate of ``lambda_min`` and moves down until the
factorisation succeeds.

**Rounding.** Every other sum is bounded by ``gamma_n sum |terms|`` (any summation order) and every elementary
function by ``8u`` relative; all margins are added up in ``margin`` and subtracted; the result is then moved down
by a few units in the last place.

References:
  Higham, *Accuracy and Stability of Numerical Algorithms* (2nd ed., SIAM 2002), Thm 10.5 and §3.1.
  Rump, "Verification of positive definiteness", BIT 46 (2006).
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ufm import constraints, objectives
from ufm.batching import batch_list

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ufm.classlevel import ClassProblem
    from ufm.problem import Problem
    from ufm.reduced import GroupProblem

__all__ = ["DualBound", "lambda_min_lower", "lambda_min_lower_many", "sc_bound", "ce_bound", "sc_class_bound",
           "bcl_class_bound", "ce_class_bound", "sc_group_bound", "ce_group_bound", "bcl_group_bound", "components",
           "DENSE_LIMIT", "U"]

U = 2.0 ** -53  # unit roundoff of float64
FN = 8.0  # relative error allowed for one elementary function (exp, log) or a handful of operations
DENSE_LIMIT = 12_000  # largest block whose smallest eigenvalue is bounded (a dense Cholesky factorisation)
ZERO_TOL = 1e-6  # Lambda acts on pairs with Ĝ_ik <= ZERO_TOL rho^2 (non-negative features)


def gamma(k: float) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)``: the relative error of ``k`` floating-point operations."""
    return k * U / (1.0 - k * U)


def _down(x: float, ulps: int = 4) -> float:
    for _ in range(ulps):
        x = float(np.nextafter(x, -np.inf))
    return x


class DualBound(NamedTuple):
    """A proved lower bound. ``lower_bound`` (None when nothing could be proved; ``why`` says why), ``value``:
    the same before subtracting ``margin`` (the total floating-point margin), ``lambda_min``: the smallest proved
    eigenvalue lower bound over the blocks, ``blocks``: how many, ``largest``: rows of the largest."""

    lower_bound: float | None
    value: float
    margin: float
    lambda_min: float
    blocks: int
    largest: int
    why: str = ""


EIGH_MAX = 1500  # beyond: a Lanczos estimate (a dense eigh's O(n^3) reduction would dominate the Cholesky)


def _estimate(A) -> float:
    """An estimate of ``lambda_min(A)`` (no proof needed: the Cholesky test decides)."""
    n = A.shape[0]
    if n <= EIGH_MAX:
        return float(scipy.linalg.eigh(A, eigvals_only=True, subset_by_index=[0, 0], driver="evr")[0])
    try:
        v0 = np.random.default_rng(0).standard_normal(n)
        return float(scipy.sparse.linalg.eigsh(A, k=1, which="SA", tol=1e-12, maxiter=20 * n, v0=v0,
                                               return_eigenvectors=False)[0])
    except (scipy.sparse.linalg.ArpackNoConvergence, scipy.sparse.linalg.ArpackError):
        return 0.0


def lambda_min_lower(A: np.ndarray, estimate: float | None = None, tries: int = 16) -> float | None:
    """A proved lower bound on the smallest eigenvalue of the symmetric matrix ``A`` (its float64 entries taken
    as exact), or None when no factorisation succeeded.

    Args:
      A: ``(n, n)`` symmetric float64 (symmetrised here: the bound is for ``(A + Aᵀ)/2`` taken exactly when ``A``
        is symmetric).
      estimate: an estimate of ``lambda_min`` (computed when None).
      tries: shifts tried, each further below the estimate.
    Returns:
      ``s - margin`` for the first shift ``s`` at which ``cholesky(A - s I)`` completes (module doc).
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    if n == 0:
        return math.inf
    if not np.all(np.isfinite(A)) or not np.array_equal(A, A.T):
        return None
    if n == 1:
        return float(A[0, 0])
    if estimate is None:
        estimate = _estimate(A)
    scale = float(np.max(np.abs(A).sum(axis=1)))  # >= ||A||_2
    if scale == 0.0:
        return 0.0
    g = gamma(n + 1)
    idx = np.arange(n)
    trace = float(np.sum(np.abs(A[idx, idx] - estimate)))
    step = max(4 * g * trace, 64 * U * scale, 1e-300)  # about the size the margin will have
    for _ in range(tries):
        s = estimate - step
        At = A.copy()
        At[idx, idx] = At[idx, idx] - s
        try:
            scipy.linalg.cholesky(At, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            step *= 4.0
            continue
        d = A[idx, idx] - s  # the factorised diagonal (recomputed: At was overwritten); positive on success
        if np.any(d <= 0):
            step *= 4.0
            continue
        tr = math.fsum(d.tolist()) * (1 + 2 * U)
        margin = U * float(d.max()) + 2.0 * (g / (1.0 - g)) * tr + n * 1e-300
        return _down(s - margin * (1 + 4 * U))
    return None


def components(batches: Sequence[ArrayLike] | None, n: int) -> list[np.ndarray]:
    """Samples grouped by the batches that join them (connected components of "shares a batch"); the full batch
    (``batches`` None) is one group. Samples in no batch form no group."""
    if batches is None:
        return [np.arange(n)]
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen = np.zeros(n, bool)
    for B in batches:
        B = np.asarray(B, dtype=np.int64)
        seen[B] = True
        r = find(B[0])
        for i in B[1:]:
            ri = find(i)
            if ri != r:
                parent[ri] = r
    roots = np.array([find(i) for i in range(n)])
    return [np.flatnonzero((roots == r) & seen) for r in np.unique(roots[seen])]


# -- the constraint set: <Q, G> over the feasible Grams -------------------------------------------------------------
def _feasible_min(problem, Q, Ghat, blocks, radius2_bound, estimate=None):
    """Proved lower bound pieces of ``min <Q, G>`` over the feasible Grams, for a dense ``Q`` (N x N, exact
    floats, symmetric) and the candidate ``Ghat``. Returns ``(value, margin, lambda_min, why)``.

    ``radius2_bound``: ``rho^2`` on the sphere/ball; for ``constraint="none"`` the bound ``R`` on ``tr G``."""
    n = Q.shape[0]
    A = Q.copy()
    idx = np.arange(n)
    if problem.nonneg:  # Lambda = max(Q, 0) on the pairs where Ĝ is (numerically) zero, off the diagonal
        act = (Ghat <= ZERO_TOL * radius2_bound) & (Q > 0)
        act[idx, idx] = False
        A[act] = 0.0  # = Q - Lambda exactly (Lambda_ik = Q_ik there)
    if not constraints.get(problem.constraint).bounded:
        mu_hat = np.zeros(n)
    else:
        rq = np.einsum("ik,ki->i", A, Ghat)  # ((Q - Lambda) Ĝ)_ii
        mu_hat = rq / radius2_bound
        if constraints.get(problem.constraint).mu_sign == "nonpositive":
            mu_hat = np.minimum(mu_hat, 0.0)
    A[idx, idx] = Q[idx, idx] - mu_hat  # mu := Q_ii - A_ii exactly (ball: A_ii >= Q_ii since mu_hat <= 0)
    if not constraints.get(problem.constraint).bounded:
        mu_term, mu_margin = 0.0, 0.0
    else:
        s = math.fsum(np.concatenate([Q[idx, idx], -A[idx, idx]]).tolist())  # sum(mu), correctly rounded
        mu_term = radius2_bound * s
        mu_margin = 4 * U * abs(mu_term) + 1e-300
    lam_all, total, margin, largest = math.inf, 0.0, 0.0, 0
    for comp in blocks:
        sub = A[np.ix_(comp, comp)]
        largest = max(largest, len(comp))
        if len(comp) > DENSE_LIMIT:
            return None, None, None, (f"a block of {len(comp)} samples: the smallest eigenvalue is proved only "
                                      f"up to {DENSE_LIMIT} (dense Cholesky)")
        lam = lambda_min_lower(sub, estimate)
        if lam is None:
            return None, None, None, "no Cholesky factorisation completed: the eigenvalue bound failed"
        lam_all = min(lam_all, lam)
        if lam < 0:
            reach = radius2_bound if not constraints.get(problem.constraint).bounded else len(comp) * radius2_bound
            term = reach * lam
            total += term
            margin += 4 * U * abs(term)
            if not constraints.get(problem.constraint).bounded:  # tr G <= R overall: one block takes it all
                total, margin = min(total, term), 4 * U * abs(min(total, term))
    return mu_term + total, mu_margin + margin, lam_all, ""


def _finish(value_pieces, margin, lam, blocks, largest, why):
    if why:
        return DualBound(None, math.nan, math.nan, math.nan, blocks, largest, why)
    value = math.fsum(value_pieces)
    margin = margin + 8 * U * sum(abs(v) for v in value_pieces) + 1e-300
    return DualBound(_down(value - margin), value, margin, lam, blocks, largest)


# -- SC ------------------------------------------------------------------------------------------------------------
def _sc_minorant(problem, Gh, batches, ys, T, anchors=None):
    """The SC affine minorant ``<Q, G> + const`` of one block (module doc) from its candidate ``Gh (n, n)``, with
    ``batches`` in block indices, their labels ``ys`` and which of their rows are anchors (``anchors``; None:
    all; a loss with prototypes has rows that are not). Returns ``(Q, const, margin, slots)``; None when no
    anchor has a positive; a string saying why when the weights cannot be used."""
    tau, rho2 = problem.tau, problem.radius ** 2
    log_weights = objectives.of(problem).log_weights
    n = Gh.shape[0]
    W = np.zeros((n, n))  # sum over anchor slots of (q_ik - [k positive]/|P_i|)
    visits = np.zeros(n, dtype=np.int64)
    ent, slots, margin = [], 0, 0.0
    for j, (Bl, y) in enumerate(zip(batches, ys)):
        nb = len(Bl)
        if nb < 2:
            continue
        off = ~np.eye(nb, dtype=bool)
        pos = off & (y[:, None] == y[None, :])
        npos = pos.sum(1)
        a = (npos > 0) if anchors is None else (npos > 0) & anchors[j]
        if not a.any():
            continue
        lw = np.where(off, log_weights(y, np.ones(nb, bool)), 0.0)[a]  # the objective's fixed log-weights
        S = Gh[np.ix_(Bl[a], Bl)] / tau + lw
        pos, npos, offa = pos[a], npos[a], off[a]
        mx = np.max(np.where(offa, S, -np.inf), axis=1, keepdims=True)
        E = np.where(offa, np.exp(np.where(offa, S - mx, 0.0)), 0.0)
        q = E / E.sum(axis=1, keepdims=True)  # the dual point: any non-negative floats
        Sf = q.sum(axis=1)
        delta = np.abs(Sf - 1.0) + 1.01 * gamma(nb) * Sf  # >= |S - 1|, S the exact sum of the floats q
        if np.any(delta > 1e-6):
            return "softmax weights far from normalised"
        with np.errstate(divide="ignore", invalid="ignore"):
            qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
        qc = np.where(offa, q * lw, 0.0)  # lse(x + c) >= <q, x + c> + H(q): the weights enter the constant
        h = -qlogq.sum(axis=1) + qc.sum(axis=1)
        habs = np.abs(qlogq).sum(axis=1) + np.abs(qc).sum(axis=1)
        ent.append(h)
        d1 = delta * (1 + 2 * delta)
        margin += float(np.sum(d1)) * rho2 / (T * tau)  # |1/S - 1| sum_k q_k |G_ik| / tau <= d1 rho^2 / tau
        margin += float(np.sum(np.abs(h) * d1 + habs * d1 + d1 + (gamma(nb) + 2 * FN * U) * habs
                               + nb * 1e-300)) / T
        W[np.ix_(Bl[a], Bl)] += q - pos / npos[:, None]
        visits[Bl[a]] += 1
        slots += int(a.sum())
    if slots == 0:
        return None
    c = 1.0 / (2.0 * T * tau)
    Q = (W + W.T) * c
    # |Q~ - Q| <= gamma_{m+8} (|W| + |W|ᵀ) c entry-wise; sum |W|_abs <= sum over slots of (S + 1) <= 2.01 slots
    margin += rho2 * gamma(int(visits.max()) + 8) * 2 * 2.01 * slots * c * (1 + 4 * U)
    const = math.fsum(np.concatenate(ent).tolist()) / T
    margin += 4 * U * abs(const)
    return Q, const, margin, slots


def sc_minorant(problem: Problem, Ghat):
    """``(Q (R, R), const)``: the SC affine minorant ``f(G) >= <Q, G> + const`` at the candidate ``Ghat`` (up to
    the margins :func:`sc_bound` subtracts); ``Q`` is the symmetrised gradient ``df/dG`` at ``Ghat`` and
    ``<Q, Ghat> + const = f(Ghat)``. For tests and small N."""
    R, batches, labels, anchor = objectives.gram_layout(problem)
    batches = [np.asarray(B, dtype=np.int64) for B in batches]
    out = _sc_minorant(problem, np.asarray(Ghat, dtype=np.float64), batches, [labels[B] for B in batches],
                       int(sum(anchor[B].sum() for B in batches)), [anchor[B] for B in batches])
    return out[:2]


def _require(problem, which: str) -> None:
    """``ValueError`` unless ``problem``'s objective declares the dual bound ``which`` (``ufm.objectives``): a
    classifier is not cross-entropy, a contrastive loss need not be a log-sum-exp in the Gram."""
    got = objectives.get(problem.loss).dual_bound
    if got != which:
        raise ValueError(f"loss {problem.loss!r} declares the dual bound {got!r}, not {which!r}: not certifiable "
                         "this way")


def _not_finite(*arrays) -> DualBound | None:
    """No bound (with the reason) when a candidate holds a NaN or an infinity: nothing is proved from it, and the
    multiplier program must not see it."""
    if all(np.all(np.isfinite(np.asarray(x, dtype=np.float64))) for x in arrays):
        return None
    return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "the candidate holds a NaN or an infinity")


def sc_bound(problem: Problem, gram: np.ndarray | Callable[[np.ndarray], np.ndarray]) -> DualBound:
    """Proved lower bound on the SC minimum from a candidate Gram (the problem's fixed batch set, ``batch_list``).

    Args:
      problem: an SC (or BCL) ``ufm.Problem`` with a fixed batch set.
      gram: ``(R, R)`` array, or a function ``idx -> Ĝ[idx][:, idx]`` (only pairs that share a batch are read;
        samples are handled block by block, so a callable avoids an ``R x R`` array for many small batches).
        ``R = N``, or ``N + K`` for a loss with prototypes: the Gram of ``[Z; C]`` (``ufm.objectives.gram_layout``;
        the prototypes join every batch, so then there is one block).
    """
    _require(problem, "contrastive")
    rho2 = problem.radius ** 2
    N, batches, labels, anchor = objectives.gram_layout(problem)  # N: the rows (samples, and any prototypes)
    if not callable(gram):
        full = np.asarray(gram, dtype=np.float64)
        gram = lambda idx: full[np.ix_(idx, idx)]  # noqa: E731
    fixed = batch_list(problem)
    batches = [np.asarray(B, dtype=np.int64) for B in batches]
    T = int(sum(anchor[B].sum() for B in batches))
    blocks = components(None if fixed is None else batches, N)
    where = np.full(N, -1, dtype=np.int64)
    for j, comp in enumerate(blocks):
        where[comp] = j
    by_block: dict[int, list] = {}
    for B in batches:
        by_block.setdefault(int(where[B[0]]), []).append(B)
    pieces, margin, lam_all, largest, slots_all = [], 0.0, math.inf, 0, 0
    for j, comp in enumerate(blocks):
        if len(comp) > DENSE_LIMIT:
            return DualBound(None, math.nan, math.nan, math.nan, len(blocks), len(comp),
                             f"a block of {len(comp)} samples that share batches: the smallest eigenvalue is "
                             f"proved only up to {DENSE_LIMIT} (dense Cholesky)")
        local = np.full(N, -1, dtype=np.int64)
        local[comp] = np.arange(len(comp))
        Gh = gram(comp)
        Gh = (Gh + Gh.T) / 2
        n = len(comp)
        mine = by_block.get(j, [])
        out = _sc_minorant(problem, Gh, [local[B] for B in mine], [labels[B] for B in mine], T,
                           [anchor[B] for B in mine])
        if isinstance(out, str):
            return DualBound(None, math.nan, math.nan, math.nan, 0, 0, out)
        if out is None:
            continue
        Q, const, m, slots = out
        margin += m
        slots_all += slots
        val, fmargin, lam, why = _feasible_min(problem, Q, Gh, [np.arange(n)], rho2)
        if why:
            return DualBound(None, math.nan, math.nan, math.nan, len(blocks), len(comp), why)
        pieces += [const, val]
        margin += fmargin
        lam_all, largest = min(lam_all, lam), max(largest, n)
    if slots_all == 0:  # no anchor has a positive: the loss is 0 everywhere
        return DualBound(0.0, 0.0, 0.0, 0.0, 0, 0)
    return _finish(pieces, margin, lam_all, len(blocks), largest, "")


# -- CE ------------------------------------------------------------------------------------------------------------
def _ce_weights(logits):
    m = logits.max(axis=1, keepdims=True)
    E = np.exp(logits - m)
    q = E / E.sum(axis=1, keepdims=True)
    Sf = q.sum(axis=1)
    K = logits.shape[1]
    delta = np.abs(Sf - 1.0) + 1.01 * gamma(K) * Sf
    with np.errstate(divide="ignore", invalid="ignore"):
        qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return q, delta, -qlogq.sum(axis=1), np.abs(qlogq).sum(axis=1)


def _ce_reach(problem, upper):
    """``(rho2, logit bound)``: the bound on ``|G_ik|`` and ``|<z_i, w_c>|`` over the sublevel set ``f <= upper``
    (``lambda_W ||W||^2 <= f``; without a norm constraint ``lambda_Z ||Z||_F^2 / N <= f``)."""
    wd, fd, N = problem.weight_decay, problem.feature_decay, problem.N
    wnorm = math.sqrt(upper / wd)
    if not constraints.get(problem.constraint).bounded:
        r2 = N * upper / fd
    else:
        r2 = problem.radius ** 2
    return r2, math.sqrt(r2) * wnorm


def _bias_margin(q, delta, labels, K, N, cmax, r2, wd, Fa):
    """With a free bias the minorant's bias term vanishes only when the dual weights have the exact class
    marginals: ``sum_i q'_ic = n_c``. ``q' = q/S + r_c w_i`` (``r_c`` the marginal defects, ``w_i`` proportional to
    the row's smallest weight) does that with rows still summing to 1, and stays ``>= 0`` when ``sum_i min_c q_ic``
    exceeds the defects. Returns the margin for evaluating the bound at the floats ``q`` instead of ``q'``
    (linear, entropy and Schur terms), or None when no such ``q'`` is guaranteed."""
    n = np.bincount(labels, minlength=K).astype(np.float64)
    col = np.array([math.fsum(q[:, c].tolist()) for c in range(K)])
    R = np.abs(n - col) + U * np.abs(col) + 1.01 * (q * delta[:, None]).sum(0) * (1 + 4 * U) + 1e-300
    mins = q.min(axis=1) * (1 - 1.01 * delta)
    total = math.fsum(mins.tolist()) * (1 - 4 * U)
    if total <= 0 or total < R.max():
        return None
    w = mins / total
    eps = 1.01 * q * delta[:, None] + w[:, None] * R[None, :]  # >= |q'_ic - q_ic|
    eps = eps * (1 + 8 * U)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(eps > 0, eps * (1.0 - np.log(np.minimum(np.where(eps > 0, eps, 1.0), 1 / math.e))), 0.0)
    a = eps.sum(0) / N  # sum_i |F'_ic - F_ic| per class
    lin = float(eps.sum()) * cmax / N
    ent = float(phi.sum()) / N
    schur = r2 * float(np.sum(2 * a * Fa + a * a)) / (4 * wd)
    return (lin + ent + schur) * (1 + 8 * U)


def ce_bound(problem: Problem, Ghat: np.ndarray, logits: np.ndarray, upper: float) -> DualBound:
    """Proved lower bound on the CE minimum from a candidate feature Gram ``Ghat (N, N)`` and logits ``logits (N,
    K)`` (``Z Wᵀ`` of a solution, plus its best bias when the problem has one, or the convex solver's block).
    ``upper``: an upper bound on the minimum (a feasible point's loss), used to bound ``||W||`` (and ``tr G``
    without a norm constraint). With a bias the dual weights are moved onto exact class marginals
    (:func:`_bias_margin`)."""
    _require(problem, "ce")
    N, K = problem.N, problem.K
    labels = problem.label_array
    wd, fd = problem.weight_decay, problem.feature_decay
    assert wd is not None  # CE: the problem sets weight_decay (> 0)
    upper = float(upper) * (1 + 1e-9) + 1e-300
    r2, cmax = _ce_reach(problem, upper)
    q, delta, h, habs = _ce_weights(np.asarray(logits, dtype=np.float64))
    if np.any(delta > 1e-6):
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "softmax weights far from normalised")
    Y = np.zeros((N, K))
    Y[np.arange(N), labels] = 1.0
    F = (q - Y) / N
    B = (F @ F.T) / (4.0 * wd)  # <F, C> + wd tr V >= -<F Fᵀ, G>/(4 wd) for every PSD joint Gram (Schur)
    Q = -B
    idx = np.arange(N)
    Q[idx, idx] += fd / N
    Fa = np.abs(F).sum(axis=0)
    d1 = delta * (1 + 2 * delta)
    lin_err = float(np.sum(d1)) * cmax / N
    const_err = float(np.sum(h * d1 + d1 + (gamma(K) + FN * U) * habs + K * 1e-300)) / N
    q_err = r2 * (gamma(K + 8) * float(Fa @ Fa) / (4 * wd) * (1 + 4 * U) + 4 * U * N * abs(fd / N))
    if problem.bias:
        extra = _bias_margin(q, delta, labels, K, N, cmax, r2, wd, Fa)
        if extra is None:
            return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "CE with a bias: the softmax weights "
                             "cannot be moved onto the exact class marginals the bias asks for")
        lin_err, const_err = extra, 0.0  # the marginal repair's margin replaces the normalisation terms
    const = math.fsum(h.tolist()) / N
    if not constraints.get(problem.constraint).bounded:
        reach = N * upper / fd  # tr G on the sublevel set
    else:
        reach = problem.radius ** 2
    val, fmargin, lam, why = _feasible_min(problem, Q, np.asarray(Ghat, dtype=np.float64), [idx], reach)
    return _finish([const, val] if not why else [0.0], (fmargin or 0.0) + lin_err + const_err + q_err
                   + 4 * U * abs(const), lam, 1, N, why)


# -- class-level (block-constant) versions ---------------------------------------------------------------------------
def _block_lambda(n, alpha, beta, Gam):
    """Proved lower bound on lambda_min of the block-constant symmetric matrix with diagonal ``alpha_c``,
    within-class off-diagonal ``beta_c`` and between-class ``Gam_cc'`` (``Gam_cc`` ignored): the eigenvalues are
    ``alpha_c - beta_c`` (``n_c - 1`` times) and those of ``X = Diag(alpha - beta) + D^{1/2} Γ D^{1/2}``
    (``Γ_cc = beta_c``)."""
    n = np.asarray(n, dtype=np.float64)
    diff = alpha - beta
    G2 = Gam.copy()
    np.fill_diagonal(G2, beta)
    r = np.sqrt(n)
    X = np.diag(diff) + G2 * np.outer(r, r)
    X = (X + X.T) / 2
    err = 6 * U * float(np.linalg.norm(X)) + 4 * U * float(np.max(np.abs(diff)))  # sqrt, products, sums of X
    lam = lambda_min_lower(X)
    if lam is None:
        return None
    lam = lam - err
    multi = n >= 2
    if multi.any():
        lam = min(lam, float(np.min(diff[multi] - 2 * U * (np.abs(alpha[multi]) + np.abs(beta[multi])))))
    return _down(lam)



def _solved(prob, var) -> bool:
    """Solve ``prob`` with Clarabel, quietly; whether it found a point (``var`` has a value). Its multipliers only
    choose a dual point: the bound built from them is proved by the caller whatever the solver's accuracy."""
    import cvxpy as cp

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob.solve(solver="CLARABEL")
    except cp.error.SolverError:
        return False
    return prob.status in ("optimal", "optimal_inaccurate") and var.value is not None

def _best_class_multipliers(problem, nf, Qw, Qb, diag_q):
    """``mu``, ``Lambda`` that maximise the class-level bound for this ``Q`` (a K-variable SDP, the dual of
    ``min <Q, G>`` over block-constant feasible Grams), or None. Only a proposal: the caller proves the result."""
    import cvxpy as cp

    K = len(nf)
    scale = float(np.max(np.abs(np.concatenate([Qw, Qb.ravel(), diag_q])))) * float(nf.max()) or 1.0
    Qw_s, Qb_s, dq_s = Qw / scale, Qb / scale, diag_q / scale
    mu = cp.Variable(K)
    Lw = cp.Variable(K, nonneg=True) if problem.nonneg else np.zeros(K)
    Lb = cp.Variable((K, K), symmetric=True) if problem.nonneg else np.zeros((K, K))
    cons = []
    if problem.nonneg:
        cons += [Lb >= 0, cp.diag(Lb) == 0]
    if constraints.get(problem.constraint).mu_sign == "nonpositive":
        cons.append(mu <= 0)
    alpha, beta = dq_s - mu, Qw_s - Lw
    off = ~np.eye(K, dtype=bool)
    r = np.sqrt(nf)
    X = cp.diag(alpha - beta) + cp.multiply(np.outer(r, r), cp.multiply(off, Qb_s - Lb) + cp.diag(beta))
    multi = np.flatnonzero(nf >= 2)
    if len(multi):
        cons.append((alpha - beta)[multi] >= 0)
    cons.append((X + X.T) / 2 >> 0)
    prob = cp.Problem(cp.Maximize(nf @ mu), cons)
    if not _solved(prob, mu):
        return None
    lw = np.zeros(K) if not problem.nonneg else np.clip(np.asarray(Lw.value), 0, None) * scale
    lb = np.zeros((K, K)) if not problem.nonneg else np.clip((Lb.value + Lb.value.T) / 2, 0, None) * scale
    np.fill_diagonal(lb, 0.0)
    mu_v = np.asarray(mu.value) * scale
    return (np.minimum(mu_v, 0.0) if constraints.get(problem.constraint).mu_sign == "nonpositive" else mu_v), lw, lb


def _class_feasible(problem, n, Qw, Qb, diag_q, Ghat_d, Ghat_a, Ghat_M, optimal=True):
    """``min <Q, G>`` over feasible Grams for a block-constant ``Q`` (diagonal ``diag_q_c``, within ``Qw_c``,
    between ``Qb_cc'``) and a block-constant candidate ``Ĝ`` (diagonal ``d_c``, within ``a_c``, between
    ``M_cc'``). ``optimal``: choose the multipliers by the K-variable program (else from ``Ĝ`` by complementary
    slackness, no program). Returns ``(value, margin, lambda_min, why)``."""
    rho2 = problem.radius ** 2
    K = len(n)
    nf = np.asarray(n, dtype=np.float64)
    Aw, Ab = Qw.copy(), Qb.copy()
    if problem.nonneg:
        zero_b = (Ghat_M <= ZERO_TOL * rho2) & (Qb > 0) & ~np.eye(K, dtype=bool)
        Ab[zero_b] = 0.0
        zero_w = (Ghat_a <= ZERO_TOL * rho2) & (Qw > 0) & (nf >= 2)
        Aw[zero_w] = 0.0
    if not constraints.get(problem.constraint).bounded:
        mu_hat = np.zeros(K)
    else:
        off = Ab * ~np.eye(K, dtype=bool)
        rq = diag_q * Ghat_d + np.where(nf >= 2, (nf - 1) * Aw * Ghat_a, 0.0) + (off * Ghat_M) @ nf
        mu_hat = rq / rho2
        if constraints.get(problem.constraint).mu_sign == "nonpositive":
            mu_hat = np.minimum(mu_hat, 0.0)
    bounded = constraints.get(problem.constraint).bounded
    best = _best_class_multipliers(problem, nf, Qw, Qb, diag_q) if bounded and optimal else None
    if best is not None:  # the optimal multipliers for this Q (a proposal; proved below like any other)
        mu_hat, lw, lb = best
        Aw, Ab = Qw - lw, Qb - lb  # <= Q entry-wise (monotone rounding): Lambda := Q - A >= 0 exactly
    alpha = diag_q - mu_hat
    if not constraints.get(problem.constraint).bounded:
        mu_term = mu_margin = 0.0
    else:
        # mu := diag_q - alpha: exact reals, defined by the stored alpha
        parts = (nf * diag_q).tolist() + (-(nf * alpha)).tolist()
        mu_term = rho2 * math.fsum(parts)
        mu_margin = 4 * U * abs(mu_term) + 2 * U * rho2 * float(np.sum(nf * (np.abs(diag_q) + np.abs(alpha))))
    lam = _block_lambda(nf, alpha, Aw, Ab)
    if lam is None:
        return None, None, None, "no Cholesky factorisation completed: the eigenvalue bound failed"
    reach = (math.fsum(nf.tolist()) * rho2) if constraints.get(problem.constraint).bounded else rho2
    term = reach * min(0.0, lam)
    return mu_term + term, mu_margin + 8 * U * abs(term), lam, ""


def sc_class_bound(problem: ClassProblem, orbits: Sequence[tuple], d: np.ndarray, a: np.ndarray, M: np.ndarray,
                   optimal_multipliers: bool = True) -> DualBound:
    """Proved lower bound on the SC minimum for a batch set made of whole orbits (``relaxation.class_orbits``:
    ``(k, m)`` = class composition of a batch, multiplicity), from a block-constant candidate Gram: diagonal
    ``d (K,)``, within-class ``a (K,)``, between-class ``M (K, K)``. Any N: nothing N-sized is formed, and the
    class sizes may be real (``ufm.ClassProblem``). ``optimal_multipliers``: as ``optimal`` of
    :func:`_class_feasible`."""
    _require(problem, "contrastive")
    if (bad := _not_finite(d, a, M)) is not None:
        return bad
    if objectives.of(problem).prototypes:
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0, f"class-level: {problem.loss!r} has class "
                         "prototypes, which this bound does not hold; bcl_class_bound proves it over the joint Gram of [Z; C]")
    tau, rho2 = problem.tau, problem.radius ** 2
    class_log_weights = objectives.of(problem).class_log_weights
    n = np.asarray(problem.counts, dtype=np.float64)
    nf = n
    K = len(n)
    T = float(sum(m * float(np.sum(k)) for k, m in orbits))
    Wpair = np.zeros((K, K))  # sum over slots of the pair weight, per ordered class pair, times pair fractions
    Wabs = np.zeros((K, K))
    ent_parts, lin_err, const_err, slots, terms = [], 0.0, 0.0, 0.0, 0
    for k, m in orbits:
        # every anchor class c of the orbit at once (rows), against the classes present (columns): the same
        # floating-point operations per row as one anchor class alone, so the same error terms per row
        k = np.asarray(k, dtype=np.float64)
        A = np.flatnonzero(k >= 2)
        if not len(A):
            continue
        cls = np.flatnonzero(k >= 1)
        same = cls[None, :] == A[:, None]  # (|A|, |cls|)
        mult = k[cls][None, :] - same  # >= 1 everywhere: k[c] >= 2 on the diagonal
        clw = np.stack([class_log_weights(k, c)[cls] for c in A])  # type: ignore[misc]  # prototypes refused above
        logit = np.where(same, a[A][:, None], M[A][:, cls]) / tau + clw
        e = np.exp(logit - logit.max(axis=1, keepdims=True))
        qv = e / np.sum(mult * e, axis=1, keepdims=True)  # per-member weight
        Sf = np.sum(mult * qv, axis=1)
        delta = np.abs(Sf - 1.0) + 1.01 * gamma(2 * len(cls) + 2) * Sf  # K products, K sums
        if np.any(delta > 1e-6):
            return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "softmax weights far from normalised")
        with np.errstate(divide="ignore", invalid="ignore"):
            ql = np.where(qv > 0, qv * np.log(np.where(qv > 0, qv, 1.0)), 0.0)
        h = -np.sum(mult * ql, axis=1) + np.sum(mult * qv * clw, axis=1)
        habs = np.sum(mult * np.abs(ql), axis=1) + np.sum(mult * qv * np.abs(clw), axis=1)
        w = m * k[A]  # slots of this kind, per anchor class
        slots += float(np.sum(w))
        ent_parts.extend((w * h).tolist())
        d1 = delta * (1 + 2 * delta)
        lin_err += float(np.sum(w * d1)) * rho2 / (T * tau) * (1 + gamma(len(A) + 4))  # + the sum's rounding
        const_err += float(np.sum(w * (np.abs(h) * d1 + habs * d1 + d1 + (gamma(2 * len(cls) + 2) + 2 * FN * U)
                                       * habs))) / T * (1 + gamma(len(A) + 4))
        # pairs (i in c, j in c'): the batches of this orbit holding both, per pair (whole orbits)
        kA, nA = k[A][:, None], nf[A][:, None]
        frac = np.where(same, kA * (kA - 1) / (nA * (nA - 1)), kA * k[cls][None, :] / (nA * nf[cls][None, :]))
        Wpair[np.ix_(A, cls)] += m * frac * np.where(same, qv - 1.0 / (kA - 1), qv)
        Wabs[np.ix_(A, cls)] += m * frac * np.where(same, qv + 1.0 / (kA - 1), qv)
        terms += len(A)
    if slots == 0:
        return DualBound(0.0, 0.0, 0.0, 0.0, 0, 0)
    cst = 1.0 / (2.0 * T * tau)
    Qfull = (Wpair + Wpair.T) * cst  # entry of Q for a pair (i in c, k in c'), i != k
    Qw, Qb = np.diag(Qfull).copy(), Qfull
    # entry-wise error <= gamma_{terms+8} (Wabs + Wabsᵀ) cst, summed over all N^2 entries with the class sizes
    pair_count = np.outer(nf, nf) - np.diag(nf)
    q_err = rho2 * gamma(2 * terms + 12) * float(np.sum(pair_count * (Wabs + Wabs.T))) * cst * (1 + 4 * U)
    const = math.fsum(ent_parts) / T
    val, fmargin, lam, why = _class_feasible(problem, n, Qw, Qb, np.zeros(K), np.asarray(d, float),
                                             np.asarray(a, float), np.asarray(M, float), optimal_multipliers)
    size_err = gamma(2 * K + 4) * (abs(const) + abs(val or 0.0))  # T, N: sums of (real) class sizes, rounded
    return _finish([const, val] if not why else [0.0], (fmargin or 0.0) + lin_err + const_err + q_err
                   + 4 * U * abs(const) + size_err, lam, 1, int(n.sum()), why)


def _proto_multipliers(problem, nf, Qw, Qb, Qx):
    """``(mu (K,), nu (K,))`` that maximise the class-level bound with prototypes for this ``Q`` (a 2K-variable
    SDP), or None. Only a proposal: :func:`bcl_class_bound` proves whatever it returns."""
    import cvxpy as cp

    K = len(nf)
    scale = float(np.max(np.abs(np.concatenate([Qw, Qb.ravel(), Qx.ravel()])))) * float(nf.max()) or 1.0
    mu, nu = cp.Variable(K), cp.Variable(K)
    r = np.sqrt(nf)
    Gam = Qb / scale * ~np.eye(K, dtype=bool) + np.diag(Qw / scale)
    top = cp.diag(-mu - Qw / scale) + np.outer(r, r) * Gam
    cross = r[:, None] * Qx / scale
    Y = cp.bmat([[top, cross], [cross.T, cp.diag(-nu)]])
    cons = [(Y + Y.T) / 2 >> 0]
    multi = np.flatnonzero(nf >= 2)
    if len(multi):
        cons.append((-mu - Qw / scale)[multi] >= 0)
    if constraints.get(problem.constraint).mu_sign == "nonpositive":
        cons += [mu <= 0, nu <= 0]
    prob = cp.Problem(cp.Maximize(nf @ mu + cp.sum(nu)), cons)
    if not _solved(prob, mu):
        return None
    m, v = np.asarray(mu.value) * scale, np.asarray(nu.value) * scale
    if constraints.get(problem.constraint).mu_sign == "nonpositive":
        m, v = np.minimum(m, 0.0), np.minimum(v, 0.0)
    return m, v


def bcl_class_bound(problem: ClassProblem, d: np.ndarray, a: np.ndarray, M: np.ndarray, X: np.ndarray,
                    P: np.ndarray, optimal_multipliers: bool = True) -> DualBound:
    """Proved lower bound on the class-level minimum of a contrastive loss with class prototypes (BCL), full batch,
    from a candidate joint Gram of ``[Z; C]`` constant on class blocks: samples' diagonal ``d (K,)``, within-class
    ``a (K,)``, between-class ``M (K, K)``, the cross block ``X (K, K)`` (``<z_i in c, p_c'>``) and the prototypes'
    Gram ``P (K, K)`` (docs/theory.md §5). The class sizes may be real (``ufm.ClassProblem``); nothing N-sized is
    formed.

    The construction is :func:`sc_class_bound`'s on the ``(N + K)``-row Gram: per anchor class ``c`` the softmax
    ``q`` at the candidate over its ``kk_c'`` class-``c'`` samples and the prototypes ``p_c'`` gives the affine
    minorant ``<Q, G> + const`` (``Q`` constant on the blocks: within ``Qw``, between ``Qb``, sample-prototype
    ``Qx``, 0 between prototypes and on the diagonal); then ``<Q, G> >= rho^2 (sum_c n_c mu_c + sum_c' nu_c') +
    (N + K) rho^2 min(0, lambda_min(A))`` for ``A = Q - Diag(mu on the samples, nu on the prototypes)``
    (``mu, nu <= 0`` on the ball), whose eigenvalues are ``-mu_c - Qw_c`` (``n_c - 1`` times) and those of the
    ``2K x 2K`` matrix on the class indicators ``1_c / sqrt(n_c)`` and the prototypes, bounded below by a Cholesky
    factorisation. ``optimal_multipliers``: ``mu``, ``nu`` from a 2K-variable program (else from the candidate
    by complementary slackness); either way the arithmetic proves the result."""
    _require(problem, "contrastive")
    if not objectives.of(problem).prototypes:
        raise ValueError(f"loss {problem.loss!r} has no class prototypes: use sc_class_bound")
    if (bad := _not_finite(d, a, M, X, P)) is not None:
        return bad
    if problem.orbits is not None or problem.nonneg:
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "class-level with prototypes: the full batch "
                         "without nonneg only")
    tau, rho2 = problem.tau, problem.radius ** 2
    nf = np.asarray(problem.counts, dtype=np.float64)
    K = len(nf)
    a, M, X = (np.asarray(v, dtype=np.float64) for v in (a, M, X))
    T = math.fsum(nf.tolist())  # anchor slots: every sample (its prototype is a positive)
    eye = np.eye(K, dtype=bool)
    Wss, Wsp = np.zeros((K, K)), np.zeros((K, K))  # per anchor class: (q - [positive]/n_c), per member
    Ass, Asp = np.zeros((K, K)), np.zeros((K, K))  # the same with absolute values, for the rounding of Q
    ent_parts, lin_err, const_err = [], 0.0, 0.0
    g = gamma(4 * K + 4)
    for c in range(K):
        kk = nf - eye[c]
        lw = -np.log(kk + 1.0)
        has = kk > 0
        ls = np.where(eye[c], a[c], M[c]) / tau + lw
        lp = X[c] / tau + lw
        mx = max(float(np.max(ls[has], initial=-np.inf)), float(np.max(lp)))
        es = np.where(has, np.exp(np.where(has, ls - mx, 0.0)), 0.0)
        ep = np.exp(lp - mx)
        Zs = float(np.sum(kk * es)) + float(np.sum(ep))
        qs, qp = es / Zs, ep / Zs  # per member
        Sf = float(np.sum(kk * qs)) + float(np.sum(qp))
        delta = abs(Sf - 1.0) + 1.01 * g * Sf
        if delta > 1e-6:
            return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "softmax weights far from normalised")
        with np.errstate(divide="ignore", invalid="ignore"):
            qls = np.where(qs > 0, qs * np.log(np.where(qs > 0, qs, 1.0)), 0.0)
            qlp = np.where(qp > 0, qp * np.log(np.where(qp > 0, qp, 1.0)), 0.0)
        h = -float(np.sum(kk * qls)) - float(np.sum(qlp)) + float(np.sum((kk * qs + qp) * lw))
        habs = float(np.sum(kk * np.abs(qls))) + float(np.sum(np.abs(qlp))) + float(np.sum((kk * qs + qp) * -lw))
        w = float(nf[c])
        ent_parts.append(w * h)
        d1 = delta * (1 + 2 * delta)
        lin_err += w * d1 * rho2 / (T * tau)
        const_err += w * (abs(h) * d1 + habs * d1 + d1 + (g + 2 * FN * U) * habs) / T
        inv = 1.0 / nf[c]  # each of the n_c positives (kk_c class-mates and p_c) weighs 1/n_c
        Wss[c] = qs - eye[c] * inv
        Ass[c] = qs + eye[c] * inv
        Wsp[c] = qp - eye[c] * inv
        Asp[c] = qp + eye[c] * inv
    cst = 1.0 / (2.0 * T * tau)
    Qss = (Wss + Wss.T) * cst  # Q of a sample pair (i in c, k in c'), i != k
    multi = nf >= 2
    Qw, Qb = np.where(multi, np.diag(Qss), 0.0), Qss  # a singleton class has no within-class pair
    Qx = Wsp * cst  # Q of (sample in c, prototype c'), and of its transpose
    pair_count = np.outer(nf, nf) - np.diag(nf)
    q_err = rho2 * gamma(24) * cst * (1 + 4 * U) * (float(np.sum(pair_count * (Ass + Ass.T)))
                                                    + 2.0 * float(np.sum(nf[:, None] * Asp)))
    const = math.fsum(ent_parts) / T
    # -- min <Q, G> over the feasible joint Grams
    best = _proto_multipliers(problem, nf, Qw, Qb, Qx) if optimal_multipliers else None
    if best is None:  # complementary slackness at the candidate: mu_c = (Q Ĝ)_ii / rho^2, nu_c' = (Q Ĝ)_pp / rho^2
        off = Qb * ~eye
        mu_hat = (np.where(multi, (nf - 1) * Qw * a, 0.0) + (off * M) @ nf + np.sum(Qx * X, axis=1)) / rho2
        nu_hat = (nf @ (Qx * X)) / rho2
        if constraints.get(problem.constraint).mu_sign == "nonpositive":
            mu_hat, nu_hat = np.minimum(mu_hat, 0.0), np.minimum(nu_hat, 0.0)
    else:
        mu_hat, nu_hat = best
    alpha = -mu_hat  # mu := -alpha, nu := -pdiag: exact reals defined by the stored floats (Q's diagonal is 0)
    pdiag = -nu_hat
    parts = (-(nf * alpha)).tolist() + (-pdiag).tolist()
    mu_term = rho2 * math.fsum(parts)
    mu_margin = 4 * U * abs(mu_term) + 2 * U * rho2 * float(np.sum(nf * np.abs(alpha)) + np.sum(np.abs(pdiag)))
    diff = alpha - Qw
    r = np.sqrt(nf)
    Gam = Qb.copy()
    np.fill_diagonal(Gam, Qw)
    top = np.diag(diff) + Gam * np.outer(r, r)
    cross = r[:, None] * Qx
    Y = np.block([[top, cross], [cross.T, np.diag(pdiag)]])
    Y = (Y + Y.T) / 2
    err = 6 * U * float(np.linalg.norm(Y)) + 4 * U * float(np.max(np.abs(diff)))
    lam = lambda_min_lower(Y)
    if lam is None:
        return DualBound(None, math.nan, math.nan, math.nan, 1, int(T) + K,
                         "no Cholesky factorisation completed: the eigenvalue bound failed")
    lam = lam - err
    if multi.any():
        lam = min(lam, float(np.min(diff[multi] - 2 * U * (np.abs(alpha[multi]) + np.abs(Qw[multi])))))
    lam = _down(lam)
    term = (T + K) * rho2 * min(0.0, lam)
    val = mu_term + term
    fmargin = mu_margin + 8 * U * abs(term)
    size_err = gamma(2 * K + 4) * (abs(const) + abs(val))  # T = N: a sum of (real) class sizes, rounded
    return _finish([const, val], fmargin + lin_err + const_err + q_err + 4 * U * abs(const) + size_err, lam, 1,
                   int(T) + K, "")


def ce_class_bound(problem: ClassProblem, d: np.ndarray, a: np.ndarray, M: np.ndarray, C: np.ndarray, upper: float,
                   optimal_multipliers: bool = True) -> DualBound:
    """Proved lower bound on the CE minimum (full mean, no bias) from a block-constant candidate: feature Gram
    (``d``, ``a``, ``M`` as in :func:`sc_class_bound`) and class-level logits ``C (K, K)`` (``<z_i in c,
    w_c'>``). ``upper``: an upper bound on the minimum (:func:`ce_bound`)."""
    _require(problem, "ce")
    if (bad := _not_finite(d, a, M, C, upper)) is not None:
        return bad
    if problem.bias:
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0,
                         "CE with a bias: no rigorous bound is implemented (the dual needs exact class marginals)")
    if not constraints.get(problem.constraint).bounded:
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0,
                         "the class-level CE bound needs a norm constraint (use the full or first-order method)")
    n = np.asarray(problem.counts, dtype=np.float64)
    nf = n
    N, K = float(nf.sum()), len(n)
    wd, fd = problem.weight_decay, problem.feature_decay
    assert wd is not None  # CE: the problem sets weight_decay (> 0)
    upper = float(upper) * (1 + 1e-9) + 1e-300
    r2, cmax = _ce_reach(problem, upper)
    q, delta, h, habs = _ce_weights(np.asarray(C, dtype=np.float64))
    if np.any(delta > 1e-6):
        return DualBound(None, math.nan, math.nan, math.nan, 0, 0, "softmax weights far from normalised")
    F = (q - np.eye(K)) / N  # the row of F of every sample of class c
    B = (F @ F.T) / (4.0 * wd)  # block-constant (F Fᵀ)/(4 wd), the diagonal included
    Qb = -B
    Qw = -np.diag(B).copy()
    diag_q = fd / N - np.diag(B)
    Fa = nf @ np.abs(F)
    d1 = delta * (1 + 2 * delta)
    lin_err = float(nf @ d1) * cmax / N
    const_err = float(nf @ (h * d1 + d1 + (gamma(K) + FN * U) * habs)) / N
    q_err = r2 * (gamma(K + 8) * float(Fa @ Fa) / (4 * wd) * (1 + 4 * U) + 4 * U * abs(fd))
    const = math.fsum((nf * h).tolist()) / N
    val, fmargin, lam, why = _class_feasible(problem, n, Qw, Qb, diag_q, np.asarray(d, float),
                                             np.asarray(a, float), np.asarray(M, float), optimal_multipliers)
    size_err = gamma(2 * K + 4) * (abs(const) + abs(val or 0.0))  # T, N: sums of (real) class sizes, rounded
    return _finish([const, val] if not why else [0.0], (fmargin or 0.0) + lin_err + const_err + q_err
                   + 4 * U * abs(const) + size_err, lam, 1, int(N), why)


# -- the class-level problem reduced by the symmetry between classes of equal size (ufm.reduced) ---------------------
def _down_many(x, ulps: int = 4):
    for _ in range(ulps):
        x = np.nextafter(x, -np.inf)
    return x


def _cholesky_completes(A):
    """Whether the floating-point Cholesky factorisation of each ``A[p] (n, n)`` runs to completion (every pivot
    positive): the textbook algorithm, column by column, vectorised over the leading axis (Higham 2002, Alg. 10.2;
    Thm 10.5 holds for it with any order of the inner products)."""
    P, n, _ = A.shape
    L = np.zeros_like(A)
    ok = np.ones(P, dtype=bool)
    for j in range(n):
        v = A[:, j, j] - np.einsum("pk,pk->p", L[:, j, :j], L[:, j, :j])
        ok &= v > 0
        ljj = np.sqrt(np.where(v > 0, v, 1.0))
        L[:, j, j] = ljj
        if j + 1 < n:
            L[:, j + 1:, j] = (A[:, j + 1:, j] - np.einsum("pik,pk->pi", L[:, j + 1:, :j], L[:, j, :j])) / ljj[:, None]
    return ok & np.all(np.isfinite(L), axis=(1, 2))


def lambda_min_lower_many(A: np.ndarray, tries: int = 16) -> np.ndarray:
    """:func:`lambda_min_lower` for a stack of small symmetric matrices ``A (P, n, n)`` at once (the same proof,
    the factorisations vectorised). Returns ``(P,)`` proved lower bounds, NaN where no factorisation completed
    (or an entry is not finite, or a matrix is not exactly symmetric)."""
    A = np.asarray(A, dtype=np.float64)
    P, n, _ = A.shape
    out = np.full(P, np.nan)
    good = np.all(np.isfinite(A), axis=(1, 2)) & np.all(A == np.swapaxes(A, 1, 2), axis=(1, 2))
    if n == 1:
        out[good] = A[good, 0, 0]
        return out
    idx = np.arange(n)
    est = np.zeros(P)
    est[good] = np.linalg.eigvalsh(A[good])[:, 0]
    scale = np.max(np.abs(A).sum(axis=2), axis=1)
    g = gamma(n + 1)
    trace = np.sum(np.abs(A[:, idx, idx] - est[:, None]), axis=1)
    step = np.maximum(np.maximum(4 * g * trace, 64 * U * scale), 1e-300)
    todo = good.copy()
    for _ in range(tries):
        if not todo.any():
            break
        s = est - step
        At = A[todo].copy()
        At[:, idx, idx] -= s[todo, None]
        d = At[:, idx, idx].copy()  # the factorised diagonal, fl(A_ii - s)
        ok = _cholesky_completes(At) & np.all(d > 0, axis=1)
        tr = d.sum(axis=1) * (1 + gamma(n + 2))  # a sum of n positive floats, rounded up
        margin = U * d.max(axis=1) + 2.0 * (g / (1.0 - g)) * tr + n * 1e-300
        where = np.flatnonzero(todo)
        out[where[ok]] = _down_many((s[todo] - margin * (1 + 4 * U))[ok])
        step[where[~ok]] *= 4.0
        todo[where[ok]] = False
    return out


def sc_group_bound(problems: Sequence[GroupProblem], grams: Sequence[dict] | dict, optimal_multipliers: bool = False
                   ) -> list[DualBound]:
    """Proved lower bounds on the minima of reduced contrastive problems (``ufm.reduced.GroupProblem``, at radius 1
    or any radius), one per problem, from their reduced candidate Grams (a list of ``ufm.reduced.gram`` dicts, or
    one ``ufm.reduced.stack_gram`` dict for problems with the same ``G``), vectorised over problems with the same
    number of groups.

    The dual point is the class-level one of :func:`sc_class_bound` at the lifted (invariant) candidate: the
    softmax weights of each anchor class and the multipliers ``mu_c = (Q Ĝ)_ii / rho^2`` are equal on each group,
    so they are computed once per group; the smallest eigenvalue of the class-level ``A = Q - Diag(mu)`` is the
    least of ``alpha_g - Qw_g`` (within a class), ``alpha_g + (n_g - 1) Qw_g - n_g Qs_g`` (sum-zero vectors of a
    group's classes) and ``lambda_min(Y)``, ``Y_gg = alpha_g + (n_g - 1) Qw_g + (s_g - 1) n_g Qs_g``, ``Y_gh =
    sqrt(s_g n_g s_h n_h) Qb_gh`` (the group-ones subspace): an exact decomposition, each piece bounded with its
    rounding (docs/phase.md). So the result is a proved bound on the *class-level* problem's minimum, whatever
    ``K`` (nothing ``K``-sized is formed)."""
    problems = list(problems)
    for p in problems:
        _require(p, "contrastive")
    from ufm.reduced import stack_weights

    if isinstance(grams, dict):  # stacked (``ufm.reduced.stack_gram``): one G
        return _sc_group_bound_stack(list(problems), grams, problems[0].G, stack_weights, optimal_multipliers)
    out: list = [None] * len(problems)
    by_G: dict = {}
    for i, p in enumerate(problems):
        by_G.setdefault(p.G, []).append(i)
    for G, idx in by_G.items():
        for i, b in zip(idx, _sc_group_bound_stack([problems[i] for i in idx], [grams[i] for i in idx], G,
                                                   stack_weights, optimal_multipliers)):
            out[i] = b
    return out


def _best_group_multipliers(n, s, Qw, Qs, Qb, ball_floor=None):
    """``alpha (G,)`` (``mu = -alpha``) maximising ``sum_g s_g n_g mu_g`` subject to every eigenvalue of
    :func:`sc_group_bound` being ``>= 0``, or None. Only a proposal: the caller proves it. ``G <= 2`` in closed
    form (with ``u_g = Y_gg``: minimise ``w . u`` over ``u_0 u_1 >= Y_01^2``, ``u >= l``), to full precision;
    larger ``G`` by a G-variable SDP. ``ball_floor``: on the ball ``mu <= 0``, i.e. ``alpha >= diag_q``
    (``ball_floor``); None on the sphere."""
    G = len(n)
    sn = s * n
    c = (n - 1) * Qw + (s - 1) * n * Qs  # Y_gg = alpha_g + c_g
    low = np.full(G, -np.inf)  # the scalar eigenvalues' lower bounds on alpha
    low = np.where(n >= 2, np.maximum(low, Qw), low)
    low = np.where(s >= 2, np.maximum(low, n * Qs - (n - 1) * Qw), low)
    if ball_floor is not None:
        low = np.maximum(low, ball_floor)
    lu = np.maximum(low + c, 0.0)  # Y_gg >= 0 too
    if G <= 2:
        if G == 1:
            u = lu
        else:
            y2 = float(Qb[0, 1]) ** 2 * float(sn[0] * sn[1])
            ay = math.sqrt(y2)
            u = np.array([ay * math.sqrt(sn[1] / sn[0]), ay * math.sqrt(sn[0] / sn[1])])
            if u[0] < lu[0] and u[1] < lu[1]:
                u = lu.copy()
            elif u[0] < lu[0]:
                u = np.array([lu[0], max(lu[1], y2 / lu[0] if lu[0] > 0 else math.inf)])
            elif u[1] < lu[1]:
                u = np.array([max(lu[0], y2 / lu[1] if lu[1] > 0 else math.inf), lu[1]])
        u = u * (1 + 1e-12) + 1e-300
        alpha = u - c
        return alpha if np.all(np.isfinite(alpha)) else None
    import cvxpy as cp

    G = len(n)
    sn = s * n
    scale = float(np.max(np.abs(np.concatenate([Qw, Qs, Qb.ravel()])))) * float(np.max(sn)) or 1.0
    Qw_s, Qs_s, Qb_s = Qw / scale, Qs / scale, Qb / scale
    alpha = cp.Variable(G)
    cons = []
    for g in range(G):
        if n[g] >= 2:
            cons.append(alpha[g] - Qw_s[g] >= 0)
        if s[g] >= 2:
            cons.append(alpha[g] + (n[g] - 1) * Qw_s[g] - n[g] * Qs_s[g] >= 0)
    if ball_floor is not None:
        cons.append(alpha >= ball_floor)
    off = ~np.eye(G, dtype=bool)
    Yc = np.sqrt(np.outer(sn, sn)) * np.where(off, Qb_s, 0.0) + np.diag((n - 1) * Qw_s + (s - 1) * n * Qs_s)
    Y = cp.diag(alpha) + Yc
    cons.append((Y + Y.T) / 2 >> 0)
    prob = cp.Problem(cp.Minimize((sn / sn.max()) @ alpha), cons)
    if not _solved(prob, alpha):
        return None
    return np.asarray(alpha.value) * scale


def _sc_group_bound_stack(problems, grams, G, stack_weights, optimal=False):
    L = G + 1  # slots per anchor
    hs = stack_weights(problems)
    n, s, clw, tau, rho2 = hs["n"], hs["s"], hs["clw"], hs["tau"], hs["rho2"]  # (P, G), (P, G), (P, G, L), (P,)
    ball = np.array([constraints.get(p.constraint).mu_sign == "nonpositive" for p in problems])
    if isinstance(grams, dict):  # already stacked
        a, B = np.asarray(grams["a"], float), np.asarray(grams["B"], float)
    else:
        a = np.stack([np.asarray(gr["a"], float) for gr in grams])
        B = np.stack([np.asarray(gr["B"], float) for gr in grams])  # (P, G, G), b on the diagonal
    eye = np.eye(G, dtype=bool)
    # multiplicities of the slots (exact reals s_h n_h, (s_g - 1) n_g, n_g - 1), as floats
    mult = np.repeat((s * n)[:, None, :], G, axis=1)
    mult[:, eye] = (s - 1) * n
    mult = np.concatenate([mult, (n - 1)[:, :, None]], axis=2)  # (P, G, L)
    has = n >= 2  # anchor groups
    live = (mult > 0) & has[:, :, None]
    gram_slots = np.concatenate([B, a[:, :, None]], axis=2)  # (P, G, L)
    qv, Sf, h, habs = _slot_softmax(gram_slots, tau, clw, mult, live)
    gk = gamma(2 * L + 8)
    delta = np.where(has, np.abs(Sf - 1.0) + 1.01 * gk * Sf, 0.0)
    bad = np.any(delta > 1e-6, axis=1) | ~np.all(np.isfinite(qv), axis=(1, 2))
    wslots = np.where(has, s * n, 0.0)  # anchor slots of each group
    T = np.sum(s * n, axis=1)  # = N, the slots of the full batch (rounded: size_err)
    d1 = delta * (1 + 2 * delta)
    lin_err = np.sum(wslots * d1, axis=1) * rho2 / (T * tau)
    const_err = np.sum(wslots * (np.abs(h) * d1 + habs * d1 + d1 + (gk + 2 * FN * U) * habs), axis=1) / T
    const = np.sum(wslots * h, axis=1) / T
    const_err += gamma(2 * G + 4) * np.sum(np.abs(wslots * h), axis=1) / T
    # Q (block-constant, zero diagonal): within a class, between two classes of a group, between groups
    inv = np.where(has, 1.0 / np.where(has, n - 1, 1.0), 0.0)
    q_own, q_same = qv[:, :, G], qv[:, :, :G][:, eye]  # (P, G)
    q_cross = qv[:, :, :G]  # (P, G, G): anchor group g, negative group h
    cst = 1.0 / (2.0 * T * tau)
    Qw = 2.0 * (q_own - inv) * cst[:, None]
    Qs = 2.0 * q_same * cst[:, None]
    Qb = (q_cross + np.swapaxes(q_cross, 1, 2)) * cst[:, None, None]
    Qb[:, eye] = Qs
    # entry-wise error <= gamma(16) |W| sums * cst; weighted by the ordered pairs of each kind, times rho^2
    pair_w = s * n * (n - 1) * 2 * (q_own + inv)
    pair_s = s * (s - 1) * n * n * 2 * q_same
    sn = s * n
    cross_abs = q_cross + np.swapaxes(q_cross, 1, 2)
    pair_b = np.einsum("pg,ph,pgh->p", sn, sn, np.where(eye, 0.0, cross_abs))
    q_err = rho2 * gamma(16) * (np.sum(pair_w + pair_s, axis=1) + pair_b) * cst * (1 + gamma(8))
    val, fmargin, lam = _group_feasible(n, s, Qw, Qs, Qb, np.zeros_like(n), a, B, np.zeros_like(n), rho2, ball,
                                        T, optimal)
    size_err = gamma(2 * G + 8) * (np.abs(const) + np.abs(val))
    margin = lin_err + const_err + q_err + fmargin + 4 * U * np.abs(const) + size_err
    return _group_results(bad, lam, const, val, margin, T)


def _slot_softmax(slots, tau, lw, mult, live):
    """The dual point of a reduced contrastive bound: per anchor group, the softmax over its slots (``slots (P, G,
    L)`` Gram entries, ``lw`` their log-weights, ``mult`` their multiplicities; ``live`` the non-empty slots).

    Returns:
      ``(q, S, h, habs)``: the weight per member ``q (P, G, L)`` (any floats >= 0: the bound is proved for them),
      their sum ``S = sum mult q (P, G)``, the entropy part ``h = -sum mult q log q + sum mult q lw`` and the same
      with absolute values (for its rounding)."""
    with np.errstate(invalid="ignore", over="ignore"):
        logit = np.where(live, slots / tau[:, None, None] + lw, -np.inf)
        mx = np.max(logit, axis=2, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0.0)
        e = np.where(live, np.exp(logit - mx), 0.0)
        Z = np.sum(mult * e, axis=2, keepdims=True)
        qv = np.where(live, e / np.where(Z > 0, Z, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ql = np.where(qv > 0, qv * np.log(np.where(qv > 0, qv, 1.0)), 0.0)
    qc = np.where(live, qv * lw, 0.0)
    h = -np.sum(mult * ql, axis=2) + np.sum(mult * qc, axis=2)
    habs = np.sum(mult * np.abs(ql), axis=2) + np.sum(mult * np.abs(qc), axis=2)
    return qv, np.sum(mult * qv, axis=2), h, habs


def _group_results(bad, lam, const, val, margin, T):
    out = []
    for j in range(len(bad)):
        if bad[j]:
            out.append(DualBound(None, math.nan, math.nan, math.nan, 0, 0, "softmax weights far from normalised"))
        elif not math.isfinite(lam[j]):
            out.append(DualBound(None, math.nan, math.nan, math.nan, 0, 0,
                                 "no Cholesky factorisation completed: the eigenvalue bound failed"))
        else:
            out.append(_finish([float(const[j]), float(val[j])], float(margin[j]), float(lam[j]), 1, int(T[j]), ""))
    return out


def _group_feasible(n, s, Qw, Qs, Qb, diag_q, a, B, d, rho2, ball, T, optimal):
    """``min <Q, G>`` over the feasible class-level Grams for a group-invariant ``Q`` (``(P, G)`` diagonal
    ``diag_q``, within a class ``Qw``, between two classes of a group ``Qs``, between groups ``Qb (P, G, G)``), from
    the reduced candidate (``a``, ``B`` with ``b`` on its diagonal, ``d`` the samples' squared norms). Returns
    ``(value, margin, lambda_min)``, ``(P,)`` each (docs/phase.md, "The proved bound")."""
    P, G = n.shape
    eye = np.eye(G, dtype=bool)
    sn = s * n
    # multipliers by complementary slackness: mu_g = (Q Ĝ)_ii / rho^2 (any value is valid; proved below)
    Boff = np.where(eye, 0.0, B)
    rq = diag_q * d + (n - 1) * Qw * a + (s - 1) * n * Qs * np.diagonal(B, axis1=1, axis2=2) + np.einsum(
        "ph,pgh,pgh->pg", sn, Qb * ~eye, Boff)
    mu_hat = rq / rho2[:, None]
    mu_hat = np.where(ball[:, None], np.minimum(mu_hat, 0.0), mu_hat)
    alpha = diag_q - mu_hat  # A_ii = Q_ii - mu_i; mu := diag_q - alpha exactly (ball: mu <= 0 iff alpha >= diag_q)
    # A negative eigenvalue of a group's own directions (within a class, or the sum-zero vectors of its classes)
    # costs N rho^2 |lambda| when left to the global term, but only s_g n_g rho^2 |lambda| when that group's
    # multiplier absorbs it: raise alpha_g by the deficit (any alpha is a valid dual point; Y's diagonal only grows)
    multi = n >= 2
    need = np.maximum(np.where(multi, Qw - alpha + 2 * U * (np.abs(alpha) + np.abs(Qw)), -np.inf),
                      np.where(s >= 2, n * Qs - (n - 1) * Qw - alpha
                               + gamma(8) * (np.abs(alpha) + np.abs((n - 1) * Qw) + np.abs(n * Qs)), -np.inf))
    alpha = alpha + np.maximum(need, 0.0) * (1 + 1e-9)
    if optimal:
        for j in range(P):
            best = _best_group_multipliers(n[j], s[j], Qw[j], Qs[j], np.where(eye, 0.0, Qb[j]),
                                           diag_q[j] if ball[j] else None)
            if best is not None and np.all(np.isfinite(best)):
                alpha[j] = np.maximum(best, diag_q[j]) if ball[j] else best
    mu_term = rho2 * np.sum(sn * (diag_q - alpha), axis=1)
    mu_margin = gamma(G + 8) * rho2 * np.sum(sn * (np.abs(diag_q) + np.abs(alpha)), axis=1) + 1e-300
    # the eigenvalues of A, each with its rounding
    e1 = alpha - Qw
    e1_err = 2 * U * (np.abs(alpha) + np.abs(Qw))
    e2 = alpha + (n - 1) * Qw - n * Qs
    e2_err = gamma(8) * (np.abs(alpha) + np.abs((n - 1) * Qw) + np.abs(n * Qs))
    ydiag = alpha + (n - 1) * Qw + (s - 1) * n * Qs
    ydiag_abs = np.abs(alpha) + np.abs((n - 1) * Qw) + np.abs((s - 1) * n * Qs)
    Y = np.sqrt(sn[:, :, None] * sn[:, None, :]) * Qb
    Yerr = gamma(10) * np.abs(Y)
    Y[:, eye] = ydiag
    Yerr[:, eye] = gamma(10) * ydiag_abs
    lamY = lambda_min_lower_many(Y) - np.sqrt(np.sum(Yerr * Yerr, axis=(1, 2))) * (1 + gamma(G * G + 2))
    lam = lamY.copy()
    lam = np.minimum(lam, np.min(np.where(multi, e1 - e1_err, np.inf), axis=1))
    lam = np.minimum(lam, np.min(np.where(s >= 2, e2 - e2_err, np.inf), axis=1))
    lam = _down_many(lam)
    reach = T * (1 + gamma(G + 2)) * rho2 * (1 + 2 * U)  # >= N rho^2
    term = reach * np.minimum(0.0, lam)
    term_margin = 8 * U * np.abs(term) + 1e-300
    return mu_term + term, mu_margin + term_margin + 4 * U * (np.abs(mu_term) + np.abs(term)), lam


def ce_group_bound(problems, grams, logits, uppers, optimal_multipliers: bool = False) -> list[DualBound]:
    """Proved lower bounds on the CE minima of reduced problems (``ufm.reduced.GroupProblem`` with a classifier
    objective, full mean, no bias, sphere or ball), one per problem, all with the same ``G``: the class-level dual
    point of :func:`ce_class_bound` at the lifted candidate, with its eigenvalues taken group by group
    (:func:`sc_group_bound`).

    Args:
      problems: ``GroupProblem`` s (CE). grams: one ``ufm.reduced.stack_gram`` dict of the candidates' features.
      logits: ``(C (P, G, G), own (P, G))`` of ``ufm.reduced.ce_logits``. uppers: ``(P,)`` upper bounds on the
        minima (the candidates' losses), which bound ``||W||``.
      optimal_multipliers: as in :func:`sc_group_bound`.

    The softmax weights of an anchor class are equal on a group (``q_own``, ``q_same`` for another class of the
    group, ``q_gh``), so ``F = (q - I)/N`` has a row per group and ``B = F Fᵀ / (4 lambda_W)`` is block-constant:
    with ``S_gh = sum_l s_l F~_gl F~_hl`` (``F~_gg = F_same``), ``B`` within a class is ``S_gg + F_own^2 -
    F_same^2``, between two classes of a group ``S_gg + 2 F_same (F_own - F_same)``, and between groups ``S_gh +
    (F_own,g - F_same,g) F_hg + F_gh (F_own,h - F_same,h)``. Its rounding is bounded by ``ce_class_bound``'s term
    (``gamma_{K+8}``) plus ``4 gamma_{2G+16}`` of the same absolute sum."""
    problems = list(problems)
    for p in problems:
        _require(p, "ce")
    from ufm.reduced import stack_weights

    problems = list(problems)
    P, G = len(problems), problems[0].G
    if any(p.bias for p in problems):
        return [DualBound(None, math.nan, math.nan, math.nan, 0, 0, "CE with a bias: no rigorous bound is "
                          "implemented (the dual needs exact class marginals)")] * P
    hs = stack_weights(problems)
    n, s, rho2 = hs["n"], hs["s"], hs["rho2"]
    wd, fd = hs["weight_decay"], hs["feature_decay"]
    ball = np.array([constraints.get(p.constraint).mu_sign == "nonpositive" for p in problems])
    K = np.sum(s, axis=1)
    eye = np.eye(G, dtype=bool)
    C, own = (np.asarray(x, dtype=np.float64) for x in logits)
    upper = np.asarray(uppers, dtype=np.float64) * (1 + 1e-9) + 1e-300
    cmax = np.sqrt(rho2) * np.sqrt(upper / wd)  # |<z_i, w_c>| on the sublevel set (``_ce_reach``)
    # softmax over the K logits of a class of group g, with multiplicities (s_h, s_g - 1, 1)
    mult = np.repeat(s[:, None, :], G, axis=1)
    mult[:, eye] = s - 1
    mult = np.concatenate([mult, np.ones((P, G, 1))], axis=2)  # (P, G, G + 1): groups, same (col g), own (col G)
    live = mult > 0
    L = np.where(live, np.concatenate([C, own[:, :, None]], axis=2), -np.inf)
    mx = np.max(L, axis=2, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(live, np.exp(L - mx), 0.0)
        qv = np.where(live, e / np.sum(mult * e, axis=2, keepdims=True), 0.0)
    Sf = np.sum(mult * qv, axis=2)
    gk = gamma(2 * (G + 1) + 8)
    delta = np.abs(Sf - 1.0) + 1.01 * gk * Sf
    bad = np.any(delta > 1e-6, axis=1) | ~np.all(np.isfinite(qv), axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ql = np.where(qv > 0, qv * np.log(np.where(qv > 0, qv, 1.0)), 0.0)
    h = -np.sum(mult * ql, axis=2)
    habs = np.sum(mult * np.abs(ql), axis=2)
    sn = s * n
    N = np.sum(sn, axis=1)
    d1 = delta * (1 + 2 * delta)
    lin_err = np.sum(sn * d1, axis=1) * cmax / N
    const_err = np.sum(sn * (np.abs(h) * d1 + d1 + (gk + FN * U) * habs), axis=1) / N
    const = np.sum(sn * h, axis=1) / N
    const_err += gamma(G + 4) * np.sum(np.abs(sn * h), axis=1) / N
    # F = (q - I) / N, one row per group: F~_gh (h != g), F~_gg = F_same, F_own
    Ft = qv[:, :, :G] / N[:, None, None]
    Ft[:, eye] = np.where(s >= 2, Ft[:, eye], 0.0)
    F_same = Ft[:, eye]
    F_own = (qv[:, :, G] - 1.0) / N[:, None]
    Sm = np.einsum("pgl,pl,phl->pgh", Ft, s, Ft)
    c4 = 4.0 * wd[:, None]
    dgs = F_own - F_same
    Bo = (np.diagonal(Sm, axis1=1, axis2=2) + F_own * F_own - F_same * F_same) / c4
    Bs = (np.diagonal(Sm, axis1=1, axis2=2) + 2.0 * F_same * dgs) / c4
    Bx = (Sm + dgs[:, :, None] * np.swapaxes(Ft, 1, 2) + Ft * dgs[:, None, :]) / c4[:, :, None]
    Bx = (Bx + np.swapaxes(Bx, 1, 2)) / 2.0  # exactly symmetric (the error bound covers the average)
    Qw, Qs = -Bo, -Bs
    Qb = -Bx
    Qb[:, eye] = Qs
    diag_q = fd[:, None] / N[:, None] - Bo
    # rounding of Q: column sums of |F| weighted by the rows' sizes, Fa_g for a class of group g
    absF = np.abs(Ft)
    Fa = n * np.abs(F_own) + (s - 1) * n * np.abs(F_same) + np.einsum("ph,ph,phg->pg", s, n, np.where(eye, 0.0, absF))
    FaFa = np.sum(s * Fa * Fa, axis=1)
    gq = np.array([gamma(int(k) + 8) for k in K]) + 4 * gamma(2 * G + 16)
    q_err = rho2 * (gq * FaFa / (4 * wd) * (1 + 4 * U) + 4 * U * np.abs(fd) * (1 + gamma(G + 4)))
    a = np.asarray(grams["a"], float)
    B = np.asarray(grams["B"], float)
    d = np.asarray(grams["d"], float)
    val, fmargin, lam = _group_feasible(n, s, Qw, Qs, Qb, diag_q, a, B, d, rho2, ball, N, optimal_multipliers)
    size_err = gamma(2 * G + 8) * (np.abs(const) + np.abs(val))
    margin = lin_err + const_err + q_err + fmargin + 4 * U * np.abs(const) + size_err
    return _group_results(bad, lam, const, val, margin, N)


def bcl_group_bound(problems, grams, cross, optimal_multipliers: bool = False) -> list[DualBound]:
    """Proved lower bounds on the minima of reduced problems of a loss with class prototypes (BCL; ``ufm.reduced``,
    full batch, sphere or ball), one per problem, all with the same ``G``: the class-level dual point of
    :func:`bcl_class_bound` at the lifted candidate, with its eigenvalues taken group by group.

    Args:
      problems: ``GroupProblem`` s (BCL). grams: one ``ufm.reduced.stack_gram`` dict of the candidates' samples.
      cross: ``(X (P, G, G), Xo (P, G))``, ``ufm.reduced.ce_logits`` of the means and prototypes: ``<mu_c, p_c'>``
        between groups, for another class of the group (diagonal) and for the own prototype.
      optimal_multipliers: ``mu``, ``nu`` from a ``2G``-variable program (else from the candidate by
        complementary slackness); either way the arithmetic proves the result.

    The softmax weights of an anchor class are equal on its group, so ``Q`` is constant on the blocks: within a
    class ``Qw``, between two classes of a group ``Qs``, between groups ``Qb``; sample to prototype ``Qxo`` (its
    own), ``Qxs`` (another class of the group), ``Qxb``; and so are the multipliers (``mu = -alpha`` on the
    samples, ``nu = -beta`` on the prototypes). The ``2K x 2K`` matrix of :func:`bcl_class_bound` splits exactly
    into ``alpha_g - Qw_g`` (within a class), one ``2 x 2`` block per group on its sum-zero vectors, ``[[alpha_g +
    (n_g - 1) Qw_g - n_g Qs_g, sqrt(n_g) (Qxo_g - Qxs_g)], [., beta_g]]``, and the ``2G x 2G`` matrix on the
    group-ones vectors: samples ``Y_gg = alpha_g + (n_g - 1) Qw_g + (s_g - 1) n_g Qs_g``, ``Y_gh = sqrt(s_g n_g
    s_h n_h) Qb_gh``; sample to prototype ``sqrt(n_g) (Qxo_g + (s_g - 1) Qxs_g)`` and ``sqrt(n_g s_g s_h) Qxb_gh``;
    prototypes ``diag(beta)``. Each piece is bounded with its rounding (docs/phase.md); nothing ``K``-sized is
    formed."""
    problems = list(problems)
    for p in problems:
        _require(p, "contrastive")
        if not objectives.of(p).prototypes:
            raise ValueError(f"loss {p.loss!r} has no class prototypes: use sc_group_bound")
    from ufm.reduced import stack_weights

    hs = stack_weights(problems)
    n, s, tau, rho2, mult, lws = hs["n"], hs["s"], hs["tau"], hs["rho2"], hs["mult"], hs["lws"]
    P, G = n.shape
    ball = np.array([constraints.get(p.constraint).mu_sign == "nonpositive" for p in problems])
    a, B = np.asarray(grams["a"], float), np.asarray(grams["B"], float)
    X, Xo = (np.asarray(v, dtype=np.float64) for v in cross)
    eye = np.eye(G, dtype=bool)
    live = mult > 0
    slots = np.concatenate([B, a[:, :, None], X, Xo[:, :, None]], axis=2)  # (P, G, 2G + 2)
    qv, Sf, h, habs = _slot_softmax(slots, tau, lws, mult, live)
    gk = gamma(4 * G + 12)
    delta = np.abs(Sf - 1.0) + 1.01 * gk * Sf
    bad = np.any(delta > 1e-6, axis=1) | ~np.all(np.isfinite(qv), axis=(1, 2)) | ~np.all(np.isfinite(slots),
                                                                                       axis=(1, 2))
    sn = s * n  # anchor slots of each group: every sample
    T = np.sum(sn, axis=1)  # = N (rounded: size_err)
    K = np.sum(s, axis=1)
    d1 = delta * (1 + 2 * delta)
    lin_err = np.sum(sn * d1, axis=1) * rho2 / (T * tau)
    const_err = np.sum(sn * (np.abs(h) * d1 + habs * d1 + d1 + (gk + 2 * FN * U) * habs), axis=1) / T
    const = np.sum(sn * h, axis=1) / T
    const_err += gamma(2 * G + 4) * np.sum(np.abs(sn * h), axis=1) / T
    # Q: each of an anchor's n_c positives (its n_c - 1 class-mates and its prototype) weighs 1/n_c
    inv = 1.0 / n
    multi = n >= 2
    q_own, q_same, q_cross = qv[:, :, G], qv[:, :, :G][:, eye], qv[:, :, :G]
    p_own, p_same, p_cross = qv[:, :, 2 * G + 1], qv[:, :, G + 1:2 * G + 1][:, eye], qv[:, :, G + 1:2 * G + 1]
    cst = (1.0 / (2.0 * T * tau))[:, None]
    Qw = np.where(multi, 2.0 * (q_own - inv) * cst, 0.0)
    Qs = 2.0 * q_same * cst
    Qb = (q_cross + np.swapaxes(q_cross, 1, 2)) * cst[:, :, None]
    Qb[:, eye] = Qs
    Qxo, Qxs, Qxb = (p_own - inv) * cst, p_same * cst, p_cross * cst[:, :, None]
    # entry-wise error of Q <= gamma(32) |W| cst, summed over every entry of the (N + K)-row Gram, times rho^2
    pairs = (np.sum(sn * (n - 1) * 2 * np.where(multi, q_own + inv, 0.0) + s * (s - 1) * n * n * 2 * q_same, axis=1)
             + np.einsum("pg,ph,pgh->p", sn, sn, np.where(eye, 0.0, q_cross + np.swapaxes(q_cross, 1, 2))))
    sp = np.sum(sn * (p_own + inv + (s - 1) * p_same + np.einsum("ph,pgh->pg", s, np.where(eye, 0.0, p_cross))),
                axis=1)
    q_err = rho2 * gamma(32) * (pairs + 2.0 * sp) * cst[:, 0] * (1 + gamma(8))
    # multipliers by complementary slackness: mu_g = (Q Ĝ)_ii / rho^2, nu_h = (Q Ĝ)_pp / rho^2 (any are valid)
    b, Xs = np.diagonal(B, axis1=1, axis2=2), np.diagonal(X, axis1=1, axis2=2)
    off = ~eye
    mu_hat = ((n - 1) * Qw * a + (s - 1) * n * Qs * b + np.einsum("ph,pgh->pg", sn, Qb * off * B)
              + Qxo * Xo + (s - 1) * Qxs * Xs + np.einsum("ph,pgh->pg", s, Qxb * off * X)) / rho2[:, None]
    nu_hat = (n * Qxo * Xo + (s - 1) * n * Qxs * Xs + np.einsum("pg,pgh->ph", sn, Qxb * off * X)) / rho2[:, None]
    mu_hat = np.where(ball[:, None], np.minimum(mu_hat, 0.0), mu_hat)
    nu_hat = np.where(ball[:, None], np.minimum(nu_hat, 0.0), nu_hat)
    alpha, beta = -mu_hat, -nu_hat
    if optimal_multipliers:
        for j in range(P):
            best = _best_proto_group_multipliers(n[j], s[j], Qw[j], Qs[j], Qb[j], Qxo[j], Qxs[j], Qxb[j], ball[j])
            if best is not None:
                alpha[j], beta[j] = best
    # a negative eigenvalue of a group's own parts costs s_g n_g rho^2 |lambda| (within a class: alpha_g) or s_g
    # (n_g + 1) rho^2 |lambda| (its 2 x 2 block: alpha_g and beta_g) when that group's multipliers absorb it, (N +
    # K) rho^2 |lambda| when left to the global term; neither is always cheaper (the 2G x 2G block may bind
    # anyway), so both dual points are proved and the larger bound is kept (each is a valid dual point)
    need = np.where(multi, Qw - alpha + 2 * U * (np.abs(alpha) + np.abs(Qw)), -np.inf)
    a1 = alpha + np.maximum(need, 0.0) * (1 + 1e-9)
    x2, y2 = a1 + (n - 1) * Qw - n * Qs, np.sqrt(n) * (Qxo - Qxs)
    with np.errstate(invalid="ignore"):
        l2 = (x2 + beta) / 2 - np.sqrt(((x2 - beta) / 2) ** 2 + y2 * y2)
    raise2 = np.where((s >= 2) & np.isfinite(l2), np.maximum(-l2, 0.0) * (1 + 1e-9), 0.0)
    tries = [_proto_feasible(n, s, Qw, Qs, Qb, Qxo, Qxs, Qxb, al, be, rho2, T, K)
             for al, be in ((alpha, beta), (a1 + raise2, beta + raise2))]
    score = [np.where(np.isfinite(lm), v - m, -np.inf) for v, m, lm in tries]
    first = score[0] >= score[1]
    val, fmargin, lam = (np.where(first, x, y) for x, y in zip(*tries))
    size_err = gamma(2 * G + 8) * (np.abs(const) + np.abs(val))
    margin = lin_err + const_err + q_err + fmargin + 4 * U * np.abs(const) + size_err
    return _group_results(bad, lam, const, val, margin, T)


def _proto_feasible(n, s, Qw, Qs, Qb, Qxo, Qxs, Qxb, alpha, beta, rho2, T, K):
    """``(value, margin, lambda)`` of :func:`bcl_group_bound`'s ``min <Q, G>`` over the feasible joint Grams for
    the multipliers ``mu = -alpha`` (samples) and ``nu = -beta`` (prototypes), ``(P,)`` each: ``-rho^2 sum_g s_g
    (n_g alpha_g + beta_g) + (N + K) rho^2 min(0, lambda)``, ``lambda`` a proved lower bound on every eigenvalue of
    ``A`` (within a class, the ``2 x 2`` blocks, the ``2G x 2G`` block), each with its rounding."""
    P, G = n.shape
    eye = np.eye(G, dtype=bool)
    sn = s * n
    e1 = np.where(n >= 2, alpha - Qw - 2 * U * (np.abs(alpha) + np.abs(Qw)), np.inf)
    x2 = alpha + (n - 1) * Qw - n * Qs
    x2_err = gamma(8) * (np.abs(alpha) + np.abs((n - 1) * Qw) + np.abs(n * Qs))
    y2 = np.sqrt(n) * (Qxo - Qxs)
    y2_err = gamma(8) * np.sqrt(n) * (np.abs(Qxo) + np.abs(Qxs))
    M2 = np.stack([np.stack([x2, y2], axis=-1), np.stack([y2, beta], axis=-1)], axis=-2)  # (P, G, 2, 2)
    lam2 = lambda_min_lower_many(M2.reshape(P * G, 2, 2)).reshape(P, G)
    lam2 = lam2 - np.sqrt(x2_err ** 2 + 2 * y2_err ** 2) * (1 + gamma(4))
    lam2 = np.where(s >= 2, lam2, np.inf)
    rt = np.sqrt(sn)
    Yss = rt[:, :, None] * rt[:, None, :] * Qb
    ss_err = gamma(10) * np.abs(Yss)
    Yss[:, eye] = alpha + (n - 1) * Qw + (s - 1) * n * Qs
    ss_err[:, eye] = gamma(10) * (np.abs(alpha) + np.abs((n - 1) * Qw) + np.abs((s - 1) * n * Qs))
    Ysp = (np.sqrt(n * s)[:, :, None] * np.sqrt(s)[:, None, :]) * Qxb
    sp_err = gamma(10) * np.abs(Ysp)
    Ysp[:, eye] = np.sqrt(n) * (Qxo + (s - 1) * Qxs)
    sp_err[:, eye] = gamma(10) * np.sqrt(n) * (np.abs(Qxo) + np.abs((s - 1) * Qxs))
    Y = np.zeros((P, 2 * G, 2 * G))
    Y[:, :G, :G] = Yss
    Y[:, :G, G:] = Ysp
    Y[:, G:, :G] = np.swapaxes(Ysp, 1, 2)
    Y[:, G:, G:][:, eye] = beta
    Yfro = np.sqrt(np.sum(ss_err ** 2, axis=(1, 2)) + 2 * np.sum(sp_err ** 2, axis=(1, 2)))
    lamY = lambda_min_lower_many(Y) - Yfro * (1 + gamma(4 * G * G + 2))
    lam = _down_many(np.minimum(np.minimum(lamY, np.min(e1, axis=1)), np.min(lam2, axis=1)))
    reach = (T + K) * (1 + gamma(G + 2)) * rho2 * (1 + 2 * U)  # >= (N + K) rho^2, the joint Gram's trace
    term = reach * np.minimum(0.0, lam)
    mu_term = -rho2 * (np.sum(sn * alpha, axis=1) + np.sum(s * beta, axis=1))
    mu_margin = gamma(2 * G + 8) * rho2 * (np.sum(sn * np.abs(alpha), axis=1) + np.sum(s * np.abs(beta), axis=1))
    val = mu_term + term
    fmargin = mu_margin + 8 * U * np.abs(term) + 4 * U * (np.abs(mu_term) + np.abs(term)) + 1e-300
    return val, fmargin, np.where(np.isfinite(lam), lam, np.nan)


def _best_proto_group_multipliers(n, s, Qw, Qs, Qb, Qxo, Qxs, Qxb, ball):
    """``(alpha (G,), beta (G,))`` maximising :func:`bcl_group_bound`'s ``-sum_g s_g (n_g alpha_g + beta_g)``
    subject to every block of its ``A`` being PSD (a ``2G``-variable program), or None. Only a proposal: the
    caller proves it."""
    import cvxpy as cp

    G = len(n)
    sn = s * n
    scale = float(np.max(np.abs(np.concatenate([Qw, Qs, Qb.ravel(), Qxo, Qxs, Qxb.ravel()])))) * float(
        np.max(sn)) or 1.0
    Qw, Qs, Qb, Qxo, Qxs, Qxb = (v / scale for v in (Qw, Qs, Qb, Qxo, Qxs, Qxb))
    alpha, beta = cp.Variable(G), cp.Variable(G)
    cons = []
    off = ~np.eye(G, dtype=bool)
    for g in range(G):
        if n[g] >= 2:
            cons.append(alpha[g] - Qw[g] >= 0)
        if s[g] >= 2:
            y = math.sqrt(n[g]) * (Qxo[g] - Qxs[g])
            blk = cp.bmat([[cp.reshape(alpha[g] + (n[g] - 1) * Qw[g] - n[g] * Qs[g], (1, 1), order="C"),
                            np.array([[y]])], [np.array([[y]]), cp.reshape(beta[g], (1, 1), order="C")]])
            cons.append(blk >> 0)
    rt = np.sqrt(sn)
    Yss = cp.diag(alpha) + np.diag((n - 1) * Qw + (s - 1) * n * Qs) + np.outer(rt, rt) * np.where(off, Qb, 0.0)
    Ysp = np.where(off, np.sqrt(n * s)[:, None] * np.sqrt(s)[None, :] * Qxb, np.diag(np.sqrt(n) * (Qxo + (s - 1)
                                                                                                     * Qxs)))
    Y = cp.bmat([[Yss, Ysp], [Ysp.T, cp.diag(beta)]])
    cons.append((Y + Y.T) / 2 >> 0)
    if ball:
        cons += [alpha >= 0, beta >= 0]
    prob = cp.Problem(cp.Minimize((sn / sn.max()) @ alpha + (s / sn.max()) @ beta), cons)
    if not _solved(prob, alpha) or beta.value is None:
        return None
    out = np.asarray(alpha.value) * scale, np.asarray(beta.value) * scale
    return out if all(np.all(np.isfinite(v)) for v in out) else None
