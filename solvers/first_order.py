"""First-order certificate: a lower bound from the linearisation at a solution, for any batching and large N.

REFERENCE.md §5. ``f`` is convex in the Gram matrix ``G`` (SC) or in the joint Gram of ``[Z; W]`` (CE), so for the
solution's own ``Ĝ`` and any ``G`` in the convex feasible set ``C``, ``f* >= f(Ĝ) + min_{G in C} <∇f(Ĝ), G - Ĝ>``.
The inner linear program over the elliptope has, for any ``mu`` and any symmetric ``Lambda >= 0`` (used only with
``nonneg``, where ``G >= 0``), the dual bound

    min_{G in C} <Q, G>  >=  rho^2 sum(mu) + N rho^2 min(0, lambda_min(Q - Diag(mu) - Lambda))

(``mu <= 0`` on the ball, where ``diag(G) <= rho^2``; ``tr G <= N rho^2`` bounds the last term). ufm takes
``mu_i = ((Q - Lambda) Ĝ)_ii / rho^2`` and ``Lambda_ij = max(0, Q_ij)`` on the pairs with ``Ĝ_ij <= zero_tol rho^2``:
at an optimum (KKT) this makes the bound equal to ``f(Ĝ)``; near one, the gap is of the order of the
solution's gradient mapping. Every ``mu`` and ``Lambda >= 0`` gives a valid bound: only its tightness depends on
the choice.

* **SC**: ``Q = ∇f(Ĝ)``, symmetrised, ``Q_ik = (1/(2 T tau)) [a_i (p_ik - [k in P_i]/|P_i|) + a_k (p_ki - ...)]``
  summed over the batches holding ``i`` and ``k`` (``p`` the batch softmax, ``a_i = 1`` when ``i`` has a
  positive). Never stored beyond a tile of rows: the loss, ``mu`` and ``Q X`` are computed tile by tile in JAX.
* **CE**: minimising the linearisation over the classifier block in closed form (Schur complement, weight decay
  ``lambda_W > 0``) leaves ``Q = (lambda_Z / N) I - F Fᵀ / (4 lambda_W)`` with ``F = ∂f/∂(Z Wᵀ) = (softmax - Y)/N``
  ``(N, K)``; with a bias, ``f`` is first minimised over ``b`` (a K-dimensional Newton solve). With
  ``constraint="none"``, ``tr G <= N f(Ĝ) / lambda_Z`` on the sublevel set bounds the last term.

**Eigenvalue.** Dense ``scipy.linalg.eigh`` (smallest eigenvalue only) up to ``dense_max`` samples (N x N
float64 matrix: 32 MB at 2000); beyond, matrix-free LOBPCG (block of ``orth(Z)`` plus random vectors) on the
tile operator, and ``lambda_min`` is estimated as ``theta - ||Q v - theta v||`` (smallest Ritz value minus its
residual): exact for a converged pair, but like any Krylov method it could in principle miss a smaller eigenvalue
that the start block does not see. Everything in float64; the tile operator is jit-compiled JAX, so it runs on a
GPU when one is present (the eigen-solver itself runs on the host).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ufm.batching import batch_list, pad
from ufm.constraints import project

__all__ = ["FirstOrder", "first_order_bound", "solution_loss", "DENSE_MAX"]

DENSE_MAX = 2000
LOBPCG_ITERS = 60  # most LOBPCG iterations
LOBPCG_CHUNK = 5  # iterations between checks of the smallest pair
TILE_ENTRIES = 1 << 21  # entries of one (rows x batch) tile


@dataclass
class FirstOrder:
    """The first-order certificate: ``lower_bound``, the float64 ``loss`` at the (projected) solution,
    ``lambda_min`` of the dual matrix, the eigen-``residual`` (0 for dense), ``eig_method`` (``"eigh"`` or
    ``"lobpcg"``), ``status`` (``"optimal"`` or ``"not_converged"``), ``seconds``."""

    lower_bound: float
    loss: float
    lambda_min: float
    residual: float
    eig_method: str
    status: str
    seconds: float


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


def _sc_tile(d, b, r0, c, fast=False):
    """Rows, columns, gradient block ``A`` (symmetrised), ``Lambda`` block and ``Ĝ`` block of one SC tile.

    ``fast``: one exponential per entry, ``p_ik + p_ki = e^{s_ik - m} (e^{m - lse_i} + e^{m - lse_k})`` with
    ``m = rho^2 / tau`` (safe while ``2 rho^2 / tau`` stays well inside the float64 exponent range)."""
    r, k, rv, kv = _rows_cols(d["rows"], d["idx"], b, r0, c)
    Z, y = d["Z"], d["y"]
    rs, ks = jnp.where(rv, r, 0), jnp.where(kv, k, 0)
    Gh = Z[rs] @ Z[ks].T
    S = Gh / d["tau"]
    off = rv[:, None] & kv[None, :] & ((r0 + jnp.arange(c))[:, None] != jnp.arange(k.shape[0])[None, :])
    pos = off & (y[rs][:, None] == y[ks][None, :])
    lse_r = jax.lax.dynamic_slice_in_dim(d["lse"][b], r0, c)
    np_r = jax.lax.dynamic_slice_in_dim(d["npos"][b], r0, c)
    lse_k, np_k = d["lse"][b][: k.shape[0]], d["npos"][b][: k.shape[0]]
    a_r, a_k = np_r > 0, np_k > 0
    positives = pos * (a_r / jnp.maximum(np_r, 1))[:, None] + pos * (a_k / jnp.maximum(np_k, 1))[None, :]
    if fast:
        m = d["m"]
        E = jnp.exp(jnp.where(off, S - m, -jnp.inf))
        wr = jnp.where(a_r, jnp.exp(jnp.where(a_r, m - lse_r, 0.0)), 0.0)
        wk = jnp.where(a_k, jnp.exp(jnp.where(a_k, m - lse_k, 0.0)), 0.0)
        soft = E * (wr[:, None] + wk[None, :])
    else:
        soft = (jnp.where(a_r[:, None], jnp.exp(jnp.where(off, S - lse_r[:, None], -jnp.inf)), 0.0)
                + jnp.where(a_k[None, :], jnp.exp(jnp.where(off, S - lse_k[None, :], -jnp.inf)), 0.0))
    A = jnp.where(off, soft - positives, 0.0) / (2 * d["T"] * d["tau"])
    Lam = jnp.where(d["nonneg"] & off & (Gh <= d["thr"]), jnp.maximum(A, 0.0), 0.0)
    n = d["Z"].shape[0]
    return jnp.where(rv, r, n), jnp.where(kv, k, n), A, Lam, Gh


def _ce_tile(d, b, r0, c):
    """The same for CE: ``B = -F Fᵀ / (4 lambda_W)`` (the ``lambda_Z/N`` identity is added outside)."""
    r, k, rv, kv = _rows_cols(d["rows"], d["idx"], b, r0, c)
    rs, ks = jnp.where(rv, r, 0), jnp.where(kv, k, 0)
    Z, F = d["Z"], d["F"]
    Gh = Z[rs] @ Z[ks].T
    valid = rv[:, None] & kv[None, :]
    B = jnp.where(valid, -(F[rs] @ F[ks].T) / (4 * d["wd"]), 0.0)
    off = valid & (rs[:, None] != ks[None, :])
    Lam = jnp.where(d["nonneg"] & off & (Gh <= d["thr"]), jnp.maximum(B, 0.0), 0.0)
    n = Z.shape[0]
    return jnp.where(rv, r, n), jnp.where(kv, k, n), B, Lam, Gh


_TILES = {"sc": _sc_tile, "sc_fast": partial(_sc_tile, fast=True), "ce": _ce_tile}
_project = jax.jit(project, static_argnames=("constraint",))


def _sc_stats(d, tb, tr, c):
    """Per row slot ``(nb, per * c)``: log-sum-exp, positives, and the SC loss (mean over anchor slots)."""
    lse, npos, possum = (a.reshape(d["rows"].shape)
                         for a in jax.lax.map(lambda t: _sc_pass1(d, t[0], t[1], c), (tb, tr)))
    terms = jnp.where(npos > 0, lse - possum / jnp.maximum(npos, 1), 0.0)
    return lse, npos, terms.sum() / d["T"]


_sc_loss = jax.jit(lambda d, tb, tr, c: _sc_stats(d, tb, tr, c)[2], static_argnames=("c",))


@partial(jax.jit, static_argnames=("kind", "c", "dense"))
def _assemble(d, tb, tr, kind, c, dense):
    """One jit-compiled pass. SC first gathers the per-slot statistics (log-sum-exp, positives) and the loss;
    then, tile by tile: ``((B - Lambda) Ĝ)_ii``, ``(Lambda Ĝ)_ii`` and, with ``dense``, ``B - Lambda`` as an
    ``(N, N)`` array. Returns ``(d, loss, rq, rl, Q)`` (``loss`` NaN for CE, ``Q`` None unless ``dense``)."""
    n = d["Z"].shape[0]
    loss = jnp.nan
    if kind.startswith("sc"):
        lse, npos, loss = _sc_stats(d, tb, tr, c)
        d = {**d, "lse": lse, "npos": npos}
    tile = _TILES[kind]

    def body(acc, t):
        r, k, B, Lam, Gh = tile(d, t[0], t[1], c)
        out = (acc[0].at[r].add(jnp.sum((B - Lam) * Gh, 1)), acc[1].at[r].add(jnp.sum(Lam * Gh, 1)))
        if dense:
            out += (acc[2].at[r[:, None], k[None, :]].add(B - Lam),)
        return out, None

    z = jnp.zeros(n + 1, d["Z"].dtype)
    acc = (z, z) + ((jnp.zeros((n + 1, n + 1), z.dtype),) if dense else ())
    acc, _ = jax.lax.scan(body, acc, (tb, tr))
    return d, loss, acc[0][:n], acc[1][:n], (acc[2][:n, :n] if dense else None)


@partial(jax.jit, static_argnames=("kind", "c"))
def _matmat(d, tb, tr, X, kind, c):
    """``(B - Lambda) X`` for ``X (N, k)``."""
    n = d["Z"].shape[0]
    tile = _TILES[kind]
    Xp = jnp.concatenate([X, jnp.zeros((1, X.shape[1]), X.dtype)])

    def body(acc, t):
        r, k, B, Lam, _ = tile(d, t[0], t[1], c)
        return acc.at[r].add((B - Lam) @ Xp[k]), None

    out, _ = jax.lax.scan(body, jnp.zeros((n + 1, X.shape[1]), X.dtype), (tb, tr))
    return out[:n]


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


def _ce_data(problem, Z, W, b, zero_tol):
    """CE pieces: tile data, layout, ``f`` (with the best bias), the constant ``f - <∇f, Ĥ>`` and
    ``lambda_Z / N``."""
    labels, N, K = problem.label_array, problem.N, problem.K
    W = np.asarray(W, dtype=np.float64)
    C = Z @ W.T
    if problem.bias:
        b = _best_bias(C, np.zeros(K) if b is None else np.asarray(b, dtype=np.float64), labels, K)
    else:
        b = np.zeros(K)
    Y = np.zeros((N, K))
    Y[np.arange(N), labels] = 1.0
    F = (_softmax(C + b) - Y) / N
    wd, fd = problem.weight_decay, problem.feature_decay
    loss = _ce_value(C, b, labels) + wd * np.sum(W ** 2) + fd * np.sum(Z ** 2) / N
    lay = _Layout(None, N)
    scale = problem.radius ** 2 if problem.constraint != "none" else float(np.max(np.sum(Z ** 2, 1)))
    d = {"Z": jnp.asarray(Z), "F": jnp.asarray(F), "idx": jnp.asarray(lay.idx), "rows": jnp.asarray(lay.rows),
         "wd": jnp.float64(wd), "nonneg": jnp.asarray(problem.nonneg), "thr": jnp.float64(zero_tol * scale)}
    const = loss - np.sum(F * C) - wd * np.sum(W ** 2) - fd * np.sum(Z ** 2) / N
    return d, lay, loss, const, fd / N


def _lambda_min(Q, d, lay, kind, shift, Z, seed=0, res_tol=1e-10):
    """Smallest eigenvalue of ``(B - Lambda) + Diag(shift)`` (dense ``Q = B - Lambda`` when given, else
    matrix-free LOBPCG): ``(lambda, residual, method, converged)``."""
    n = lay.n
    if Q is not None:
        Q = np.asarray(Q)
        Q = (Q + Q.T) / 2 + np.diag(shift)
        lam = scipy.linalg.eigh(Q, eigvals_only=True, subset_by_index=[0, 0], driver="evr")[0]
        return float(lam), 0.0, "eigh", True
    tb, tr = lay.tiles()

    U = np.linalg.svd(Z, full_matrices=False)[0]
    width = U.shape[1] + 8  # the block; every product is padded to it (one compilation)

    def mm(X):
        X = np.asarray(X, dtype=np.float64).reshape(n, -1)
        out = np.empty_like(X)
        for j in range(0, X.shape[1], width):
            Xj = X[:, j:j + width]
            Xp = np.pad(Xj, ((0, 0), (0, width - Xj.shape[1])))
            out[:, j:j + width] = np.asarray(_matmat(d, tb, tr, jnp.asarray(Xp), kind, lay.c))[:, :Xj.shape[1]]
        return out + shift[:, None] * X

    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=mm, matmat=mm, dtype=np.float64)
    X = np.linalg.qr(np.hstack([U, np.random.default_rng(seed).standard_normal((n, 8))]))[0]
    QX = mm(X)
    scale = max(float(np.linalg.norm(QX, axis=0).max()), 1e-300)  # ~ ||Q||
    target = res_tol * scale
    prev, done = np.inf, 0
    while True:  # restarts of LOBPCG_CHUNK iterations: stop on the smallest pair alone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, X = scipy.sparse.linalg.lobpcg(op, X, largest=False, tol=1e-300, maxiter=LOBPCG_CHUNK)
        done += LOBPCG_CHUNK
        R = mm(X) - X * w[None, :]
        i = int(np.argmin(w))
        res = float(np.linalg.norm(R[:, i]) / np.linalg.norm(X[:, i]))
        ok = res <= target and abs(w[i] - prev) <= target
        if ok or done >= LOBPCG_ITERS:
            return float(w[i]) - res, res, "lobpcg", ok
        prev = w[i]


def _bound(problem, Zp, kind, d, lay, const, delta, dense_max, loss=None):
    """``f``, and ``const + rho^2 sum(mu) + reach * min(0, lambda_min(Q - Diag(mu) - Lambda))`` (module doc);
    SC's ``const`` is ``f - <A, Ĝ>``, computed here."""
    tb, tr = lay.tiles()
    dense = lay.n <= dense_max
    d, sc_loss, rq, rl, Q = _assemble(d, tb, tr, kind, lay.c, dense)
    rq, rl = np.asarray(rq), np.asarray(rl)
    if kind.startswith("sc"):
        loss = float(sc_loss)
        const = loss - np.sum(rq + rl)
    rq = rq + delta * np.sum(Zp ** 2, 1)  # ((Q - Lambda) Ĝ)_ii
    rho2, n = problem.radius ** 2, problem.N
    if problem.constraint == "none":
        mu, reach = np.zeros(n), n * loss / problem.feature_decay
    else:
        mu = rq / rho2 if problem.constraint == "sphere" else np.minimum(rq / rho2, 0.0)
        reach = n * rho2
    lam, res, how, ok = _lambda_min(Q, d, lay, kind, delta - mu, Zp)
    return loss, const + rho2 * np.sum(mu) + reach * min(0.0, lam), lam, res, how, ok


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


def first_order_bound(problem, Z, W=None, b=None, *, dense_max: int = DENSE_MAX,
                      zero_tol: float = 1e-9) -> FirstOrder:
    """The first-order lower bound at a solution ``Z (N, d)`` (and, for CE, ``W (K, d)``, ``b (K,)``).

    ``dense_max``: largest N for a dense eigenvalue (beyond: LOBPCG). ``zero_tol``: entries ``Ĝ_ij <=
    zero_tol rho^2`` are treated as active ``G_ij >= 0`` constraints under ``nonneg`` (module doc).
    Everything in float64 (``jax.enable_x64`` inside). Raises ``ValueError`` for an epoch batching (no fixed
    objective) or a CE solution without ``W``.
    """
    if problem.loss == "ce" and W is None:
        raise ValueError("W: the CE first-order certificate needs the classifier W of the solution")
    start = time.perf_counter()
    with jax.enable_x64(True):
        Zp = _features(problem, Z)
        if problem.loss == "sc":
            d, lay = _sc_data(problem, Zp, zero_tol)
            loss, const, delta = None, None, 0.0
        else:
            d, lay, loss, const, delta = _ce_data(problem, Zp, W, b, zero_tol)
        kind = problem.loss
        if kind == "sc" and 2 * problem.radius ** 2 / problem.tau < 600:
            kind = "sc_fast"
        loss, bound, lam, res, how, ok = _bound(problem, Zp, kind, d, lay, const, delta, dense_max, loss)
    return FirstOrder(float(bound), float(loss), lam, res, how, "optimal" if ok else "not_converged",
                      time.perf_counter() - start)
