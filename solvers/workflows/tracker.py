"""``Tracker``: log a network's geometry every epoch beside the UFM, from any training loop.

    from solvers.workflows.tracker import Tracker

    with Tracker("runs/a", loss="sc", tau=0.1, relu=True) as t:
        for epoch in range(epochs):
            ...                                   # train
            t.log(epoch, Z, labels, W=None, train_loss=loss)

Framework-agnostic: ``Z``, ``labels`` and ``W`` may be NumPy arrays, JAX arrays or PyTorch tensors on any device
(``x.detach().cpu()``). Each :meth:`Tracker.log` computes one row with ``solvers.workflows.measure.measure_row``
(the function behind ``ufm measure``) and appends it to ``OUT/history.jsonl`` as one whole line
(``ufm.records.append_record``): ``epoch``, the geometry (``nc1``, ``delta_gm``, ``etf_distance``, ``nc3``,
``nc4``, ``min_cosine``, ``max_cosine``, ``cosine_groups``, ``mean_cosines``, ``normalization``),
``distance_to_ufm``, the UFM's ``ufm_delta_gm``, ``ufm_nc1``, ``ufm_etf_distance``, ``ufm_loss``,
``ufm_lower_bound``, ``ufm_certified``, ``counts``, and the keyword metrics passed to ``log``. The UFM side is
solved and certified once per distinct problem (count vector, dimension; ``solves`` counts them). :meth:`close`
(or leaving the ``with`` block) draws ``OUT/geometry_per_epoch.png``, the UFM's values as dashed reference lines.

``ufm`` itself never imports ``solvers``, so the tracker is not ``ufm.Tracker``: import it from here.
"""
from __future__ import annotations

import os

import numpy as np

from .measure import MAX_N, UFMCache, measure_row, to_numpy

__all__ = ["Tracker", "HISTORY", "FIGURE", "RESERVED"]

HISTORY = "history.jsonl"
FIGURE = "geometry_per_epoch.png"
_GEOMETRY = ("nc1", "delta_gm", "etf_distance", "nc3", "nc4", "min_cosine", "max_cosine", "cosine_groups",
             "mean_cosines", "normalization")
RESERVED = frozenset(("epoch", "distance_to_ufm", "counts", "ufm_delta_gm", "ufm_nc1", "ufm_etf_distance",
                      "ufm_loss", "ufm_lower_bound", "ufm_certified", "counts_scaled") + _GEOMETRY)
# the panels of the figure: (row key, UFM reference key or a constant, title)
_PANELS = (("delta_gm", "ufm_delta_gm", "Delta_GM (0 at OF)"), ("nc1", "ufm_nc1", "NC1"),
           ("etf_distance", "ufm_etf_distance", "ETF distance"), ("distance_to_ufm", 0.0, "distance to the UFM"),
           ("nc3", None, "NC3"), ("nc4", 1.0, "NC4"))


class Tracker:
    """Geometry per epoch beside the UFM (module doc).

    Args:
      out_dir: the folder (created) of ``history.jsonl`` and the figure; rows are appended to an existing file.
      loss, tau, relu: the network's loss (``sc``, ``ce``, ``bcl``), temperature and whether the embeddings pass a
        ReLU. batching: a scheme (``"full"``, ``"fixed:b"``, ...) for the UFM, or explicit batches (a list of index
        lists of the logged rows); None: full batch.
      weight_decay: CE only, the UFM's weight and feature decay. ufm: False to skip the UFM side.
      steps, seed, certify: of the UFM solve.
    """

    def __init__(self, out_dir, loss="sc", tau=0.1, relu=True, batching=None, *, weight_decay=5e-3, ufm=True,
                 max_n=MAX_N, steps=20000, seed=0, certify=True):
        from ufm import objectives

        objectives.get(loss)  # ValueError naming loss
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.path = os.path.join(self.out_dir, HISTORY)
        self.loss, self.tau, self.relu, self.ufm = loss, float(tau), bool(relu), bool(ufm)
        if batching is None or isinstance(batching, str):
            self.batching, self.batches = batching or "full", None
        else:
            self.batching, self.batches = "explicit", tuple(tuple(int(i) for i in b) for b in batching)
        self.weight_decay, self.max_n, self.seed = weight_decay, max_n, seed
        self.cache = UFMCache(steps=steps, seed=seed, certify=certify)
        self.rows: list[dict] = []
        self.closed = False

    @property
    def solves(self) -> int:
        """How many UFM problems were solved (once per distinct count vector and dimension)."""
        return self.cache.solves

    def log(self, epoch, Z, labels, W=None, **extra) -> dict:
        """Measure ``Z`` (N, d) with ``labels`` (N,) (and the classifier ``W`` (K, d)), append the row to
        ``history.jsonl`` and return it. ``extra``: more metrics for the row (numbers or JSON values); their names
        may not be the row's own (``RESERVED``)."""
        if self.closed:
            raise RuntimeError("Tracker.log after close()")
        clash = sorted(set(extra) & RESERVED)
        if clash:
            raise ValueError(f"extra metrics may not be named {', '.join(clash)} (the row's own keys)")
        from ufm.records import append_record, clean

        res = measure_row(to_numpy(Z), to_numpy(labels), None if W is None else to_numpy(W), loss=self.loss,
                          tau=self.tau, relu=self.relu, batching=self.batching if self.batches is None else None,
                          batches=self.batches, weight_decay=self.weight_decay, max_n=self.max_n, seed=self.seed,
                          cache=self.cache, ufm=self.ufm)
        g, u = res["geometry"], res["ufm"]
        row = {"epoch": int(epoch) if isinstance(epoch, (int, np.integer)) else epoch,
               **{k: g[k] for k in _GEOMETRY}, "distance_to_ufm": res["distance_to_ufm"], "counts": res["counts"],
               "counts_scaled": res["counts_scaled"],
               "ufm_delta_gm": None if u is None else u["delta_gm"], "ufm_nc1": None if u is None else u["nc1"],
               "ufm_etf_distance": None if u is None else u["etf_distance"],
               "ufm_loss": None if u is None else u["loss"], "ufm_lower_bound": None if u is None else u["lower_bound"],
               "ufm_certified": None if u is None else u["certified"],
               **{k: _plain(v) for k, v in extra.items()}}
        row = clean(row)
        append_record(self.path, row)
        self.rows.append(row)
        return row

    def close(self):
        """Draw ``geometry_per_epoch.png`` from the rows logged (once; nothing when none was)."""
        if self.closed:
            return
        self.closed = True
        if self.rows:
            draw(self.rows, os.path.join(self.out_dir, FIGURE))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _plain(v):
    """A metric as a JSON value: a 0-d array / tensor becomes its number."""
    if hasattr(v, "detach") or hasattr(v, "__array__"):
        a = to_numpy(v)
        return a.item() if a.ndim == 0 else a.tolist()
    return v


def _numbers(rows, key):
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def draw(rows, path):
    """The metrics of ``rows`` against ``epoch``, one panel each, the UFM's values as dashed reference lines drawn
    on top (visible at 0: the y-range keeps a margin around them)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from ufm.records import _replace_bytes

    x = np.array([r["epoch"] if isinstance(r["epoch"], (int, float)) else i for i, r in enumerate(rows)], float)
    panels = [p for p in _PANELS if np.isfinite(_numbers(rows, p[0])).any()]
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
    _replace_bytes(path, buf.getvalue())
