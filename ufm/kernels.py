"""A memory-lean SC loss: no ``N x N`` matrix, in the forward or the backward pass.

The SC loss of docs/theory.md §2 splits, per anchor ``i`` of batch ``B``, into

* **positives** through class sums: ``sum_{j in P_B(i)} <z_i, z_j> = <z_i, S_{B, y_i}> - ||z_i||^2`` with
  ``S_{B, c}`` the sum of the class-``c`` rows of ``B`` (O(b d) per batch, :func:`class_sums`);
* **negatives**: ``lse_i = log sum_{k in B, k != i} exp(<u_i, u_k>)`` with ``u = z / sqrt(tau)``
  (:func:`lse_others`), computed in square ``(t, t)`` tiles, ``t <= block``; the diagonal and the padded slots
  are masked to ``-inf`` before anything else.

:func:`lse_others` has a ``jax.custom_vjp``: the backward pass recomputes the tiles from the saved ``lse``
(O(b) numbers). With ``p_ik = exp(s_ik - lse_i)`` and ``a_i`` the cotangent of ``lse_i``,
``dL/du_r = sum_k (a_r p_rk + a_k p_kr) u_k``. Memory O(b d + block^2) per batch, whatever b is.

Two tilings, chosen at run time (``lax.cond``) from ``c = max_k ||u_k||^2`` (``rho^2 / tau`` on the sphere):

* **shifted** (when ``2 c <= SHIFT_LIMIT[dtype]``: 80 in float32, i.e. ``tau >= rho^2 / 40``; 640 in
  float64): every logit lies in ``[-c, c]``, so ``exp(s_ik - c)`` with the *common* shift ``c`` neither
  overflows nor underflows, and one exp serves both ``(i, k)`` and ``(k, i)``: only the tiles above the
  diagonal are visited, forward and backward (one exp per unordered pair each way).
* **online** (any ``tau``, e.g. ``1e-3`` in float32): every row block meets every column block with an online
  row maximum, as in memory-efficient attention (the diagonal is excluded *before* the maximum, so float32 stays
  finite); two exps per pair in the backward pass.

Under ``vmap`` with a batched ``c`` (a vmap over problems with different ``tau``) ``lax.cond`` evaluates both
tilings; ``c`` is shared by the batches of one problem.

**Several devices** (``jax.set_mesh`` with a ``"rows"`` axis, as ``solvers.solve(..., devices=...)`` does): each
device takes a contiguous shard of the rows and meets every column block (``shard_map``; ``U``, the lse and the
cotangents are all-gathered, O(n d) each way), with the online tiling; no device ever holds more than its own
tiles.

**The slot layout** (:func:`slot_layout`, :func:`sc_slots_vg`): many small SC problems whose batches are
disjoint, each stored batch by batch in a grid of slots so that a batch is a slice, with the problems on the
*last* axis (elementwise passes over P-long vectors). ``solvers.pgd``'s ``solve_many`` pools evaluate the loss
this way on a CPU.

Everything is a pure function of arrays: ``jit``, ``vmap`` (also over a traced ``tau``) and ``grad`` work.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["batch_loss_sum", "lse_others", "class_sums", "row_devices", "slot_layout", "sc_slots_kernel", "sc_slots_vg",
           "BLOCK", "SHIFT_LIMIT", "ROW_AXIS"]

BLOCK = 512  # the largest tile side: tiles of BLOCK^2 logits (1 MiB in float32)
SHIFT_LIMIT = {"float32": 80.0, "float64": 640.0}  # 2c below ~0.9 log(max float): exp(+-2c) is finite
ROW_AXIS = "rows"  # the mesh axis that splits the rows of one problem (jax.set_mesh)

_slice = jax.lax.dynamic_slice_in_dim


def _tiles(n, block):
    """Tile side ``t`` (a multiple of 8, at most ``block`` unless n is smaller) and the padded size ``t * nt``
    (the tiles split n as evenly as possible, so padding stays below 8 * nt rows)."""
    nt = -(-n // block)
    t = -(-(-(-n // nt)) // 8) * 8
    return t, t * nt


def _scores(U, valid, i, j, t, rows=None):
    """Tile ``(i, j)`` of the logits ``<u_r, u_k>``, ``-inf`` where ``r == k`` or either slot is padding; with
    the tile's rows ``U_i`` and columns ``U_j``. ``rows = (U_r, valid_r, r0)``: the row blocks come from a slice
    of the rows that starts at row ``r0`` (a device's shard); default: ``U`` itself."""
    Ur, vr, r0 = (U, valid, 0) if rows is None else rows
    Ui, Uj = _slice(Ur, i * t, t), _slice(U, j * t, t)
    ri, cj = r0 + i * t + jnp.arange(t), j * t + jnp.arange(t)
    keep = _slice(vr, i * t, t)[:, None] & _slice(valid, j * t, t)[None, :] & (ri[:, None] != cj[None, :])
    return jnp.where(keep, Ui @ Uj.T, -jnp.inf), Ui, Uj


def _add(x, i, t, v):
    """``x[i*t : (i+1)*t] += v``."""
    return jax.lax.dynamic_update_slice_in_dim(x, _slice(x, i * t, t) + v, i * t, 0)


def _upper_pairs(nt):
    iu, ju = np.triu_indices(nt)
    return jnp.asarray(iu, jnp.int32), jnp.asarray(ju, jnp.int32)


def _fwd_shifted(U, valid, c, t):
    def step(acc, ij):
        i, j = ij
        E = jnp.exp(_scores(U, valid, i, j, t)[0] - c)
        acc = _add(acc, i, t, E.sum(axis=1))
        return _add(acc, j, t, jnp.where(i != j, E.sum(axis=0), 0.0)), None

    acc, _ = jax.lax.scan(step, jnp.zeros(U.shape[:1], U.dtype), _upper_pairs(U.shape[0] // t))
    return jnp.where(acc > 0, c + jnp.log(jnp.where(acc > 0, acc, 1.0)), -jnp.inf)


def _bwd_shifted(U, valid, c, lse, a, t):
    r = a * jnp.exp(c - lse)  # a_i / sum_k exp(s_ik - c); lse = +inf (no other slot) gives 0

    def step(dU, ij):
        i, j = ij
        S, Ui, Uj = _scores(U, valid, i, j, t)
        M = jnp.exp(S - c) * (_slice(r, i * t, t)[:, None] + _slice(r, j * t, t)[None, :])
        dU = _add(dU, i, t, M @ Uj)
        return _add(dU, j, t, jnp.where(i != j, M.T @ Ui, 0.0)), None

    dU, _ = jax.lax.scan(step, jnp.zeros_like(U), _upper_pairs(U.shape[0] // t))
    return dU


def _fwd_online(U, valid, c, t, rows=None):
    nt, nr = U.shape[0] // t, (U if rows is None else rows[0]).shape[0] // t

    def block(i):
        def step(carry, j):
            m, s = carry
            S = _scores(U, valid, i, j, t, rows)[0]
            m_new = jnp.maximum(m, S.max(axis=1))
            shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
            return (m_new, s * jnp.exp(m - shift) + jnp.exp(S - shift[:, None]).sum(axis=1)), None

        init = (jnp.full((t,), -jnp.inf, U.dtype), jnp.zeros((t,), U.dtype))
        (m, s), _ = jax.lax.scan(step, init, jnp.arange(nt))
        return jnp.where(s > 0, jnp.log(jnp.where(s > 0, s, 1.0)) + jnp.where(jnp.isfinite(m), m, 0.0), -jnp.inf)

    return jax.lax.map(block, jnp.arange(nr)).reshape(-1)


def _bwd_online(U, valid, c, lse, a, t, rows=None):
    nt, nr = U.shape[0] // t, (U if rows is None else rows[0]).shape[0] // t
    r0 = 0 if rows is None else rows[2]

    def block(i):
        ai, li = _slice(a, r0 + i * t, t)[:, None], _slice(lse, r0 + i * t, t)[:, None]

        def step(acc, j):
            S, _, Uj = _scores(U, valid, i, j, t, rows)
            M = ai * jnp.exp(S - li) + _slice(a, j * t, t)[None, :] * jnp.exp(S - _slice(lse, j * t, t)[None, :])
            return acc + M @ Uj, None

        return jax.lax.scan(step, jnp.zeros((t, U.shape[1]), U.dtype), jnp.arange(nt))[0]

    return jax.lax.map(block, jnp.arange(nr)).reshape(nr * t, U.shape[1])


def _shifted_ok(U, c):
    return 2 * c <= SHIFT_LIMIT[jnp.dtype(U.dtype).name]


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _lse_tiled(U, valid, c, t):
    return jax.lax.cond(_shifted_ok(U, c), partial(_fwd_shifted, t=t), partial(_fwd_online, t=t), U, valid, c)


def _lse_tiled_fwd(U, valid, c, t):
    lse = _lse_tiled(U, valid, c, t)
    return lse, (U, valid, c, lse)


def _lse_tiled_bwd(t, res, g):
    U, valid, c, lse = res
    fin = jnp.isfinite(lse)
    a, lse = jnp.where(fin, g, 0.0), jnp.where(fin, lse, jnp.inf)  # rows with no other slot drop out
    dU = jax.lax.cond(_shifted_ok(U, c), partial(_bwd_shifted, t=t), partial(_bwd_online, t=t), U, valid, c, lse, a)
    return dU, None, None


_lse_tiled.defvjp(_lse_tiled_fwd, _lse_tiled_bwd)


def row_devices() -> int:
    """Size of the ``"rows"`` axis of the mesh set with ``jax.set_mesh`` (1 without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty or ROW_AXIS not in mesh.axis_names else mesh.shape[ROW_AXIS]


def _gather_rows(*xs):
    return [jax.lax.all_gather(x, ROW_AXIS, tiled=True) for x in xs]


def _on_row_shards(local, *xs):
    spec = jax.sharding.PartitionSpec(ROW_AXIS)
    return jax.shard_map(local, in_specs=(spec,) * len(xs), out_specs=spec, check_vma=False)(*xs)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _lse_sharded(U, valid, t):
    def local(Ul, vl):
        r0 = jax.lax.axis_index(ROW_AXIS) * Ul.shape[0]
        return _fwd_online(*_gather_rows(Ul, vl), None, t, rows=(Ul, vl, r0))

    return _on_row_shards(local, U, valid)


def _lse_sharded_fwd(U, valid, t):
    lse = _lse_sharded(U, valid, t)
    return lse, (U, valid, lse)


def _lse_sharded_bwd(t, res, g):
    U, valid, lse = res
    fin = jnp.isfinite(lse)
    a, lse = jnp.where(fin, g, 0.0), jnp.where(fin, lse, jnp.inf)

    def local(Ul, vl, al, ll):
        Ua, va, aa, la = _gather_rows(Ul, vl, al, ll)
        return _bwd_online(Ua, va, None, la, aa, t, rows=(Ul, vl, jax.lax.axis_index(ROW_AXIS) * Ul.shape[0]))

    return _on_row_shards(local, U, valid, a, lse), None


_lse_sharded.defvjp(_lse_sharded_fwd, _lse_sharded_bwd)


def lse_others(U, valid=None, c=None, *, block: int = BLOCK):
    """``lse_i = log sum_{k != i, valid_k} exp(<u_i, u_k>)`` for every row of ``U`` ``(n, d)``, in tiles.

    ``valid`` ``(n,)`` bool marks real slots (default: all); a row with no other valid slot gives ``-inf``
    (and a zero gradient). ``c`` is a bound on ``max_k ||u_k||^2`` (default: computed; pass one value for many
    batches so that they all take the same tiling, see the module doc). Differentiable in ``U`` (custom VJP, tiles
    recomputed in the backward pass). Memory O(n d + block^2). Under a mesh with a ``"rows"`` axis
    (:func:`row_devices` > 1) the rows are split over its devices.
    """
    n = U.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    if c is None:
        c = jnp.max(jnp.where(valid, jnp.sum(U * U, axis=1), 0.0))
    shards = row_devices()
    t, n_pad = _tiles(-(-n // shards), block)
    n_pad *= shards
    if n_pad != n:
        U = jnp.pad(U, ((0, n_pad - n), (0, 0)))
        valid = jnp.pad(valid, (0, n_pad - n))
    if shards > 1:
        return _lse_sharded(U, valid, t)[:n]
    return _lse_tiled(U, valid, jax.lax.stop_gradient(jnp.asarray(c, U.dtype)), t)[:n]


def class_sums(Zb, yb, valid):
    """Per-slot sum of the rows of its own class in the same batch, and that class's count.

    ``Zb`` ``(b, d)``, ``yb`` ``(b,)`` labels, ``valid`` ``(b,)``. Classes get dense ids inside the batch (rank
    of the label among the sorted labels), so the cost is O(b log b + b d) whatever the number of classes.
    Returns ``S`` ``(b, d)`` with ``S_i = sum_{j in B, y_j = y_i} z_j`` and ``n`` ``(b,)``.
    """
    b = yb.shape[0]
    y = jnp.where(valid, yb, jnp.iinfo(jnp.int32).min)
    ids = jnp.searchsorted(jnp.sort(y), y)
    Zv = jnp.where(valid[:, None], Zb, 0.0)
    S = jax.ops.segment_sum(Zv, ids, num_segments=b)[ids]
    n = jax.ops.segment_sum(valid.astype(jnp.int32), ids, num_segments=b)[ids]
    return S, n


def batch_loss_sum(Zb, yb, valid, tau, c=None, *, block: int = BLOCK):
    """Sum over the slots of one batch of the per-anchor SC loss ``l_i`` (docs/theory.md §2), no ``b x b`` matrix.

    ``Zb`` ``(b, d)`` the batch's rows, ``yb`` ``(b,)`` their labels, ``valid`` ``(b,)`` False for padded slots,
    ``tau`` scalar (may be traced), ``c`` an optional bound on ``max ||z||^2 / tau`` (:func:`lse_others`). Anchors
    without a positive give 0. Memory O(b d + block^2).
    """
    S, n = class_sums(Zb, yb, valid)
    Zv = jnp.where(valid[:, None], Zb, 0.0)
    n_pos = jnp.where(valid, n - 1, 0)
    pos = (jnp.sum(Zv * S, axis=-1) - jnp.sum(Zv * Zv, axis=-1)) / tau
    lse = lse_others(Zv * jax.lax.rsqrt(jnp.asarray(tau, Zb.dtype)), valid, c, block=block)
    has = n_pos > 0
    return jnp.where(has, jnp.where(has, lse, 0.0) - pos / jnp.maximum(n_pos, 1), 0.0).sum()

# ---------------------------------------------------------------------------------------------------------------
# The slot layout: many small SC problems with disjoint batches, problems on the last axis (``solvers.pgd``'s
# ``solve_many`` pools)
# ---------------------------------------------------------------------------------------------------------------

def slot_layout(batches, labels, shape):
    """The slot layout of an SC problem whose batches are disjoint, for :func:`sc_slots_vg`, or None when a
    sample sits in two batches (or the problem does not fit ``shape``). ``batches``: the batch set (lists of
    sample indices; None: one batch of all samples); ``labels (N,)``.

    The rows of ``Z`` are stored batch by batch in a grid of ``shape = (NB, BW)`` slots: batch ``n`` in slots
    ``n * BW ...``, the samples in no batch and the empty slots after them, so that a batch is a slice (no gather
    and no scatter-add per evaluation). Returns NumPy arrays ``(perm (NB*BW,), other (NB, BW, BW), A (NB, BW),
    Wp (NB, BW, BW))``: ``perm`` the sample in each slot (-1: empty); ``other`` the pairs of distinct slots of
    one batch (the negatives); ``A = [anchor has a positive] / T`` and ``Wp = A * [positive pair] / #positives``
    (``T`` the number of anchor slots), so that the SC loss is ``sum A * lse - sum Wp * S``
    (:func:`ufm.losses.sc_loss_dense`).
    """
    NB, BW = shape
    N = len(labels)
    batches = batches or [list(range(N))]
    flat = [i for b in batches for i in b]
    if len(flat) != len(set(flat)) or len(batches) > NB or max(map(len, batches)) > BW or N > NB * BW:
        return None
    perm = np.full(NB * BW, -1, np.int64)
    valid = np.zeros((NB, BW), bool)
    for n, b in enumerate(batches):
        perm[n * BW: n * BW + len(b)] = b
        valid[n, : len(b)] = True
    rest = sorted(set(range(N)) - set(flat))
    perm[np.flatnonzero(perm < 0)[: len(rest)]] = rest
    y = np.asarray(labels)[np.maximum(perm, 0)].reshape(NB, BW)
    other = valid[:, :, None] & valid[:, None, :] & ~np.eye(BW, dtype=bool)
    pos = other & (y[:, :, None] == y[:, None, :])
    npos = pos.sum(-1)
    A = (npos > 0) / max(len(flat), 1)
    return perm, other, A, pos * (A / np.maximum(npos, 1))[:, :, None]


def sc_slots_kernel(Z, other, A, Wp, tau):
    """The SC loss and its gradient for ``P`` problems in slot layout, problems on the *last* axis: every
    operation is an elementwise pass over P-long vectors (on a CPU about 3x faster than the same computation with
    the problems first, where XLA loops over tiny per-batch matrices). ``Z (NB*BW, d, P)``, ``other``/``Wp (NB, BW, BW,
    P)``, ``A (NB, BW, P)``, ``tau (P,)`` (:func:`slot_layout`). Returns ``(f (P,), dZ (NB*BW, d, P))``."""
    NB, BW = A.shape[:2]
    d = Z.shape[1]
    Zs = Z.reshape(NB, BW, d, -1)
    inv = 1.0 / tau
    if d <= 32:  # one fused pass per coordinate (a reduction over a short axis is slow on CPUs)
        S = sum(Zs[:, :, None, k] * Zs[:, None, :, k] for k in range(d)) * inv
    else:
        S = jnp.sum(Zs[:, :, None] * Zs[:, None], axis=3) * inv
    Sm = jnp.where(other, S, -jnp.inf)
    m = jnp.max(Sm, axis=2, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    E = jnp.exp(Sm - m)
    se = jnp.sum(E, axis=2)
    se = jnp.where(se > 0, se, 1.0)
    f = jnp.sum(A * (jnp.log(se) + m[:, :, 0]), axis=(0, 1)) - jnp.sum(Wp * S, axis=(0, 1, 2))
    G = (A / se)[:, :, None] * E - Wp  # dL/dS
    G = (G + jnp.swapaxes(G, 1, 2)) * inv
    if BW * d <= 256:  # dZ[:, i, k] = sum_j G[:, i, j] Z[:, j, k], one fused pass per k (no (BW, BW, d) product)
        dZ = jnp.stack([sum(G[:, :, j] * Zs[:, j, None, k] for j in range(BW)) for k in range(d)], axis=2)
    else:
        dZ = jnp.sum(G[:, :, :, None] * Zs[:, None], axis=2)
    return f, dZ.reshape(NB * BW, d, -1)


@jax.custom_batching.custom_vmap
def sc_slots_vg(Z, other, A, Wp, tau):
    """One problem's SC loss and gradient in slot layout (``Z (NB*BW, d)``, :func:`slot_layout`); under ``vmap``
    the problems go to the last axis for :func:`sc_slots_kernel`."""
    f, dZ = sc_slots_kernel(Z[..., None], other[..., None], A[..., None], Wp[..., None], tau[None])
    return f[0], dZ[..., 0]


@sc_slots_vg.def_vmap
def _sc_slots_vg_vmap_rule(axis_size, in_batched, *args):
    last = [jnp.moveaxis(a, 0, -1) if b else jnp.broadcast_to(a[..., None], a.shape + (axis_size,))
            for a, b in zip(args, in_batched)]
    f, dZ = sc_slots_kernel(*last)
    return (f, jnp.moveaxis(dZ, -1, 0)), (True, True)
