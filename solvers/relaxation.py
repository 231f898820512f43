"""Convex relaxations of UFM problems over the Gram matrix, in cvxpy (docs/theory.md §5).

Dropping ``rank(G) <= d`` from a problem written in ``G = Z Zᵀ`` leaves a convex program whose optimal value is a
**lower bound** on the problem's minimum; a solution's loss minus that bound is a certified optimality gap.

**Full program** (:func:`full_program`). SC: minimise ``ufm.sc_loss`` written in ``G`` (ufm's normalisation:
mean over anchor slots; per anchor ``-(1/|P|) sum_P G_ij/tau + logsumexp_{k in B, k != i} G_ik/tau``, vectorised
into one gather and one ``log_sum_exp(axis=1)`` per batch width) over ``G ⪰ 0``, ``diag(G) = rho^2`` (sphere) or
``<= rho^2`` (ball), and ``G >= 0`` entry-wise for UFM+. Any fixed batching (``ufm.batching.batch_list``): the
loss only reads entries of pairs that share a batch, so when the batches form an acyclic hypergraph (a chordal
pattern: disjoint batches, batch-binding, ...) the program keeps one PSD block per maximal batch, equal on the
overlaps along a join tree; by Grone et al. (1984) this has the same value as the N x N program (with ``nonneg``
only the entries a batch reads are constrained ``>= 0``: still a lower bound, and the set the loss sees).
Otherwise one dense N x N block. CE: the joint Gram of ``[Z; W]`` (``(N+K)`` square), logits ``C = Z Wᵀ`` its
off-diagonal block, objective ``mean CE + weight_decay tr(V) + feature_decay tr(G)/N`` (``solvers.pgd.objective``),
optional free bias. The CE objective is always the full mean (as in ``solvers.pgd``), whatever the batching.

**Reduced program** (:func:`reduced_program`). When the batching is invariant under permutations within each class
(the full batch; in general any batch set that is a union of whole orbits, see :func:`class_orbits`), averaging an
optimal ``G`` over that group is optimal, so ``G`` may be taken constant on class blocks: a diagonal ``d_c``, a
within-class value ``a_c`` and between-class values ``M_cc'`` (``M_cc = a_c``; ``a_c = d_c`` for a singleton class).
With ``D = diag(n_c)``, ``G ⪰ 0`` iff ``d_c >= a_c`` and ``diag(d - a) + D^{1/2} M D^{1/2} ⪰ 0``; the program uses the
congruent ``M + diag((d - a)/n) ⪰ 0`` (O(1) entries for any N). O(K^2) unknowns, no N-sized array: the bound for
N = 10^8 costs what it costs for N = 100. CE: the same with the class-level blocks ``C`` (``<z_i in c, w_c'>``) and
``V = W Wᵀ`` of the joint Gram.

**Solvers.** Clarabel (interior point) by default, SCS as fallback; ``solver=`` picks one (no fallback then). A
status other than ``optimal`` raises :class:`SolverFailure` naming it, never a silent number. Clarabel runs at
tolerances 1e-12 first (then its defaults): the solver's primal point is the candidate that ``solvers.dual`` turns
into a proved bound, and a more accurate candidate gives a tighter proof. Cost:
Clarabel's Nesterov-Todd scaling of an n x n PSD block is dense in ``n(n+1)/2``: a dense full-batch block beyond
N ~ 60 takes minutes, so for PSD blocks of more than 64 rows SCS goes first (:func:`solver_order`; timings in
docs/benchmarks.md). The reduced program is the one to use for the full batch.
"""
from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ufm import constraints, objectives
from ufm.batching import batch_list

if TYPE_CHECKING:
    import cvxpy as cp
    from numpy.typing import ArrayLike

    from ufm.problem import Problem
else:
    cp = None  # cvxpy, imported by the entry points on first use: `ufm solve` need not pay for its import


def _cvxpy():
    global cp
    if cp is None:
        import cvxpy

        cp = cvxpy
    return cp

__all__ = ["SolverFailure", "Relaxation", "class_orbits", "cliques", "full_program", "reduced_program",
           "expand_class_point",
           "solve_relaxation", "unit_radius", "SOLVERS", "class_cosines", "numerical_rank"]

SOLVERS = ("CLARABEL", "SCS")
RANK_TOL = 1e-4  # relative; the solvers resolve the geometry to ~sqrt(1e-8)
_SCS_OPTS = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}
_CLARABEL_OPTS = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "max_iter": 400}


class SolverFailure(RuntimeError):
    """A convex (or eigenvalue) solver failed or was inaccurate: ``status`` names what it returned."""

    def __init__(self, message: str, status: str, solver: str):
        super().__init__(message)
        self.status, self.solver = status, solver


@dataclass
class Relaxation:
    """The solved relaxation of a problem.

    ``value`` (the lower bound), ``status``, ``solver``, ``seconds``, ``method`` (``"full"``/``"reduced"``),
    ``block_means`` ``(K, K)``: the class-level Gram of the relaxed ``G`` (mean of the entries of each class block;
    for SC of the rows normalised to unit length, the convention of ``ufm.geometry``), ``rank`` the numerical rank of
    the relaxed Gram (the joint Gram of ``[Z; W]`` for CE): tight only if ``rank <= dim``. ``point``: the solver's
    primal candidate at the problem's radius (full: ``G (N, N)`` on the pairs that share a batch, and for CE the
    logits ``C (N, K)``; reduced: ``d``, ``a``, ``M`` and for CE ``C (K, K)``, for BCL the Gram entries ``X (K, K)``
    between class-``c`` samples and prototype ``c'`` and ``P (K, K)`` of the prototypes; with prototypes the full
    ``G`` is the ``(N + K)`` Gram of ``[Z; C]``), which ``solvers.dual`` turns into a proved bound. ``value`` is
    the solver's own number, not a proof.
    """

    value: float
    status: str
    solver: str
    seconds: float
    method: str
    block_means: np.ndarray
    rank: int
    point: dict | None = None

    @property
    def mean_cosines(self) -> np.ndarray:
        return class_cosines(self.block_means)


# -- helpers ----------------------------------------------------------------------------------------------------
def class_cosines(block_means: ArrayLike) -> np.ndarray:
    """Cosines between class means from the class-level Gram ``B_cc' = <mu_c, mu_c'>``: ``B / sqrt(b bᵀ)``
    (a zero class mean gives a zero row and column, as ``ufm.geometry.mean_cosines``)."""
    B = np.asarray(block_means, dtype=np.float64)
    s = np.sqrt(np.clip(np.diag(B), 0.0, None))
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 1e-300)
    return B * np.outer(inv, inv)


def numerical_rank(eigenvalues: ArrayLike, scale: float | None = None, tol: float = RANK_TOL) -> int:
    """How many ``eigenvalues`` exceed ``tol * scale`` (``scale``: the largest absolute eigenvalue by default)."""
    w = np.asarray(eigenvalues, dtype=np.float64)
    if w.size == 0:
        return 0
    scale = np.max(np.abs(w)) if scale is None else scale
    return int(np.sum(w > tol * scale)) if scale > 0 else 0


def _block_means(g, labels, K):
    """``(K, K)`` means of the entries of each class block of ``g`` ``(N, N)`` (NaN entries left out)."""
    known = ~np.isnan(g)
    sums, cnt = np.zeros((K, K)), np.zeros((K, K))
    rows, cols = np.nonzero(known)
    np.add.at(sums, (labels[rows], labels[cols]), g[rows, cols])
    np.add.at(cnt, (labels[rows], labels[cols]), 1.0)
    return sums / np.maximum(cnt, 1)


def _batches(problem):
    """The batches of the objective as lists (the full batch is one batch of all samples)."""
    b = batch_list(problem)
    return [list(range(problem.N))] if b is None else b


def class_orbits(problem: Problem):
    """The batching as class compositions, when it is invariant under permutations within each class.

    Returns a list of ``(k, m)``: ``k`` ``(K,)`` the class counts of a batch, ``m`` how many batches have that
    composition; or ``None`` when the batch set is not invariant (then only the full program or the first-order
    certificate apply). Invariant means: for every composition present, the batches with it are all the
    ``prod_c C(n_c, k_c)`` subsets of that composition, each equally often. The full batch is ``[(counts, 1)]``
    and touches no N-sized array.
    """
    if objectives.of(problem).relaxation != "contrastive" or batch_list(problem) is None:
        return [(np.asarray(problem.counts, dtype=np.int64), 1)]
    labels, counts = problem.label_array, problem.counts
    groups: dict[tuple, list[frozenset]] = {}
    for B in batch_list(problem):
        k = tuple(np.bincount(labels[np.asarray(B)], minlength=problem.K).tolist())
        groups.setdefault(k, []).append(frozenset(B))
    out = []
    for k, sets in groups.items():
        orbit = math.prod(math.comb(n, kc) for n, kc in zip(counts, k))
        if len(sets) % orbit:
            return None
        mult: dict[frozenset, int] = {}
        for s in sets:
            mult[s] = mult.get(s, 0) + 1
        if len(mult) != orbit or len(set(mult.values())) != 1:
            return None
        out.append((np.asarray(k, dtype=np.int64), len(sets)))
    return out


def _acyclic(sets) -> bool:
    """GYO reduction: is the hypergraph with these hyperedges alpha-acyclic (a chordal, clique-tree pattern)?"""
    edges = [set(s) for s in sets]
    changed = True
    while changed:
        changed = False
        seen: dict[int, int] = {}
        for e in edges:
            for v in e:
                seen[v] = seen.get(v, 0) + 1
        for e in edges:  # vertices in one hyperedge only
            lone = {v for v in e if seen[v] == 1}
            if lone:
                e -= lone
                changed = True
        keep = []
        for i, e in enumerate(edges):  # hyperedges inside another (or empty)
            inside = not e or any(j != i and e <= f and (e != f or j < i) for j, f in enumerate(edges))
            if inside:
                changed = True
            else:
                keep.append(e)
        edges = keep
    return not edges


def cliques(problem: Problem, decompose: bool = True, batches=None):
    """The PSD blocks of the full SC program: ``(cliques, tree)``; ``batches``: the row sets the loss reads (None:
    the problem's batches; a loss with prototypes passes its batches with the prototype rows appended).

    ``cliques``: sorted index arrays (the maximal batches when the batches form an acyclic hypergraph and
    ``decompose``, else one clique of every sample any batch holds); ``tree``: join-tree edges ``(q, q')`` along
    which overlapping cliques must agree (a maximum-weight spanning forest of the overlaps).
    """
    sets = sorted({frozenset(B) for B in (_batches(problem) if batches is None else batches)}, key=len,
                  reverse=True)
    maximal = [s for i, s in enumerate(sets) if not any(s < t for t in sets[:i])]
    if len(maximal) > 1 and not (decompose and _acyclic(maximal)):
        maximal = [frozenset().union(*maximal)]
    pairs = sorted(((len(a & b), i, j) for (i, a), (j, b) in itertools.combinations(enumerate(maximal), 2)
                    if a & b), reverse=True)
    root = list(range(len(maximal)))

    def find(i):
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    tree = []
    for _, i, j in pairs:  # Kruskal
        ri, rj = find(i), find(j)
        if ri != rj:
            root[ri] = rj
            tree.append((i, j))
    return [np.array(sorted(s)) for s in maximal], tree


# -- full programs -----------------------------------------------------------------------------------------------
@dataclass
class _Program:
    """A built cvxpy program and how to read its solution (``read(problem) -> (block_means, eigenvalue parts)``)."""

    problem: cp.Problem
    read: object
    method: str
    point: object = None  # () -> the primal candidate as a dict of arrays (module doc), in the program's scale


def _feature_constraints(G, problem):
    """Diagonal bound and UFM+ sign constraints on a Gram block ``G`` of features."""
    rho2 = problem.radius ** 2
    out = []
    out += constraints.get(problem.constraint).gram_constraints(cp.diag(G), rho2)
    if problem.nonneg:
        out.append(G >= 0)
    return out


def _sc_full(problem, decompose=True):
    """The contrastive (SC, BCL) program: per anchor, positives' mean logit and the log-sum-exp of its batch's
    logits plus the objective's fixed log-weights (``Objective.log_weights``; 0 for SC). For a loss with
    prototypes (BCL) the Gram is that of ``[Z; C]`` (``R = N + K`` rows, the prototypes in every batch, never
    anchors: ``ufm.objectives.gram_layout``)."""
    tau = problem.tau
    log_weights = objectives.of(problem).log_weights
    R, batches, labels, anchor = objectives.gram_layout(problem)
    T = int(sum(anchor[np.asarray(B)].sum() for B in batches))
    blocks, tree = cliques(problem, decompose, batches)
    Gs = [cp.Variable((len(q), len(q)), PSD=True) for q in blocks]
    offsets = np.cumsum([0] + [len(q) ** 2 for q in blocks])
    local = [dict(zip(q.tolist(), range(len(q)))) for q in blocks]
    v = cp.hstack([cp.vec(G, order="C") for G in Gs]) if len(Gs) > 1 else cp.vec(Gs[0], order="C")

    def flat(c, i, k):  # position of G_ik in v, inside clique c
        return offsets[c] + local[c][i] * len(blocks[c]) + local[c][k]

    home = [next(c for c, q in enumerate(local) if all(i in q for i in B)) for B in batches]
    rows: dict[int, list] = {}  # neighbour count -> gather rows
    offs: dict[int, list] = {}  # neighbour count -> the log-weights of those entries
    pos_idx, pos_w = [], []
    for B, c in zip(batches, home):
        yB = labels[np.asarray(B)]
        lw = log_weights(yB, np.ones(len(B), bool))
        for a, (i, yi) in enumerate(zip(B, yB)):
            P = [j for j, yj in zip(B, yB) if j != i and yj == yi]
            if not P or not anchor[i]:
                continue
            rows.setdefault(len(B) - 1, []).append([flat(c, i, k) for k in B if k != i])
            offs.setdefault(len(B) - 1, []).append([lw[a, b] for b in range(len(B)) if b != a])
            pos_idx += [flat(c, i, j) for j in P]
            pos_w += [1.0 / len(P)] * len(P)
    lse = 0
    for m, idx in rows.items():
        idx = np.asarray(idx)
        X = cp.reshape(v[idx.ravel()], idx.shape, order="C") / tau
        off = np.asarray(offs[m], dtype=np.float64)
        lse = lse + cp.sum(cp.log_sum_exp(X + off if np.any(off) else X, axis=1))
    pos = v[np.asarray(pos_idx, dtype=np.int64)] @ np.asarray(pos_w) if pos_idx else 0
    objective = (lse - pos / tau) / T
    cons = [c for G in Gs for c in _feature_constraints(G, problem)]
    for a, b in tree:  # agree on the overlaps
        shared = np.intersect1d(blocks[a], blocks[b])
        ii, kk = np.triu_indices(len(shared), 1 if constraints.get(problem.constraint).equality else 0)
        if len(ii):
            cons.append(v[np.array([flat(a, shared[i], shared[k]) for i, k in zip(ii, kk)])]
                        == v[np.array([flat(b, shared[i], shared[k]) for i, k in zip(ii, kk)])])

    def read():
        g = np.full((R, R), np.nan)  # the entries the batches specify
        eig = []
        for q, G in zip(blocks, Gs):
            gq = np.asarray(G.value, dtype=np.float64)
            gq = (gq + gq.T) / 2
            eig.append(np.linalg.eigvalsh(gq))
            s = np.sqrt(np.clip(np.diag(gq), 1e-300, None))
            g[np.ix_(q, q)] = gq / np.outer(s, s)  # SC geometry: unit rows
        rank = max(numerical_rank(w) for w in eig)  # = the least rank of a completion (chordal pattern)
        N = problem.N  # the geometry is the samples'
        return _block_means(g[:N, :N], labels[:N], problem.K), rank

    def point():
        g = np.zeros((R, R))  # the entries the batches specify (others are never read)
        for q, G in zip(blocks, Gs):
            gq = np.asarray(G.value, dtype=np.float64)
            g[np.ix_(q, q)] = (gq + gq.T) / 2
        return {"G": g}

    return _Program(cp.Problem(cp.Minimize(objective), cons), read, "full", point)


def _ce_objective(C, onehot, weights, b, problem, trace_V, feature_term):
    """CE objective from logits ``C`` (rows x K): ``sum_r weights_r [lse(C_r + b) - (C_r + b)_{y_r}]`` plus
    ``weight_decay * trace_V + feature_term``. ``onehot`` marks each row's class."""
    if b is not None:
        C = C + np.ones((C.shape[0], 1)) @ cp.reshape(b, (1, problem.K), order="C")
    true = cp.sum(cp.multiply(C, onehot), axis=1)
    return (weights @ cp.log_sum_exp(C, axis=1) - weights @ true + problem.weight_decay * trace_V
            + feature_term)


def _ce_full(problem):
    N, K = problem.N, problem.K
    labels = problem.label_array
    H = cp.Variable((N + K, N + K), PSD=True)
    G, C, V = H[:N, :N], H[:N, N:], H[N:, N:]
    b = cp.Variable(K) if problem.bias else None
    onehot = np.zeros((N, K))
    onehot[np.arange(N), labels] = 1.0
    obj = _ce_objective(C, onehot, np.full(N, 1.0 / N), b, problem, cp.trace(V),
                        problem.feature_decay * cp.trace(G) / N)
    cons = _feature_constraints(G, problem)

    def read():
        h = np.asarray(H.value, dtype=np.float64)
        h = (h + h.T) / 2
        return _block_means(h[:N, :N], labels, K), numerical_rank(np.linalg.eigvalsh(h))

    def point():
        h = np.asarray(H.value, dtype=np.float64)
        h = (h + h.T) / 2
        return {"G": h[:N, :N], "C": h[:N, N:]}

    return _Program(cp.Problem(cp.Minimize(obj), cons), read, "full", point)


def _relaxation_of(problem) -> str:
    """The convex program ``problem``'s objective declares (``Objective.relaxation``); ``ValueError`` when none
    (a classifier is not cross-entropy: it never falls through to CE's program)."""
    which = objectives.of(problem).relaxation
    if which not in ("contrastive", "ce"):
        raise ValueError(f"loss {problem.loss!r} is not certifiable: its objective declares no convex relaxation")
    return which


def full_program(problem: Problem, decompose: bool = True) -> _Program:
    """The full Gram relaxation of ``problem`` as a cvxpy program (module doc); ``decompose=False`` keeps one
    dense N x N block whatever the batching."""
    _cvxpy()
    return {"contrastive": _sc_full, "ce": lambda p, _: _ce_full(p)}[_relaxation_of(problem)](problem, decompose)


# -- reduced programs --------------------------------------------------------------------------------------------
def _class_gram(problem):
    """Variables of a class-constant Gram: ``M`` (K x K symmetric, ``a = diag(M)``), ``d`` and the constraints
    ``d >= a`` (``d = a`` for a singleton class), the diagonal bound and UFM+ signs. Returns ``(M, d, cons)``."""
    n = np.asarray(problem.counts, dtype=np.float64)
    K, rho2 = problem.K, problem.radius ** 2
    M = cp.Variable((K, K), symmetric=True)
    a = cp.diag(M)
    c = constraints.get(problem.constraint)
    d = rho2 * np.ones(K) if c.equality else cp.Variable(K)
    cons = []
    multi, single = np.flatnonzero(n >= 2), np.flatnonzero(n < 2)
    if len(multi):
        cons.append(d[multi] >= a[multi] if not isinstance(d, np.ndarray) else a[multi] <= d[multi])
    if len(single):
        cons.append(a[single] == d[single])
    if not isinstance(d, np.ndarray):
        cons += c.gram_constraints(d, rho2)
    if problem.nonneg:
        cons.append(M >= 0)
    return M, d, cons, n


def _read_class_gram(M, d, n, V=None, C=None, normalize=True, tol=RANK_TOL):
    """Block means and rank of a class-constant Gram (and, for CE, of the joint Gram with ``C``, ``V``)."""
    Mv = np.asarray(M.value, dtype=np.float64)
    Mv = (Mv + Mv.T) / 2
    dv = np.asarray(d if isinstance(d, np.ndarray) else d.value, dtype=np.float64)
    a = np.diag(Mv).copy()
    spread = np.where(n >= 2, dv - a, 0.0)  # eigenvalue of G on each class's within-class directions (n_c - 1)
    r = np.sqrt(n)
    X = np.diag(spread) + Mv * np.outer(r, r)  # G on the class indicators u_c = 1_c / sqrt(n_c)
    if C is not None:
        Cv = np.asarray(C.value) * r[:, None]
        X = np.block([[X, Cv], [Cv.T, np.asarray(V.value)]])
    w = np.linalg.eigvalsh((X + X.T) / 2)
    top = max(float(np.max(np.abs(w))), float(np.max(spread)))
    rank = numerical_rank(w, top, tol) + int(np.sum((n - 1)[spread > tol * top]))
    B = Mv.copy()
    np.fill_diagonal(B, (dv + (n - 1) * a) / n)
    if normalize:
        s = np.sqrt(np.clip(dv, 1e-300, None))
        B = Mv / np.outer(s, s)
        np.fill_diagonal(B, (1 + (n - 1) * a / np.clip(dv, 1e-300, None)) / n)
    return B, rank


def _class_point(M, d):
    """The class-level candidate: diagonal ``d``, within-class ``a = diag(M)``, between-class ``M`` (symmetric)."""
    Mv = np.asarray(M.value, dtype=np.float64)
    Mv = (Mv + Mv.T) / 2
    dv = np.asarray(d if isinstance(d, np.ndarray) else d.value, dtype=np.float64)
    return {"d": dv, "a": np.diag(Mv).copy(), "M": Mv}


def _sc_reduced(problem, orbits):
    """The class-level contrastive program (SC, BCL: ``Objective.class_log_weights`` added to the offsets)."""
    tau = problem.tau
    class_log_weights = objectives.of(problem).class_log_weights
    M, d, cons, n = _class_gram(problem)
    T = float(sum(m * k.sum() for k, m in orbits))
    total = 0
    for k, m in orbits:
        R, Cl = np.flatnonzero(k >= 2), np.flatnonzero(k >= 1)
        if not len(R):
            continue
        offs = np.log(np.where(R[:, None] == Cl[None, :], k[R][:, None] - 1, k[Cl][None, :]).astype(np.float64))
        offs = offs + np.stack([class_log_weights(k, c)[Cl] for c in R])
        X = M[R][:, Cl] / tau + offs
        w = m * k[R].astype(np.float64) / T
        total = total + w @ cp.log_sum_exp(X, axis=1) - w @ cp.diag(M)[R] / tau
    cons.append(M + cp.diag((d - cp.diag(M)) / n) >> 0)
    return _Program(cp.Problem(cp.Minimize(total), cons), lambda: _read_class_gram(M, d, n), "reduced",
                    lambda: _class_point(M, d))


def _bcl_reduced(problem, orbits):
    """The class-level program of a contrastive loss with prototypes (BCL): the samples' class-constant Gram
    (``d``, ``a``, ``M``), the cross block ``X_cc' = <z_i in c, p_c'>`` and the prototypes' Gram ``P`` of the joint
    Gram of ``[Z; C]`` (a within-class permutation of the samples leaves the prototypes, and the loss, alone).
    ``[Z; C]``'s Gram is PSD iff ``d >= a`` and ``[[M + diag((d - a)/n), X], [Xᵀ, P]] ⪰ 0`` (CE's structure);
    ``diag(P)`` obeys the features' constraint, and UFM+ makes ``X``, ``P`` non-negative too. An anchor of class
    ``c`` in a batch of composition ``k`` sees ``kk = k - e_c`` other samples per class: positives ``kk_c`` at
    ``a_c`` and ``p_c`` at ``X_cc``; per class ``c'`` the weight ``1 / (kk_c' + 1)`` on ``kk_c'`` samples at
    ``M_cc'`` and on ``p_c'`` at ``X_cc'`` (docs/theory.md §2)."""
    tau, K = problem.tau, problem.K
    M, d, cons, n = _class_gram(problem)
    X = cp.Variable((K, K))
    P = cp.Variable((K, K), symmetric=True)
    rho2 = problem.radius ** 2
    cons += constraints.get(problem.constraint).gram_constraints(cp.diag(P), rho2)
    if problem.nonneg:
        cons += [X >= 0, P >= 0]
    T = float(sum(m * k.sum() for k, m in orbits))
    total = 0
    for k, m in orbits:
        for c in np.flatnonzero(k >= 1):
            kk = k - (np.arange(K) == c)
            terms = [M[c, e] / tau + math.log(kk[e]) - math.log(kk[e] + 1) for e in range(K) if kk[e] >= 1]
            terms += [X[c, e] / tau - math.log(kk[e] + 1) for e in range(K)]
            pos = (kk[c] * M[c, c] + X[c, c]) / (tau * (kk[c] + 1))
            total = total + (m * k[c] / T) * (cp.log_sum_exp(cp.hstack(terms)) - pos)
    cons.append(cp.bmat([[M + cp.diag((d - cp.diag(M)) / n), X], [X.T, P]]) >> 0)

    def point():
        return {**_class_point(M, d), "X": np.asarray(X.value, dtype=np.float64),
                "P": (lambda v: (v + v.T) / 2)(np.asarray(P.value, dtype=np.float64))}

    return _Program(cp.Problem(cp.Minimize(total), cons), lambda: _read_class_gram(M, d, n, V=P, C=X), "reduced",
                    point)


def expand_class_point(problem: Problem, point: dict) -> np.ndarray:
    """The full Gram of a class-level candidate (``d``, ``a``, ``M``; with prototypes also ``X``, ``P``): ``R x R``
    (``ufm.objectives.gram_layout``), for the full proof (``solvers.dual.sc_bound``)."""
    y = problem.label_array
    N = problem.N
    G = np.asarray(point["M"], dtype=np.float64)[np.ix_(y, y)]
    same = y[:, None] == y[None, :]
    G[same] = np.asarray(point["a"], dtype=np.float64)[np.broadcast_to(y[:, None], (N, N))[same]]
    G[np.arange(N), np.arange(N)] = np.asarray(point["d"], dtype=np.float64)[y]
    if "X" not in point:
        return G
    Xe = np.asarray(point["X"], dtype=np.float64)[y]
    return np.block([[G, Xe], [Xe.T, np.asarray(point["P"], dtype=np.float64)]])


def _ce_reduced(problem):
    K = problem.K
    M, d, cons, n = _class_gram(problem)
    C = cp.Variable((K, K))
    V = cp.Variable((K, K), symmetric=True)
    b = cp.Variable(K) if problem.bias else None
    w = n / n.sum()
    obj = _ce_objective(C, np.eye(K), w, b, problem, cp.trace(V), problem.feature_decay * (w @ d))
    cons.append(cp.bmat([[M + cp.diag((d - cp.diag(M)) / n), C], [C.T, V]]) >> 0)
    return _Program(cp.Problem(cp.Minimize(obj), cons),
                    lambda: _read_class_gram(M, d, n, V=V, C=C, normalize=False), "reduced",
                    lambda: {**_class_point(M, d), "C": np.asarray(C.value, dtype=np.float64)})


def reduced_program(problem: Problem) -> _Program:
    """The symmetry-reduced class-level program (module doc). Raises ``ValueError`` naming ``batching`` when the
    batch set is not invariant under within-class permutations."""
    _cvxpy()
    orbits = class_orbits(problem)
    if orbits is None:
        raise ValueError(f"batching {problem.batching!r}: the batch set is not invariant under permutations within "
                         "classes, so the reduced program does not apply; use method 'full' (N <= ~150) or "
                         "'first-order'")
    which = _relaxation_of(problem)
    if objectives.of(problem).prototypes:
        return _bcl_reduced(problem, orbits)
    return _sc_reduced(problem, orbits) if which == "contrastive" else _ce_reduced(problem)


# -- solving -----------------------------------------------------------------------------------------------------
def _try(prog: cp.Problem, solver: str):
    """Solve with one solver; returns the cvxpy status (``"solver_error"`` when it raises) and the value."""
    tries = [_SCS_OPTS] if solver == "SCS" else [_CLARABEL_OPTS, {}]
    status, value = "solver_error", None
    for k, opts in enumerate(tries):  # Clarabel: tight tolerances first (a better candidate, a tighter proof)
        run = prog if k == 0 else cp.Problem(prog.objective, prog.constraints)  # a fresh solve, same variables
        try:
            with warnings.catch_warnings():  # the status says it, and is checked
                warnings.simplefilter("ignore", UserWarning)
                run.solve(solver=solver, **opts)
        except cp.error.SolverError:
            continue
        status, value = run.status, run.value
        if status == cp.OPTIMAL:
            break
    return status, value


SCS_FIRST_BLOCK = 64  # a PSD block of more rows than this: SCS before Clarabel (solver_order)


def largest_psd_block(prog: cp.Problem) -> int:
    """Rows of the largest PSD block of a cvxpy program: ``PSD=True`` variables and ``>> 0`` constraints (0
    without one)."""
    sizes = [v.shape[0] for v in prog.variables() if v.attributes.get("PSD")]
    sizes += [c.args[0].shape[0] for c in prog.constraints if isinstance(c, cp.constraints.PSD)]
    return max(sizes, default=0)


def solver_order(prog: cp.Problem) -> list[str]:
    """The solvers ``solver=None`` tries, in order: Clarabel then SCS; SCS first when a PSD block has more than
    ``SCS_FIRST_BLOCK`` rows (Clarabel's dense Nesterov-Todd scaling then dominates; docs/benchmarks.md)."""
    return ["SCS", "CLARABEL"] if largest_psd_block(prog) > SCS_FIRST_BLOCK else list(SOLVERS)


def unit_radius(problem: Problem) -> tuple[Problem, float]:
    """The same problem at radius 1, and ``rho^2``: the programs are solved there (well scaled whatever the radius).

    SC depends on ``rho^2 / tau`` only (``tau -> tau / rho^2``). CE with ``Z = rho Z'``, ``W = W' / rho`` keeps the
    logits and maps ``lambda_W -> lambda_W / rho^2``, ``lambda_Z -> lambda_Z rho^2``. The objective values are
    equal; a Gram of the unit problem is ``G / rho^2`` (logits unchanged). No change without a norm constraint."""
    unit, rho = problem.at_unit_radius()
    return unit, rho * rho


def solve_relaxation(problem: Problem, method: str = "reduced", solver: str | None = None) -> Relaxation:
    """Build and solve the ``"full"`` or ``"reduced"`` relaxation of ``problem``.

    ``solver``: ``"CLARABEL"`` or ``"SCS"`` (case-insensitive); ``None`` tries both (:func:`solver_order`). Raises
    :class:`SolverFailure` (with the statuses and what to try) unless a solver reports ``optimal`` or, failing
    that, ``optimal_inaccurate`` (then ``status`` says so: the point is only a candidate for the proof, and its
    ``value`` is information).
    """
    if solver is not None and str(solver).upper() not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)} (or None: Clarabel, then SCS), got {solver!r}")
    start = time.perf_counter()
    unit, rho2 = unit_radius(problem)
    built = {"full": full_program, "reduced": reduced_program}[method](unit)
    tried, fallback = [], None

    def result(status, name, value):
        block_means, rank = built.read()
        if objectives.of(problem).relaxation == "ce":
            block_means = block_means * rho2
        point = {k: v * rho2 if k in ("G", "d", "a", "M", "X", "P") else v for k, v in built.point().items()}
        return Relaxation(float(value), status, name, time.perf_counter() - start, method, block_means, rank,
                          point)

    for name in [str(solver).upper()] if solver else solver_order(built.problem):
        status, value = _try(built.problem, name)
        tried.append(f"{name}: {status}")
        usable = value is not None and np.isfinite(value)
        if status == cp.OPTIMAL and usable:
            return result(status, name, value)
        if status == cp.OPTIMAL_INACCURATE and usable and fallback is None:
            fallback = result(status, name, value)  # still a candidate: solvers.dual decides what it proves
    if fallback is not None:
        return fallback
    others = [s for s in SOLVERS if not any(t.startswith(s) for t in tried)]
    hint = "try " + "".join(f"solver {s}, " for s in others) + (
        "the 'reduced' method (full batch) or 'first-order' (with a solution), a larger tau, or a smaller problem")
    raise SolverFailure(f"the {method} relaxation was not solved to optimality ({'; '.join(tried)}); {hint}",
                        status=tried[-1].split(": ")[1], solver=tried[-1].split(":")[0])
