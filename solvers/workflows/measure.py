"""Measure a network's embeddings beside the UFM: ``ufm measure`` and :class:`solvers.workflows.tracker.Tracker`.

**Inputs** (:func:`load_array`): ``.npy``, ``.npz`` (named arrays; ``key`` picks one), ``.csv`` / ``.tsv``
(numbers; a first line that is not numeric is taken as a header and skipped), PyTorch ``.pt`` / ``.pth``
(``torch.load(path, weights_only=True)``: a tensor, or a dict of tensors with ``key``) and ``.safetensors`` (when
the ``safetensors`` package is installed). Nothing is ever unpickled: NumPy files are read with
``allow_pickle=False`` and PyTorch files with ``weights_only=True``, so a file holding an arbitrary Python object is
refused (:class:`InputError`) before any of it runs.

**The network side** (:func:`network_geometry`): ``ufm.geometry.report`` of the rows, L2-normalised first for the
losses whose geometry is that of directions (SC, BCL: ``normalization = "rows"``), raw for CE
(``normalization = "none"``); ``cosine_groups`` (a *minority* class has fewer samples than the mean count);
with a classifier ``W (K, d)``:

- ``nc3 = || W/||W||_F - M/||M||_F ||_F^2``, ``M`` the class means (of the rows as normalised above) centred at
  the plain mean of the class means (Zhu et al. 2021; 0 when the classifier is the centred means up to scale);
- ``nc4``: the fraction of samples whose prediction ``argmax_c <w_c, z_i>`` is their nearest class mean
  (Euclidean, same rows; 1 at collapse).

**The UFM side** (:func:`ufm_problem`, :func:`solve_ufm`): the problem with the network's counts, loss, ``tau``,
non-negativity (ReLU) and batching, in dimension ``max(d, K)``. SC/BCL: the unit sphere; CE: no norm constraint,
``weight_decay = feature_decay`` (the regularised UFM of Zhu et al.). With explicit batches (sample indices of the
given rows) the UFM keeps the network's labels in their order; otherwise it is stated by counts, and for the full
batch counts summing past ``max_n`` are scaled down in proportion (each class >= 2; ``counts_scaled``).
Solved in float64 by ``solvers.solve`` and certified by ``solvers.certify``: ``lower_bound`` is a proved bound or
None.

**Distance** ``distance_to_ufm = ufm.geometry.gram_distance(G_net, G_ufm)``: the Frobenius distance between the
two Grams of normalised class means, each divided by its Frobenius norm (against an orthogonal frame it is
``delta_gm``).

:func:`measure_row` is the one function that computes a measurement; ``ufm measure`` and the tracker both call it.
"""
from __future__ import annotations

import csv
import io
import os
import warnings
import zipfile

import numpy as np

from ufm import geometry, objectives

__all__ = ["InputError", "load_array", "validate", "ufm_problem", "solve_ufm", "network_geometry", "nc3", "nc4",
           "measure_row", "measure", "UFMCache", "to_numpy", "per_class_rows", "write_per_class_csv",
           "cosines_figure", "FORMATS", "MAX_N"]

FORMATS = (".npy", ".npz", ".csv", ".tsv", ".pt", ".pth", ".safetensors")
MAX_N = 2000  # full batch: the UFM's counts are scaled down past this many samples


class InputError(ValueError):
    """An input file or array that cannot be measured; the message names the file and the reason."""


# --- reading --------------------------------------------------------------------------------------------------

def to_numpy(x) -> np.ndarray:
    """A NumPy array of ``x``: a NumPy or JAX array, a PyTorch tensor on any device (``x.detach().cpu()``), or a
    nested list."""
    if hasattr(x, "detach"):
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        if hasattr(x, "numpy"):
            try:
                return np.asarray(x.numpy())
            except (TypeError, RuntimeError):  # e.g. bfloat16
                return np.asarray(x.float().numpy())
    return np.asarray(x)


def _pick(arrays: dict, key, path, what):
    names = sorted(arrays)
    if key is not None:
        if key not in arrays:
            raise InputError(f"{what} {path}: no array named {key!r} (it holds {', '.join(names) or 'nothing'})")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if what in arrays:
        return arrays[what]
    raise InputError(f"{what} {path}: holds {len(arrays)} arrays ({', '.join(names)}); pick one with --key")


def _read_text(path, delimiter, what):
    try:
        with open(path, newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise InputError(f"{what} {path}: not a text file") from None
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{what} {path}: empty")

    def numeric(row):
        try:
            return [float(c) for c in row]
        except ValueError:
            return None

    if numeric(rows[0]) is None:  # a header line
        rows = rows[1:]
    values = []
    for row in rows:
        v = numeric(row)
        if v is None:
            raise InputError(f"{what} {path}: a line holds something that is not a number: {delimiter.join(row)[:60]!r}")
        values.append(v)
    if not values:
        raise InputError(f"{what} {path}: a header and no numbers")
    if len({len(v) for v in values}) > 1:
        raise InputError(f"{what} {path}: lines of different lengths ({sorted({len(v) for v in values})})")
    a = np.asarray(values, dtype=np.float64)
    return a[:, 0] if a.shape[1] == 1 else a


def _read_torch(path, key, what):
    try:
        import torch
    except ImportError:
        raise InputError(f"{what} {path}: reading a PyTorch file needs the torch package (pip install torch), or "
                         "save the array with numpy.save") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on pickle protocols: the file is refused or read anyway
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 (UnpicklingError and friends: the file is refused, nothing ran)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{what} {path}: refused: not plain tensors (only weights_only=True loads are done; "
                         f"{first[:160]})") from None
    if isinstance(obj, dict):
        obj = _pick(obj, key, path, what)
    if isinstance(obj, (list, tuple)):
        raise InputError(f"{what} {path}: holds a {type(obj).__name__}, not a tensor")
    if not hasattr(obj, "detach"):
        raise InputError(f"{what} {path}: holds a {type(obj).__name__}, not a tensor")
    return to_numpy(obj)


def _read_safetensors(path, key, what):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise InputError(f"{what} {path}: reading .safetensors needs the safetensors package "
                         "(pip install safetensors)") from None
    try:
        arrays = load_file(path)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{what} {path}: not a safetensors file ({e})") from None
    return _pick(arrays, key, path, what)


def load_array(path, key=None, what="embeddings") -> np.ndarray:
    """The array in ``path`` (module doc); ``key`` names one in an ``.npz``, a dict in a ``.pt`` or a
    ``.safetensors`` file (default: the only array, else the one named ``what``). Raises :class:`InputError`."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError(f"{what} {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return _pick(arrays, key, path, what)
        if ext in (".csv", ".tsv", ".txt"):
            return _read_text(path, "\t" if ext == ".tsv" else ",", what)
        if ext in (".pt", ".pth"):
            return _read_torch(path, key, what)
        if ext == ".safetensors":
            return _read_safetensors(path, key, what)
    except InputError:
        raise
    except ValueError as e:  # NumPy's "Object arrays cannot be loaded when allow_pickle=False", bad headers
        raise InputError(f"{what} {path}: refused ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{what} {path}: cannot read it ({e})") from None
    raise InputError(f"{what} {path}: unknown format {ext or '(no extension)'!r}; use one of {', '.join(FORMATS)}")


def validate(Z, labels, W=None):
    """``(Z float64 (N, d), labels int64 (N,), W float64 (K, d) or None)``, checked: ``Z`` finite, labels
    integers in ``0..K-1`` with every class present, ``W`` of shape ``(K, d)`` and finite. Raises
    :class:`InputError` with the reason."""
    Z = to_numpy(Z)
    if Z.dtype == object or not np.issubdtype(Z.dtype, np.number) or np.iscomplexobj(Z):
        raise InputError(f"embeddings: expected real numbers, got dtype {Z.dtype}")
    if Z.ndim != 2:
        raise InputError(f"embeddings: expected a 2-D array (N, d), got shape {Z.shape}")
    if Z.shape[0] < 2 or Z.shape[1] < 1:
        raise InputError(f"embeddings: expected at least 2 rows and 1 column, got shape {Z.shape}")
    Z = Z.astype(np.float64)
    if not np.all(np.isfinite(Z)):
        raise InputError(f"embeddings: {int(np.sum(~np.isfinite(Z)))} NaN or infinite entries")
    y = to_numpy(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise InputError(f"labels: expected a 1-D array (N,), got shape {y.shape}")
    if y.shape[0] != Z.shape[0]:
        raise InputError(f"labels: {y.shape[0]} labels for {Z.shape[0]} embeddings")
    if y.dtype == object or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
                                 or y.dtype == bool):
        raise InputError(f"labels: expected integers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise InputError("labels: expected integers, got non-integer values")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise InputError(f"labels: must lie in 0..K-1, got {int(y.min())}")
    K = int(y.max()) + 1
    if K < 2:
        raise InputError("labels: a single class; measuring needs at least 2")
    counts = np.bincount(y, minlength=K)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise InputError(f"labels: class {int(missing[0])} has no sample; labels must use every class 0..{K - 1}")
    if W is not None:
        W = to_numpy(W)
        if W.dtype == object or not np.issubdtype(W.dtype, np.number):
            raise InputError(f"classifier: expected real numbers, got dtype {W.dtype}")
        if W.shape != (K, Z.shape[1]):
            raise InputError(f"classifier: expected shape (K, d) = ({K}, {Z.shape[1]}), got {W.shape}")
        W = W.astype(np.float64)
        if not np.all(np.isfinite(W)):
            raise InputError("classifier: NaN or infinite entries")
    return Z, y, W


# --- the network side -----------------------------------------------------------------------------------------

def nc3(W, X, labels, K=None) -> float:
    """``|| W/||W||_F - M/||M||_F ||_F^2`` with ``M`` the class means of ``X`` centred at their plain mean
    (``ufm.geometry.nc3``)."""
    return geometry.nc3(X, W, labels, K)


def nc4(W, X, labels, K=None) -> float:
    """The fraction of rows whose classifier prediction ``argmax W x_i`` is their nearest class mean."""
    X = np.asarray(X, dtype=np.float64)
    mu = geometry.class_means(X, labels, K)
    pred = np.argmax(X @ np.asarray(W, dtype=np.float64).T, axis=1)
    d2 = (X ** 2).sum(1)[:, None] - 2 * X @ mu.T + (mu ** 2).sum(1)[None, :]
    return float(np.mean(pred == np.argmin(d2, axis=1)))


def normalizes(loss: str) -> bool:
    """Whether the loss's geometry is that of the L2-normalised rows (the objective registry says)."""
    return bool(objectives.get(loss).normalize_rows)


def network_geometry(Z, labels, W=None, loss="sc") -> dict:
    """The geometry of the given rows (module doc): ``ufm.geometry.report`` plus ``normalization``,
    ``cosine_groups``, ``min_cosine``/``max_cosine``, and ``nc3``/``nc4`` (None without ``W``)."""
    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    norm = normalizes(loss)
    X = geometry.normalize_rows(Z) if norm else np.asarray(Z, dtype=np.float64)
    rep = geometry.report(X, labels, K, W=W, normalize=False)
    G = np.asarray(rep["mean_cosines"])
    counts = np.bincount(labels, minlength=K)
    off = G[~np.eye(K, dtype=bool)]
    rep.update(normalization="rows" if norm else "none",
               cosine_groups=geometry.cosine_groups(G, counts >= counts.mean()),
               min_cosine=float(off.min()), max_cosine=float(off.max()),
               nc3=None if W is None else nc3(W, X, labels, K), nc4=None if W is None else nc4(W, X, labels, K))
    return rep


# --- the UFM side ---------------------------------------------------------------------------------------------

def _scale(counts, max_n):
    counts = np.asarray(counts, dtype=np.int64)
    if max_n is None or counts.sum() <= max_n:
        return tuple(int(c) for c in counts)
    return tuple(int(c) for c in np.maximum(2, np.floor(counts * max_n / counts.sum())))


def ufm_problem(labels, d, *, loss="sc", tau=0.1, relu=False, batching="full", batches=None, weight_decay=5e-3,
                max_n=MAX_N, seed=0):
    """``(problem, counts_scaled)``: the UFM of the module doc for these labels and embedding dimension ``d``.
    Raises ``ValueError`` naming a bad field."""
    from ufm import Problem

    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    counts = tuple(int(c) for c in np.bincount(labels, minlength=K))
    kw = dict(loss=loss, tau=tau, dim=max(int(d), K), nonneg=bool(relu), batch_seed=seed)
    if normalizes(loss) or objectives.get(loss).contrastive:
        kw.update(constraint="sphere")
    else:
        if not weight_decay or weight_decay <= 0:
            raise ValueError("weight_decay: the CE UFM needs weight_decay > 0 (without it no minimiser exists)")
        kw.update(constraint="none", weight_decay=weight_decay, feature_decay=weight_decay)
    if batches is not None:
        if batching not in (None, "full", "explicit"):
            raise ValueError("batches: give explicit batches or a batching scheme, not both")
        return Problem(labels=tuple(int(v) for v in labels), batching="explicit", batches=batches, **kw), False
    batching = batching or "full"
    scaled = _scale(counts, max_n) if batching == "full" else counts
    return Problem(counts=scaled, batching=batching, **kw), scaled != counts


def solve_ufm(problem, *, steps=20000, seed=0, certify=True) -> dict:
    """Solve ``problem`` in float64 and certify it: ``loss``, ``converged``, ``lower_bound`` (a proved bound or
    None), ``gap``, ``certified``, ``certificate_method``, ``certificate_error`` (why no certificate ran, or
    None), ``prediction`` (``ufm.predict``), ``mean_cosines``, ``delta_gm``, ``nc1``, ``etf_distance``,
    ``problem``."""
    import solvers
    from ufm import theory
    from ufm.batching import is_epoch_scheme

    kw = dict(seed=seed, dtype="float64")
    if is_epoch_scheme(problem):
        from solvers.epochs import DEFAULT_EPOCHS

        kw.update(epochs=DEFAULT_EPOCHS, progress=None)
    else:
        kw.update(steps=steps, tol=1e-10)
    sol = solvers.solve(problem, **kw)
    X = geometry.normalize_rows(sol.Z) if normalizes(problem.loss) else np.asarray(sol.Z, dtype=np.float64)
    geo = geometry.report(X, problem.label_array, problem.K, normalize=False)
    out = {"problem": problem.to_dict(), "loss": float(sol.loss), "converged": bool(sol.converged),
           "dtype": sol.dtype, "mean_cosines": geo["mean_cosines"], "delta_gm": geo["delta_gm"], "nc1": geo["nc1"],
           "etf_distance": geo["etf_distance"], "prediction": theory.predict(problem).to_dict(),
           "lower_bound": None, "gap": None, "certified": False, "certificate_method": None,
           "certificate_error": None}
    if certify:
        from solvers.certify import SolverFailure
        from solvers.certify import certify as run_certify

        try:
            c = run_certify(problem, sol)
        except (SolverFailure, ValueError) as e:
            out["certificate_error"] = str(e)
        else:
            out.update(lower_bound=c.lower_bound, gap=c.gap, certified=bool(c.certified),
                       certificate_method=c.method,
                       certificate_error=None if c.lower_bound is not None else c.details.get("why"))
    return out


class UFMCache:
    """The UFM side solved once per distinct problem (counts, loss, tau, ReLU, batching, dimension): a dict from
    the problem's key to :func:`solve_ufm`'s result; ``solves`` counts the solves actually run."""

    def __init__(self, **solve_kwargs):
        self._done: dict = {}
        self.solves = 0
        self.solve_kwargs = solve_kwargs

    def get(self, problem) -> dict:
        key = repr(problem) + repr(problem.labels if problem.batching == "explicit" else None)
        if key not in self._done:
            self._done[key] = solve_ufm(problem, **self.solve_kwargs)
            self.solves += 1
        return self._done[key]


# --- one measurement --------------------------------------------------------------------------------------------

def measure_row(Z, labels, W=None, *, loss="sc", tau=0.1, relu=False, batching="full", batches=None,
                weight_decay=5e-3, max_n=MAX_N, seed=0, cache: UFMCache | None = None, ufm=True) -> dict:
    """One measurement (module doc): ``geometry`` (:func:`network_geometry`), ``counts``, and with ``ufm=True``
    ``ufm`` (:func:`solve_ufm`, through ``cache`` when given), ``counts_scaled`` and ``distance_to_ufm``.
    Inputs are validated (:func:`validate`, raising :class:`InputError`)."""
    Z, y, W = validate(Z, labels, W)
    objectives.get(loss)  # ValueError naming loss
    geo = network_geometry(Z, y, W, loss)
    counts = np.bincount(y).tolist()
    out = {"loss": loss, "tau": tau, "relu": bool(relu), "counts": counts, "N": int(Z.shape[0]),
           "d": int(Z.shape[1]), "K": len(counts), "geometry": geo, "ufm": None, "counts_scaled": False,
           "distance_to_ufm": None}
    if ufm:
        problem, scaled = ufm_problem(y, Z.shape[1], loss=loss, tau=tau, relu=relu, batching=batching,
                                      batches=batches, weight_decay=weight_decay, max_n=max_n, seed=seed)
        side = (cache or UFMCache()).get(problem)
        out.update(ufm=side, counts_scaled=scaled,
                   distance_to_ufm=geometry.gram_distance(geo["mean_cosines"], side["mean_cosines"]))
    return out


measure = measure_row


# --- per-class table and figure -------------------------------------------------------------------------------

def per_class_rows(result, Z, labels) -> list[dict]:
    """One dict per class: ``class``, ``count``, ``minority`` (fewer samples than the mean count), ``mean_norm``
    (norm of the class mean of the measured rows), ``within_spread`` (root mean squared distance of the class's
    rows to their mean), ``mean_cosine_net`` / ``mean_cosine_ufm`` (the mean cosine of this class's mean to the
    other classes' means, network and UFM), ``max_abs_cosine_diff`` (largest ``|G_net - G_ufm|`` of its row)."""
    Z, y, _ = validate(Z, labels)
    geo = result["geometry"]
    X = geometry.normalize_rows(Z) if geo["normalization"] == "rows" else Z
    K = result["K"]
    mu = geometry.class_means(X, y, K)
    counts = np.asarray(result["counts"])
    G = np.asarray(geo["mean_cosines"])
    U = None if result.get("ufm") is None else np.asarray(result["ufm"]["mean_cosines"])
    off = ~np.eye(K, dtype=bool)
    rows = []
    for c in range(K):
        spread = float(np.sqrt(np.mean(np.sum((X[y == c] - mu[c]) ** 2, axis=1))))
        rows.append({"class": c, "count": int(counts[c]), "minority": bool(counts[c] < counts.mean()),
                     "mean_norm": float(np.linalg.norm(mu[c])), "within_spread": spread,
                     "mean_cosine_net": float(G[c, off[c]].mean()),
                     "mean_cosine_ufm": None if U is None else float(U[c, off[c]].mean()),
                     "max_abs_cosine_diff": None if U is None else float(np.abs(G[c] - U[c]).max())})
    return rows


def write_per_class_csv(path, rows):
    """``rows`` (:func:`per_class_rows`) as CSV, written atomically."""
    from ufm.records import _replace_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _replace_bytes(path, buf.getvalue().encode())


def _heatmap(ax, G, counts, title):
    K = len(G)
    im = ax.imshow(G, vmin=-1, vmax=1, cmap="RdBu_r")
    minority = np.asarray(counts) < np.mean(counts)
    names = [f"{c}*" if m else str(c) for c, m in enumerate(minority)]
    ax.set_xticks(range(K), names, fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    for t in ax.get_xticklabels() + ax.get_yticklabels():
        if t.get_text().endswith("*"):
            t.set_color("tab:red")
    if K <= 16:
        size = 9 if K <= 8 else 7
        for i in range(K):
            for j in range(K):
                v = G[i][j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                        color="white" if abs(v) > 0.6 else "black")
    ax.set_title(title, fontsize=10)
    return im


def cosines_figure(result, path):
    """The network's class-mean cosines beside the UFM's (minority classes marked ``*`` in red), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ufm.records import _replace_bytes

    counts = result["counts"]
    panels = [("network", result["geometry"]["mean_cosines"])]
    if result.get("ufm") is not None:
        u = result["ufm"]
        panels.append((f"UFM ({u['problem']['loss']}{', ReLU' if u['problem']['nonneg'] else ''})",
                       u["mean_cosines"]))
    K = len(counts)
    side = max(3.2, 0.45 * K + 1.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels) + 1.0, side), squeeze=False)
    for ax, (name, G) in zip(axes[0], panels):
        im = _heatmap(ax, np.asarray(G), counts, name)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="cosine between class means")
    dist = result.get("distance_to_ufm")
    fig.suptitle("class-mean cosines" + ("" if dist is None else f"; distance to the UFM {dist:.3f}")
                 + ("; * minority" if min(counts) < np.mean(counts) else ""), fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _replace_bytes(path, buf.getvalue())
