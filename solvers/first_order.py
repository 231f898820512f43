"""First-order certificate: a proved lower bound from the linearisation at a solution, for any batching.

``f`` is convex in the Gram matrix ``G`` (SC) or in the joint Gram of ``[Z; W]`` (CE), so the linearisation at the
solution's own ``Ĝ`` bounds the minimum from below: ``f* >= f(Ĝ) + min_{G in C} <∇f(Ĝ), G - Ĝ>``. ufm writes it
as a Fenchel dual (the softmax at ``Ĝ`` is the dual point of every log-sum-exp) and bounds the inner minimum over
the feasible set with ``mu``, ``Lambda`` and a smallest eigenvalue: ``solvers.dual`` holds that arithmetic, with
every floating-point error subtracted (docs/theory.md). At an optimum (KKT) the bound equals ``f(Ĝ)``; near one,
the gap is of the order of the solution's gradient mapping.

This module holds what the certificate needs from a solution: its feasible float64 rows (:func:`feasible_rows`),
its objective (:func:`solution_loss`, SC tile by tile in jit-compiled JAX, never an ``N x N`` array), the best CE
bias (:func:`best_bias`), and :func:`first_order_bound`. The eigenvalue is bounded block by block (samples that
never share a batch do not interact), each block by a dense Cholesky factorisation of at most
``solvers.dual.DENSE_LIMIT`` rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ufm.batching import batch_list, pad
from ufm.constraints import project

__all__ = ["FirstOrder", "first_order_bound", "solution_loss", "feasible_rows", "best_bias"]

TILE_ENTRIES = 1 << 21  # entries of one (rows x batch) tile


@dataclass
class FirstOrder:
    """The first-order certificate: the proved ``lower_bound`` (None when not proved, ``why``), the float64
    ``loss`` at the (projected) solution, the proved lower bound ``lambda_min`` of the dual matrix, the total
    floating-point ``margin`` subtracted, ``eig_method`` (``"cholesky"``), ``status`` (``"optimal"`` or
    ``"not_proved"``), ``seconds``."""

    lower_bound: float | None
    loss: float
    lambda_min: float
    margin: float
    eig_method: str
    status: str
    seconds: float
    why: str = ""


# -- tiles -------------------------------------------------------------------------------------------------------
class _Layout:
    """Batches padded to ``idx (nb, w)`` and cut into tiles of ``c`` rows: tile ``t`` is batch ``t // per`` rows
    ``c * (t % per) ...``; ``rows (nb, per * c)`` is ``idx`` padded with -1 to whole tiles."""

    def __init__(self, batches, n):
        self.idx = pad(batches) if batches is not None else np.arange(n, dtype=np.int32)[None, :]
        self.n = n
        nb, w = self.idx.shape
        self.c = int(max(1, min(w, TILE_ENTRIES // w)))
        self.per = -(-w // self.c)
        self.rows = np.full((nb, self.per * self.c), -1, np.int32)
        self.rows[:, :w] = self.idx
        self.T = int((self.idx >= 0).sum())

    def tiles(self):
        nb = self.idx.shape[0]
        return np.repeat(np.arange(nb), self.per), np.tile(np.arange(self.per) * self.c, nb)


def _rows_cols(rows, idx, b, r0, c):
    r = jax.lax.dynamic_slice_in_dim(rows[b], r0, c)
    k = idx[b]
    return r, k, r >= 0, k >= 0


def _sc_pass1(d, b, r0, c):
    """Per row slot: log-sum-exp over the batch, number of positives, sum of positive logits."""
    r, k, rv, kv = _rows_cols(d["rows"], d["idx"], b, r0, c)
    Z, y = d["Z"], d["y"]
    S = Z[jnp.where(rv, r, 0)] @ Z[jnp.where(kv, k, 0)].T / d["tau"]
    off = rv[:, None] & kv[None, :] & ((r0 + jnp.arange(c))[:, None] != jnp.arange(k.shape[0])[None, :])
    pos = off & (y[jnp.where(rv, r, 0)][:, None] == y[jnp.where(kv, k, 0)][None, :])
    m = jnp.max(jnp.where(off, S, -jnp.inf), axis=1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    lse = jnp.log(jnp.sum(jnp.where(off, jnp.exp(S - m), 0.0), axis=1)) + m[:, 0]
    return lse, pos.sum(1), jnp.where(pos, S, 0.0).sum(1)


_project = jax.jit(project, static_argnames=("constraint",))


def _sc_stats(d, tb, tr, c):
    """Per row slot ``(nb, per * c)``: log-sum-exp, positives, and the SC loss (mean over anchor slots)."""
    lse, npos, possum = (a.reshape(d["rows"].shape)
                         for a in jax.lax.map(lambda t: _sc_pass1(d, t[0], t[1], c), (tb, tr)))
    terms = jnp.where(npos > 0, lse - possum / jnp.maximum(npos, 1), 0.0)
    return lse, npos, terms.sum() / d["T"]


_sc_loss = jax.jit(lambda d, tb, tr, c: _sc_stats(d, tb, tr, c)[2], static_argnames=("c",))


# -- the pieces of a certificate ---------------------------------------------------------------------------------
def _features(problem, Z):
    """The solution's rows in float64, projected onto the feasible set (a float32 solution is feasible only to
    ~1e-7): the certificate is about this feasible point."""
    with jax.enable_x64(True):
        return np.asarray(_project(np.asarray(Z, dtype=np.float64), problem.constraint, problem.radius,
                                   problem.nonneg))


def _sc_data(problem, Z, zero_tol):
    lay = _Layout(batch_list(problem), problem.N)
    d = {"Z": jnp.asarray(Z), "y": jnp.asarray(problem.label_array), "idx": jnp.asarray(lay.idx),
         "rows": jnp.asarray(lay.rows), "tau": jnp.float64(problem.tau), "T": jnp.float64(lay.T),
         "nonneg": jnp.asarray(problem.nonneg), "thr": jnp.float64(zero_tol * problem.radius ** 2),
         "m": jnp.float64(problem.radius ** 2 / problem.tau)}
    return d, lay


def _softmax(X):
    E = np.exp(X - X.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _ce_value(C, b, labels):
    L = C + b
    m = L.max(axis=1)
    return float(np.mean(np.log(np.exp(L - m[:, None]).sum(1)) + m - L[np.arange(len(labels)), labels]))


def _best_bias(C, b, labels, K, iters=50):
    """``argmin_b`` of the mean CE at logits ``C`` (damped Newton from ``b``; the Hessian is singular along ``1``)."""
    target = np.bincount(labels, minlength=K) / len(labels)
    for _ in range(iters):
        P = _softmax(C + b)
        g = P.mean(0) - target
        if np.abs(g).max() <= 1e-15:
            break
        H = (np.diag(P.sum(0)) - P.T @ P) / len(labels)
        step = np.linalg.lstsq(H, g, rcond=1e-12)[0]
        f0, t = _ce_value(C, b, labels), 1.0
        while t > 1e-8 and _ce_value(C, b - t * step, labels) > f0:
            t /= 2
        b = b - t * step
    return b


def solution_loss(problem, Z, W=None, b=None) -> float:
    """The problem's objective at a solution, in float64 after projecting ``Z`` onto the feasible set
    (``solvers.pgd.objective``'s value; SC computed tile by tile, never an N x N array)."""
    with jax.enable_x64(True):
        Zp = _features(problem, Z)
        if problem.loss == "sc":
            d, lay = _sc_data(problem, Zp, 0.0)
            tb, tr = lay.tiles()
            return float(_sc_loss(d, tb, tr, lay.c))
    W = np.asarray(W, dtype=np.float64)
    bb = np.zeros(problem.K) if b is None else np.asarray(b, dtype=np.float64)
    return (_ce_value(Zp @ W.T, bb, problem.label_array) + problem.weight_decay * np.sum(W ** 2)
            + problem.feature_decay * np.sum(Zp ** 2) / problem.N)


def feasible_rows(problem, Z) -> np.ndarray:
    """``Z`` in float64, projected onto the feasible set: the point a certificate is about."""
    return _features(problem, Z)


def best_bias(logits, b, labels, K) -> np.ndarray:
    """``argmin_b`` of the mean CE at ``logits (N, K)``, from ``b`` (None: zeros); damped Newton."""
    return _best_bias(np.asarray(logits, dtype=np.float64), np.zeros(K) if b is None else
                      np.asarray(b, dtype=np.float64), np.asarray(labels), K)


def first_order_bound(problem, Z, W=None, b=None) -> FirstOrder:
    """The first-order lower bound at a solution ``Z (N, d)`` (and, for CE, ``W (K, d)``, ``b (K,)``), proved
    (``solvers.dual``): the dual point is the softmax at the solution's own Gram, ``mu`` and ``Lambda`` are read
    from it, ``lambda_min`` is bounded from below by a Cholesky factorisation, and every rounding error is
    subtracted. ``lower_bound`` is None when nothing could be proved (``status`` ``"not_proved"``, ``why``).
    Raises ``ValueError`` for a CE solution without ``W``."""
    from . import dual

    if problem.loss == "ce" and W is None:
        raise ValueError("W: the CE first-order certificate needs the classifier W of the solution")
    start = time.perf_counter()
    Zp = _features(problem, Z)
    loss = solution_loss(problem, Zp, W, b)
    if problem.loss == "sc":
        db = dual.sc_bound(problem, lambda idx: Zp[idx] @ Zp[idx].T)
    else:
        logits = Zp @ np.asarray(W, dtype=np.float64).T
        if problem.bias:
            logits = logits + best_bias(logits, b, problem.label_array, problem.K)
        db = dual.ce_bound(problem, Zp @ Zp.T, logits, loss)
    ok = db.lower_bound is not None
    return FirstOrder(db.lower_bound, float(loss), db.lambda_min, db.margin, "cholesky",
                      "optimal" if ok else "not_proved", time.perf_counter() - start, db.why)
