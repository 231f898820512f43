"""The figure of ``ufm landscape`` (the dict written to ``landscape.json``), drawn from that dict alone.

``landscape`` (PNG and PDF): a heat map with one column per count vector (ordered by the imbalance ratio
``R = max/min``, labelled with ``R`` and the counts) and one row per temperature. The colour is the
``spurious_fraction`` (the fraction of starts that ended at a certified spurious local minimum; the colour scale
runs from 0 to the larger of 0.25 and the largest value, so that a few starts in many show); when no point has
one (the local certificate missing), the ``above_global_fraction`` instead, and the title says that these
stationary points are not proved local minima. Every cell prints its value; a point that is proved (global
minimum certified, every stationary point found proved a local minimum or a saddle) carries a white dot, one that
is not a black "x" (``ufm.plots.UNCERTIFIED``), a failed point is grey; a cell where some starts did not converge
says how many did (``n/S conv.``: the fraction counts all S starts). ``landscape.csv`` beside it holds the
plotted values (``tau`` rows, one column per count vector).
"""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ufm import plots  # noqa: E402

__all__ = ["draw_landscape", "landscape_table", "FAILED"]

FAILED = "0.8"
PROVED: dict[str, Any] = {"marker": "o", "color": "white", "mec": "black", "ls": "none", "ms": 5, "zorder": 5}


def landscape_table(data: dict):
    """``(columns, taus, values, certified, key, notes)``: the count vectors in increasing ``R`` (lists), the sorted
    temperatures, the (taus x columns) float array of the plotted fraction (NaN: failed or missing), the object
    array of ``certified``, the key plotted (``spurious_fraction`` or ``above_global_fraction``) and a note per
    cell (``"n/S conv."`` where only n of the S starts converged, else ""). Raises ``ValueError`` naming a missing
    key."""
    for k in ("counts", "taus", "spurious_fraction", "above_global_fraction", "certified"):
        if k not in data:
            raise ValueError(f"landscape lacks {k!r}")
    key = ("spurious_fraction" if any(v is not None for v in data["spurious_fraction"])
           else "above_global_fraction")
    cols = sorted({tuple(c) for c in data["counts"]}, key=lambda c: (max(c) / min(c), sum(c), c))
    taus = sorted({float(t) for t in data["taus"]})
    vals = np.full((len(taus), len(cols)), np.nan)
    cert = np.full((len(taus), len(cols)), None, dtype=object)
    note = np.full((len(taus), len(cols)), "", dtype=object)
    conv = data.get("converged_starts") or [None] * len(data["counts"])
    starts = data.get("starts") or [None] * len(data["counts"])
    for c, t, v, ok, n, s in zip(data["counts"], data["taus"], data[key], data["certified"], conv, starts):
        i, j = taus.index(float(t)), cols.index(tuple(c))
        vals[i, j] = np.nan if v is None else float(v)
        cert[i, j] = ok
        if n is not None and s is not None and n < s:
            note[i, j] = f"{n}/{s} conv."
    return [list(c) for c in cols], taus, vals, cert, key, note


def draw_landscape(data: dict, out) -> list[str]:
    """Write ``landscape.png``, ``landscape.pdf`` and ``landscape.csv`` into ``out``; returns their paths."""
    cols, taus, vals, cert, key, notes = landscape_table(data)
    labels = [f"R={plots.fmt_value(round(max(c) / min(c), 3))}\n{','.join(map(str, c))}" for c in cols]
    settings = data.get("settings") or {}
    proved = key == "spurious_fraction"
    with plt.rc_context(plots.RC):  # type: ignore[arg-type]  # matplotlib's stubs type the rc keys as Literals
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(cols) + 2.0), max(2.8, 0.5 * len(taus) + 1.8)))
        cmap = plt.get_cmap("magma_r").with_extremes(bad=FAILED)
        top = max(0.25, float(np.nanmax(vals)) if np.isfinite(vals).any() else 0.0)
        mesh = ax.pcolormesh(np.arange(len(cols) + 1) - 0.5, np.arange(len(taus) + 1) - 0.5,
                             np.ma.masked_invalid(vals), cmap=cmap, norm=Normalize(0.0, top), shading="flat")
        cb = fig.colorbar(mesh, ax=ax, pad=0.02)
        cb.set_label("fraction of starts at a certified spurious local minimum" if proved else
                     "fraction of starts stopped above the global minimum")
        for i in range(len(taus)):
            for j in range(len(cols)):
                if np.isfinite(vals[i, j]):
                    ax.text(j, i + 0.28, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if vals[i, j] > 0.5 * top else "black", zorder=6)
                if notes[i, j]:
                    ax.text(j, i - 0.3, notes[i, j], ha="center", va="center", fontsize=6,
                            color="white" if vals[i, j] > 0.5 * top else "black", zorder=6)
        ok = [(i, j) for i in range(len(taus)) for j in range(len(cols)) if cert[i, j] is True]
        bad = [(i, j) for i in range(len(taus)) for j in range(len(cols)) if cert[i, j] is not True]
        handles = []
        if ok:
            ax.plot([j for _, j in ok], [i for i, _ in ok], **PROVED)
            handles.append(Line2D([], [], **{**PROVED, "label": "proved"}))
        if bad:
            ax.plot([j for _, j in bad], [i for i, _ in bad], **{**plots.UNCERTIFIED, "ms": 6})
            handles.append(Line2D([], [], **{**plots.UNCERTIFIED, "ms": 6, "label": "not proved"}))
        ax.set_xticks(range(len(cols)), labels)
        ax.set_yticks(range(len(taus)), [plots.fmt_value(t) for t in taus])
        ax.set_xlabel("class counts (imbalance ratio R)")
        ax.set_ylabel("temperature tau")
        dim = settings.get("dim")
        title = f"SC landscape, d = {dim}, {settings.get('starts')} starts per point"
        ax.set_title(title + ("" if proved else "\n(stationary points above the global minimum: NOT proved local "
                                                "minima)"))
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.2), ncol=2, frameon=False)
        paths = plots.save_figure(fig, str(out), "landscape")
    rows = [[plots.fmt_value(t)] + [None if not np.isfinite(v) else float(v) for v in vals[i]]
            for i, t in enumerate(taus)]
    paths.append(plots.write_csv(str(out), "landscape", [f"tau\\counts ({key})"] +
                                 [" ".join(map(str, c)) for c in cols], rows))
    return paths
