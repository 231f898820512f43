"""First-order certificate: a proved lower bound from the linearisation at a solution, for any batching.

``f`` is convex in the Gram matrix ``G`` (SC) or in the joint Gram of ``[Z; W]`` (CE), so the linearisation at the
solution's own ``Ĝ`` bounds the minimum from below: ``f* >= f(Ĝ) + min_{G in C} <∇f(Ĝ), G - Ĝ>``. ufm writes it
as a Fenchel dual (the softmax at ``Ĝ`` is the dual point of every log-sum-exp) and bounds the inner minimum over
the feasible set with ``mu``, ``Lambda`` and a smallest eigenvalue: ``solvers.dual`` holds that arithmetic, with
every floating-point error subtracted (docs/theory.md). At an optimum (KKT) the bound equals ``f(Ĝ)``; near one,
the gap is of the order of the solution's gradient mapping.

This module holds what the certificate needs from a solution: its feasible float64 rows (:func:`feasible_rows`),
its objective (:func:`solution_loss`, the objective's own jit-compiled value in float64), the best CE
bias (:func:`best_bias`), and :func:`first_order_bound`. The eigenvalue is bounded block by block (samples that
never share a batch do not interact), each block by a dense Cholesky factorisation of at most
``solvers.dual.DENSE_LIMIT`` rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ufm import objectives
from ufm.batching import batch_list
from ufm.losses import batch_index

from .pgd.state import hyper_of

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ufm.problem import Problem
from ufm.constraints import project

__all__ = ["FirstOrder", "first_order_bound", "solution_loss", "feasible_rows", "gram_rows", "best_bias"]

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
_project = jax.jit(project, static_argnames=("constraint",))


def _features(problem, Z):
    """The solution's rows in float64, projected onto the feasible set (a float32 solution is feasible only to
    ~1e-7): the certificate is about this feasible point."""
    with jax.enable_x64(True):
        return np.asarray(_project(np.asarray(Z, dtype=np.float64), problem.constraint, problem.radius,
                                   problem.nonneg))


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


def _need_prototypes(problem, C):
    if objectives.of(problem).prototypes and C is None:
        raise ValueError(f"C: a {problem.loss!r} solution needs its class prototypes C (K, d)")


def solution_loss(problem: Problem, Z: ArrayLike, W: ArrayLike | None = None, b: ArrayLike | None = None, *,
                  C: ArrayLike | None = None) -> float:
    """The problem's objective at a solution, in float64 after projecting ``Z`` (and the prototypes ``C`` of a
    loss that has them) onto the feasible set: the objective's own ``value`` (``ufm.objectives``; SC's kernel is
    tiled for wide batches, never an N x N array)."""
    obj = objectives.of(problem)
    _need_prototypes(problem, C)
    with jax.enable_x64(True):
        x = {"Z": jnp.asarray(_features(problem, Z))}
        if obj.prototypes:
            x["C"] = jnp.asarray(_features(problem, C))
        if not obj.contrastive:
            x["W"] = jnp.asarray(np.asarray(W, dtype=np.float64))
            if b is not None:
                x["b"] = jnp.asarray(np.asarray(b, dtype=np.float64))
        fixed = batch_list(problem)
        h = hyper_of(problem, jnp.float64)._replace(n=jnp.float64(problem.N),
                                                  batches=None if fixed is None else batch_index(fixed, problem.N))
        return float(_value(obj.name, x, h))


_value = jax.jit(lambda name, x, h: objectives.get(name).value(x, h), static_argnums=0)


def feasible_rows(problem: Problem, Z: ArrayLike) -> np.ndarray:
    """``Z`` in float64, projected onto the feasible set: the point a certificate is about."""
    return _features(problem, Z)


def gram_rows(problem: Problem, Z: ArrayLike, C: ArrayLike | None = None) -> np.ndarray:
    """The rows whose Gram the contrastive relaxation and bound are about, float64 and feasible: ``Z (N, d)``,
    and for a loss with prototypes ``[Z; C]`` ``(N + K, d)`` (``ValueError`` naming ``C`` when it is missing)."""
    _need_prototypes(problem, C)
    Zp = _features(problem, Z)
    if not objectives.of(problem).prototypes:
        return Zp
    Cp = _features(problem, C)
    if Cp.shape != (problem.K, Zp.shape[1]):
        raise ValueError(f"C: the prototypes must be (K, d) = ({problem.K}, {Zp.shape[1]}), got shape {Cp.shape}")
    return np.concatenate([Zp, Cp], axis=0)


def best_bias(logits: ArrayLike, b: ArrayLike | None, labels: ArrayLike, K: int) -> np.ndarray:
    """``argmin_b`` of the mean CE at ``logits (N, K)``, from ``b`` (None: zeros); damped Newton."""
    return _best_bias(np.asarray(logits, dtype=np.float64), np.zeros(K) if b is None else
                      np.asarray(b, dtype=np.float64), np.asarray(labels), K)


def first_order_bound(problem: Problem, Z: ArrayLike, W: ArrayLike | None = None, b: ArrayLike | None = None, *,
                      C: ArrayLike | None = None) -> FirstOrder:
    """The first-order lower bound at a solution ``Z (N, d)`` (and, for CE, ``W (K, d)``, ``b (K,)``; for BCL its
    prototypes ``C (K, d)``), proved
    (``solvers.dual``): the dual point is the softmax at the solution's own Gram, ``mu`` and ``Lambda`` are read
    from it, ``lambda_min`` is bounded from below by a Cholesky factorisation, and every rounding error is
    subtracted. ``lower_bound`` is None when nothing could be proved (``status`` ``"not_proved"``, ``why``).
    Raises ``ValueError`` for a CE solution without ``W``."""
    from . import dual

    which = objectives.of(problem).dual_bound
    if which is None:
        raise ValueError(f"loss {problem.loss!r} is not certifiable: its objective declares no dual bound")
    if which == "ce" and W is None:
        raise ValueError("W: the CE first-order certificate needs the classifier W of the solution")
    start = time.perf_counter()
    Zp = _features(problem, Z)
    loss = solution_loss(problem, Zp, W, b, C=C)
    if which == "contrastive":
        X = gram_rows(problem, Zp, C)
        db = dual.sc_bound(problem, lambda idx: X[idx] @ X[idx].T)
    else:
        logits = Zp @ np.asarray(W, dtype=np.float64).T
        if problem.bias:
            logits = logits + best_bias(logits, b, problem.label_array, problem.K)
        db = dual.ce_bound(problem, Zp @ Zp.T, logits, loss)
    ok = db.lower_bound is not None
    return FirstOrder(db.lower_bound, float(loss), db.lambda_min, db.margin, "cholesky",
                      "optimal" if ok else "not_proved", time.perf_counter() - start, db.why)
