"""One measurement of a network's embeddings beside a UFM reference: what ``ufm measure`` and :class:`ufm.Tracker`
both compute (:func:`measure_row`).

**Inputs** (:func:`validate`): ``Z (N, d)`` real and finite, ``labels (N,)`` integers ``0..K-1`` with every class
present, optionally the classifier ``W (K, d)``; NumPy, JAX or PyTorch arrays on any device (:func:`to_numpy`).
Anything else raises :class:`InputError` naming the array and the reason.

**The network side** (:func:`network_geometry`): ``ufm.geometry.report`` of the rows, L2-normalised first for the
losses whose geometry is that of directions (SC, BCL: ``normalization = "rows"``), raw for CE
(``normalization = "none"``), unless ``normalize`` says otherwise; ``cosine_groups`` (a *minority* class has
fewer samples than the mean count), ``min_cosine`` / ``max_cosine`` (off-diagonal), and with a classifier
``nc3`` (``ufm.geometry.nc3``) and ``nc4`` (``ufm.geometry.nc4``) of the same rows.

**The UFM side** is not computed here: ``ufm`` never imports the solvers. :func:`measure_row` takes a
*reference*, a callable that states, solves and certifies the UFM for the network's counts (the ``certified``
entry point of the group ``ufm.references``: ``solvers.workflows.measure.certified_reference``; docs/design.md).
It is called as ``reference(counts, dim, *, loss, tau, nonneg, batching, batches, labels, **options)`` with
``counts`` a tuple of ``K`` ints, ``dim = d``, ``labels (N,)`` int64 (a reference that still takes the
deprecated ``relu`` instead of ``nonneg`` gets it under that name, with a ``DeprecationWarning``), and returns a
dict holding at least ``mean_cosines (K, K)`` (and, when it has them, ``delta_gm``, ``nc1``, ``etf_distance``, ``loss``,
``lower_bound``, ``certified``, ``counts_scaled``); :func:`call_reference` adds ``delta_gm_renormalised``.

**Distance** ``distance_to_ufm = ufm.geometry.gram_distance(G_net, G_ufm)``: the Frobenius distance between the
two Grams of normalised class means, each divided by its Frobenius norm (against an orthogonal frame it is
``ufm.geometry.delta_gm_renormalised``, which equals ``delta_gm`` when the class means have equal norms).
"""
from __future__ import annotations

import numpy as np

from . import geometry, objectives
from .deprecation import call_renamed, renamed

__all__ = ["InputError", "to_numpy", "validate", "normalizes", "network_geometry", "measure_row", "call_reference"]


class InputError(ValueError):
    """An input file or array that cannot be measured; the message names the file and the reason."""


def to_numpy(x) -> np.ndarray:
    """A NumPy array of ``x``: a NumPy or JAX array, a PyTorch tensor on any device (``x.detach().cpu()``), or a
    nested list."""
    if hasattr(x, "detach"):
        layout = str(getattr(x, "layout", "torch.strided"))
        if layout != "torch.strided":
            raise InputError(f"a {layout.replace('torch.', '')} tensor: pass it dense (tensor.to_dense())")
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        if hasattr(x, "numpy"):
            try:
                return np.asarray(x.numpy())
            except (TypeError, RuntimeError):  # e.g. bfloat16
                return np.asarray(x.float().numpy())
    return np.asarray(x)


def validate(Z, labels, W=None):
    """``(Z float64 (N, d), labels int64 (N,), W float64 (K, d) or None)``, checked: ``Z`` finite, labels
    integers in ``0..K-1`` with every class present, ``W`` of shape ``(K, d)`` and finite. Raises
    :class:`InputError` with the reason."""
    Z = _array(Z, "embeddings")
    if Z.dtype.kind not in REAL_KINDS:
        raise InputError(f"embeddings: expected real numbers, got dtype {Z.dtype}")
    if Z.ndim != 2:
        raise InputError(f"embeddings: expected a 2-D array (N, d), got shape {Z.shape}")
    if Z.shape[0] < 2 or Z.shape[1] < 1:
        raise InputError(f"embeddings: expected at least 2 rows and 1 column, got shape {Z.shape}")
    Z = Z.astype(np.float64)
    if not np.all(np.isfinite(Z)):
        raise InputError(f"embeddings: {int(np.sum(~np.isfinite(Z)))} NaN or infinite entries")
    y = _array(labels, "labels")
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise InputError(f"labels: expected a 1-D array (N,), got shape {y.shape}")
    if y.shape[0] != Z.shape[0]:
        raise InputError(f"labels: {y.shape[0]} labels for {Z.shape[0]} embeddings")
    if y.dtype.kind not in REAL_KINDS:
        raise InputError(f"labels: expected integers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise InputError("labels: expected integers, got non-integer values")
    if y.min() < 0:
        raise InputError(f"labels: must lie in 0..K-1, got {y.min():g}")
    if y.max() >= y.shape[0]:  # every class has a sample, so K <= N: checked before anything is counted
        raise InputError(f"labels: {y.max():g} is not a class index: {y.shape[0]} rows hold at most {y.shape[0]} "
                         "classes, labels 0..K-1")
    y = y.astype(np.int64)
    K = int(y.max()) + 1
    if K < 2:
        raise InputError("labels: a single class; measuring needs at least 2")
    counts = np.bincount(y, minlength=K)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise InputError(f"labels: class {int(missing[0])} has no sample; labels must use every class 0..{K - 1}")
    if W is not None:
        W = _array(W, "classifier")
        if W.dtype.kind not in REAL_KINDS:
            raise InputError(f"classifier: expected real numbers, got dtype {W.dtype}")
        if W.shape != (K, Z.shape[1]):
            raise InputError(f"classifier: expected shape (K, d) = ({K}, {Z.shape[1]}), got {W.shape}")
        W = W.astype(np.float64)
        if not np.all(np.isfinite(W)):
            raise InputError("classifier: NaN or infinite entries")
    return Z, y, W


REAL_KINDS = "biuf"  # bool, signed, unsigned, float: not complex, dates, durations, strings or objects


def _array(x, what) -> np.ndarray:
    """:func:`to_numpy`, an :class:`InputError` naming ``what`` when ``x`` cannot be one (a sparse tensor)."""
    try:
        return to_numpy(x)
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{what}: not an array ({e})") from None


def normalizes(loss: str) -> bool:
    """Whether the loss's geometry is that of the L2-normalised rows (the objective registry says)."""
    return bool(objectives.get(loss).normalize_rows)


def network_geometry(Z, labels, W=None, loss="sc", normalize=None) -> dict:
    """The geometry of the given rows (module doc): ``ufm.geometry.report`` plus ``normalization``,
    ``cosine_groups``, ``min_cosine``/``max_cosine``, and ``nc3``/``nc4`` (None without ``W``).

    Args:
      Z: ``(N, d)`` rows; labels: ``(N,)`` ints ``0..K-1``, every class present; W: ``(K, d)`` or None.
      loss: the loss whose convention picks the normalisation (``normalizes``).
      normalize: None for the loss's convention; True / False to measure the normalised / raw rows.
    """
    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    norm = normalizes(loss) if normalize is None else bool(normalize)
    if norm:  # a zero row has no direction: normalising it would read as a perfect collapse (nc1 0)
        zero = np.flatnonzero(~np.any(np.asarray(Z) != 0, axis=1))
        if zero.size:
            raise InputError(f"embeddings: {zero.size} row(s) are all zero (first: row {int(zero[0])}); the rows are "
                             "measured as directions (normalised), which a zero row does not have (a dead ReLU?)")
    X = geometry.normalize_rows(Z) if norm else np.asarray(Z, dtype=np.float64)
    rep = geometry.report(X, labels, K, W=W, normalize=False)
    G = np.asarray(rep["mean_cosines"])
    counts = np.bincount(labels, minlength=K)
    off = G[~np.eye(K, dtype=bool)]
    rep.update(normalization="rows" if norm else "none",
               cosine_groups=geometry.cosine_groups(G, counts >= counts.mean()),
               min_cosine=float(off.min()), max_cosine=float(off.max()),
               nc3=None if W is None else geometry.nc3(X, W, labels, K),
               nc4=None if W is None else geometry.nc4(X, W, labels, K))
    return rep


def call_reference(reference, counts, dim, labels, *, loss, tau, nonneg=False, batching, batches, relu=None,
                   **options) -> dict:
    """``reference(counts, dim, loss=..., ...)`` (module doc), its answer checked: a dict with ``mean_cosines``
    of shape ``(K, K)``. ``delta_gm`` stays the reference's own (None when it leaves it out: Kini et al.'s metric
    needs the class means, not only their cosines); ``delta_gm_renormalised`` is added from the cosines.
    ``relu``: the deprecated name of ``nonneg``."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    side = call_renamed(reference, tuple(int(c) for c in counts), int(dim), loss=loss, tau=tau, nonneg=bool(nonneg),
                        batching=batching, batches=batches, labels=np.asarray(labels, dtype=np.int64), **options)
    K = len(counts)
    name = getattr(reference, "__qualname__", None) or type(reference).__name__
    if not isinstance(side, dict) or "mean_cosines" not in side:
        raise TypeError(f"the UFM reference {name} returned {type(side).__name__}; it must return a dict with "
                        "mean_cosines (K, K)")
    G = np.asarray(side["mean_cosines"], dtype=np.float64)
    if G.shape != (K, K) or not np.all(np.isfinite(G)):
        raise ValueError(f"the UFM reference {name} returned mean_cosines of shape {G.shape}; expected ({K}, {K}), "
                         "finite")
    return {**side, "delta_gm": side.get("delta_gm"), "delta_gm_renormalised": geometry.gram_distance(G, np.eye(K))}


def measure_row(Z, labels, W=None, *, loss="sc", tau=0.1, nonneg=False, batching="full", batches=None,
                normalize=None, reference=None, relu=None, **options) -> dict:
    """One measurement (module doc): ``loss``, ``tau``, ``nonneg`` (also written as ``relu``, its older name),
    ``counts``, ``N``, ``d``, ``K``, ``geometry``
    (:func:`network_geometry`), and with a ``reference`` its answer ``ufm``, ``counts_scaled`` and
    ``distance_to_ufm`` (None, False and None without one).

    Args:
      Z, labels, W: the rows ``(N, d)``, labels ``(N,)`` and classifier ``(K, d)`` or None (:func:`validate`).
      loss, tau, nonneg: the network's loss, temperature and whether its embeddings are non-negative (they pass
        a ReLU: UFM+).
      batching, batches: the UFM's batching scheme, or explicit batches (index lists of the rows).
      normalize: None for the loss's convention (:func:`network_geometry`), or True / False.
      reference: the UFM side (module doc), or None for the network alone.
      options: more keyword arguments for ``reference`` (``weight_decay``, ``max_n``, ``seed`` ...).
      relu: the deprecated name of ``nonneg`` (a ``DeprecationWarning``).
    Raises:
      InputError for bad arrays; ValueError naming a bad field (``loss``; the reference's own).
    """
    nonneg = bool(renamed("relu", relu, "nonneg", nonneg))
    Z, y, W = validate(Z, labels, W)
    objectives.get(loss)  # ValueError naming loss
    geo = network_geometry(Z, y, W, loss, normalize)
    counts = np.bincount(y).tolist()
    out = {"loss": loss, "tau": tau, "nonneg": nonneg, "relu": nonneg, "counts": counts, "N": int(Z.shape[0]),
           "d": int(Z.shape[1]), "K": len(counts), "geometry": geo, "ufm": None, "counts_scaled": False,
           "distance_to_ufm": None}
    if reference is not None:
        side = call_reference(reference, counts, Z.shape[1], y, loss=loss, tau=tau, nonneg=nonneg,
                              batching=batching, batches=batches, **options)
        out.update(ufm=side, counts_scaled=bool(side.get("counts_scaled", False)),
                   distance_to_ufm=geometry.gram_distance(geo["mean_cosines"], side["mean_cosines"]))
    return out
