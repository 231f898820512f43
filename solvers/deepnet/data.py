"""Datasets for the deep-net path: NumPy arrays in, NumPy arrays out; **never a download**.

Sources (``DATASETS``):
  * ``digits``: scikit-learn's bundled 8 x 8 digits (1797 images, 10 classes; offline; needs scikit-learn).
  * ``mnist1d``: the procedural MNIST-1D (Greydanus 2020), generated here with the package's canonical
    arguments (5000 signals of length 40, its own generation seed 42; needs the ``mnist1d`` package). Nothing
    is read from or written to disk, nothing is downloaded.
  * ``mnist``, ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``) found in ``data_dir``,
    ``data_dir/MNIST/raw`` or ``data_dir/FashionMNIST/raw`` (torchvision's layout).
  * ``cifar10``: the python pickle batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` in
    ``data_dir`` or ``data_dir/cifar-10-batches-py``. Read with a restricted unpickler that builds NumPy arrays
    and plain containers only.

Missing, truncated or ill-shaped files raise :class:`DataError` (a ``ValueError``) naming the file and what to do.

**Shapes.** Inputs are float32, channels last: digits ``(N, 8, 8, 1)``, mnist1d ``(N, 40, 1)``, MNIST
``(N, 28, 28, 1)``, CIFAR-10 ``(N, 32, 32, 3)``. Each channel is standardised with the mean and standard
deviation of the training pool (before imbalance). Labels are int32 in ``0..K-1``.

**Split.** digits and mnist1d: a stratified split drawn from ``seed`` (``test_fraction`` of every class goes to
the test set). MNIST, FashionMNIST and CIFAR-10 keep their official test sets. The test set is never
imbalanced and never noisy.

**Imbalance** (training set only), the profiles of ``ufm.imbalance`` with ``n_min = floor(n_avail / R)``,
``n_avail`` the smallest class count of the training pool (so every class can supply its share):
``step:R[:fraction]``: the last ``round(fraction * K)`` classes (``fraction`` 0.5 by default) are minorities
with ``n_min`` samples, the others majorities with ``round(R n_min) <= n_avail``; ``longtail:R``:
``n_c = round(n_max R^(-c/(K-1)))``, ``n_max = round(R n_min)``. The samples kept are a random subset drawn
from ``seed``. ``none`` keeps every sample.

**Label noise** ``p``: ``round(p * N)`` training samples, drawn from ``seed``, get a label drawn uniformly from
the *other* K - 1 classes (so exactly that many labels are wrong). Applied after the imbalance.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import random
import struct
from typing import NamedTuple

import numpy as np

from ufm import imbalance as profiles

DATASETS = ("digits", "mnist1d", "mnist", "fashion-mnist", "cifar10")

__all__ = ["DATASETS", "DataError", "Dataset", "load", "read_idx", "load_idx_pair", "load_cifar10",
           "parse_imbalance", "imbalance_counts", "flip_labels", "stratified_split"]


class DataError(ValueError):
    """A data file is missing, truncated or of the wrong shape (the message names it)."""


class Dataset(NamedTuple):
    """Arrays of one experiment. ``y_train`` holds the labels trained on (after imbalance and noise);
    ``info`` the provenance: ``name``, ``counts`` (training, per class), ``n_test``, ``imbalance``,
    ``label_noise``, ``flipped`` (how many labels were changed), ``seed``, ``source``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict

    @property
    def K(self) -> int:
        return int(self.info["K"])


# --- files --------------------------------------------------------------------------------------------------

MAX_DECOMPRESSED_BYTES = 1 << 30  # a .gz file may inflate to at most 1 GiB (MNIST's largest: 47 MB)

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path) -> bytes:
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read(MAX_DECOMPRESSED_BYTES + 1)
            if len(data) > MAX_DECOMPRESSED_BYTES:
                raise DataError(f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes "
                                "(MAX_DECOMPRESSED_BYTES); not a dataset file ufm reads")
            return data
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as e:  # a corrupt or truncated gzip stream
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt or truncated, fetch it again") from None


def read_idx(path) -> np.ndarray:
    """One IDX file (plain or ``.gz``) as a NumPy array of its declared type and shape.

    Raises :class:`DataError` for a bad magic number, an unknown type code, or a data size that does not match
    the header (a truncated file, or one with trailing bytes).
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{code:02x}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_TYPES[code])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - head
    if have != need:
        what = "truncated" if have < need else "longer than its header says"
        raise DataError(f"{path}: {what}: header shape {shape} needs {need} data bytes, found {have}")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir, names, subdirs, what):
    """The first existing ``data_dir/sub/name[.gz]`` for every name; a DataError listing what is missing."""
    if data_dir is None:
        raise DataError(f"{what} is read from files: give --data-dir (ufm never downloads)")
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir}: no such folder")
    found, missing = {}, []
    for name in names:
        cands = [os.path.join(data_dir, s, name + ext) for s in subdirs for ext in ("", ".gz")]
        hit = next((c for c in cands if os.path.isfile(c)), None)
        (missing.append(name) if hit is None else found.__setitem__(name, hit))
    if missing:
        places = ", ".join(os.path.join(data_dir, s) or data_dir for s in subdirs)
        raise DataError(f"{what}: missing {', '.join(missing)} (looked in {places}); ufm never downloads: "
                        "put the files there")
    return found


def load_idx_pair(images_path, labels_path, K=10):
    """Images ``(n, H, W)`` uint8 and labels ``(n,)`` from two IDX files, with their shapes checked."""
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3:
        raise DataError(f"{images_path}: expected images of shape (n, H, W), found {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{labels_path}: expected {len(x)} labels (one per image), found shape {y.shape}")
    _check_labels(y, K, labels_path)
    return x, y.astype(np.int32)


def _check_labels(y, K, where):
    if len(y) and (y.min() < 0 or y.max() >= K):
        raise DataError(f"{where}: labels must lie in 0..{K - 1}, found {int(y.min())}..{int(y.max())}")


def _mnist(data_dir, sub):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    f = _find(data_dir, names, [os.path.join(sub, "raw"), sub, ""], sub)
    x, y = load_idx_pair(f[names[0]], f[names[1]])
    xt, yt = load_idx_pair(f[names[2]], f[names[3]])
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(f"{sub}: training images {x.shape[1:]} and test images {xt.shape[1:]} differ in size")
    return x[..., None], y, xt[..., None], yt


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only (a CIFAR batch); anything else is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def __init__(self, fh, *, limit: int, **kw):
        super().__init__(fh, **kw)
        self.limit = limit  # bytes an array may take: its data must come from the file

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        found = super().find_class(module, name)
        if name != "_reconstruct":
            return found

        def reconstruct(cls, shape, dtype):  # allocates the shape: bounded by the file's size first
            n = 1
            for s in (shape if isinstance(shape, tuple) else (shape,)):
                n *= int(s)
            if n * np.dtype(dtype).itemsize > self.limit:
                raise pickle.UnpicklingError(f"an array of shape {shape} is larger than the file ({self.limit} "
                                             "bytes) could fill")
            return found(cls, shape, dtype)

        return reconstruct


def _cifar_batch(path):
    try:
        with open(path, "rb") as fh:
            d = _ArraysOnly(fh, encoding="latin1", limit=os.fstat(fh.fileno()).st_size).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            OverflowError, MemoryError) as e:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({e}); the file is corrupt or truncated") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (expected a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', found {sorted(d)}")
    x, y = np.asarray(d["data"]), np.asarray(d["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 of shape (n, 3072), found {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: expected {len(x)} labels, found shape {y.shape}")
    _check_labels(y, 10, path)
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int32)


def load_cifar10(data_dir):
    """CIFAR-10 from its python batches: ``(x_train (n, 32, 32, 3) uint8, y_train, x_test, y_test)``."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    f = _find(data_dir, names, ["cifar-10-batches-py", ""], "cifar10")
    for name, path in f.items():
        if path.endswith(".gz"):
            raise DataError(f"{path}: CIFAR-10 batches are read uncompressed; gunzip it first")
    parts = [_cifar_batch(f[n]) for n in names[:5]]
    xt, yt = _cifar_batch(f["test_batch"])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


def _digits():
    """scikit-learn's bundled ``digits.csv.gz`` (1797 rows: 64 pixels 0..16, then the label), read directly
    (importing scikit-learn takes seconds); ``sklearn.datasets.load_digits`` when the file is not where
    scikit-learn keeps it."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataError("dataset 'digits' needs scikit-learn: pip install 'ufm[data]'")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        raw = np.loadtxt(path, delimiter=",")
        x, y = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1]
    else:  # pragma: no cover - another scikit-learn layout
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images, d.target
    return x[..., None].astype(np.float32), y.astype(np.int32)


def _mnist1d():
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("dataset 'mnist1d' needs the mnist1d package: pip install 'ufm[data]'") from None
    np_state, py_state = np.random.get_state(), random.getstate()  # the package seeds the global RNGs
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)[..., None]
    return x, np.concatenate([d["y"], d["y_test"]]).astype(np.int32)


# --- split, imbalance, noise ----------------------------------------------------------------------------------

def stratified_split(y, test_fraction, seed):
    """Indices ``(train, test)``: ``round(test_fraction * n_c)`` of every class to the test set, at random."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng([seed, 1])
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def parse_imbalance(text):
    """``"step:10"`` -> ``("step", 10.0, 0.5)``; ``"step:10:0.3"`` -> ``("step", 10.0, 0.3)`` (minority
    fraction); ``"longtail:100"`` -> ``("longtail", 100.0, None)``; ``None``/``"none"`` -> ``None``.
    Raises ``ValueError`` naming ``imbalance``."""
    if text is None or text == "none":
        return None
    parts = str(text).split(":")
    kind = parts[0]
    if kind not in ("step", "longtail") or len(parts) not in ((2, 3) if kind == "step" else (2,)):
        raise ValueError(f"imbalance: expected 'step:R[:fraction]', 'longtail:R' or 'none', got {text!r}")
    try:
        R = float(parts[1])
        frac = float(parts[2]) if len(parts) == 3 else (0.5 if kind == "step" else None)
    except ValueError:
        raise ValueError(f"imbalance: R and fraction must be numbers, got {text!r}") from None
    if not (np.isfinite(R) and R >= 1):
        raise ValueError(f"imbalance: the ratio R must be >= 1, got {parts[1]}")
    if frac is not None and not 0 < frac < 1:
        raise ValueError(f"imbalance: the minority fraction must lie in (0, 1), got {parts[2]}")
    return kind, R, frac


def imbalance_counts(available, spec) -> np.ndarray:
    """Target training counts per class for ``spec`` (text, or a tuple from :func:`parse_imbalance`) given the
    ``available`` counts; see the module doc."""
    available = np.asarray(available)
    spec = parse_imbalance(spec) if isinstance(spec, str) or spec is None else spec
    if spec is None:
        return available.copy()
    kind, R, frac = spec
    n_min = int(available.min() // R)
    if n_min < 1:
        raise ValueError(f"imbalance: R={R:g} leaves no minority sample (the smallest class has "
                         f"{int(available.min())} training samples)")
    if kind == "step":
        return np.asarray(profiles.step_counts(len(available), n_min, R, frac))
    return np.asarray(profiles.long_tail_counts(len(available), n_min, R))


def _subsample(y, counts, seed):
    rng = np.random.default_rng([seed, 2])
    keep = [rng.permutation(np.flatnonzero(y == c))[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def flip_labels(y, p, K, seed):
    """``(y_noisy, flipped_mask)``: ``round(p * N)`` labels, drawn from ``seed``, moved to another class."""
    if not 0 <= p <= 1:
        raise ValueError(f"label_noise must lie in [0, 1], got {p}")
    rng = np.random.default_rng([seed, 3])
    y = np.asarray(y).copy()
    idx = rng.permutation(len(y))[: int(round(p * len(y)))]
    y[idx] = (y[idx] + rng.integers(1, K, size=len(idx))) % K  # uniform over the other K - 1 classes
    mask = np.zeros(len(y), bool)
    mask[idx] = True
    return y.astype(np.int32), mask


def _standardize(x_train, x_test):
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.mean(axis=axes, dtype=np.float64)
    std = x_train.std(axis=axes, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    f = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return f(x_train), f(x_test)


def _raw(name, data_dir, seed, test_fraction):
    """``(x_train, y_train, x_test, y_test, source)`` before imbalance and noise."""
    if name in ("digits", "mnist1d"):
        x, y = _digits() if name == "digits" else _mnist1d()
        tr, te = stratified_split(y, test_fraction, seed)
        src = "scikit-learn load_digits" if name == "digits" else "mnist1d.make_dataset (canonical args)"
        return x[tr], y[tr], x[te], y[te], f"{src}, stratified split seed {seed}"
    if name == "cifar10":
        return (*load_cifar10(data_dir), f"CIFAR-10 python batches in {data_dir}")
    sub = "MNIST" if name == "mnist" else "FashionMNIST"
    return (*_mnist(data_dir, sub), f"{sub} IDX files in {data_dir}")


def load(name="digits", *, data_dir=None, seed=0, test_fraction=0.3, imbalance=None,
         label_noise=0.0) -> Dataset:
    """Load ``name`` (one of ``DATASETS``), split, standardise, imbalance and add label noise (module doc).

    Args:
      name: dataset. data_dir: folder of the files (mnist, fashion-mnist, cifar10).
      seed: split (digits, mnist1d), imbalance subset and label noise.
      test_fraction: per-class test share for the split datasets.
      imbalance: ``None``, ``"none"``, ``"step:R[:fraction]"`` or ``"longtail:R"``.
      label_noise: fraction of training labels flipped to another class.
    Raises:
      DataError (a ValueError) for missing or bad files; ValueError naming the argument for bad values.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    spec = parse_imbalance(imbalance)
    if not (isinstance(label_noise, (int, float)) and 0 <= label_noise <= 1):
        raise ValueError(f"label_noise must lie in [0, 1], got {label_noise!r}")
    x, y, xt, yt, source = _raw(name, data_dir, seed, test_fraction)
    K = int(max(y.max(), yt.max())) + 1
    available = np.bincount(y, minlength=K)
    if available.min() == 0:
        raise DataError(f"{name}: class {int(np.argmin(available))} has no training sample")
    x, xt = _standardize(x.astype(np.float32), xt.astype(np.float32))
    keep = _subsample(y, imbalance_counts(available, spec), seed)
    x, y = x[keep], y[keep]
    y_noisy, flipped = flip_labels(y, label_noise, K, seed)
    info = {"name": name, "K": K, "counts": np.bincount(y_noisy, minlength=K).tolist(),
            "clean_counts": np.bincount(y, minlength=K).tolist(), "n_train": int(len(y)),
            "n_test": int(len(yt)), "input_shape": list(x.shape[1:]), "imbalance": imbalance or "none",
            "label_noise": float(label_noise), "flipped": int(flipped.sum()), "seed": int(seed),
            "source": source}
    return Dataset(x, y_noisy, xt, yt.astype(np.int32), info)
