"""The class-level problem reduced by the symmetry between classes of equal size: a point is O(G^2) numbers.

Classes of equal size are exchangeable: with the full batch, permuting them permutes the anchors and the
negatives, so the loss (and every objective whose ``class_log_weights`` depend on the composition only through
the sizes) is invariant, and so is the class-level feasible set. The class-level problem is convex in its Gram
(``ufm.classlevel``: the loss is log-sum-exps of affine functions of ``(M, a)``; the sphere/ball constraints and
``M ⪰ 0`` are convex), so averaging a minimiser over the group gives an invariant minimiser (docs/phase.md, "The
reduction"). Split the ``K`` classes into ``G`` *groups* of equal size (``classes[g]`` classes of size
``sizes[g]``; groups may share a size: any partition into equal-size blocks is a symmetry). An invariant
class-mean Gram has, per group, the squared norm ``p_g`` and the inner product ``b_g`` of two distinct classes,
and between groups ``B_gh``. It is PSD iff ``p_g >= b_g`` (the sum-zero vectors of each group, ``s_g - 1``
times) and the ``G x G`` block ``Y_gg = p_g + (s_g - 1) b_g``, ``Y_gh = sqrt(s_g s_h) B_gh`` is PSD (the
group-ones subspace). Every such Gram is that of

    mu_c = m_g + t_g v_c        (c in group g)

with group centres ``m (G, G)``, spreads ``t (G,)`` and ``v_c`` a centred regular simplex of unit vectors in
``s_g - 1`` fresh dimensions per group (``<v_c, v_c'> = -1/(s_g - 1)``): ``p_g = |m_g|^2 + t_g^2``, ``b_g =
|m_g|^2 - t_g^2 / (s_g - 1)``, ``B_gh = <m_g, m_h>``. The row ``(m_g, t_g)`` lies in the ball of radius
``rho`` exactly when the class means do (on the sphere a singleton class's row is on it), so the reduced problem
is a class-level-like problem on ``G`` rows of ``G + 1`` numbers whatever ``K`` and ``N``; STEP (G = 2) is 6
numbers (5 once the rotation is fixed).

Per anchor group ``g`` (``n_g >= 2``) the logits are grouped in ``G + 1`` slots: another group ``h`` (``s_h
n_h`` negatives at ``B_gh``), another class of the same group (``(s_g - 1) n_g`` at ``b_g``), its own class
(``n_g - 1`` positives at ``a_g``, the within-class inner product of ``ufm.classlevel``); the loss is
``sum_g (s_g n_g / N) [log(n_g - 1) + w_own + softplus(logsumexp_j(X_gj - X_g,own))]`` with ``X_gj = Gram_j /
tau + log(mult_j) + class_log_weights_j``, exactly ``ufm.classlevel.value`` at the lifted means (tested).

CE (a classifier objective) adds the classifier rows: ``w_c = u_g + r_g v_c`` (the same simplex as the class
means: a component of ``w_c`` in further fresh directions meets no mean, changes no logit and only adds to
``||W||^2``, so an optimum has none). The class-level logits are ``<m_g, u_g> + t_g r_g`` (own class), ``<m_g,
u_g> - t_g r_g / (s_g - 1)`` (another class of the group) and ``<m_g, u_h>``; ``||W||_F^2 = sum_g s_g (|u_g|^2 +
r_g^2)``; the variables are ``m, u (G, 2G)`` and ``t, r (G,)``.

BCL (class prototypes ``C``, rows on the features' set, never anchors) adds the prototype rows ``p_c = q_g + r_g
v_c`` (``q (G, 2G)``, ``r (G,)``; the variables ``u``, ``r`` of the solver). The invariant joint Gram of ``[means;
prototypes]`` has a 2 x 2 block on each group's sum-zero vectors: the prototypes share the means' simplex ``v``
and may add a second one, orthogonal to every mean; that part meets no sample, changes no logit (prototypes are
never anchors, so their own Gram enters no loss) and only adds to the prototypes' norms. So the rows ``(q_g,
r_g)`` lie in the ball of radius ``rho`` on the sphere too: a row inside it reaches the sphere with a component in
``s_g`` fresh dimensions (:func:`lift`). The cross inner products ``X_cc' = <mu_c, p_c'>`` are
:func:`ce_logits` of ``(m, t, q, r)``. Per anchor group (every sample is an anchor: its prototype is a positive)
there are ``2G + 2`` slots: the ``G + 1`` sample slots above and the prototypes of the other groups, of the
group's other classes and its own, each slot weighted ``1/(kk_c' + 1)`` per member (``kk`` the other samples of
class ``c'``, as ``ufm.classlevel``); the loss is ``sum_g (s_g n_g / N) [logsumexp_j(X_gj) - ((n_g - 1) a_g + Xo_g)
/ (n_g tau)]``, exactly ``ufm.classlevel.value`` at the lifted means and prototypes (tested).

Not covered (the class-level path runs): non-negative features (the reduced Gram would relax the
completely-positive one) and batch orbits.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from . import constraints, objectives
from .classlevel import ClassProblem, prototype_anchor_loss, within
from .problem import ProblemBase

__all__ = ["GroupProblem", "groups_of", "supported", "weights", "stack_weights", "value", "gram", "class_means", "lift",
           "prototype_fill", "rank", "cosine_groups", "delta_gm"]


@dataclass(frozen=True, repr=False)
class GroupProblem(ProblemBase):
    """A class-level problem (``ufm.ClassProblem``, full batch) whose classes come in groups of equal size.

      sizes: the class size of each group ``(G,)``, real ``>= 2`` or exactly 1.
      classes: how many classes each group holds ``(G,)``, integers ``>= 1`` (``K = sum(classes)``).
    Other fields as in ``ClassProblem`` (``ufm.ProblemBase``'s, keyword-only; ``nonneg`` must be False).
    """

    sizes: tuple[float, ...]
    classes: tuple[int, ...]

    bounded_only: ClassVar[str | None] = "the class-level problem"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        sizes = tuple(float(x) for x in self.sizes)
        classes = tuple(self.classes)
        if len(sizes) != len(classes) or not sizes:
            raise ValueError(f"sizes and classes: one size per group, got {len(sizes)} sizes, {len(classes)} groups")
        for g, (n, s) in enumerate(zip(sizes, classes)):
            if not (math.isfinite(n) and (n >= 2 or n == 1)):
                raise ValueError(f"sizes: group {g} has class size {n!r}; a class size is a finite number >= 2 or "
                                 "exactly 1")
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"classes: group {g} holds {s!r} classes; an integer >= 1")
        set_("sizes", sizes)
        set_("classes", tuple(int(s) for s in classes))
        if sum(self.classes) < 2:
            raise ValueError("classes: the class-level problem needs at least 2 classes")
        self._check_shared(self.K)

    def _refuse(self, obj) -> None:
        if obj.class_level is None:
            raise ValueError(f"loss {self.loss!r} declares no class-level value (ufm.objectives: class_level)")
        if self.nonneg:
            raise ValueError("nonneg: the reduced problem has no non-negative form (use the class-level path)")
        if self.bias:
            raise ValueError("bias: the class-level problem has no classifier bias")

    @property
    def G(self) -> int:
        return len(self.sizes)

    @property
    def K(self) -> int:
        """Number of classes, ``sum_g classes_g`` (without forming the ``K`` class sizes)."""
        return sum(self.classes)

    @property
    def N(self) -> float:
        """Number of samples, ``sum_g sizes_g classes_g`` (real)."""
        return float(sum(n * s for n, s in zip(self.sizes, self.classes)))

    @property
    def counts(self) -> tuple[float, ...]:
        """The ``K`` class sizes, group by group."""
        return tuple(n for n, s in zip(self.sizes, self.classes) for _ in range(s))

    def class_problem(self) -> ClassProblem:
        """The same problem on the class level (``K`` class means; for tests and small ``K``)."""
        return ClassProblem(counts=self.counts, loss=self.loss, tau=self.tau, dim=self.dim,
                            constraint=self.constraint, radius=self.radius, weight_decay=self.weight_decay,
                            feature_decay=self.feature_decay)

    @classmethod
    def from_class_problem(cls, p: ClassProblem) -> "GroupProblem":
        """Group the classes of ``p`` by equal size (classes must already be sorted into contiguous groups:
        ``groups_of`` says whether they are)."""
        groups = groups_of(p.counts)
        if groups is None:
            raise ValueError("counts: classes of equal size must be contiguous for the reduced problem")
        if p.orbits is not None or p.nonneg:
            raise ValueError("the reduced problem needs the full batch and no nonneg")
        sizes, classes = groups
        return cls(sizes=sizes, classes=classes, loss=p.loss, tau=p.tau, dim=p.dim, constraint=p.constraint,
                   radius=p.radius, weight_decay=p.weight_decay, feature_decay=p.feature_decay)


def groups_of(counts):
    """``(sizes, classes)``: runs of equal consecutive class sizes, or None when a size recurs after another."""
    sizes, classes = [], []
    for n in counts:
        if sizes and sizes[-1] == float(n):
            classes[-1] += 1
        else:
            if float(n) in sizes:
                return None
            sizes.append(float(n))
            classes.append(1)
    return tuple(sizes), tuple(classes)


def supported(loss: str, nonneg: bool, orbits=None) -> bool:
    """Whether the reduced path covers this family (module doc): a loss with a class-level value, not
    ``nonneg``, the full batch."""
    return objectives.get(loss).class_level is not None and not nonneg and orbits is None


@lru_cache(maxsize=4096)
def _slot_log_weights(loss: str, sizes: tuple, classes: tuple):
    """``(G, G + 1)``: the objective's ``class_log_weights`` per anchor group and slot (another group ``h``, the
    same group's other classes in column ``g``, the own class in column ``G``), read off the full ``K``-vector of
    sizes and checked to be constant on every group (the symmetry the reduction rests on). ValueError if not."""
    clw_fn = objectives.get(loss).class_log_weights
    k = np.repeat(np.asarray(sizes, dtype=np.float64), classes)
    first = np.concatenate([[0], np.cumsum(classes)[:-1]]).astype(int)
    G = len(sizes)
    out = np.zeros((G, G + 1))
    for g in range(G):
        anchors = [first[g]] + ([first[g] + classes[g] - 1] if classes[g] >= 2 else [])
        rows = []
        for c in anchors:
            # a contrastive loss without prototypes (refused at construction) has class_log_weights
            clw = np.asarray(clw_fn(k, c), dtype=np.float64)  # type: ignore[misc]
            row = np.zeros(G + 1)
            for h in range(G):
                block = clw[first[h]:first[h] + classes[h]]
                if h == g:
                    others = np.delete(block, c - first[h])
                    if len(others) and np.ptp(others) != 0:
                        raise ValueError(f"loss {loss!r}: its class weights differ between classes of equal size")
                    row[h] = others[0] if len(others) else 0.0
                    row[G] = clw[c]
                else:
                    if np.ptp(block) != 0:
                        raise ValueError(f"loss {loss!r}: its class weights differ between classes of equal size")
                    row[h] = block[0]
            rows.append(row)
        if any(not np.array_equal(r, rows[0]) for r in rows[1:]):
            raise ValueError(f"loss {loss!r}: its class weights are not the same for two anchors of equal size")
        out[g] = rows[0]
    return out


def weights(problem: GroupProblem) -> dict:
    """The numbers :func:`value` reads (NumPy) for one problem; :func:`stack_weights` for many.

    Returns:
      ``n (G,)`` sizes, ``s (G,)`` classes per group, ``w (G,)`` the anchor share ``s_g n_g / N`` (0 without a
      positive), ``logb (G, G + 1)`` ``log(mult) + class_log_weights`` per slot (module doc; ``-inf`` where a
      slot is empty), ``clw (G, G + 1)`` the log-weights alone; scalars ``tau``, ``rho2``.
    """
    return {k: v[0] for k, v in stack_weights([problem]).items()}


def stack_weights(problems) -> dict:
    """:func:`weights` of problems with the same ``G``, stacked on a leading axis (vectorised: a grid of 10^4
    points costs milliseconds; the log-weights are computed once per distinct ``(sizes, classes)``)."""
    n = np.array([p.sizes for p in problems], dtype=np.float64)  # (P, G)
    s = np.array([p.classes for p in problems], dtype=np.float64)
    P, G = n.shape
    if objectives.get(problems[0].loss).class_level == "ce":  # CE: the class shares and the logit multiplicities
        sn = s * n
        mult = np.repeat(s[:, None, :], G, axis=1)
        mult[:, np.eye(G, dtype=bool)] = s - 1
        with np.errstate(divide="ignore"):
            logm = np.where(mult > 0, np.log(np.where(mult > 0, mult, 1.0)), -np.inf)
        return {"n": n, "s": s, "w": sn / sn.sum(axis=1, keepdims=True), "logm": logm,
                "weight_decay": np.array([p.weight_decay for p in problems], dtype=np.float64),
                "feature_decay": np.array([p.feature_decay for p in problems], dtype=np.float64),
                "rho2": np.array([p.radius ** 2 for p in problems], dtype=np.float64)}
    if objectives.get(problems[0].loss).class_level == "prototypes":
        return _proto_weights(problems, n, s)
    cache: dict = {}
    clw = np.empty((P, G, G + 1))
    for i, p in enumerate(problems):
        key = (p.loss, p.sizes, p.classes)
        if key not in cache:
            cache[key] = _slot_log_weights(*key)
        clw[i] = cache[key]
    sn = s * n
    mult = np.repeat(sn[:, None, :], G, axis=1)
    eye = np.eye(G, dtype=bool)
    mult[:, eye] = (s - 1) * n
    mult = np.concatenate([mult, (n - 1)[:, :, None]], axis=2)
    with np.errstate(divide="ignore"):
        logb = np.where(mult > 0, np.log(np.where(mult > 0, mult, 1.0)), -np.inf) + clw
    has = n >= 2
    own = logb[:, :, G]
    own[~has] = 0.0  # no anchor: weight 0, kept finite (no NaN through the masked gradient)
    w = np.where(has, sn / sn.sum(axis=1, keepdims=True), 0.0)
    return {"n": n, "s": s, "w": w, "logb": logb, "clw": clw, "tau": np.array([p.tau for p in problems]),
            "rho2": np.array([p.radius ** 2 for p in problems], dtype=np.float64)}


def _proto_weights(problems, n, s) -> dict:
    """:func:`stack_weights` of a loss with class prototypes (BCL; module doc): ``logb (P, G, 2G + 2)`` the
    log-multiplicity plus ``-log(kk_c' + 1)`` of each slot (samples of group ``h`` / of the group's other classes
    in column ``g`` / of the own class in column ``G``, then prototypes likewise in columns ``G + 1 + h`` and ``2G +
    1``), ``-inf`` where a slot is empty; ``pa = (n - 1)/n`` and ``px = 1/n``, the positives' shares; ``w``
    every sample's anchor share ``s_g n_g / N``."""
    P, G = n.shape
    eye = np.eye(G, dtype=bool)
    sn = s * n
    ms = np.repeat(sn[:, None, :], G, axis=1)
    ms[:, eye] = (s - 1) * n
    mp = np.repeat(s[:, None, :], G, axis=1)
    mp[:, eye] = s - 1
    lw = np.repeat(-np.log(n + 1.0)[:, None, :], G, axis=1)  # another class c': kk_c' = n_c'
    own = -np.log(n)[:, :, None]  # the own class: kk_c + 1 = n_c
    mult = np.concatenate([ms, (n - 1)[:, :, None], mp, np.ones((P, G, 1))], axis=2)
    lws = np.concatenate([lw, own, lw, own], axis=2)
    with np.errstate(divide="ignore"):
        logb = np.where(mult > 0, np.log(np.where(mult > 0, mult, 1.0)), -np.inf) + lws
    return {"n": n, "s": s, "w": sn / sn.sum(axis=1, keepdims=True), "logb": logb, "lws": lws, "mult": mult,
            "pa": (n - 1) / n, "px": 1.0 / n, "tau": np.array([p.tau for p in problems]),
            "rho2": np.array([p.radius ** 2 for p in problems], dtype=np.float64)}


def _parts(m, t, n, s, xp):
    """``(p, b, B)``: squared norms, within-group and between-group inner products (``B (..., G, G)`` with ``b`` on
    its diagonal) of the class means of ``(m, t)``; any array library, any leading axes."""
    G = m.shape[-2]
    P = m @ xp.swapaxes(m, -1, -2)
    mm2 = xp.diagonal(P, axis1=-2, axis2=-1)
    t2 = t * t * (s >= 2)
    p = mm2 + t2
    b = mm2 - t2 / xp.maximum(s - 1, 1)
    eye = xp.eye(G, dtype=P.dtype)
    B = P + eye * (b - mm2)[..., None, :]
    return p, b, B


def value(x, h, *, sphere: bool, constant: bool = True):
    """The reduced objective in JAX (jit/vmap-safe): ``x = {"m": (G, G), "t": (G,)}``, ``h`` :func:`weights` as
    arrays. ``constant=False`` drops ``sum_g w_g (log(n_g - 1) + w_own)`` (as ``ufm.classlevel.value``)."""
    import jax
    import jax.numpy as jnp

    if "logm" in h:
        return _ce_value(x, h, sphere=sphere)
    p, _, B = _parts(x["m"], x["t"], h["n"], h["s"], jnp)
    a = within(p, h["n"], h["rho2"], sphere)
    if "px" in h:  # class prototypes (BCL): module doc
        X, Xo = ce_logits(x["m"], x["t"], x["u"], x["r"], h["s"], jnp)
        pos = h["pa"] * a + h["px"] * Xo  # the mean inner product with the positives
        G = B.shape[0]
        neg = jnp.concatenate([B, X], axis=1)  # every slot but the own class's samples and prototype
        lb = jnp.concatenate([h["logb"][:, :G], h["logb"][:, G + 1:2 * G + 1]], axis=1)
        neg = jnp.where(jnp.isfinite(lb), (neg - pos[:, None]) / h["tau"] + lb, -jnp.inf)
        return h["w"] @ prototype_anchor_loss(neg, (a - Xo) / h["tau"], h["pa"], h["px"])
    X = jnp.concatenate([B, a[:, None]], axis=1) / h["tau"] + h["logb"]  # (G, G + 1)
    own = X[:, -1]
    rest = jnp.where(jnp.isfinite(h["logb"][:, :-1]), X[:, :-1] - own[:, None], -jnp.inf)
    excess = jax.nn.softplus(jax.nn.logsumexp(rest, axis=-1))
    base = h["logb"][:, -1]
    anchor = excess + base if constant else excess
    return jnp.sum(jnp.where(h["w"] > 0, h["w"] * anchor, 0.0))


def ce_logits(m, t, u, r, s, xp):
    """``(C (..., G, G), own (..., G))``: the class-level CE logits of the reduced point, ``C_gh = <m_g, u_h>`` with
    ``C_gg`` that of another class of the group, and ``own_g`` the class's own logit."""
    C = m @ xp.swapaxes(u, -1, -2)
    diag = xp.diagonal(C, axis1=-2, axis2=-1)
    tr = t * r * (s >= 2)
    G = m.shape[-2]
    eye = xp.eye(G, dtype=C.dtype)
    same = diag - tr / xp.maximum(s - 1, 1)
    return C + eye * (same - diag)[..., None, :], diag + tr


def _ce_value(x, h, *, sphere):
    import jax
    import jax.numpy as jnp

    m, u, t, r = x["m"], x["u"], x["t"], x["r"]
    C, own = ce_logits(m, t, u, r, h["s"], jnp)
    rest = jnp.where(jnp.isfinite(h["logm"]), C + h["logm"] - own[:, None], -jnp.inf)
    ce = jax.nn.softplus(jax.nn.logsumexp(rest, axis=-1))
    wnorm = jnp.sum(h["s"] * (jnp.sum(u * u, axis=1) + r * r * (h["s"] >= 2)))
    p = jnp.sum(m * m, axis=1) + t * t * (h["s"] >= 2)
    d = h["rho2"] * jnp.ones_like(p) if sphere else p
    return h["w"] @ ce + h["weight_decay"] * wnorm + h["feature_decay"] * (h["w"] @ d)


def gram(m, t, problem: GroupProblem):
    """The reduced Gram of ``(m, t)`` at the problem's radius (NumPy): ``d (G,)`` the samples' squared norms,
    ``a (G,)`` within a class, ``b (G,)`` between two classes of a group, ``B (G, G)`` between groups (``b`` on
    its diagonal), ``p (G,)`` the means' squared norms. :func:`stack_gram` for many."""
    h = stack_weights([problem])
    out = stack_gram(np.asarray(m, dtype=np.float64)[None], np.asarray(t, dtype=np.float64)[None], h,
                     constraints.get(problem.constraint).equality)
    return {k: v[0] for k, v in out.items()}


def stack_gram(m, t, h, sphere: bool):
    """:func:`gram` for stacks ``m (P, G, G)``, ``t (P, G)`` of problems whose :func:`stack_weights` are ``h``."""
    n, s, rho2 = h["n"], h["s"], h["rho2"][:, None]
    p, b, B = _parts(m, t, n, s, np)
    a = within(p, n, rho2, sphere)
    d = np.broadcast_to(rho2, p.shape).copy() if sphere else p
    return {"d": d, "a": a, "b": b, "B": B, "p": p}


def rank(m, t, classes, radius: float = 1.0, tol: float = 1e-9, u=None, r=None, fill=None):
    """The rank of the lifted class-mean Gram: ``rank(m)`` plus ``s_g - 1`` for every group with spread
    ``t_g != 0`` (the dimension the class means need: ``dim >= rank`` embeds them). With CE's ``u``, ``r``: the
    dimension the means and classifier rows need together (``rank([m; u])``, spread where ``t_g`` or ``r_g`` is not
    0). With BCL's prototypes ``u``, ``r`` and ``fill (..., G)`` (the groups whose prototypes take fresh
    dimensions to reach the sphere: :func:`prototype_fill`): the rank of the joint Gram of means and prototypes
    (each group's sum-zero block of rank 0, 1 or 2, and the group-ones block with the fill beside the prototypes).
    ``m (..., G, c)``, ``t (..., G)``; an int array of the leading shape."""
    m = np.asarray(m, dtype=np.float64)
    s = np.asarray(classes)
    spread = np.abs(np.asarray(t)) > tol * radius
    per = spread.astype(int)  # the rank of each group's sum-zero block
    if u is not None and fill is not None:  # BCL: the fill e_g adds diag(e) beside the prototypes' rows
        u, r = np.asarray(u, dtype=np.float64), np.asarray(r, dtype=np.float64)
        e2 = radius ** 2 - np.sum(u * u, axis=-1) - r * r * (s >= 2)
        e = np.sqrt(np.maximum(e2, 0.0)) * fill
        G = m.shape[-2]
        top = np.concatenate([m, np.zeros(m.shape[:-1] + (G,))], axis=-1)
        bottom = np.concatenate([u, e[..., :, None] * np.eye(G)], axis=-1)
        m = np.concatenate([top, bottom], axis=-2)
        big = np.abs(e) > tol * radius
        # the sum-zero block of (means, prototypes) is [[t, 0], [r, e]] in the simplex and the fill directions
        per = np.where(spread & big, 2, (spread | big | (np.abs(r) > tol * radius)).astype(int))
    elif u is not None:
        m = np.concatenate([m, np.asarray(u, dtype=np.float64)], axis=-2)
        per = (spread | (np.abs(np.asarray(r)) > tol / radius)).astype(int)
    sv = np.linalg.svd(m, compute_uv=False)
    rk = np.sum(sv > tol * max(radius, 1.0) * np.maximum(1.0, sv.max(axis=-1, keepdims=True)), axis=-1)
    return rk + np.sum((s - 1) * per * (s >= 2), axis=-1)


def class_means(m, t, problem: GroupProblem, tol: float = 1e-9):
    """The ``K`` class means ``(K, r)`` of ``(m, t)``, group by group (module doc), ``r = G`` plus ``s_g - 1``
    per group with spread. Their Gram is the lifted reduced Gram; ``ufm.classlevel.embedding`` turns them into
    samples."""
    return lift(m, t, problem, tol=tol)[0]


def prototype_fill(u, r, problem: GroupProblem, tol: float = 1e-9):
    """``(..., G)`` bools: the groups whose prototypes (rows ``(u_g, r_g)`` at the problem's radius) take ``s_g``
    fresh dimensions to reach the sphere (module doc); all False on the ball."""
    s = np.asarray(problem.classes)
    norm2 = np.sum(np.asarray(u, dtype=np.float64) ** 2, axis=-1) + np.asarray(r, dtype=np.float64) ** 2 * (s >= 2)
    return (np.sqrt(norm2) < problem.radius * (1 - tol)) & constraints.get(problem.constraint).equality


def lift(m, t, problem: GroupProblem, u=None, r=None, tol: float = 1e-9):
    """The ``K`` class means of ``(m, t)`` and, for a loss with class prototypes, the ``K`` prototypes of ``(u,
    r)`` in the same coordinates (module doc): ``(mu (K, D), C (K, D) or None)``. ``D`` is ``m``'s columns, plus
    ``s_g - 1`` per group with a spread (``t_g`` or ``r_g`` not 0), plus on the sphere ``s_g`` per group whose
    prototypes lie inside it (their fill). The joint Gram of ``[mu; C]`` is the lifted reduced one."""
    m = np.asarray(m, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    s = list(problem.classes)
    rho = problem.radius
    proto = u is not None
    spread_of = np.abs(t) > tol * rho
    if proto:
        u, r = np.asarray(u, dtype=np.float64), np.asarray(r, dtype=np.float64)
        spread_of = spread_of | (np.abs(r) > tol * rho)
        fill = prototype_fill(u, r, problem, tol)
    spread = [g for g in range(len(s)) if s[g] >= 2 and spread_of[g]]
    D = m.shape[1] + sum(s[g] - 1 for g in spread) + (sum(s[g] for g in range(len(s)) if fill[g]) if proto else 0)
    mu = np.zeros((sum(s), D))
    C = np.zeros((sum(s), D)) if proto else None
    row, col = 0, m.shape[1]
    for g in range(len(s)):
        mu[row:row + s[g], :m.shape[1]] = m[g]
        if C is not None:
            C[row:row + s[g], :m.shape[1]] = u[g]
        if g in spread:
            E = np.eye(s[g]) - 1.0 / s[g]
            V = np.linalg.qr(E[:, :-1])[0] * math.sqrt(s[g] / (s[g] - 1))  # rows: a centred simplex of unit vectors
            mu[row:row + s[g], col:col + s[g] - 1] = V * t[g]
            if C is not None:
                C[row:row + s[g], col:col + s[g] - 1] = V * r[g]
            col += s[g] - 1
        row += s[g]
    if C is not None:
        row = 0
        for g in range(len(s)):
            if fill[g]:
                rest = rho ** 2 - float(np.sum(C[row] ** 2))
                C[row:row + s[g], col:col + s[g]] = np.eye(s[g]) * math.sqrt(max(rest, 0.0))
                col += s[g]
            row += s[g]
    return mu, C


def _cosines(gr):
    """``(P, G, G)``: the cosine between two distinct classes of groups ``g``, ``h`` (diagonal: within a group)."""
    p = np.maximum(gr["p"], 1e-300)
    C = gr["B"] / np.sqrt(p[..., :, None] * p[..., None, :])
    G = p.shape[-1]
    eye = np.eye(G, dtype=bool)
    C[..., eye] = gr["b"] / p
    return C


def cosine_groups(gr, classes, majority) -> dict:
    """``maj_maj``, ``maj_min``, ``min_min`` of ``ufm.geometry.cosine_groups`` from stacked reduced Grams
    (:func:`stack_gram`, leading axis ``P``): the mean cosine over the ordered pairs of distinct classes of each
    kind, ``(P,)`` arrays (NaN where a kind has no pair). ``classes (G,)`` per group, ``majority (G,)`` bools."""
    s = np.asarray(classes, dtype=np.float64)
    C = _cosines(gr)
    maj = np.asarray(majority, dtype=bool)
    pairs = np.outer(s, s) - np.diag(s)  # ordered pairs of distinct classes per group pair

    def mean(a, b):
        wts = pairs * np.outer(a, b)
        tot = float(wts.sum())
        return (C * wts).sum(axis=(-2, -1)) / tot if tot > 0 else np.full(C.shape[:-2], np.nan)

    return {"maj_maj": mean(maj, maj), "maj_min": mean(maj, ~maj), "min_min": mean(~maj, ~maj)}


def delta_gm(gr, classes):
    """``ufm.geometry.gram_distance(cosines, I_K)`` from stacked reduced Grams: ``sqrt(2 - 2 sqrt(K) /
    ||C||_F)``, ``(P,)``."""
    s = np.asarray(classes, dtype=np.float64)
    C = _cosines(gr)
    pairs = np.outer(s, s) - np.diag(s)
    fro2 = s.sum() + np.sum(pairs * C * C, axis=(-2, -1))
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * np.sqrt(s.sum()) / np.sqrt(fro2)))
