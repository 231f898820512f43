"""The batch interaction graph, and when the orthogonal frame is the *unique* mini-batch minimiser.

Setting (docs/theory.md §4): SC in the UFM+ (rows of ``Z`` non-negative, on the sphere of radius ``rho``),
``d >= K``, a fixed batch set ``𝔅``. The bound ``L*_𝔅`` holds batch by batch and the OF attains it, so the
minimisers are exactly the feasible ``Z`` that meet every equality case of the bound. For an anchor ``i`` with
positives in batch ``B`` (write ``u_i = z_i``):

* ``B`` holds another class: every positive equals ``z_i`` and every other-class member is orthogonal to it;
* ``B`` holds one class only: the positives all have the same inner product with ``z_i`` (nothing else).

**The graph.** Samples are joined into *nodes* that every minimiser collapses: two same-class samples that
share a batch holding another class (condition (a)'s edges), closed under "a one-class batch of >= 3 samples
two of which are already joined is joined whole" (anchor ``i`` sees the joined ``j`` at ``rho^2``, so every other
positive too). Two nodes are *forced orthogonal* when their samples share a batch in which one of them has a
positive (an anchor with a positive sees the other as a negative). A one-class batch whose >= 3 samples lie in
distinct nodes asks those nodes to be equiangular (a *hyperedge*); ``m`` equiangular non-negative unit vectors
at a common inner product in ``[0, 1)`` have a Gram of rank ``m``, so a hyperedge of more than ``d`` nodes is
joined whole as well.

**Conditions** (docs/theory.md §4, made exact): (a) every class is one node (``disconnected_classes`` lists the
others); (b) every pair of classes has a forced-orthogonal pair of nodes, i.e. some batch holds both classes
with at least two members of one of them (``unmet_class_pairs`` lists the others). Note the two refinements of
the papers' wording: a batch of *one* class forces no equality (``l_i`` only compares positives), and a
batch in which no anchor has a positive forces nothing at all.

**Verdict** (:func:`check`). (a) and (b) imply uniqueness: all of a class is one vector ``u_c`` and (b) makes
the ``u_c`` pairwise orthogonal, so the Gram is ``rho^2 Y Yᵀ``. Otherwise a **witness** is built: a different
feasible embedding that meets every equality case, hence has the same loss. Each node gets a basis direction
(a *colouring*; ``e_c`` for class ``c`` at the OF, ``e_K, ...`` are spare directions when ``d > K``):

1. ``shared_direction``: a class (or a part of it that (a) leaves loose, with its hyperedges) that is never
   forced orthogonal to class ``c'`` takes ``e_{c'}``: "two classes that never meet share one direction".
2. ``spare_direction`` (``d > K``): a part of a class that no batch ties to the rest takes ``e_K``.
3. ``spare_directions`` (``d - K >= m - 1``): a class of ``m`` nodes held only by hyperedges spreads them over
   orthogonal directions (equiangular at 0).
4. ``colouring``: a backtracking search for any proper colouring with ``d`` colours (forced-orthogonal nodes
   differ; each hyperedge all equal or all distinct) that is not the OF's.

Without hyperedges the search is exact: in a minimiser two non-negative vectors are orthogonal iff their
supports are disjoint, so choosing one coordinate of each node's support gives a proper colouring, and it can
be chosen to differ from the OF's wherever the minimiser's Gram does. So an exhausted search proves
uniqueness (this happens when ``d = K``: the orthant leaves no room, e.g. counts 2,2 with batches
``0,2,3;1,2,3``). With hyperedges and no witness the verdict is ``None`` (undecided), as it is when ``d < K``
(no OF fits) or the search budget runs out. Every witness is checked numerically: float64 loss equal to the
closed-form minimum ``ufm.theory.sc_of_loss`` to 1e-9 at ``tau = 1`` and at the problem's ``tau``, Gram
different.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import constraints
from .batching import epoch_batch_list, is_epoch_scheme, pad, parse_scheme, union_batches
from .closed_forms import sc_of_loss

if TYPE_CHECKING:
    from .problem import Problem

__all__ = ["Graph", "Verdict", "interaction_graph", "check", "check_problem", "of_unique", "report"]

SEARCH_BUDGET = 200_000  # colouring search: most node assignments tried
SEARCH_MAX_NODES = 400
VERIFY_MAX_ENTRIES = 50_000_000  # numerical check of a witness: most entries of the b x b blocks


class Graph(NamedTuple):
    """The batch interaction graph. ``node (N,)``: the node of every sample; ``node_class (n_nodes,)``;
    ``ortho``: forced-orthogonal node pairs ``(p, q)``, ``p < q``; ``hyper``: equiangular node tuples;
    ``batch_sizes``: the size of every batch."""

    labels: np.ndarray
    K: int
    node: np.ndarray
    node_class: np.ndarray
    ortho: frozenset
    hyper: tuple
    batch_sizes: tuple

    @property
    def n_nodes(self) -> int:
        return len(self.node_class)

    def class_nodes(self, c) -> list[int]:
        return np.flatnonzero(self.node_class == c).tolist()


class Verdict(NamedTuple):
    """What :func:`check` found: ``unique_of`` (True, False, or None when undecided), why, the failing parts
    of conditions (a) and (b), and the witness (a dict, with its embedding ``witness_Z (N, d)``) or None."""

    unique_of: bool | None
    reason: str
    disconnected_classes: list
    unmet_class_pairs: list
    witness: dict | None
    witness_Z: np.ndarray | None
    graph: Graph


class _UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, items) -> bool:
        """Join all ``items``; True when something changed."""
        roots = {self.find(i) for i in items}
        if len(roots) < 2:
            return False
        first = min(roots)
        for r in roots:
            self.parent[r] = first
        return True


def _clean(batches):
    return [np.asarray([i for i in np.asarray(B).ravel().tolist() if i >= 0], dtype=np.int64) for B in batches]


def interaction_graph(batches, labels, K: int | None = None, dim: int | None = None) -> Graph:
    """Build the graph of the module doc for ``batches`` (index lists, or a padded array with -1) and
    ``labels (N,)``. With ``dim``, a one-class batch with more than ``dim`` distinct nodes is joined whole too."""
    labels = np.asarray(labels)
    K = int(labels.max()) + 1 if K is None else K
    batches = [B for B in _clean(batches) if len(B)]
    uf = _UnionFind(len(labels))
    one_class = []
    for B in batches:
        y = labels[B]
        cls, cnt = np.unique(y, return_counts=True)
        if len(cls) > 1:
            for c in cls[cnt >= 2]:
                uf.union(B[y == c].tolist())
        elif len(B) >= 3:
            one_class.append(B.tolist())
    changed = True
    while changed:  # closure: a one-class batch with two joined samples (or > dim nodes) is joined whole
        changed = False
        for B in one_class:
            parts = len({uf.find(i) for i in B})
            if parts < len(B) or (dim is not None and parts > dim):
                changed |= uf.union(B)
    roots = [uf.find(i) for i in range(len(labels))]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    node = np.asarray([ids[r] for r in roots], dtype=np.int64)
    node_class = np.zeros(len(ids), dtype=np.int64)
    node_class[node] = labels
    ortho = set()
    for B in batches:
        y = labels[B]
        cls, cnt = np.unique(y, return_counts=True)
        first = {c: node[B[y == c][0]] for c in cls}
        for a in range(len(cls)):
            for b in range(a + 1, len(cls)):
                if cnt[a] >= 2 or cnt[b] >= 2:
                    p, q = first[cls[a]], first[cls[b]]
                    ortho.add((min(p, q), max(p, q)))
    tuples = {tuple(sorted({int(node[i]) for i in B})) for B in one_class}
    hyper = tuple(sorted(h for h in tuples if len(h) >= 3))
    return Graph(labels, K, node, node_class, frozenset(ortho), hyper, tuple(len(B) for B in batches))


def _conditions(g: Graph):
    disconnected = [c for c in range(g.K) if len(g.class_nodes(c)) > 1]
    met = {tuple(sorted((int(g.node_class[p]), int(g.node_class[q])))) for p, q in g.ortho}
    unmet = [(a, b) for a in range(g.K) for b in range(a + 1, g.K) if (a, b) not in met]
    return disconnected, unmet


def _groups(g: Graph, nodes) -> list[list[int]]:
    """``nodes`` (of one class) joined through hyperedges: the parts that must move together."""
    nodes = list(nodes)
    pos = {p: k for k, p in enumerate(nodes)}
    uf = _UnionFind(len(nodes))
    for h in g.hyper:
        if h[0] in pos:
            uf.union([pos[p] for p in h])
    out: dict = {}
    for p in nodes:
        out.setdefault(uf.find(pos[p]), []).append(p)
    return list(out.values())


def _linked_classes(g: Graph) -> list[set]:
    """For every node, the classes it is forced orthogonal to."""
    out: list[set] = [set() for _ in range(g.n_nodes)]
    for p, q in g.ortho:
        out[p].add(int(g.node_class[q]))
        out[q].add(int(g.node_class[p]))
    return out


def _samples(g: Graph, nodes) -> list[int]:
    return np.flatnonzero(np.isin(g.node, list(nodes))).tolist()


def _constructions(g: Graph, dim: int, unmet):
    """Witness colourings 1-3 of the module doc: yields ``(kind, colour (n_nodes,), moved nodes, text)``."""
    of = g.node_class.copy()
    for a, b in unmet:  # 1. a whole class onto another class's direction
        col = of.copy()
        col[col == b] = a
        yield ("shared_direction", col, g.class_nodes(b),
               f"class {b} takes class {a}'s direction: the two never meet in a batch where one of them has "
               "two members, so no anchor asks them to be orthogonal")
    linked = _linked_classes(g)
    for c in range(g.K):
        groups = _groups(g, g.class_nodes(c))
        if len(groups) < 2:
            continue
        for S in groups:  # 1'. a loose part of a class onto another class's direction
            free = sorted(set(range(g.K)) - {c} - set().union(*(linked[p] for p in S)))
            if free:
                col = of.copy()
                col[S] = free[0]
                yield ("shared_direction", col, S,
                       f"part of class {c} that no batch ties to the rest of its class takes class {free[0]}'s "
                       "direction (it never meets that class in a batch where one of them has two members)")
        if dim > g.K:  # 2. a loose part onto a spare direction
            col = of.copy()
            col[groups[-1]] = g.K
            yield ("spare_direction", col, groups[-1],
                   f"part of class {c} that no batch ties to the rest of its class takes a spare direction "
                   f"e_{g.K} (dim {dim} > K {g.K})")
    for c in range(g.K):  # 3. nodes held only by hyperedges spread over spare directions
        nodes = g.class_nodes(c)
        if 1 < len(nodes) <= dim - g.K + 1:
            col = of.copy()
            col[nodes[1:]] = g.K + np.arange(len(nodes) - 1)
            yield ("spare_directions", col, nodes[1:],
                   f"the {len(nodes)} parts of class {c}, tied only by one-class batches (which ask for equal "
                   "angles, not equal vectors), take orthogonal directions")


def _search(g: Graph, dim: int):
    """Construction 4: a proper ``dim``-colouring that is not the OF's. Returns ``(colour or None, exhausted)``."""
    n = g.n_nodes
    if n > SEARCH_MAX_NODES:
        return None, False
    nbr: list[list[int]] = [[] for _ in range(n)]
    for p, q in g.ortho:
        nbr[p].append(q)
        nbr[q].append(p)
    hyp: list[list] = [[] for _ in range(n)]
    for h in g.hyper:
        for p in h:
            hyp[p].append(h)
    order = sorted(range(n), key=lambda p: (-len(nbr[p]) - 2 * len(hyp[p]), p))
    col = [-1] * n
    budget = [SEARCH_BUDGET]

    def consistent_with_of():
        by_class, by_colour = {}, {}
        for p in range(n):
            c, k = int(g.node_class[p]), col[p]
            if by_class.setdefault(c, k) != k or by_colour.setdefault(k, c) != c:
                return False
        return True

    def ok(p):
        if any(col[q] == col[p] for q in nbr[p]):
            return False
        for h in hyp[p]:
            seen = [col[q] for q in h if col[q] >= 0]
            if len(set(seen)) not in (1, len(seen)):
                return False
        return True

    def dfs(k, used):
        budget[0] -= 1
        if budget[0] < 0:
            raise TimeoutError
        if k == n:
            return not consistent_with_of()
        p = order[k]
        own = {col[q] for q in range(n) if col[q] >= 0 and g.node_class[q] == g.node_class[p]}
        choices = sorted(range(min(used + 1, dim)), key=lambda c: (c in own, c == used))
        for c in choices:  # other classes' colours first: the likeliest witness
            col[p] = c
            if ok(p) and dfs(k + 1, max(used, c + 1)):
                return True
        col[p] = -1
        return False

    try:
        return (np.asarray(col) if dfs(0, 0) else None), True
    except (TimeoutError, RecursionError):
        return None, False


_SC_LOSS: list = []  # the jit-compiled SC loss, made on first use (importing this module does not import JAX)


def _loss(Z, labels, tau, batches):
    """The SC loss in float64, one compilation per shape (batch arrays padded to powers of two)."""
    up = lambda n: 1 << max(n - 1, 0).bit_length()  # noqa: E731
    idx = pad(batches, up(max(len(B) for B in batches)))
    idx = np.concatenate([idx, np.full((up(len(idx)) - len(idx), idx.shape[1]), -1, idx.dtype)])
    import jax

    from .losses import sc_loss

    if not _SC_LOSS:
        _SC_LOSS.append(jax.jit(sc_loss))
    with jax.enable_x64(True):
        return float(_SC_LOSS[0](np.asarray(Z, np.float64), np.asarray(labels), np.float64(tau), idx))


def _witness(g: Graph, batches, kind, col, moved, text, dim, tau, radius, verify):
    Zw = radius * np.eye(dim)[col[g.node]]
    Zof = radius * np.eye(dim)[g.labels]
    counts = np.bincount(g.labels, minlength=g.K)
    of_loss = sc_of_loss(counts, tau, radius, batches=batches, labels=g.labels)
    out = {"kind": kind, "changes": text, "moved_samples": _samples(g, moved),
           "gram_change": float(np.abs(Zw @ Zw.T - Zof @ Zof.T).max()), "tau": tau, "of_loss": of_loss,
           "loss": None, "loss_gap": None, "verified": None}
    if verify and sum(s * s for s in g.batch_sizes) <= VERIFY_MAX_ENTRIES:
        gaps = []
        for t in dict.fromkeys((1.0, float(tau))):
            ref = sc_of_loss(counts, t, radius, batches=batches, labels=g.labels)
            val = _loss(Zw, g.labels, t, batches)
            gaps.append(abs(val - ref))
            if t == float(tau):
                out["loss"], out["loss_gap"] = val, val - ref
        out["verified"] = bool(max(gaps) <= 1e-9 * max(1.0, abs(of_loss)) and out["gram_change"] > 1e-6)
    return out, Zw


def check(batches, labels, dim: int, K: int | None = None, tau: float = 1.0, radius: float = 1.0,
          verify: bool = True) -> Verdict:
    """Is the orthogonal frame the unique minimiser (as a Gram matrix) of SC in the UFM+ on the sphere of
    radius ``radius`` in ``dim`` dimensions with this batch set? See the module doc.

    Args:
      batches: the batch set (index lists, or a padded int array with -1).
      labels: ``(N,)`` ints.
      dim: ``d``.
      K: number of classes (default ``max(labels) + 1``).
      tau: the temperature at which the witness's loss is reported (it is also checked at ``tau = 1``;
        uniqueness does not depend on ``tau``).
      verify: evaluate the witness's loss numerically (float64).
    """
    labels = np.asarray(labels)
    batches = [B.tolist() for B in _clean(batches)]
    g = interaction_graph(batches, labels, K, dim)
    disconnected, unmet = _conditions(g)
    verdict = lambda u, why, w=None, Z=None: Verdict(u, why, disconnected, unmet, w, Z, g)  # noqa: E731
    if dim < g.K:
        return verdict(None, f"dim {dim} < K {g.K}: no orthogonal frame fits")
    if not disconnected and not unmet:
        return verdict(True, "conditions (a) and (b) hold")
    for kind, col, moved, text in _constructions(g, dim, unmet):
        w, Z = _witness(g, batches, kind, col, moved, text, dim, tau, radius, verify)
        if w["verified"] is not False:
            return verdict(False, f"witness: {text}", w, Z)
    col, exhausted = _search(g, dim)
    if col is not None:
        text = (f"a search over the ways to give every part of a class one of {dim} orthogonal directions found "
                "one other than the OF's")
        w, Z = _witness(g, batches, "colouring", col, np.flatnonzero(col != g.node_class).tolist(), text, dim,
                        tau, radius, verify)
        if w["verified"] is not False:
            return verdict(False, f"witness: {text}", w, Z)
    if exhausted and not g.hyper:
        return verdict(True, f"condition (a) fails, but with dim {dim} every embedding with the minimal loss is "
                             "the OF: an exhaustive search finds no other colouring, and without one-class "
                             "batches of 3 or more that search is exact")
    return verdict(None, "conditions (a)/(b) fail and no witness was found (undecided)")


def of_unique(problem: Problem) -> tuple[bool | None, str]:
    """Whether the OF is the unique UFM+ minimiser (as a Gram) for ``problem``'s batching, and why
    (``ufm.interaction.check``; sphere only). Fixed batch sets and the full batch are checked as they are;
    ``binding`` on its first epoch (with ``K >= 2`` the verdict is the same for every epoch: each batch holds
    every class's binding example, so (a) always holds and (b) fails exactly for two single-sample classes);
    ``shuffled`` depends on the epochs drawn (None: check their union with ``ufm batches --epochs``)."""
    if not constraints.get(problem.constraint).equality:
        return None, "the uniqueness analysis is for the sphere"
    if is_epoch_scheme(problem):
        if parse_scheme(problem.batching).name == "shuffled" or problem.K < 2:
            return None, "shuffled batches: depends on the epochs drawn (check their union: ufm batches --epochs)"
    v = check(epoch_batch_list(problem, 0), problem.label_array, problem.dim, problem.K, problem.tau,
              problem.radius, verify=False)
    return v.unique_of, v.reason


def check_problem(problem: Problem, epochs: int = 1, verify: bool = True) -> Verdict:
    """:func:`check` for a ``ufm.Problem``: its fixed batch set, or the batches of ``epochs`` epochs of an
    epoch scheme (``ufm.batching.union_batches``), with the problem's ``dim``, ``tau`` and ``radius``."""
    return check(union_batches(problem, epochs), problem.label_array, problem.dim, problem.K, problem.tau,
                 problem.radius, verify)


def report(v: Verdict) -> dict:
    """JSON-ready: ``n_batches``, ``batch_sizes``, ``unique_of``, ``reason``, ``disconnected_classes``,
    ``unmet_class_pairs``, ``class_parts`` (nodes per class), ``hyperedges``, ``witness``."""
    g = v.graph
    return {"n_batches": len(g.batch_sizes), "batch_sizes": list(g.batch_sizes), "unique_of": v.unique_of,
            "reason": v.reason, "disconnected_classes": v.disconnected_classes,
            "unmet_class_pairs": [list(p) for p in v.unmet_class_pairs],
            "class_parts": [len(g.class_nodes(c)) for c in range(g.K)], "hyperedges": len(g.hyper),
            "witness": v.witness}
