"""Local certificates: a proved strict local minimum (or a proved saddle) of a contrastive loss on the sphere.

A global certificate (``solvers.certify``) bounds the problem's minimum from below; it cannot say whether a point
where gradient descent stopped *above* that bound is a local minimum or a saddle. This module proves which, at
one point ``Z``, in ball arithmetic (python-flint's ``arb``), with the statement in docs/theory.md ("The
local-minimum certificate").

**The chart.** Every loss here reads the Gram ``G = Z Zᵀ`` only, so it is constant on the rotation orbit
``{Z R : R in O(d)}``, whose tangent at ``Z`` is ``{Z A : A skew}`` of dimension ``dim SO(d) - dim SO(d - k)``
for ``rank Z = k``. After a float64 Riemannian Newton polish, the point ``Z0`` is rotated so that its last
``d - k`` columns are zero, and the loss is written in the chart ``f(c) = L(Y(c))``, ``Y(c)_i = rho (z_i +
(Bc)_i) / ||z_i + (Bc)_i||``, where ``B`` (``Nd x m``, orthonormal in float64) spans the tangent vectors of
the product of spheres orthogonal to the orbit tangent: ``m = N (d - 1) - dim orbit``, a slice transversal to
the orbit. Any further near-zero eigenvalue of the Hessian of ``f`` means a degenerate critical point and is
refused.

**The proof** (ball arithmetic; the float64 point and ``B`` are taken as exact numbers):
  1. ``g >= ||grad f(0)||`` and an enclosure of ``f(0)``;
  2. an interval matrix containing the Hessian of ``f`` at every ``c`` with ``||c|| <= r`` (the explicit
     Hessian formula evaluated with every coordinate of ``Bc`` a ball of radius ``r ||B||_2``, ``||B||_2`` bounded
     by ``sqrt(||B||_1 ||B||_inf)``; the products of size ``Nd`` in midpoint-radius float64, :func:`_mr_mm`); its
     smallest eigenvalue is ``>= lambda_min(midpoint) - ||radius||_F`` (Weyl), the first term by
     ``solvers.dual.lambda_min_lower``;
  3. a local minimum: that bound ``m > 0`` and ``2 g / m < r``. Then ``f`` is ``m``-strongly convex on the ball, its
     minimiser ``c*`` is interior (``f(c) >= f(0) - g r + m r^2 / 2 > f(0)`` on the sphere ``||c|| = r``), unique,
     with ``||c*|| <= g / m`` and ``f(c*) in [f(0) - g^2 / (2m), f(0)]``;
  4. a saddle: ``H(c)`` proved nonsingular over the ball with the Krawczyk condition ``||Y grad f(0)|| + ||I -
     Y H||_F r < r`` (``Y`` an approximate inverse) gives a unique critical point ``c*`` in the ball; a direction
     ``v`` with ``vᵀ H(c) v < 0`` for every ``c`` in the ball proves it is not a local minimum;
  5. transversality: ``[DY(Bc) B, Y(Bc) A_1, ..., Y(Bc) A_o]`` (``A_j`` the orbit's skew generators) has full
     column rank at every ``c`` of the ball, so ``(c, A) -> Y(Bc) exp(A)`` is a local diffeomorphism onto a
     neighbourhood of ``Y(c*)`` in the product of spheres: a critical point of ``f`` is a critical point of the
     loss, and a strict minimum of ``f`` is a strict local minimum of the loss modulo rotation.

Covered: contrastive losses of ``Z`` alone (SC, ``bcl-avg``) on the sphere, the full batch or a fixed batch set, any radius; the ball
when every row lies on the sphere and every row's multiplier is proved to be strictly active (the loss grows when
a row moves inwards; then the sphere's strict local minimum is the ball's); non-negative features (UFM+) when every coordinate of the point is proved positive on
the whole ball (the constraint is inactive). Not covered (``proved`` False, ``why``): CE (the classifier's
variables), epoch schemes (no fixed objective), a ball point with an interior row, a non-negative point with a
zero coordinate.

Cost: the ambient interval Hessian takes ``O(N^2 d^2)`` ball operations (plus ``O(N^2 d)`` per anchor slot), its
reduction to ``m x m`` (``m ~ N d``) ``O((Nd)^3)`` float64 flops (measured times: docs/benchmarks.md).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ufm import constraints, objectives
from ufm.batching import batch_list, is_epoch_scheme

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ufm.problem import Problem

__all__ = ["LocalCertificate", "certify_local", "loss_upper", "PREC"]

PREC = 64  # bits of the ball arithmetic (the float64 inputs are exact; radii track every rounding)
DEGENERATE = 1e-8  # |eigenvalue| below this (relative to the Hessian's norm): a degenerate critical point
STATIONARY = 1e-7  # a polished point whose chart gradient stays above this (relative): not stationary
RANK_TOL = 1e-7  # singular values of Z below this times the largest: rank-deficient directions


@dataclass
class LocalCertificate:
    """What :func:`certify_local` proved at one point.

    ``proved``: a strict local minimum (modulo rotation) is proved; ``kind``: ``"local minimum"``, ``"saddle"``
    (a critical point proved, with a proved direction of negative curvature: not a local minimum) or None;
    ``loss_interval`` ``[lo, hi]``: contains the loss at the proved critical point; ``radius``: the chart ball
    (horizontal tangent coordinates) that holds it; ``gradient_norm_upper``: ``>= ||grad f(0)||``;
    ``hessian_min_eig_lower``: ``<=`` the smallest Hessian eigenvalue of ``f`` over the ball (minimum) or of its
    absolute eigenvalues (saddle); ``negative_curvature_upper``: a proved ``< 0`` bound on the Rayleigh quotient
    of the Hessian over the ball along one direction (saddle); ``spurious``: ``loss_interval[0] > global_loss``
    (None when no global loss was given or nothing was proved); ``gram_change``: how far the polish moved the
    point (the largest entry of the change of ``Z Zᵀ``, rows normalised); ``Z``: the polished point (float64,
    rows on the sphere up to rounding, rotated when rank-deficient).
    """

    proved: bool
    kind: str | None
    loss_interval: list | None
    radius: float | None
    gradient_norm_upper: float | None
    hessian_min_eig_lower: float | None
    method: str
    why: str
    spurious: bool | None = None
    negative_curvature_upper: float | None = None
    critical_point_proved: bool = False
    loss: float | None = None
    global_loss: float | None = None
    rank: int | None = None
    orbit_dim: int | None = None
    slice_dim: int | None = None
    newton_steps: int = 0
    gram_change: float | None = None
    seconds: float = 0.0
    Z: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The JSON keys (``ufm certify --local``, ``ufm verify``'s landscape row)."""
        out = {"proved": self.proved, "kind": self.kind, "loss_interval": self.loss_interval,
               "radius": self.radius, "gradient_norm_upper": self.gradient_norm_upper,
               "hessian_min_eig_lower": self.hessian_min_eig_lower, "method": self.method, "why": self.why,
               "spurious": self.spurious, "critical_point_proved": self.critical_point_proved,
               "loss": self.loss, "global_loss": self.global_loss, "rank": self.rank, "orbit_dim": self.orbit_dim,
               "slice_dim": self.slice_dim, "newton_steps": self.newton_steps, "gram_change": self.gram_change,
               "seconds": self.seconds}
        if self.kind == "saddle" or self.negative_curvature_upper is not None:
            out["negative_curvature_upper"] = self.negative_curvature_upper
        return out


METHOD = "Riemannian Newton polish (float64) + ball-arithmetic Hessian on a slice of the rotation orbit (arb)"


# -- the problem's structure: anchor slots -------------------------------------------------------------------------
@dataclass
class _Slots:
    anchor: np.ndarray  # (S,) the anchor sample of each slot
    mask: np.ndarray  # (S, N) bool: the slot's candidates (its batch without the anchor)
    lw: np.ndarray  # (S, N) float: the objective's log-weights on the candidates (0 elsewhere)
    pos: np.ndarray  # (S, N) float: 1 on the positives
    npos: np.ndarray  # (S,) float: |P| (the positives' mean is taken in the backend, exactly in ball arithmetic)
    T: int  # anchor slots in all (the loss is the sum over slots with a positive, divided by T)
    tau: float


def _slots(problem) -> _Slots:
    obj = objectives.of(problem)
    N, y = problem.N, problem.label_array
    fixed = batch_list(problem)
    batches = [np.arange(N)] if fixed is None else [np.asarray(B, dtype=np.int64) for B in fixed]
    anchor, mask, lw, pos, T = [], [], [], [], 0
    for Bl in batches:
        nb = len(Bl)
        T += nb
        if nb < 2:
            continue
        yb = y[Bl]
        off = ~np.eye(nb, dtype=bool)
        P = off & (yb[:, None] == yb[None, :])
        w = obj.log_weights(yb, np.ones(nb, bool))  # type: ignore[misc]  # contrastive only: set
        for a in np.flatnonzero(P.sum(1) > 0):
            m = np.zeros(N, bool)
            m[Bl[off[a]]] = True
            lrow = np.zeros(N)
            lrow[Bl] = np.where(off[a], w[a], 0.0)
            prow = np.zeros(N)
            prow[Bl[P[a]]] = 1.0
            anchor.append(Bl[a])
            mask.append(m)
            lw.append(lrow)
            pos.append(prow)
    P1 = np.asarray(pos).reshape(-1, N)
    return _Slots(np.asarray(anchor, dtype=np.int64), np.asarray(mask).reshape(-1, N),
                  np.asarray(lw).reshape(-1, N), P1, P1.sum(axis=1), T, problem.tau)


# -- two backends: float64 (the polish) and arb balls (the proof) --------------------------------------------------
class _Float:
    exact = False

    @staticmethod
    def num(x):
        return np.asarray(x, dtype=np.float64)

    mm = staticmethod(np.matmul)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def zeros(shape):
        return np.zeros(shape)

    @staticmethod
    def mid(x):
        return np.asarray(x, dtype=np.float64)


class _Arb:
    exact = True

    def __init__(self):
        import flint

        self.flint, self.arb = flint, flint.arb
        self.exp = np.frompyfunc(lambda x: x.exp(), 1, 1)
        self.log = np.frompyfunc(lambda x: x.log(), 1, 1)
        self.sqrt = np.frompyfunc(lambda x: x.sqrt(), 1, 1)
        self._mid = np.frompyfunc(lambda x: float(x.mid()), 1, 1)
        self._rad = np.frompyfunc(lambda x: float(x.rad()), 1, 1)

    def num(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.frompyfunc(self.arb, 1, 1)(x).astype(object) if x.ndim else self.arb(float(x))

    def zeros(self, shape):
        out = np.empty(shape, dtype=object)
        out.fill(self.arb(0))
        return out

    def mm(self, A, B):
        A, B = np.asarray(A, dtype=object), np.asarray(B, dtype=object)
        vec = B.ndim == 1
        if vec:
            B = B[:, None]
        if A.shape[1] == 0 or B.shape[1] == 0 or A.shape[0] == 0:
            out = self.zeros((A.shape[0], B.shape[1]))
        else:
            M = self.flint.arb_mat(A.tolist()) * self.flint.arb_mat(B.tolist())
            out = np.empty((A.shape[0], B.shape[1]), dtype=object)
            out[:, :] = [list(r) for r in M.tolist()]
        return out[:, 0] if vec else out

    def mid_rad(self, X):
        """``(mid, rad)`` float64 arrays with ``|x - mid| <= rad`` for every ball ``x`` of ``X`` (the rounding of
        the midpoint to float64 added to the radius, both rounded up)."""
        X = np.asarray(X, dtype=object)
        mid = self._mid(X).astype(np.float64)
        rad = self._rad(X).astype(np.float64)
        return mid, (rad + np.abs(mid) * 2.0 ** -52) * (1 + 2.0 ** -50) + 1e-300

    def upper(self, x) -> float:
        """A float64 ``>= x`` (a ball)."""
        m, r = self.mid_rad(np.asarray([x], dtype=object))
        return float(np.nextafter(m[0] + r[0], np.inf))

    def lower(self, x) -> float:
        m, r = self.mid_rad(np.asarray([x], dtype=object))
        return float(np.nextafter(m[0] - r[0], -np.inf))


def _sum(x, axis):
    """A sum that keeps object arrays (numpy's reductions of object arrays start from the int 0, which arb
    accepts)."""
    return np.sum(x, axis=axis)


def _loss_parts(Y, st: _Slots, bk, shift, lw, hessian: bool):
    """The loss, its Euclidean gradient and (optionally) its Hessian at ``Y (N, d)`` in the backend ``bk``.

    Returns ``(loss, grad (N, d), H (Nd, Nd) or None)``; ``shift (S,)`` floats (any values: ``lse(x) = s +
    log sum exp(x - s)`` exactly), ``lw`` the log-weights in the backend. The Hessian of ``sum_slots lse(G_a. /
    tau + lw) - <pos, G_a.> / tau`` with ``G = Y Yᵀ``: ``(Psi + Psiᵀ) (x) I_d`` from ``d^2 G = 2 V Vᵀ`` plus the
    softmax covariance of ``dG = V Yᵀ + Y Vᵀ`` on every slot (docs/certify.md).
    """
    N, d = Y.shape
    S = len(st.anchor)
    tau = bk.num(st.tau)
    G = bk.mm(Y, Y.T)
    X = G[st.anchor] / tau + lw  # (S, N)
    mask = st.mask
    E = bk.zeros((S, N)) if bk.exact else np.zeros((S, N))
    E[mask] = bk.exp(X[mask] - bk.num(np.broadcast_to(shift[:, None], (S, N))[mask]))
    Zs = _sum(E, 1)
    pi = E / Zs[:, None]
    posw = bk.num(st.pos) / bk.num(st.npos)[:, None]
    Tn = bk.num(float(st.T))
    loss = _sum(bk.num(shift) + bk.log(Zs) - _sum(posw * G[st.anchor], 1) / tau, 0) / Tn
    R = (pi - posw) / (Tn * tau)  # dL/dG rows of the slots
    Psi = bk.zeros((N, N)) if bk.exact else np.zeros((N, N))
    np.add.at(Psi, st.anchor, R)
    Ps = Psi + Psi.T
    grad = bk.mm(Ps, Y)
    if not hessian:
        return loss, grad, None
    w2 = Tn * tau * tau
    A = bk.zeros((N, N)) if bk.exact else np.zeros((N, N))
    np.add.at(A, st.anchor, pi / w2)
    H = bk.zeros((N, d, N, d)) if bk.exact else np.zeros((N, d, N, d))
    for p in range(d):
        H[:, p, :, p] += Ps
    diag = A + A.T  # row j: the weights of Y^T diag(.) Y on block (j, j)
    for j in range(N):
        H[j, :, j, :] += bk.mm(Y.T, diag[j][:, None] * Y)
    C = A + A.T
    H += (C[:, :, None, None] * (Y[None, :, :, None] * Y[:, None, None, :])).transpose(0, 2, 1, 3)
    ybar = bk.mm(pi, Y)  # (S, d)
    Gm = pi[:, :, None] * Y[st.anchor][:, None, :]  # (S, N, d)
    Gm[np.arange(S), st.anchor, :] += ybar
    Gm = Gm.reshape(S, N * d)
    H = H.reshape(N * d, N * d) - bk.mm(Gm.T, Gm / w2)
    return loss, grad, H


def _chart(Z, U, rho, bk):
    """``Y = rho W / ||W||`` row-wise with ``W = Z + U``; with the row Jacobians and norms."""
    W = Z + U
    nrm = bk.sqrt(_sum(W * W, 1))
    Y = bk.num(rho) * W / nrm[:, None]
    return W, nrm, Y


def _reduced(Z, U, B, st, bk, shift, lw, rho, hessian=True):
    """``f``, its gradient ``(m,)`` and Hessian ``(m, m)`` in the chart coordinates at ``W = Z + U``.

    ``B (Nd, m)`` is float64 (exact). Float backend: arrays. Ball backend: ``loss`` a ball, ``grad``, ``H`` and
    ``PB = DY B`` as ``(mid, rad)`` float64 pairs (with the Hessian, the products of size ``Nd`` in
    midpoint-radius arithmetic, :func:`_mr_mm`; without it, the gradient in balls throughout; ``PB`` None). Also
    returns ``Y`` and the Euclidean gradient ``gY``."""
    N, d = Z.shape
    m = B.shape[1]
    W, nrm, Y = _chart(Z, U, rho, bk)
    loss, gY, HY = _loss_parts(Y, st, bk, shift, lw, hessian)
    rhob = bk.num(rho)
    Bb = B.reshape(N, d, m)
    eye = np.eye(d)
    Ps, Qs = [], []
    for i in range(N):
        w, n = W[i], nrm[i]
        what = w / n
        Ps.append((bk.num(eye) - what[:, None] * what[None, :]) * (rhob / n))
        if hessian:
            e = gY[i]
            ew = _sum(e * w, 0)
            n2 = n * n
            Qs.append((-(w[:, None] * e[None, :] + e[:, None] * w[None, :]) - ew * bk.num(eye)
                       + (ew * 3 / n2) * (w[:, None] * w[None, :])) * (rhob / (n2 * n)))
    if not bk.exact:
        PB = np.concatenate([P @ Bi for P, Bi in zip(Ps, Bb)], axis=0)
        grad = PB.T @ gY.reshape(-1)
        if not hessian:
            return loss, grad, None, Y, PB, gY
        Qsum = sum(Bi.T @ Q @ Bi for Q, Bi in zip(Qs, Bb))
        return loss, grad, PB.T @ HY @ PB + Qsum, Y, PB, gY
    zero = np.zeros((d, m))
    if not hessian:  # the gradient at one point: every product in balls (the tightest bound g)
        grad = sum(Bi.T.astype(object) @ (P @ gY[i]) for i, (P, Bi) in enumerate(zip(Ps, Bb)))
        return loss, bk.mid_rad(grad), None, Y, None, gY
    pbs = [_mr_mm(*bk.mid_rad(P), Bi, zero) for P, Bi in zip(Ps, Bb)]
    pm, pr = np.concatenate([a for a, _ in pbs], axis=0), np.concatenate([b for _, b in pbs], axis=0)
    gm, gr = bk.mid_rad(gY.reshape(-1, 1))
    grad = tuple(x[:, 0] for x in _mr_mm(pm.T, pr.T, gm, gr))
    hm, hr = bk.mid_rad(HY)
    cm, cr = _mr_mm(hm, hr, pm, pr)
    dm, dr = _mr_mm(pm.T, pr.T, cm, cr)
    qsum = None
    for Q, Bi in zip(Qs, Bb):
        t = _mr_mm(Bi.T, zero.T, *_mr_mm(*bk.mid_rad(Q), Bi, zero))
        qsum = t if qsum is None else _mr_add(*qsum, *t)
    return loss, grad, _mr_add(dm, dr, *qsum), Y, (pm, pr), gY


def _mr_norm_upper(mid, rad) -> float:
    """A float64 ``>=`` the Euclidean norm of every vector within ``rad`` of ``mid``."""
    a = (np.abs(np.asarray(mid, dtype=np.float64)) + rad).ravel() * (1 + 4 * 2.0 ** -52)
    return float(np.nextafter(math.sqrt(math.fsum((a * a).tolist()) * (1 + 1e-12)) * (1 + 1e-15), np.inf))


def _mr_mm(Am, Ar, Bm, Br):
    """``(mid, rad)`` float64 with ``|C - mid| <= rad`` entry-wise for every ``C = A B``, ``|A - Am| <= Ar``,
    ``|B - Bm| <= Br``. The midpoint product's rounding is ``<= gamma_n |Am| |Bm|`` in any summation order
    (Higham 2002, §3.5); the radius terms ``|Am| Br + Ar (|Bm| + Br)`` and that bound are themselves float sums of
    non-negative terms, so they are scaled up by ``1 + 4 gamma_{n+4}``, and ``n`` times the smallest subnormal
    covers underflow."""
    from .dual import gamma

    n = Am.shape[1]
    mid = Am @ Bm
    aA, aB = np.abs(Am), np.abs(Bm)
    rad = (aA @ Br + Ar @ (aB + Br) + gamma(n + 2) * (aA @ aB)) * (1 + 4 * gamma(n + 4)) + (n + 4) * 2.0 ** -1074
    return mid, rad


def _mr_add(Am, Ar, Bm, Br):
    """``(mid, rad)`` of ``A + B`` (midpoint-radius float64; the midpoint's rounding added to the radius)."""
    mid = Am + Bm
    return mid, (Ar + Br + np.abs(mid) * 2.0 ** -52) * (1 + 4 * 2.0 ** -52) + 2.0 ** -1074


# -- the slice ---------------------------------------------------------------------------------------------------
def _canonical(Z, rho):
    """Rows normalised, rotated so that ``Z = [X, 0]`` with ``X`` of full column rank ``k`` (exact zeros)."""
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True) * rho
    _, s, Vt = np.linalg.svd(Z, full_matrices=True)
    k = int(np.sum(s > RANK_TOL * s[0]))
    if k == Z.shape[1]:
        return Z, k  # full rank: no rotation (the point keeps its orientation, e.g. its signs)
    Z = Z @ Vt.T
    Z[:, k:] = 0.0
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True) * rho
    return Z, k


def _slice(Z, k):
    """``(B (Nd, m), gens (o, d, d))``: an orthonormal basis of the tangent vectors orthogonal to the orbit, and
    skew generators ``A_j`` whose ``Z A_j`` are an orthonormal basis of the orbit tangent (``o = dim SO(d) - dim
    SO(d - k)``)."""
    N, d = Z.shape
    gens = []
    for a in range(d):
        for b in range(a + 1, d):
            if a < k or b < k:  # both >= k: the stabiliser of [X, 0]
                A = np.zeros((d, d))
                A[a, b], A[b, a] = 1.0, -1.0
                gens.append(A)
    raw = np.stack([(Z @ A).reshape(-1) for A in gens], axis=1) if gens else np.zeros((N * d, 0))
    if gens:
        U, s, Wt = np.linalg.svd(raw, full_matrices=False)
        keep = s > 1e-9 * s[0]
        coef = Wt[keep].T / s[keep]  # raw @ coef = U[:, keep]
        gens = [np.einsum("j,jab->ab", coef[:, j], np.stack(gens)) for j in range(coef.shape[1])]
        gens = [np.triu(A, 1) - np.triu(A, 1).T for A in gens]  # exactly skew
        V = np.stack([(Z @ A).reshape(-1) for A in gens], axis=1)
    else:
        V = raw
    o = V.shape[1]
    # tangent basis: per row, an orthonormal basis of z_i's complement (block diagonal)
    Tb = np.zeros((N * d, N * (d - 1)))
    for i in range(N):
        q, _ = np.linalg.qr(np.column_stack([Z[i], np.eye(d)]))
        Tb[i * d:(i + 1) * d, i * (d - 1):(i + 1) * (d - 1)] = q[:, 1:d]
    if not o:
        return Tb, gens, o
    # the orbit directions in tangent coordinates, and their orthogonal complement there (a complete QR)
    Q, _ = np.linalg.qr(Tb.T @ V, mode="complete")
    return Tb @ Q[:, o:], gens, o


def _shift(Y, st):
    G = Y @ Y.T
    X = G[st.anchor] / st.tau + st.lw
    return np.max(np.where(st.mask, X, -np.inf), axis=1)


def _polish(problem, Z, st, steps):
    """Riemannian Newton on the slice (float64): returns ``(Z, k, B, gens, o, g, H, steps)``."""
    rho = problem.radius
    Z, k = _canonical(np.asarray(Z, dtype=np.float64), rho)
    best = None
    used = 0
    for it in range(steps + 1):
        B, gens, o = _slice(Z, k)
        U0 = np.zeros_like(Z)
        _, g, H, *_ = _reduced(Z, U0, B, st, _Float, _shift(Z, st), st.lw, rho)
        H = (H + H.T) / 2
        gn = float(np.linalg.norm(g))
        if best is not None and gn >= best[5] * 0.5 and best[5] < 1e-10:
            break  # rounding level: keep the previous point
        best = (Z, k, B, gens, o, gn, H, g, used)
        if it == steps or gn == 0.0:
            break
        try:
            c = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            c = -np.linalg.lstsq(H, g, rcond=1e-12)[0]
        if not np.all(np.isfinite(c)) or np.linalg.norm(c) > 0.5 * rho:
            break
        Zn = Z + (B @ c).reshape(Z.shape)
        Z, k = _canonical(Zn, rho)
        used += 1
    return best


def _lambda_min_lower(mid, rad):
    """``<= lambda_min`` of every symmetric matrix within ``rad`` of ``mid`` (entry-wise): the midpoint's proved
    bound minus the radius's Frobenius norm (Weyl), after symmetrising."""
    from .dual import lambda_min_lower

    S = (mid + mid.T) / 2
    extra = np.abs(mid - S) * (1 + 2.0 ** -50) + np.abs(S) * 2.0 ** -52
    R = (np.maximum(rad, rad.T) + extra) * (1 + 2.0 ** -50)
    lam = lambda_min_lower(S)
    if lam is None:
        return None
    fro = math.sqrt(math.fsum((R * R).ravel().tolist())) * (1 + 1e-12) + 1e-300
    return float(np.nextafter(lam - fro, -np.inf))


def loss_upper(problem: Problem, Z: ArrayLike) -> float:
    """A proved upper bound on the loss at a feasible point made from ``Z (N, d)``: negative coordinates set to
    0 under non-negativity, then every row scaled onto the sphere (``constraint="sphere"``) or, when longer than
    ``rho``, onto the ball's boundary, the scaling done in ball arithmetic (so the point is exactly feasible).
    ``certify_local(..., global_loss=loss_upper(problem, Z_global))`` then proves a local minimum whose loss
    interval lies above it is not global. Raises ``ValueError`` for a contrastive-only feature it does not
    cover (CE, epoch schemes), a zero row on the sphere, or a shape mismatch."""
    import flint

    why = _unsupported(problem)
    if why:
        raise ValueError(why)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape != (problem.N, problem.dim) or not np.all(np.isfinite(Z)):
        raise ValueError(f"Z: expected finite values of shape ({problem.N}, {problem.dim}), got {Z.shape}")
    if problem.nonneg:
        Z = np.maximum(Z, 0.0)
    st = _slots(problem)
    old = flint.ctx.prec
    flint.ctx.prec = PREC
    try:
        ab = _Arb()
        Zb = ab.num(Z)
        nrm = ab.sqrt(_sum(Zb * Zb, 1))
        rho = ab.arb(problem.radius)
        eq = constraints.get(problem.constraint).equality
        for i, n in enumerate(nrm):
            if eq or not n < rho:
                if not n > 0:
                    raise ValueError(f"Z: row {i} is zero; it has no direction to scale onto the sphere")
                Zb[i] = Zb[i] * (rho / n)
        lw = _widened(ab, st.lw)
        if len(st.anchor) == 0:
            return 0.0
        loss = _loss_parts(Zb, st, ab, _shift(Z, st), lw, hessian=False)[0]
        return ab.upper(loss)
    finally:
        flint.ctx.prec = old


def _widened(ab, lw):
    """The registry's float64 log-weights as balls widened by two units in the last place (the float64 log's
    error bound), so the exact weights ``-log(count)`` lie inside."""
    out = ab.num(lw)
    if np.any(lw != 0):
        out = out + np.frompyfunc(lambda x: ab.arb(0, 2.0 ** -51 * abs(x) + 1e-300) if x != 0 else ab.arb(0),
                                  1, 1)(lw)
    return out


def _unsupported(problem):
    obj = objectives.of(problem)
    if not obj.contrastive:
        return f"loss {problem.loss!r}: the classifier's variables (W, b) are not covered; contrastive losses only"
    if obj.relaxation != "contrastive":
        return (f"loss {problem.loss!r} declares no contrastive relaxation (ufm.objectives): its log-weights do not "
                "state the loss the chart would prove")
    if obj.prototypes:
        return (f"loss {problem.loss!r}: its class prototypes C are variables too, and the chart covers Z only "
                "(bcl-avg, without prototypes, is covered)")
    if is_epoch_scheme(problem):
        return f"batching {problem.batching!r}: a new objective every epoch; no fixed loss to certify"
    return None


def _refuse(why, t0, **kw):
    return LocalCertificate(False, kw.pop("kind", None), None, None, None, None, METHOD, why,
                            seconds=time.perf_counter() - t0, **kw)


def certify_local(problem: Problem, Z: np.ndarray, *, global_loss: float | None = None, radius: float | None = None,
                  newton_steps: int = 8) -> LocalCertificate:
    """Prove that the critical point near ``Z`` is a strict local minimum of the loss modulo rotation (or a
    saddle), in ball arithmetic (module doc, docs/theory.md).

    Args:
      problem: a ``ufm.Problem`` (contrastive loss; sphere, or ball / non-negative when inactive; full batch or a
        fixed batch set).
      Z: ``(N, d)`` a point near a critical point (a PGD solution); polished first by Riemannian Newton.
      global_loss: the loss of a certified global solution, as a proved upper bound (:func:`loss_upper`; its
        float64 loss is correct only to rounding); ``spurious`` is ``loss_interval[0] > global_loss``: a feasible
        point of lower loss exists, so the local minimum is not global.
      radius: the chart ball's radius ``r`` (None: chosen from the gradient and the Hessian).
      newton_steps: the most Newton steps of the polish.
    Returns:
      a :class:`LocalCertificate`; ``proved`` only for a proved strict local minimum.
    """
    import flint

    t0 = time.perf_counter()
    if radius is not None and not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0 (or None), got {radius!r}")
    Z = np.asarray(Z, dtype=np.float64)
    N, d = problem.N, problem.dim
    if Z.shape != (N, d):
        raise ValueError(f"Z: shape {Z.shape} does not match the problem's (N, dim) = ({N}, {d})")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z: holds NaN or infinite values")
    why = _unsupported(problem)
    if why:
        return _refuse(why, t0)
    rho = problem.radius
    con = constraints.get(problem.constraint)
    if not con.equality:
        norms = np.linalg.norm(Z, axis=1)
        if np.any(norms < rho * (1 - 1e-6)):
            return _refuse(f"constraint {problem.constraint!r}: {int(np.sum(norms < rho * (1 - 1e-6)))} row(s) "
                           "inside the ball; only points with every row on the sphere are covered", t0)
    if problem.nonneg and np.any(Z <= 0):
        return _refuse("nonneg: the point has a zero coordinate (an active non-negativity constraint); not "
                       "covered", t0)
    st = _slots(problem)
    if len(st.anchor) == 0:
        return _refuse("no anchor has a positive: the loss is constant", t0)
    orig = Z.copy()
    Z, k, B, gens, o, gn, Hm, g, used = _polish(problem, Z, st, newton_steps)
    m = B.shape[1]
    Zn = orig / np.linalg.norm(orig, axis=1, keepdims=True) * rho
    common = dict(rank=k, orbit_dim=o, slice_dim=m, newton_steps=used, Z=Z,
                  gram_change=float(np.abs(Z @ Z.T - Zn @ Zn.T).max()))
    loss = float(_reduced(Z, np.zeros_like(Z), B, st, _Float, _shift(Z, st), st.lw, rho, hessian=False)[0])
    common["loss"] = loss
    common["global_loss"] = global_loss
    ev, evec = np.linalg.eigh(Hm)
    scale = max(1.0, float(np.max(np.abs(ev))) if m else 1.0)
    if gn > STATIONARY * scale * max(1.0, rho):
        return _refuse(f"not stationary: the chart gradient is {gn:.1e} after {used} Newton step(s)", t0, **common)
    if m == 0:
        return _refuse("no directions transversal to the orbit: nothing to prove", t0, **common)
    small = int(np.sum(np.abs(ev) <= DEGENERATE * scale))
    if small:
        return _refuse(f"degenerate Hessian: {small} eigenvalue(s) below {DEGENERATE * scale:.0e} beyond the "
                       f"{o} rotation-orbit direction(s)", t0, **common)
    if problem.nonneg:
        # the rotation to canonical coordinates does not keep the signs: prove at the original orientation
        if k < d or np.any(orig <= 0):
            return _refuse("nonneg: only full-rank points with every coordinate positive are covered", t0, **common)
    saddle = ev[0] < 0
    lam = float(np.min(np.abs(ev)))
    old = flint.ctx.prec
    flint.ctx.prec = PREC
    try:
        ab = _Arb()
        return _prove(problem, Z, B, gens, st, ab, g, lam, saddle, evec[:, 0], radius, global_loss, t0,
                      common, con, rho)
    finally:
        flint.ctx.prec = old


def _prove(problem, Z, B, gens, st, ab, g_est, lam, saddle, v, radius, global_loss, t0, common, con, rho):
    N, d = Z.shape
    m = B.shape[1]
    shift = _shift(Z, st)
    lw = _widened(ab, st.lw)
    Zb = ab.num(Z)
    # ||B||_2^2 <= 1 + ||BᵀB - I||_F, and the orbit generators beside it: the transversality matrix at c = 0
    zero = ab.zeros(Z.shape)
    f0, g0, _, _, _, _ = _reduced(Zb, zero, B, st, ab, shift, lw, rho, hessian=False)
    gup = _mr_norm_upper(*g0)
    f0lo, f0hi = ab.lower(f0), ab.upper(f0)
    # ||B||_2 <= sqrt(||B||_1 ||B||_inf) (Hoelder); float sums of non-negative terms, rounded up generously
    A = np.abs(B)
    bnorm = math.sqrt(float(A.sum(axis=0).max()) * float(A.sum(axis=1).max())) * (1 + 1e-9)
    r = radius if radius is not None else max(8 * gup / lam, 1e-14 * max(rho, 1.0))
    why = ""
    for attempt in range(1 if radius is not None else 3):  # a given radius is tried as given
        ru = r * bnorm
        U = ab.num(np.zeros(Z.shape)) + np.frompyfunc(lambda _: ab.arb(0, ru), 1, 1)(np.zeros(Z.shape))
        ok, res = _over_ball(problem, Zb, U, B, gens, st, ab, shift, lw, rho, con)
        if not ok:
            why = res
            r /= 1e3
            continue
        (hm, hr), Y, PB = res
        common.update(radius=r, gradient_norm_upper=gup)
        if not saddle:
            mlow = _lambda_min_lower(hm, hr)
            if mlow is None or mlow <= 0:
                why = (f"Hessian not proved positive definite over the ball of radius {r:.1e} (lower bound "
                       f"{mlow})")
                r /= 1e3
                continue
            if not 2 * gup / mlow * (1 + 1e-12) < r:
                why = f"gradient bound {gup:.2e} too large for the ball: 2 g / m = {2 * gup / mlow:.2e} >= r = {r:.2e}"
                r = 4 * gup / mlow
                continue
            lo = float(np.nextafter(f0lo - gup * gup / (2 * mlow) * (1 + 1e-12), -np.inf))
            spurious = None if global_loss is None else bool(lo > global_loss)
            return LocalCertificate(True, "local minimum", [lo, f0hi], r, gup, mlow, METHOD, "", spurious=spurious,
                                    critical_point_proved=True, seconds=time.perf_counter() - t0,
                                    **{k: v for k, v in common.items() if k not in ("radius",
                                                                                    "gradient_norm_upper")})
        # saddle: Krawczyk on the chart gradient, then a negative Rayleigh quotient over the ball
        Yinv = np.linalg.inv((hm + hm.T) / 2)
        zm = np.zeros((m, m))
        cm, cr = _mr_mm(Yinv, zm, hm, hr)
        km, kr = _mr_add(np.eye(m), zm, -cm, cr)  # I - Y H(c) over the ball
        q = _mr_norm_upper(km, kr)
        ygn = _mr_norm_upper(*_mr_mm(Yinv, zm, g0[0][:, None], g0[1][:, None]))
        vm, vr = _mr_mm(v[None, :], np.zeros((1, m)), *_mr_mm(hm, hr, v[:, None], np.zeros((m, 1))))
        num = float(np.nextafter(vm[0, 0] + vr[0, 0], np.inf))  # >= vᵀ H(c) v over the ball
        vv = math.fsum((v * v).tolist()) * (1 + 1e-12)  # >= |v|^2
        rq = float(np.nextafter(num / vv, np.inf)) if num < 0 else num
        common.update(negative_curvature_upper=rq if rq < 0 else None)
        if not (q < 1 and (ygn + q * r) * (1 + 1e-12) < r):
            why = f"negative curvature, critical point not proved (Krawczyk: ||Y g|| = {ygn:.1e}, q = {q:.2e})"
            r = max(4 * ygn / max(1 - q, 1e-3), r / 1e3)
            continue
        if not rq < 0:
            why = "negative curvature not proved over the ball"
            r /= 1e3
            continue
        hn = math.sqrt(math.fsum(((np.abs(hm) + hr) ** 2).ravel().tolist())) * (1 + 1e-12)
        delta = gup * r + 0.5 * hn * r * r
        lo, hi = float(np.nextafter(f0lo - delta, -np.inf)), float(np.nextafter(f0hi + delta, np.inf))
        mabs = _lambda_min_lower_abs(hm, hr)
        c = {k: v for k, v in common.items() if k not in ("radius", "gradient_norm_upper")}
        return LocalCertificate(False, "saddle", [lo, hi], r, gup, mabs, METHOD, "negative curvature: a saddle",
                                spurious=None, critical_point_proved=True, seconds=time.perf_counter() - t0, **c)
    kind = None
    c = {k: v for k, v in common.items() if k not in ("radius", "gradient_norm_upper")}
    c.pop("negative_curvature_upper", None)
    return LocalCertificate(False, kind, None, common.get("radius"), common.get("gradient_norm_upper"), None, METHOD,
                            why, seconds=time.perf_counter() - t0, **c)


def _lambda_min_lower_abs(hm, hr):
    """``<= min |eigenvalue|`` over the ball: ``sigma_min(mid) - ||rad||_F`` with ``sigma_min`` from the proved
    smallest eigenvalue of ``midᵀ mid`` (float64, its own rounding in the Cholesky bound); None when unproved."""
    from .dual import lambda_min_lower

    S = (hm + hm.T) / 2
    M2 = S @ S  # float products: the bound is for the computed matrix; add its rounding
    n = S.shape[0]
    err = (n + 2) * 2.0 ** -52 * (np.abs(S) @ np.abs(S))
    lam = lambda_min_lower((M2 + M2.T) / 2)
    if lam is None:
        return None
    R = np.maximum(hr, hr.T) + np.abs(hm - S) + np.abs(S) * 2.0 ** -52
    fro = math.sqrt(math.fsum((R * R).ravel().tolist())) * (1 + 1e-12)
    errn = math.sqrt(math.fsum((err * err).ravel().tolist())) * (1 + 1e-12)
    s2 = lam - errn
    if s2 <= 0:
        return None
    return float(np.nextafter(math.sqrt(s2) * (1 - 1e-15) - fro, -np.inf))


def _over_ball(problem, Zb, U, B, gens, st, ab, shift, lw, rho, con):
    """The interval Hessian of ``f`` over the ball, and the checks that hold over it (transversality; the ball's
    multipliers; positive coordinates). Returns ``(True, (H, Y, PB))`` or ``(False, why)``."""
    N, d = Zb.shape
    _, _, H, Y, (pm, pr), gY = _reduced(Zb, U, B, st, ab, shift, lw, rho)
    # transversality: [PB, Y A_j] of full column rank: ||MᵀM - I||_F < 1
    orbit = [ab.mid_rad((ab.mm(Y, ab.num(A))).reshape(-1)[:, None]) for A in gens]
    mm_ = np.concatenate([pm] + [a for a, _ in orbit], axis=1)
    mr_ = np.concatenate([pr] + [b for _, b in orbit], axis=1)
    gm, gr = _mr_add(*_mr_mm(mm_.T, mr_.T, mm_, mr_), -np.eye(mm_.shape[1]), np.zeros((mm_.shape[1],) * 2))
    off = math.sqrt(math.fsum(((np.abs(gm) + gr) ** 2).ravel().tolist())) * (1 + 1e-12)
    if not off < 1:
        return False, f"slice not proved transversal to the rotation orbit (||MᵀM - I||_F = {off:.2e})"
    if not con.equality:
        mult = _sum(gY * Y, 1)  # rho^2 times each row's multiplier: < 0 pushes the row outwards
        worst = max(ab.upper(x) for x in mult)
        if not worst < 0:
            return False, ("ball: a row's norm multiplier is not proved negative (the sphere's local minimum may "
                           "not be the ball's)")
    if problem.nonneg:
        lows = [ab.lower(x) for x in Y.ravel()]
        if not min(lows) > 0:
            return False, "nonneg: a coordinate is not proved positive over the ball"
    return True, (H, Y, (pm, pr))
