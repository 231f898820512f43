"""Measure a network's embeddings beside the UFM: ``ufm measure``, and the UFM side of :class:`ufm.Tracker`.

**Inputs** (:func:`load_array`): ``.npy``, ``.npz`` (named arrays; ``key`` picks one), ``.csv`` / ``.tsv``
(numbers; a first line that is not numeric is taken as a header and skipped), PyTorch ``.pt`` / ``.pth``
(``torch.load(path, weights_only=True)``: a tensor, or a dict of tensors with ``key``) and ``.safetensors`` (when
the ``safetensors`` package is installed). Nothing is ever unpickled: NumPy files are read with
``allow_pickle=False`` and PyTorch files with ``weights_only=True``, so a file holding an arbitrary Python object is
refused (:class:`InputError`) before any of it runs.

**The network side** is the core's (``ufm.measurement``: :func:`validate`, :func:`network_geometry`, the
distance); this module adds the files and the UFM.

**The UFM side** (:func:`certified_reference`, the ``certified`` entry point of the group ``ufm.references``
that :class:`ufm.Tracker` loads; :func:`ufm_problem`, :func:`solve_ufm`): the problem with the network's counts,
loss, ``tau``, non-negativity (ReLU) and batching, in dimension ``max(d, K)``. SC/BCL: the unit sphere; CE: no
norm constraint, ``weight_decay = feature_decay`` (the regularised UFM of Zhu et al.). With explicit batches
(sample indices of the given rows) the UFM keeps the network's labels in their order; otherwise it is stated by
counts, and for the full batch counts summing past ``max_n`` are scaled down in proportion (each class >= 2;
``counts_scaled``). Solved in float64 by ``solvers.solve`` and certified by ``solvers.certify``: ``lower_bound``
is a proved bound or None.

:func:`measure_row` is ``ufm.measurement.measure_row`` with :func:`certified_reference`: the one function behind
``ufm measure``; the tracker calls the same core function with the same reference.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import warnings
import zipfile
from typing import TYPE_CHECKING

import numpy as np

from ufm import geometry, measurement, objectives
from ufm.defaults import REFERENCE_STEPS
from ufm.deprecation import renamed
from ufm.measurement import InputError, network_geometry, normalizes, to_numpy, validate

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["InputError", "load_array", "validate", "ufm_problem", "solve_ufm", "certified_reference",
           "network_geometry", "measure_row", "measure", "to_numpy", "per_class_rows", "write_per_class_csv",
           "cosines_figure", "declared_shape", "FORMATS", "MAX_N", "OUTPUTS"]

FORMATS = (".npy", ".npz", ".csv", ".tsv", ".pt", ".pth", ".safetensors")
MAX_N = 2000  # full batch: the UFM's counts are scaled down past this many samples


# --- reading --------------------------------------------------------------------------------------------------

COPIES = 5  # an array is held about this many times over as float64 (loaded, validated, normalised, the geometry)
TEXT_FACTOR = 16  # bytes of memory per byte of CSV text while it is parsed (strings, lists of floats)


def memory_cap() -> int:
    """Bytes an input array may take once loaded: a quarter of ``MemAvailable`` (``/proc/meminfo``), at most
    ``1 << 40``; an array whose float64 copies (:data:`COPIES`) would exceed it is refused before it is read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return min(int(line.split()[1]) * 1024 // 4, 1 << 40)
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 32


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def regular_file(path, what) -> int:
    """The size of ``path``; :class:`InputError` when it is missing or not a regular file (a folder, a FIFO that
    would block the read, a device such as ``/dev/zero`` that never ends)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise InputError(f"{what} {path}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} {path}: not a regular file (a FIFO, device or socket); save the array to a file")
    return st.st_size


def _check_declared(shape, dtype, what, path, data_bytes=None, cap=None):
    """Refuse, from a header alone (nothing read yet): a dtype that is not real numbers (objects, which need
    pickle; complex; dates and durations; strings), more bytes declared than the file holds, or an array whose
    float64 copies exceed :func:`memory_cap`."""
    if dtype.hasobject:
        raise InputError(f"{what} {path}: refused: it holds Python objects (loading them needs pickle, which is "
                         "never done); save plain numbers")
    if dtype.kind not in "biuf":
        raise InputError(f"{what} {path}: expected real numbers, got dtype {dtype}")
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * dtype.itemsize
    if data_bytes is not None and nbytes > data_bytes:
        raise InputError(f"{what} {path}: refused: its header declares shape {tuple(shape)} ({_human(nbytes)}) but "
                         f"the file holds {_human(data_bytes)} of data (truncated or forged)")
    cap = memory_cap() if cap is None else cap
    if COPIES * 8 * n > cap:
        raise InputError(f"{what} {path}: too large: shape {tuple(shape)} needs about {_human(COPIES * 8 * n)} of "
                         f"memory once loaded, more than the {_human(cap)} this machine can spare")


def _npy_header(fh):
    """``(shape, dtype)`` from the header of the ``.npy`` stream ``fh`` (left at the first data byte)."""
    from numpy.lib import format as npf

    version = npf.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = npf.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = npf.read_array_header_2_0(fh)
    else:
        shape, _, dtype = npf._read_array_header(fh, version)  # 3.0: a UTF-8 header
    return shape, dtype


def _read_npy(path, what, size):
    with open(path, "rb") as fh:
        shape, dtype = _npy_header(fh)
        _check_declared(shape, dtype, what, path, size - fh.tell())
        fh.seek(0)
        return np.load(fh, allow_pickle=False)


def _read_npz(path, key, what):
    """One member of an ``.npz``: picked by name first, its header and decompressed size checked, then read
    alone (the other members are never decompressed)."""
    from numpy.lib import format as npf

    with zipfile.ZipFile(path) as zf:
        members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
        name = _pick_name(list(members), key, path, what)
        info = members[name]
        cap = memory_cap()
        if info.file_size > cap:
            raise InputError(f"{what} {path}: too large: member {name!r} holds {_human(info.file_size)} once "
                             f"decompressed, more than the {_human(cap)} this machine can spare")
        with zf.open(info) as fh:
            shape, dtype = _npy_header(fh)
            head = fh.tell()
        _check_declared(shape, dtype, what, f"{path}[{name}]", info.file_size - head, cap)
        with zf.open(info) as fh:
            return npf.read_array(fh, allow_pickle=False)


def _pick_name(names, key, path, what):
    """The name ``key`` picks among ``names`` (default: the only one, else ``what``)."""
    names = sorted(names)
    if key is not None:
        if key not in names:
            raise InputError(f"{what} {path}: no array named {key!r} (it holds {', '.join(names) or 'nothing'})")
        return key
    if len(names) == 1:
        return names[0]
    if what in names:
        return what
    raise InputError(f"{what} {path}: holds {len(names)} arrays ({', '.join(names)}); pick one with --key")


def _pick(arrays: dict, key, path, what):
    return arrays[_pick_name(list(arrays), key, path, what)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_text(path, delimiter, what, header=None):
    """Numbers from CSV / TSV text. A UTF-8 byte-order mark (Excel) is dropped. The first line is a header when
    ``header`` is True, or (``header`` None) when none of its cells is a number; any other line that is not all
    numbers is refused naming its line, so no row is ever dropped in silence."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise InputError(f"{what} {path}: not a text file (UTF-8)") from None
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1)
            if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{what} {path}: empty")
    first = rows[0][1]
    if header or (header is None and not any(_is_number(c) for c in first)):
        rows = rows[1:]
    values = []
    for n, row in rows:
        try:
            values.append([float(c) for c in row])
        except ValueError:
            raise InputError(f"{what} {path}: line {n} holds something that is not a number: "
                             f"{delimiter.join(row)[:60]!r}" + (" (a header? give --header)" if n == 1 else "")) \
                from None
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
    if zipfile.is_zipfile(path):  # torch.save's format: the tensors' storages are zip members; bound them first
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
        if COPIES * total > memory_cap():
            raise InputError(f"{what} {path}: too large: {_human(total)} once decompressed, more than this machine "
                             "can spare")
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
    if isinstance(obj, (list, tuple)) or not hasattr(obj, "detach"):
        raise InputError(f"{what} {path}: holds a {type(obj).__name__}, not a tensor")
    try:
        return to_numpy(obj)
    except InputError as e:
        raise InputError(f"{what} {path}: {e}") from None


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


def declared_shape(path, key=None, what="embeddings"):
    """The shape an ``.npy`` / ``.npz`` file declares in its header (nothing else is read), or None for the other
    formats and for a file whose header cannot be read (:func:`load_array` then says why)."""
    path = str(path)
    ext = os.path.splitext(path)[1].lower()
    try:
        regular_file(path, what)
        if ext == ".npy":
            with open(path, "rb") as fh:
                return tuple(_npy_header(fh)[0])
        if ext == ".npz":
            with zipfile.ZipFile(path) as zf:
                members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
                with zf.open(members[_pick_name(list(members), key, path, what)]) as fh:
                    return tuple(_npy_header(fh)[0])
    except (InputError, ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError):
        return None
    return None


def load_array(path, key=None, what="embeddings", header=None) -> np.ndarray:
    """The array in ``path`` (module doc); ``key`` names one in an ``.npz``, a dict in a ``.pt`` or a
    ``.safetensors`` file (default: the only array, else the one named ``what``); ``header`` (CSV / TSV): True
    to skip the first line, None to skip it when none of its cells is a number. Shapes and sizes are read from
    the headers and checked (:func:`memory_cap`) before any data is. Raises :class:`InputError`."""
    path = str(path)
    size = regular_file(path, what)
    ext = os.path.splitext(path)[1].lower()
    cap = memory_cap()
    try:
        if ext == ".npy":
            return _read_npy(path, what, size)
        if ext == ".npz":
            return _read_npz(path, key, what)
        if ext in (".csv", ".tsv", ".txt"):
            if TEXT_FACTOR * size > cap:
                raise InputError(f"{what} {path}: too large for text ({_human(size)}); save it as .npy")
            return _read_text(path, "\t" if ext == ".tsv" else ",", what, header)
        if ext in (".pt", ".pth"):
            return _read_torch(path, key, what)
        if ext == ".safetensors":
            if COPIES * size > cap:
                raise InputError(f"{what} {path}: too large ({_human(size)}), more than this machine can spare")
            return _read_safetensors(path, key, what)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{what} {path}: too large: out of memory while reading it") from None
    except (ValueError, RecursionError) as e:  # "Object arrays cannot be loaded when allow_pickle=False", headers
        raise InputError(f"{what} {path}: refused ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{what} {path}: cannot read it ({e})") from None
    raise InputError(f"{what} {path}: unknown format {ext or '(no extension)'!r}; use one of {', '.join(FORMATS)}")


# --- the UFM side ---------------------------------------------------------------------------------------------

def _scale(counts, max_n):
    counts = np.asarray(counts, dtype=np.int64)
    if max_n is None or counts.sum() <= max_n:
        return tuple(int(c) for c in counts)
    return tuple(int(c) for c in np.maximum(2, np.floor(counts * max_n / counts.sum())))


def ufm_problem(labels, d, *, loss="sc", tau=0.1, nonneg=False, batching="full", batches=None, weight_decay=5e-3,
                max_n=MAX_N, seed=0, relu=None):
    """``(problem, counts_scaled)``: the UFM of the module doc for these labels and embedding dimension ``d``.
    Raises ``ValueError`` naming a bad field. ``relu``: the deprecated name of ``nonneg``."""
    from ufm import Problem

    nonneg = renamed("relu", relu, "nonneg", nonneg)

    labels = np.asarray(labels)
    K = int(labels.max()) + 1
    counts = tuple(int(c) for c in np.bincount(labels, minlength=K))
    kw = dict(loss=loss, tau=tau, dim=max(int(d), K), nonneg=bool(nonneg), batch_seed=seed)
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


def solve_ufm(problem: Problem, *, steps=REFERENCE_STEPS, seed=0, certify=True) -> dict:
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
        from solvers.certificate import SolverFailure
        from solvers.certificate import certify as run_certify

        try:
            c = run_certify(problem, sol)
        except (SolverFailure, ValueError) as e:
            out["certificate_error"] = str(e)
        else:
            out.update(lower_bound=c.lower_bound, gap=c.gap, certified=bool(c.certified),
                       certificate_method=c.method,
                       certificate_error=None if c.lower_bound is not None else c.details.get("why"))
    return out


def certified_reference(counts, dim, *, loss="sc", tau=0.1, nonneg=False, batching="full", batches=None,
                        labels=None, weight_decay=5e-3, max_n=MAX_N, steps=REFERENCE_STEPS, seed=0, certify=True,
                        relu=None) -> dict:
    """The UFM side of a measurement (module doc), the ``certified`` entry point of ``ufm.references``:
    :func:`solve_ufm` of :func:`ufm_problem` for ``counts`` (a tuple of K ints) and embedding dimension ``dim``,
    plus ``counts_scaled``.

    Args:
      counts, dim: the network's class counts and embedding dimension.
      loss, tau, nonneg, batching, batches: the network's loss, temperature, non-negative embeddings (a ReLU:
        UFM+) and batching (a scheme, or explicit batches: index lists of the rows, which then need ``labels``).
      labels: ``(N,)`` the rows' labels in order (used with explicit batches; default: sorted by class).
      weight_decay: CE only. max_n: full-batch counts past this are scaled down. steps, seed, certify: the solve.
      relu: the deprecated name of ``nonneg`` (a ``DeprecationWarning``).
    """
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    if labels is None:
        labels = np.repeat(np.arange(len(counts)), counts)
    problem, scaled = ufm_problem(labels, dim, loss=loss, tau=tau, nonneg=nonneg, batching=batching, batches=batches,
                                  weight_decay=weight_decay, max_n=max_n, seed=seed)
    return {**solve_ufm(problem, steps=steps, seed=seed, certify=certify), "counts_scaled": scaled}


# --- one measurement --------------------------------------------------------------------------------------------

def measure_row(Z, labels, W=None, *, loss="sc", tau=0.1, nonneg=False, batching="full", batches=None,
                weight_decay=5e-3, max_n=MAX_N, seed=0, ufm=True, relu=None) -> dict:
    """One measurement: ``ufm.measurement.measure_row`` with :func:`certified_reference` (``ufm=False``: the
    network alone). Inputs are validated (``validate``, raising :class:`InputError`). ``relu``: the deprecated
    name of ``nonneg``."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    return measurement.measure_row(Z, labels, W, loss=loss, tau=tau, nonneg=nonneg, batching=batching,
                                   batches=batches,
                                   reference=certified_reference if ufm else None, weight_decay=weight_decay,
                                   max_n=max_n, seed=seed)


OUTPUTS = ("result.json", "cosines.png", "per_class.csv")  # what a run with out= writes


def _array(value, key, what, header):
    """``(array, path)``: ``value`` read by :func:`load_array` when it is a path, else taken as it is."""
    if isinstance(value, (str, os.PathLike)):
        return load_array(value, key, what, header=header), os.fspath(value)
    return value, None


def measure(embeddings, labels, classifier=None, *, key: str | None = None, labels_key: str | None = None,
            classifier_key: str | None = None, header: bool | None = None, loss: str = "sc", tau: float = 0.1,
            nonneg: bool = False, batching: str = "full", batches=None, weight_decay: float = 5e-3, seed: int = 0,
            ufm: bool = True, out: str | None = None) -> dict:
    """A network's embeddings measured beside the UFM with the same counts, loss, tau, ReLU and batching (``ufm
    measure``): :func:`measure_row` on arrays or files, with the inputs and versions recorded.

    Args:
      embeddings: ``Z (N, d)``: an array, or a file (:func:`load_array`: ``FORMATS``; nothing is unpickled).
      labels: ``(N,)`` integers ``0..K-1``, every class used: an array or a file.
      classifier: ``W (K, d)`` (adds NC3 and NC4): an array, a file, or None.
      key: the embeddings' array in a file holding several (default: the only one, else ``"embeddings"``).
      labels_key: likewise for ``labels`` (default ``"labels"``).
      classifier_key: likewise for ``classifier`` (default ``"classifier"``).
      header: CSV / TSV: whether the first line is a header (None: only when none of its cells is a number).
      loss: the loss the network was trained with (``ufm.objectives.NAMES``).
      tau: the temperature, > 0.
      nonneg: whether the embeddings are non-negative (a ReLU before the loss: the UFM+).
      batching: the batching scheme (``"full"``, ``"fixed:b"``, ...).
      batches: explicit batches instead (indices of the embeddings' rows): a list of index lists or a file
        (``ufm.batching.read_batches``).
      weight_decay: CE: weight and feature decay.
      seed: the UFM's random start and batch seed.
      ufm: solve and certify the UFM (False: the network only).
      out: a folder to write ``result.json``, ``cosines.png`` (network beside UFM) and ``per_class.csv`` into;
        None: write nothing.
    Returns:
      :func:`measure_row`'s dict with ``inputs`` (the file names, None for an array given directly) and
      ``versions``: the ``result.json`` of ``ufm measure``.
    Raises:
      InputError: an unreadable or inconsistent input, naming it (a ``ValueError``).
      ValueError: a field the UFM problem refuses (``tau``, ``batching``, ``batches``, ...), naming it.
    """
    from ufm.batching import read_batches
    from ufm.records import versions, write_json

    y, labels_path = _array(labels, labels_key, "labels", header)
    if isinstance(embeddings, (str, os.PathLike)):  # the rows are checked before the embeddings are read
        shape = declared_shape(embeddings, key, "embeddings")
        if shape and len(shape) == 2 and getattr(y, "ndim", 0) >= 1 and shape[0] != max(y.shape):
            raise InputError(f"labels: {max(y.shape)} labels for {shape[0]} embeddings ({os.fspath(embeddings)} "
                             f"declares shape {shape})")
    Z, embeddings_path = _array(embeddings, key, "embeddings", header)
    W, classifier_path = (None, None) if classifier is None else _array(classifier, classifier_key, "classifier",
                                                                          header)
    if isinstance(batches, (str, os.PathLike)):
        batches = read_batches(batches)
    if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 0):
        raise ValueError(f"tau must be > 0, got {tau}")
    with contextlib.ExitStack() as stack:
        if out is not None:  # the folder is checked and held before the UFM is solved
            from ufm import runs

            stack.enter_context(runs.open_run(out, "ufm measure", OUTPUTS, flag="out"))
        res = measure_row(Z, y, W, loss=loss, tau=tau, nonneg=nonneg, batching=batching, batches=batches,
                          weight_decay=weight_decay, seed=seed, ufm=ufm)
        res["inputs"] = {"embeddings": embeddings_path, "labels": labels_path, "classifier": classifier_path,
                         "key": key, "labels_key": labels_key, "classifier_key": classifier_key}
        res["versions"] = versions()
        if out is not None:
            write_json(os.path.join(out, "result.json"), res)
            cosines_figure(res, os.path.join(out, "cosines.png"))
            write_per_class_csv(os.path.join(out, "per_class.csv"), per_class_rows(res, Z, y))
    return res


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
    from ufm.records import replace_bytes

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    replace_bytes(path, buf.getvalue().encode())


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

    from ufm.records import replace_bytes

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
    replace_bytes(path, buf.getvalue())
