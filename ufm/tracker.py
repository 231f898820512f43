"""``ufm.Tracker``: log a network's geometry every epoch beside the UFM, from any training loop.

    import ufm

    with ufm.Tracker("runs/a", loss="sc", tau=0.1, nonneg=True) as t:
        for epoch in range(epochs):
            ...                                   # train
            t.log(epoch, Z, labels, W=None, train_loss=loss)

Framework-agnostic: ``Z (N, d)``, ``labels (N,)`` and ``W (K, d)`` may be NumPy arrays, JAX arrays or PyTorch
tensors on any device (``x.detach().cpu()``). Each :meth:`Tracker.log` computes one row with
``ufm.measurement.measure_row`` (the function behind ``ufm measure``) and appends it to ``OUT/history.jsonl`` as
one whole line (``ufm.records.append_record``): ``epoch``, the geometry (``mean_cosines``, ``nc1``,
``delta_gm``, ``etf_distance``, ``classifier_norms``, ``global_mean``, ``normalization``, ``cosine_groups``,
``min_cosine``, ``max_cosine``, ``nc3``, ``nc4``), ``distance_to_ufm``, the UFM's ``ufm_delta_gm``, ``ufm_nc1``,
``ufm_etf_distance``, ``ufm_loss``, ``ufm_lower_bound``, ``ufm_certified``, ``counts``, ``counts_scaled``, and
the keyword metrics passed to ``log``. :meth:`close` (or leaving the ``with`` block) draws
``OUT/geometry_per_epoch.png``, the UFM's values as dashed reference lines drawn on top (visible at 0).

**The UFM side is a plugin.** ``ufm`` never imports the solvers, so the reference (state the UFM problem for the
network's counts, solve it, certify it) is found through the entry-point group ``ufm.references``
(:data:`GROUP`): by default the entry point named ``certified`` (installed with this package:
``solvers.workflows.measure.certified_reference``), loaded at the first ``log``. ``reference=`` takes another
entry point's name, any callable with the same signature (``ufm.measurement``'s module doc), or ``False`` for
no UFM side (the ``ufm_*`` fields and ``distance_to_ufm`` are then null). The reference is called once per
distinct problem: count vector and embedding dimension (with explicit batches, the labels in order too);
``solves`` counts the calls.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .deprecation import call_renamed, renamed

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["Tracker", "ReferenceNotFound", "find_reference", "draw", "GROUP", "DEFAULT_REFERENCE", "HISTORY",
           "FIGURE", "GEOMETRY", "RESERVED"]

GROUP = "ufm.references"
DEFAULT_REFERENCE = "certified"
HISTORY = "history.jsonl"
FIGURE = "geometry_per_epoch.png"
GEOMETRY = ("mean_cosines", "nc1", "delta_gm", "etf_distance", "classifier_norms", "global_mean", "normalization",
            "cosine_groups", "min_cosine", "max_cosine", "nc3", "nc4")
_UFM = {"ufm_delta_gm": "delta_gm", "ufm_nc1": "nc1", "ufm_etf_distance": "etf_distance", "ufm_loss": "loss",
        "ufm_lower_bound": "lower_bound", "ufm_certified": "certified"}
RESERVED = frozenset(("epoch", "distance_to_ufm", "counts", "counts_scaled") + GEOMETRY + tuple(_UFM))
# the panels of the figure: (row key, UFM reference key or a constant, title)
_PANELS = (("delta_gm", "ufm_delta_gm", "Delta_GM (0 at OF)"), ("nc1", "ufm_nc1", "NC1"),
           ("etf_distance", "ufm_etf_distance", "ETF distance"), ("distance_to_ufm", 0.0, "distance to the UFM"),
           ("nc3", None, "NC3"), ("nc4", 0.0, "NC4 (mismatch)"))


class ReferenceNotFound(LookupError):
    """No UFM reference: no entry point of :data:`GROUP` is installed (or none of the name asked for)."""


def find_reference(name=None):
    """The entry point of :data:`GROUP` named ``name`` (default: ``certified``, else the only one installed);
    not loaded yet. Raises :class:`ReferenceNotFound` with what to do."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name is not None:
        if name not in found:
            raise ReferenceNotFound(f"no UFM reference named {name!r} in the entry-point group {GROUP!r} (installed: "
                                    f"{', '.join(sorted(found)) or 'none'})")
        return found[name]
    if DEFAULT_REFERENCE in found:
        return found[DEFAULT_REFERENCE]
    if len(found) == 1:
        return next(iter(found.values()))
    raise ReferenceNotFound(
        f"no UFM reference: {'none' if not found else 'several (' + ', '.join(sorted(found)) + ')'} installed in "
        f"the entry-point group {GROUP!r} and none named {DEFAULT_REFERENCE!r} (the ufm package installs "
        f"{DEFAULT_REFERENCE!r}: reinstall it with pip install -e .); pass reference=NAME or a callable, or "
        "reference=False to log the network's geometry alone")


class Tracker:
    """Geometry per epoch beside the UFM (module doc).

    Args:
      out_dir: the folder (created) of ``history.jsonl`` and the figure; rows are appended to an existing file.
        None: no files, the rows are kept in ``rows`` only.
      loss, tau, nonneg: the network's loss (``sc``, ``ce``, ``bcl``), temperature and whether the embeddings are
        non-negative (they pass a ReLU: UFM+). batching: a scheme (``"full"``, ``"fixed:b"``, ...) for the UFM,
        or explicit batches (a list of index lists of the logged rows); None: full batch.
      reference: None (the ``certified`` entry point), an entry point's name, a callable, or False (no UFM side).
      normalize: None to measure the rows as the loss sees them (normalised for SC/BCL, raw for CE); True / False
        to measure the normalised / raw rows whatever the loss.
      options: keyword arguments passed on to the reference (the certified one takes ``weight_decay`` (CE),
        ``max_n``, ``steps``, ``seed``, ``certify``).
      relu: the deprecated name of ``nonneg`` (a ``DeprecationWarning``).
    Raises:
      ValueError naming a bad ``loss`` or ``tau``; :class:`ReferenceNotFound` when no reference can be found;
      ``ufm.records.Busy`` when another writer (another ``Tracker``, in this process or another, or another ufm
      command) holds ``out_dir``; ``ufm.runs.FolderError`` when ``out_dir`` cannot take the files.

    One writer per folder: a tracker holds ``out_dir``'s lock (``ufm.records.lock_folder``) from its creation to
    :meth:`close` (leave the ``with`` block; a tracker never closed frees it when it is garbage-collected); ``history.jsonl`` is repaired first (a half-written last line, from
    a killed run, is moved to ``history.jsonl.rejected``).
    """

    def __init__(self, out_dir, loss="sc", tau=0.1, nonneg=True, batching=None, *, reference=None, normalize=None,
                 relu=None, **options):
        from . import objectives

        nonneg = renamed("relu", relu, "nonneg", nonneg)

        objectives.get(loss)  # ValueError naming loss
        if not float(tau) > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.path = None
        self._lock = None
        self.loss, self.tau, self.nonneg, self.normalize = loss, float(tau), bool(nonneg), normalize
        if batching is None or isinstance(batching, str):
            self.batching, self.batches = batching or "full", None
        else:
            self.batching, self.batches = "explicit", tuple(tuple(int(i) for i in b) for b in batching)
        self.options = options
        if reference is False:
            self._entry, self._reference = None, None
        elif reference is None or isinstance(reference, str):
            self._entry, self._reference = find_reference(reference), None
        elif callable(reference):
            self._entry, self._reference = None, reference
        else:
            raise TypeError(f"reference: expected None, an entry point's name, a callable or False, got "
                            f"{type(reference).__name__}")
        self._done: dict = {}
        self.solves = 0
        self.rows: list[dict] = []
        self.closed = False
        if self.out_dir is not None:
            self._open_folder()

    def _open_folder(self):
        """Prepare ``out_dir`` (``ufm.runs.prepare``), take its lock for this tracker alone (until :meth:`close`)
        and move a half-written last line of ``history.jsonl`` aside (``ufm.records.repair``), so that every
        row appended from here is a whole line of its own."""
        from . import records, runs

        runs.prepare(self.out_dir, (HISTORY, FIGURE), flag="out_dir")
        self._lock = records.lock_folder(self.out_dir, "ufm.Tracker", shared=False,
                                         hint="close the other Tracker or log to another folder")
        try:
            self.path = os.path.join(self.out_dir, HISTORY)
            records.repair(self.path, ("epoch",))
        except BaseException:
            self._release()
            raise

    def _release(self):
        if self._lock is not None:
            from .records import unlock_folder

            unlock_folder(self._lock)
            self._lock = None

    @property
    def relu(self) -> bool:
        """The deprecated name of ``nonneg`` (a ``DeprecationWarning``)."""
        warnings.warn("Tracker.relu is deprecated; use Tracker.nonneg (the same meaning)", DeprecationWarning,
                      stacklevel=2)
        return self.nonneg

    @property
    def has_reference(self) -> bool:
        """Whether the tracker has a UFM side."""
        return self._entry is not None or self._reference is not None

    def _resolve(self):
        if self._reference is None and self._entry is not None:
            try:
                self._reference = self._entry.load()
            except (ImportError, AttributeError) as e:  # an entry point that names nothing importable: say which
                raise ReferenceNotFound(f"the UFM reference {self._entry.name!r} ({self._entry.value}) of the "
                                        f"entry-point group {GROUP!r} cannot be loaded: {e}") from e
        return self._reference

    def _cached(self, counts, dim, *, labels, **kw):
        """The reference, called once per distinct problem (module doc)."""
        key = (counts, dim, None if self.batches is None else tuple(int(v) for v in labels))
        if key not in self._done:
            self._done[key] = call_renamed(self._resolve(), counts, dim, labels=labels, **kw)
            self.solves += 1
        return self._done[key]

    def _measure_kwargs(self):
        return dict(loss=self.loss, tau=self.tau, nonneg=self.nonneg, normalize=self.normalize,
                    batching=self.batching if self.batches is None else None, batches=self.batches)

    def reference_result(self, labels: ArrayLike, dim: int) -> dict | None:
        """The reference's answer for ``labels (N,)`` (ints ``0..K-1``) and embedding dimension ``dim`` (from the
        cache when a ``log`` already asked for it); None without a UFM side."""
        if not self.has_reference:
            return None
        from .measurement import call_reference, to_numpy

        y = to_numpy(labels).astype(np.int64).reshape(-1)
        kw = self._measure_kwargs()
        del kw["normalize"]
        return call_reference(self._cached, np.bincount(y).tolist(), dim, y, **kw, **self.options)

    def row(self, epoch: int, Z: ArrayLike, labels: ArrayLike, W: ArrayLike | None = None, **extra: Any) -> dict:
        """The row :meth:`log` would write, without writing it (a caller may add keys, then :meth:`append` it).
        ``Z (N, d)``, ``labels (N,)``, ``W (K, d)`` or None; ``extra``: more metrics (numbers or JSON values)
        whose names may not be the row's own (``RESERVED``). Raises ``ufm.measurement.InputError`` for bad
        arrays."""
        clash = sorted(set(extra) & RESERVED)
        if clash:
            raise ValueError(f"extra metrics may not be named {', '.join(clash)} (the row's own keys)")
        from .measurement import measure_row, to_numpy
        from .records import clean

        res = measure_row(to_numpy(Z), to_numpy(labels), None if W is None else to_numpy(W),
                          reference=self._cached if self.has_reference else None, **self._measure_kwargs(),
                          **self.options)
        g, u = res["geometry"], res["ufm"] or {}
        row = {"epoch": int(epoch) if isinstance(epoch, (int, np.integer)) else epoch,
               **{k: g.get(k) for k in GEOMETRY}, "distance_to_ufm": res["distance_to_ufm"],
               "counts": res["counts"], "counts_scaled": res["counts_scaled"],
               **{k: u.get(v) for k, v in _UFM.items()}, **{k: _plain(v) for k, v in extra.items()}}
        return clean(row)

    def append(self, row: dict) -> dict:
        """Append ``row`` (a dict with ``epoch``: a :meth:`row`, perhaps with more keys) to ``history.jsonl`` as
        one whole line and to ``rows``; return it."""
        if self.closed:
            raise RuntimeError("Tracker.log after close()")
        from .records import append_record, clean

        row = clean(row)
        if self.path is not None:
            append_record(self.path, row)
        self.rows.append(row)
        return row

    def log(self, epoch: int, Z: ArrayLike, labels: ArrayLike, W: ArrayLike | None = None, **extra: Any) -> dict:
        """Measure ``Z (N, d)`` with ``labels (N,)`` (and the classifier ``W (K, d)``), append the row to
        ``history.jsonl`` and return it (:meth:`row`, then :meth:`append`)."""
        if self.closed:
            raise RuntimeError("Tracker.log after close()")
        return self.append(self.row(epoch, Z, labels, W, **extra))

    def reset(self, rows: Iterable[dict] = ()) -> None:
        """Start over from ``rows`` (the rows of the epochs a resumed run keeps; none for a fresh run):
        ``history.jsonl`` is replaced atomically by exactly these rows, and the figure will draw them."""
        from .records import clean, rewrite

        self.rows = [clean(dict(r)) for r in rows]
        if self.path is not None:
            rewrite(self.path, self.rows)

    def close(self) -> None:
        """Draw ``geometry_per_epoch.png`` from the rows (once; nothing without rows or without ``out_dir``)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.rows and self.out_dir is not None:
                draw(self.rows, os.path.join(self.out_dir, FIGURE))
        finally:
            self._release()

    def __del__(self):  # an abandoned tracker (never closed) frees its folder when it is collected
        try:
            self._release()
        except Exception:  # noqa: BLE001 - at interpreter exit the modules may be gone; the lock goes with them
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _plain(v):
    """A metric as a JSON value: a 0-d array / tensor becomes its number."""
    if hasattr(v, "detach") or hasattr(v, "__array__"):
        from .measurement import to_numpy

        a = to_numpy(v)
        return a.item() if a.ndim == 0 else a.tolist()
    return v


def _numbers(rows, key):
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def draw(rows, path):
    """The metrics of ``rows`` against ``epoch``, one panel each, the UFM's values as dashed reference lines drawn
    on top (visible at 0: the y-range keeps a margin around them); written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .records import replace_bytes

    x = np.array([r["epoch"] if isinstance(r["epoch"], (int, float)) else i for i, r in enumerate(rows)], float)
    panels = [p for p in _PANELS if np.isfinite(_numbers(rows, p[0])).any()]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.0), squeeze=False)
    for ax, (key, ref, title) in zip(axes[0], panels):
        y = _numbers(rows, key)
        ax.plot(x, y, "o-", ms=3, color="tab:blue", label="network", zorder=2)
        refs = _numbers(rows, ref) if isinstance(ref, str) else None if ref is None else np.full(len(rows), ref)
        values = list(y[np.isfinite(y)])
        if refs is not None and np.isfinite(refs).any():
            ax.plot(x, refs, "--", color="tab:red", lw=1.6, label="UFM", zorder=5, clip_on=False)
            values += list(refs[np.isfinite(refs)])
        lo, hi = min(values), max(values)
        pad = 0.08 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    replace_bytes(path, buf.getvalue())
