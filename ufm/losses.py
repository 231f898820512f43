"""Losses of the unconstrained-features model, as pure JAX functions.

Conventions (docs/theory.md §2): ``Z`` is ``(N, d)``, one row per sample; ``labels`` is an int array ``(N,)``
with values ``0..K-1``; ``W`` is ``(K, d)``; logits of the SC loss are ``<z_i, z_k> / tau``.

``sc_loss`` is ufm's normalisation: the *mean over anchor slots* ``L = (1/T) sum_B sum_{i in B} l_i(B)`` with
``T = sum_B |B|``. The papers' sum is ``T * L``; SupContrast with base temperature ``b`` returns
``(tau / b) * L`` on one batch. Anchors without a positive in their batch contribute 0 but still count as
slots and as negatives for the others.

**Precision.** float64 input gives a float64 loss, whatever the process's JAX setting: called with a float64
array (NumPy, or a JAX array made under x64) while ``jax_enable_x64`` is off, a loss runs under
``jax.enable_x64(True)`` for that call only (:func:`keeps_float64`), instead of JAX's silent cast to float32.
float32 input stays float32, and nothing changes inside a JAX transformation (``jit``, ``grad``: the inputs are
already traced values in the caller's precision). docs/design.md, Conventions.
"""
from __future__ import annotations

import functools
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import kernels
from .batching import pad

if TYPE_CHECKING:
    from jax.typing import ArrayLike

    Batches = Sequence[Sequence[int]] | np.ndarray | jax.Array | None

__all__ = ["sc_loss", "sc_loss_dense", "sc_loss_blocked", "ce_loss", "bcl_loss", "bcl_avg_loss", "batch_index",
           "BLOCKED_MIN", "keeps_float64"]

BLOCKED_MIN = 256  # batch width from which sc_loss uses the tiled kernel (docs/benchmarks.md: where it pays)


def _is_float64(x) -> bool:
    return isinstance(x, (np.ndarray, jax.Array)) and not isinstance(x, jax.core.Tracer) and x.dtype == np.float64


_F = TypeVar("_F", bound=Callable[..., Any])


def keeps_float64(fn: _F) -> _F:
    """``fn`` evaluated under ``jax.enable_x64(True)`` when one of its arguments is a concrete float64 array and
    x64 is off (module doc, Precision); otherwise ``fn`` itself."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not jax.config.jax_enable_x64 and any(_is_float64(a) for a in (*args, *kwargs.values())):
            with jax.enable_x64(True):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps: fn's signature


def batch_index(batches, n: int):
    """Batches as a padded int array ``(n_batches, b)``: ``-1`` marks an empty slot.

    ``batches`` is ``None`` (the full batch ``[0..n-1]``), a list of index lists (ragged, padded here), or an
    int array already padded with ``-1``. A sample may appear in several batches.
    """
    if batches is None:
        return jnp.arange(n, dtype=jnp.int32)[None, :]
    if isinstance(batches, (list, tuple)):
        return jnp.asarray(pad(batches))
    return jnp.asarray(batches, dtype=jnp.int32)


def _masked_logsumexp(S, mask):
    """Row log-sum-exp of ``S`` over the entries where ``mask`` is True; rows with no entry give ``-inf``.

    The maximum is taken *after* masking, so a masked-out diagonal (``1/tau`` on the sphere) never enters it:
    this is what keeps float32 finite at ``tau = 1e-3``.
    """
    m = jnp.max(jnp.where(mask, S, -jnp.inf), axis=-1, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    total = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, S - m, -jnp.inf)), 0.0), axis=-1)
    any_ = jnp.any(mask, axis=-1)
    return jnp.where(any_, jnp.log(jnp.where(any_, total, 1.0)) + m[..., 0], -jnp.inf)


def _slots(Z, labels, batches):
    """The batches' rows ``(nb, b, d)``, labels ``(nb, b)`` and the mask of real slots ``(nb, b)``."""
    labels = jnp.asarray(labels)
    if batches is None:  # no gather (its transpose, a scatter-add, is slow on CPUs)
        return Z[None], labels[None], jnp.ones((1, Z.shape[0]), bool)
    idx = batch_index(batches, Z.shape[0])
    valid = idx >= 0
    safe = jnp.where(valid, idx, 0)
    return Z[safe], labels[safe], valid


@keeps_float64
def sc_loss_dense(Z, labels, tau, batches=None):
    """SC loss with one ``(b, b)`` similarity matrix per batch (the simple, reference implementation).

    Args:
      Z: ``(N, d)`` embeddings. labels: ``(N,)`` ints. tau: temperature (scalar, may be traced).
      batches: see :func:`batch_index`; ``None`` is the full batch.
    Returns:
      scalar, the mean over anchor slots (ufm normalisation).
    """
    Zb, yb, valid = _slots(Z, labels, batches)  # (nb, b, d), (nb, b), (nb, b)
    S = jnp.einsum("nid,njd->nij", Zb, Zb) / tau
    b = valid.shape[1]
    other = valid[:, :, None] & valid[:, None, :] & ~jnp.eye(b, dtype=bool)
    pos = other & (yb[:, :, None] == yb[:, None, :])
    n_pos = pos.sum(-1)
    lse = _masked_logsumexp(S, other)
    pos_mean = jnp.sum(jnp.where(pos, S, 0.0), axis=-1) / jnp.maximum(n_pos, 1)
    per_anchor = jnp.where(n_pos > 0, jnp.where(n_pos > 0, lse, 0.0) - pos_mean, 0.0)
    return per_anchor.sum() / jnp.maximum(valid.sum(), 1)


@keeps_float64
def sc_loss_blocked(Z, labels, tau, batches=None, *, block: int = kernels.BLOCK):
    """The same loss as :func:`sc_loss_dense` without any ``b x b`` matrix (``ufm.kernels``): positives through
    per-batch class sums, negatives by a tiled log-sum-exp with a custom VJP. Memory
    O(n_batches * b * d + block^2)."""
    c = jnp.max(jnp.sum(Z * Z, axis=-1)) / tau  # one bound for all batches: they take the same tiling
    if batches is None:
        valid = jnp.ones(Z.shape[:1], bool)
        return kernels.batch_loss_sum(Z, jnp.asarray(labels), valid, tau, c, block=block) / Z.shape[0]
    Zb, yb, valid = _slots(Z, labels, batches)
    terms = jax.vmap(partial(kernels.batch_loss_sum, block=block), in_axes=(0, 0, 0, None, None))(
        Zb, yb, valid, tau, c)
    return terms.sum() / jnp.maximum(valid.sum(), 1)


@keeps_float64
def sc_loss(Z: jax.Array | np.ndarray, labels: ArrayLike, tau: float | jax.Array, batches: Batches = None) -> jax.Array:
    """Supervised contrastive loss, ufm normalisation (mean over anchor slots), docs/theory.md §2.

    ``l_i(B) = mean_{j in P_B(i)} [ -s_ij + log sum_{k in B, k != i} exp(s_ik) ]``, ``s_ik = <z_i, z_k>/tau``.

    Args:
      Z: ``(N, d)`` embeddings (not normalised here: the constraint does that).
      labels: ``(N,)`` int class labels.
      tau: temperature > 0.
      batches: ``None`` (full batch), a list of index lists, or an int array ``(n_batches, b)`` padded with -1.
    Returns:
      scalar loss; multiply by ``T = sum_B |B|`` for the papers' sum.

    Batches of at least ``BLOCKED_MIN`` slots go through the tiled kernel (:func:`sc_loss_blocked`: memory
    O(N d), faster from there on); smaller ones through one ``b x b`` matrix per batch (:func:`sc_loss_dense`).
    """
    width = Z.shape[0] if batches is None else batch_index(batches, Z.shape[0]).shape[1]
    if width >= BLOCKED_MIN:
        return sc_loss_blocked(Z, labels, tau, batches)
    return sc_loss_dense(Z, labels, tau, batches)


@keeps_float64
def ce_loss(Z: jax.Array | np.ndarray, W: jax.Array | np.ndarray, labels: ArrayLike,
            bias: jax.Array | np.ndarray | None = None) -> jax.Array:
    """Mean cross-entropy ``(1/N) sum_i -log softmax(W z_i + b)_{y_i}``, docs/theory.md §2.

    Args: Z ``(N, d)``, W ``(K, d)``, labels ``(N,)`` ints, bias ``(K,)`` or None.
    The regularisers (weight and feature decay) are added by the problem's objective, not here.
    """
    logits = Z @ W.T
    if bias is not None:
        logits = logits + bias
    labels = jnp.asarray(labels)
    lse = jax.nn.logsumexp(logits, axis=-1)
    return jnp.mean(lse - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])


def _bcl_terms(Zb, yb, valid, anchor, tau):
    """Per-slot BCL terms of padded batches: rows ``Zb (nb, w, d)``, labels ``yb (nb, w)``, real slots ``valid``,
    and which slots are anchors (``anchor (nb, w)``, a subset of ``valid``). Every real slot is a candidate
    positive or negative of every anchor of its batch; the weight of the pair ``(i, k)`` is one over the number of
    real slots of ``k``'s class in the batch other than ``i``. Returns ``(nb, w)``: 0 off the anchors and for an
    anchor without a positive."""
    w = Zb.shape[1]
    S = jnp.einsum("nid,nkd->nik", Zb, Zb) / tau
    same = yb[:, :, None] == yb[:, None, :]
    both = valid[:, :, None] & valid[:, None, :]
    off = both & ~jnp.eye(w, dtype=bool)[None]
    cnt = jnp.sum(same & both, axis=1)  # (nb, w): real slots of slot k's class in its batch
    members = cnt[:, None, :] - same.astype(cnt.dtype)  # |B_{y_k} \ {i}| for the pair (i, k)
    logw = -jnp.log(jnp.maximum(members, 1).astype(S.dtype))
    pos = off & same
    npos = jnp.sum(pos, axis=-1)
    lse = _masked_logsumexp(S + logw, off)
    pos_mean = jnp.sum(jnp.where(pos, S, 0.0), axis=-1) / jnp.maximum(npos, 1)
    return jnp.where(anchor & (npos > 0), jnp.where(npos > 0, lse, 0.0) - pos_mean, 0.0)


@keeps_float64
def bcl_avg_loss(Z: jax.Array | np.ndarray, labels: ArrayLike, tau: float | jax.Array,
                 batches: Batches = None) -> jax.Array:
    """Balanced contrastive loss, class-averaging part only (``bcl-avg``), ufm normalisation (mean over anchor
    slots). Not the loss of Zhu et al. (that is :func:`bcl_loss`, which adds the class prototypes).

    ``l_i(B) = mean_{p in P_B(i)} [ -s_ip + log sum_c (1/|B_c \\ {i}|) sum_{k in B_c, k != i} exp(s_ik) ]``
    over the classes ``c`` present in ``B`` other than ``i`` itself (``B_c`` the class-``c`` members of ``B``),
    ``s = <z_i, z_k>/tau``; anchors without a positive contribute 0 but count as slots. Each class enters the
    denominator as its mean, so a majority class weighs no more than a minority one.

    Args: as :func:`sc_loss`. Returns: scalar loss (mean over the ``T = sum_B |B|`` anchor slots).
    """
    Zb, yb, valid = _slots(Z, labels, batches)
    return jnp.sum(_bcl_terms(Zb, yb, valid, valid, tau)) / jnp.sum(valid)


@keeps_float64
def bcl_loss(Z: jax.Array | np.ndarray, labels: ArrayLike, tau: float | jax.Array, batches: Batches = None, *,
             prototypes: ArrayLike) -> jax.Array:
    """Balanced contrastive loss of Zhu et al. (2022), one view, ufm normalisation (mean over anchor slots).

    Their ``BalSCL``: the ``K`` class prototypes ``C`` join every batch (class-complement) as extra rows with
    labels ``0..K-1``; only the samples are anchors. For an anchor ``i`` of class ``c`` in batch ``B`` with the
    prototypes appended (``B+ = B + {p_0..p_{K-1}}``):
    ``l_i = mean_{p in P(i)} [ -s_ip + log sum_{c'} (1/|B+_{c'} \\ {i}|) sum_{k in B+_{c'}, k != i} exp(s_ik) ]``
    with ``P(i)`` the other class-``c`` samples of ``B`` and the prototype ``p_c`` (never empty), ``|B+_{c'}|``
    the class-``c'`` samples of ``B`` plus one, ``s = <., .>/tau``. No ``tau / base_temperature`` factor (their
    code has none). docs/theory.md §2 states it and what differs from their two-view batch.

    Args:
      Z: ``(N, d)`` features. labels: ``(N,)`` ints in ``0..K-1``. tau: temperature > 0.
      batches: as :func:`sc_loss` (``None``: the full batch).
      prototypes: ``(K, d)`` class prototypes ``C`` (row ``c`` is class ``c``'s); required.
    Returns:
      scalar, the mean over the ``T = sum_B |B|`` sample anchor slots (their loss on one batch, one view).

    References:
      Zhu et al., "Balanced contrastive learning for long-tailed visual recognition", CVPR 2022.
    """
    C = jnp.asarray(prototypes)
    if C.ndim != 2 or C.shape[1] != Z.shape[1]:
        raise ValueError(f"prototypes must be (K, d) with d = {Z.shape[1]}, got shape {C.shape}")
    K = C.shape[0]
    Zb, yb, valid = _slots(Z, labels, batches)
    nb = Zb.shape[0]
    Zx = jnp.concatenate([Zb, jnp.broadcast_to(C.astype(Zb.dtype), (nb, K, C.shape[1]))], axis=1)
    yx = jnp.concatenate([yb, jnp.broadcast_to(jnp.arange(K, dtype=yb.dtype), (nb, K))], axis=1)
    vx = jnp.concatenate([valid, jnp.ones((nb, K), bool)], axis=1)
    ax = jnp.concatenate([valid, jnp.zeros((nb, K), bool)], axis=1)
    return jnp.sum(_bcl_terms(Zx, yx, vx, ax, tau)) / jnp.sum(valid)
