"""The class-level problem: an optimum that is constant on class blocks, with class sizes as real weights.

When the batch set is invariant under permutations within each class (the full batch; in general a union of whole
orbits), averaging a minimiser over that group keeps it a minimiser, so some minimiser has a class-constant Gram
(docs/theory.md, "The class-level problem"). Such a Gram is described by class means ``mu (K, r)``:

* sphere: ``z_i = mu_c + e_i`` with ``sum_{i in c} e_i = 0``, every ``e_i`` orthogonal to the means and
  ``||e_i||^2 = rho^2 - ||mu_c||^2``; between classes ``<z_i, z_j> = <mu_c, mu_c'>``, within a class (``i != j``)
  ``a_c = (n_c ||mu_c||^2 - rho^2) / (n_c - 1)``. A singleton class has ``||mu_c|| = rho``.
* ball: no spread (it only lowers ``a_c``, and both losses prefer it larger): ``a_c = ||mu_c||^2``.

Every row of ``mu`` lies in the ball of radius ``rho`` (and is ``>= 0`` with ``nonneg``). The losses read only
``a`` and ``M = mu muᵀ``, and the class sizes ``n_c`` enter as weights, so the cost of a point does not depend on
``N`` and ``n_c`` may be any real ``>= 2`` (or exactly 1): R varies continuously. For integer counts the value is
the full problem's value at the embedding of :func:`embedding` (within-class spread needs ``n_c - 1`` more
dimensions per spread class; a collapsed optimum needs none). With ``nonneg`` the class-level problem relaxes the
sample problem where a class has spread (``a_c`` may then be negative, which no non-negative samples have); a
collapsed point is exact.

Contrastive without prototypes (SC, ``bcl-avg``), per batch composition ``k`` (``(k, m)``: ``m`` batches of class composition ``k``;
the full batch is ``((counts, 1),)``) and ``T = sum m sum k`` anchor slots: an anchor of class ``c`` with
``k_c >= 2`` contributes ``-a_c/tau + log(sum_c' mult_cc' w_cc' exp(G_cc'/tau))``, ``mult_cc' = k_c' - [c = c']``,
``w`` the objective's ``class_log_weights``, ``G_cc = a_c``, ``G_cc' = M_cc'``; the loss is the mean over slots.
BCL (class prototypes ``C (K, r)``, rows on the features' set; full batch only, no ``nonneg``): the joint Gram of
``[Z; C]`` is also constant on class blocks (a within-class permutation of the samples leaves the prototypes and
the loss alone), with the cross block ``X = mu Cᵀ`` (``<z_i, p_c'>`` for every ``i`` in ``c``: the spread is
orthogonal to the prototypes too) and ``P = C Cᵀ``. An anchor of class ``c`` (every sample: its prototype is
always a positive), weight ``n_c / N``, sees ``kk = n - e_c`` other samples: ``log sum_c' [kk_c' exp(G_cc'/tau) +
exp(X_cc'/tau)] / (kk_c' + 1) - ((n_c - 1) a_c + X_cc) / (n_c tau)`` (docs/theory.md §5).
CE: ``sum_c (n_c/N) CE(C_c, c) + lambda_W ||W||_F^2 + lambda_Z sum_c (n_c/N) d_c``, ``C = mu Wᵀ`` the class-level
logits and ``d_c = rho^2`` (sphere) or ``||mu_c||^2`` (ball).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from . import constraints, objectives
from .problem import ProblemBase

__all__ = ["ClassProblem", "weights", "value", "prototype_anchor_loss", "block_gram", "embedding"]


@dataclass(frozen=True, repr=False)
class ClassProblem(ProblemBase):
    """A class-level problem (module doc). Fields as in ``ufm.Problem`` (the shared ones are
    ``ufm.ProblemBase``'s, keyword-only), except:

      counts: class sizes ``(K,)``, real numbers ``>= 2`` or exactly 1 (a singleton class).
      orbits: ``((k, m), ...)``: ``m`` batches of class composition ``k`` (real, ``k_c <= counts_c``); None: the
        full batch. Contrastive losses only (CE's objective is the full mean).
    """

    counts: tuple[float, ...]
    orbits: tuple | None = field(default=None, kw_only=True)

    bounded_only: ClassVar[str | None] = "the class-level problem"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        try:
            counts = tuple(float(c) for c in self.counts)
        except (TypeError, ValueError):
            raise ValueError(f"counts must be a list of numbers, got {self.counts!r}") from None
        if len(counts) < 2:
            raise ValueError(f"counts: the class-level problem needs at least 2 classes, got {len(counts)}")
        for c, n in enumerate(counts):
            if not (math.isfinite(n) and (n >= 2 or n == 1)):
                raise ValueError(f"counts: class {c} has size {n!r}; a class size is a finite number >= 2 or "
                                 "exactly 1")
        set_("counts", counts)
        self._check_shared(len(counts))
        obj = objectives.get(self.loss)
        if obj.prototypes and self.orbits is not None:
            raise ValueError(f"orbits: loss {self.loss!r} (class prototypes) has a class-level value for the full "
                             "batch only; give orbits=None")
        if obj.prototypes and self.nonneg:
            raise ValueError(f"nonneg: loss {self.loss!r} (class prototypes) has no class-level bound with "
                             "non-negative features")
        if self.orbits is not None:
            if not obj.contrastive:
                raise ValueError("orbits: CE's objective is the full mean; give orbits=None")
            orbits = tuple((tuple(float(x) for x in k), float(m)) for k, m in self.orbits)
            for k, m in orbits:
                if len(k) != len(counts) or m <= 0 or any(x < 0 or x > n for x, n in zip(k, counts)):
                    raise ValueError(f"orbits: a batch composition {k} x {m} does not fit the counts {counts}")
            set_("orbits", orbits)

    def _refuse(self, obj) -> None:
        if obj.class_level is None:
            raise ValueError(f"loss {self.loss!r} declares no class-level value (ufm.objectives: class_level)")
        if self.bias:
            raise ValueError("bias: the class-level problem has no classifier bias")

    @property
    def compositions(self) -> tuple:
        """``((k, m), ...)``: the orbits, or the full batch ``((counts, 1),)``."""
        return self.orbits if self.orbits is not None else ((self.counts, 1.0),)

    @classmethod
    def from_problem(cls, problem, orbits=None) -> "ClassProblem":
        """The class-level form of a ``ufm.Problem`` with integer counts. ``orbits``: its batch set as whole orbits
        (``solvers.relaxation.class_orbits``); None requires the full batch."""
        if orbits is None and not (problem.batching == "full" and problem.batches is None):
            raise ValueError(f"batching {problem.batching!r}: give the batch set's orbits (the class-level problem "
                             "needs a batch set invariant under permutations within classes)")
        full = orbits is not None and len(orbits) == 1 and tuple(orbits[0][0]) == tuple(problem.counts)
        return cls(counts=problem.counts, loss=problem.loss, tau=problem.tau, dim=problem.dim,
                   constraint=problem.constraint, radius=problem.radius, nonneg=problem.nonneg,
                   weight_decay=problem.weight_decay, feature_decay=problem.feature_decay, bias=problem.bias,
                   orbits=None if (orbits is None or full or not objectives.of(problem).contrastive) else
                   tuple((tuple(int(x) for x in k), m) for k, m in orbits))


def weights(problem: ClassProblem) -> dict:
    """The numbers :func:`value` reads, as NumPy arrays (one problem; stack them to vmap a grid).

    Returns:
      ``n (K,)``; contrastive: ``w (O, K)`` the weight of an anchor of class ``c`` in composition ``o`` (0 without
      a positive), ``logb (O, K, K)`` ``log(mult) + class_log_weights`` (``-inf`` where ``mult = 0``); CE:
      ``w (K,)`` = ``n / N``. Scalars ``tau``, ``rho2``, ``weight_decay``, ``feature_decay``.
    """
    obj = objectives.of(problem)
    n = np.asarray(problem.counts, dtype=np.float64)
    K = len(n)
    out = {"n": n, "tau": problem.tau, "rho2": problem.radius ** 2, "weight_decay": problem.weight_decay or 0.0,
           "feature_decay": problem.feature_decay}
    if obj.class_level == "ce":
        return {**out, "w": n / n.sum()}
    if obj.class_level == "prototypes":
        # full batch: an anchor of class c sees kk = n - e_c other samples; per class c' the weight 1/(kk_c' + 1)
        # on its kk_c' samples and on the prototype p_c'; its positives are its kk_c class-mates and p_c
        eye = np.eye(K, dtype=bool)
        kk = n[None, :] - eye  # (K anchors, K classes)
        with np.errstate(divide="ignore"):
            lws = np.where(kk > 0, np.log(np.where(kk > 0, kk, 1.0)), -np.inf) - np.log(kk + 1)
        return {**out, "w": n / n.sum(), "lws": lws, "lwp": -np.log(kk + 1), "pa": (n - 1) / n, "px": 1.0 / n}
    comps = problem.compositions
    T = sum(m * sum(k) for k, m in comps)
    w, logb = np.zeros((len(comps), K)), np.full((len(comps), K, K), -np.inf)
    for o, (k, m) in enumerate(comps):
        k = np.asarray(k, dtype=np.float64)
        for c in range(K):
            if k[c] < 2:
                continue
            w[o, c] = m * k[c] / T
            mult = k - (np.arange(K) == c)
            ok = mult > 0
            # a contrastive loss without prototypes (refused at construction) has class_log_weights
            logb[o, c, ok] = np.log(mult[ok]) + obj.class_log_weights(k, c)[ok]  # type: ignore[misc]
    return {**out, "w": w, "logb": logb}


def within(mu2, n, rho2, sphere):
    """``a_c`` from ``||mu_c||^2`` (module doc); any array library. Singletons get ``||mu_c||^2``."""
    if not sphere:
        return mu2
    spread = (n * mu2 - rho2) / (n - 1 + (n < 2))
    return spread * (n >= 2) + mu2 * (n < 2)


def excess_logits(M, a, h):
    """The contrastive class-level logits less the positives' (JAX; the forward part that :func:`value` and the
    hand-written gradient, ``solvers.classlevel.contrastive_value_and_grad``, share).

    Args:
      M: ``mu muᵀ (K, K)``. a: the within-class inner products ``a_c (K,)`` (:func:`within`). h: :func:`weights`.
    Returns:
      ``(O, K, K)``: for each batch orbit ``o``, anchor class ``c`` and other class ``c'``, ``X_occ' - X_occ`` with
      ``X_o = G / tau + logb_o`` and ``G`` the class-constant Gram (``M`` with ``a`` on its diagonal); ``-inf``
      where ``c' = c`` or the orbit has no such negative.
    """
    import jax.numpy as jnp

    K = M.shape[0]
    G = M - jnp.diag(jnp.diagonal(M)) + jnp.diag(a)
    X = G[None] / h["tau"] + h["logb"]  # (O, K, K)
    own = jnp.diagonal(X, axis1=1, axis2=2)  # (O, K): the positives' logit, log(k_c - 1) included
    return jnp.where(~jnp.eye(K, dtype=bool)[None] & jnp.isfinite(h["logb"]), X - own[..., None], -jnp.inf)


def _phi(x):
    """``e^x - 1 - x >= 0`` to full relative accuracy for ``|x| <= 1`` (JAX): a Taylor series below 0.01, where
    ``expm1(x) - x`` loses digits."""
    import jax.numpy as jnp

    small = jnp.abs(x) < 0.01
    xs = jnp.where(small, x, 0.0)
    series = xs * xs / 2 * (1 + xs / 3 * (1 + xs / 4 * (1 + xs / 5 * (1 + xs / 6 * (1 + xs / 7)))))
    return jnp.where(small, series, jnp.expm1(x) - x)


def prototype_anchor_loss(neg, delta, pa, px):
    """The loss of one anchor of a loss with class prototypes, from logits relative to the positives' mean: ``log(pa
    e^(px delta) + px e^(-pa delta) + sum_j e^(neg_j))`` (JAX, any leading axes).

    Args:
      neg: ``(..., J)`` the negatives' logits (log-weights included) minus the positives' mean logit ``pos =
        (pa a + px Xo) / tau``; ``-inf`` for an empty slot.
      delta: ``(...,)`` ``(a - Xo) / tau``, the class-mates' against the own prototype's inner product.
      pa, px: ``(...,)`` the positives' shares, ``(n - 1)/n`` and ``1/n``.
    Returns:
      ``(...,)``. Why this form: at small ``tau`` the loss is exponentially small, the difference of two numbers of
      size ``1/tau``; written so, it keeps its relative accuracy (the positives' part ``log(1 + pa phi(px delta) +
      px phi(-pa delta))``, ``phi(x) = e^x - 1 - x >= 0``, has no cancellation), so the solver still sees descent
      where the direct difference only sees rounding."""
    import jax
    import jax.numpy as jnp

    near = jnp.abs(delta) < 1.0
    dn = jnp.where(near, delta, 0.0)
    with_pa = jnp.where(pa > 0, px, 0.0)  # log(pa) as log1p(-px): its rounding stays relative to px, not 1
    far = jnp.logaddexp(jnp.where(pa > 0, jnp.log1p(-with_pa) + px * delta, -jnp.inf), jnp.log(px) - pa * delta)
    x = jnp.where(near, jnp.log1p(pa * _phi(px * dn) + px * _phi(-pa * dn)), far)
    return x + jax.nn.softplus(jax.nn.logsumexp(neg, axis=-1) - x)


def value(x, h, *, contrastive: bool, sphere: bool, constant: bool = True):
    """The class-level objective in JAX (jit/vmap-safe). ``x``: ``{"mu": (K, r)}`` and, for CE, ``"W": (K, r)``;
    ``h``: :func:`weights` as arrays. ``constant=False`` drops the contrastive loss's constant part
    ``sum_c w_c log(mult_cc w_cc)``: what is left, ``sum_c w_c log(1 + sum_{c' != c} exp(X_cc' - X_cc))``, keeps
    its relative accuracy when the between-class terms are far below the constant's rounding (small ``tau``),
    where the geometry is decided."""
    import jax
    import jax.numpy as jnp

    mu = x["mu"]
    M = mu @ mu.T
    mu2 = jnp.diagonal(M)
    a = within(mu2, h["n"], h["rho2"], sphere)
    K = mu.shape[0]
    off = ~jnp.eye(K, dtype=bool)
    if "C" in x:  # class prototypes (BCL), the full batch: module doc
        G = M - jnp.diag(mu2) + jnp.diag(a)
        X = mu @ x["C"].T  # X_cc' = <mu_c, p_c'> = <z_i, p_c'> for every i in c
        Xo = jnp.diagonal(X)
        pos = h["pa"] * a + h["px"] * Xo  # the mean inner product with the positives
        neg = jnp.concatenate([jnp.where(off, (G - pos[:, None]) / h["tau"] + h["lws"], -jnp.inf),
                               jnp.where(off, (X - pos[:, None]) / h["tau"] + h["lwp"], -jnp.inf)], axis=1)
        return h["w"] @ prototype_anchor_loss(neg, (a - Xo) / h["tau"], h["pa"], h["px"])
    if contrastive:
        excess = jax.nn.softplus(jax.nn.logsumexp(excess_logits(M, a, h), axis=-1))
        base = jnp.diagonal(h["logb"], axis1=1, axis2=2)
        anchor = excess + jnp.where(jnp.isfinite(base), base, 0.0) if constant else excess
        return jnp.sum(jnp.where(h["w"] > 0, h["w"] * anchor, 0.0))
    W = x["W"]
    C = mu @ W.T
    ce = jax.nn.softplus(jax.nn.logsumexp(jnp.where(off, C - jnp.diagonal(C)[:, None], -jnp.inf), axis=1))
    d = h["rho2"] * jnp.ones_like(mu2) if sphere else mu2
    return h["w"] @ ce + h["weight_decay"] * jnp.sum(W * W) + h["feature_decay"] * (h["w"] @ d)


def block_gram(mu: ArrayLike, problem: ClassProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class-constant Gram of ``mu`` as the dual bound reads it: ``(d (K,), a (K,), M (K, K))`` with
    ``M_cc = a_c`` (NumPy, float64)."""
    mu = np.asarray(mu, dtype=np.float64)
    n = np.asarray(problem.counts, dtype=np.float64)
    rho2 = problem.radius ** 2
    sphere = constraints.get(problem.constraint).equality
    M = mu @ mu.T
    mu2 = np.diag(M).copy()
    a = within(mu2, n, rho2, sphere)
    np.fill_diagonal(M, a)
    d = np.full(len(n), rho2) if sphere else mu2
    return d, a, M


def embedding(mu: ArrayLike, problem: ClassProblem, W: ArrayLike | None = None,
              tol: float = 1e-9, C: ArrayLike | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """An embedding ``Z (N, dim)`` whose class-constant Gram is that of ``mu`` (integer counts; samples class by
    class), and with ``W`` the classifier in the same coordinates.

    Args:
      mu: class means ``(K, r)`` at the problem's radius (a ``solvers.classlevel.ClassSolution``'s ``mu``).
      problem: the class-level problem, with integer counts.
      W: optional classifier ``(K, r)``; then ``(Z, W')`` is returned with ``Z W'ᵀ`` the class-level logits (when
        the means are rotated onto their span, ``W``'s part outside it, which meets no mean and is 0 at an
        optimum, is dropped: the loss at ``(Z, W')`` is then at most the class-level value).
      tol: relative tolerance of the rank and of the norms.
      C: optional class prototypes ``(K, r)`` (BCL); then ``(Z, C')`` is returned with the joint Gram of
        ``[Z; C']`` that of the class-level point (the within-class spread is orthogonal to the prototypes too).
    Returns:
      ``Z``, or ``(Z, W')`` when ``W`` is given, or ``(Z, C')`` when ``C`` is given.
    Raises:
      ValueError: non-integer counts; a row off its set (a singleton off the sphere, a row outside the ball, a
      negative entry with ``nonneg``); within-class spread that needs more dimensions than ``dim``, or with
      ``nonneg`` (no non-negative spread is built here).
    """
    n = np.asarray(problem.counts)
    if not np.all(n == np.round(n)):
        raise ValueError("counts: an embedding needs integer class sizes")
    n = n.astype(int)
    mu = np.asarray(mu, dtype=np.float64)
    rho = problem.radius
    sphere = constraints.get(problem.constraint).equality
    norms = np.linalg.norm(mu, axis=1)
    if np.any(norms > rho * (1 + tol)):
        raise ValueError(f"mu: a row of norm {norms.max():.6g} lies outside the ball of radius {rho}")
    if sphere and np.any(np.abs(norms[n < 2] - rho) > tol * rho):
        raise ValueError("mu: a singleton class's row must lie on the sphere (a single sample has no spread)")
    if problem.nonneg and np.any(mu < -tol * rho):
        raise ValueError("mu: a negative entry with nonneg")
    spread = np.where(sphere & (n >= 2), np.clip(rho * rho - norms ** 2, 0.0, None), 0.0)
    spread[spread <= tol * rho * rho] = 0.0
    extra = int(sum(n[c] - 1 for c in np.flatnonzero(spread > 0)))
    if problem.nonneg and extra:
        raise ValueError("nonneg: a class-level point with within-class spread has no non-negative embedding built "
                         "here (with nonneg the class-level problem relaxes the sample problem there)")
    if C is not None:  # the prototypes are rows of the same point: rotate them with the means, spread off both
        if W is not None:
            raise ValueError("give W or C, not both")
        Cm = np.asarray(C, dtype=np.float64)
        cn = np.linalg.norm(Cm, axis=1)
        if np.any(cn > rho * (1 + tol)) or (sphere and np.any(np.abs(cn - rho) > tol * rho)):
            raise ValueError("C: a prototype off the features' set")
    base, Wb = mu, (None if W is None else np.asarray(W, dtype=np.float64))
    if C is not None:
        base = np.vstack([mu, np.asarray(C, dtype=np.float64)])
    if base.shape[1] + extra > problem.dim:  # rotate the means onto their span to make room for the spread
        _, s, Vt = np.linalg.svd(base, full_matrices=False)
        r = int(np.sum(s > tol * max(1.0, float(s.max(initial=0.0)))))
        if r + extra > problem.dim:
            raise ValueError(f"dim {problem.dim}: the class means span {r} dimensions and the within-class spread "
                             f"needs {extra} more; no embedding in {problem.dim} dimensions has this Gram")
        base = base @ Vt[:r].T
        Wb = None if Wb is None else Wb @ Vt[:r].T  # W's part outside the span meets no mean: logits unchanged
    if C is not None:
        base, Cb = base[:len(n)], base[len(n):]
    Z = np.zeros((int(n.sum()), problem.dim))
    row, col = 0, base.shape[1]
    for c in range(len(n)):
        Z[row:row + n[c], :base.shape[1]] = base[c]
        if spread[c] > 0:  # a centred regular simplex of n_c points in n_c - 1 fresh dimensions
            E = np.eye(n[c]) - 1.0 / n[c]
            Q = np.linalg.qr(E[:, :-1])[0]  # orthonormal basis of the sum-zero subspace, (n_c, n_c - 1)
            Z[row:row + n[c], col:col + n[c] - 1] = Q * math.sqrt(spread[c] * n[c] / (n[c] - 1))
            col += n[c] - 1
        row += n[c]
    if C is not None:
        Cout = np.zeros((len(Cb), problem.dim))
        Cout[:, :Cb.shape[1]] = Cb
        return Z, Cout
    if W is None:
        return Z
    Wout = np.zeros((len(n), problem.dim))
    Wout[:, :Wb.shape[1]] = Wb  # type: ignore[union-attr]  # W given, so Wb is an array
    return Z, Wout
