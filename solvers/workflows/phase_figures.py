"""Figures of a certified phase diagram (the dict ``ufm phase`` writes to ``phase.json``), drawn from that dict
alone.

The dict holds ``ratios`` (increasing ``R >= 1``), the axis values (``taus``, or ``weight_decays`` when ``axis``
is ``"weight_decay"``: CE has no temperature), 2-D arrays indexed ``[axis value][ratio]`` (``loss``,
``lower_bound``, ``min_min``, ``maj_maj``, ``maj_min``, ``delta_gm``, ``certified``; None marks a failed point),
``tol`` (the relative tolerance of the certificates) and ``boundaries`` {``attraction``, ``collapse``}: lists of
``{axis: value, "R": R or None}``. The loss's name is ``loss`` when that is a string (the 2-D losses then under
``losses``) or ``loss_type``.

:func:`draw_phase` writes, each as PNG and PDF:

* ``phase_diagram``: the min-min cosine over (R, axis value) on a diverging scale centred at 0, the attraction
  (min-min = 0) and collapse (min-min = ``collapse_level``, 0.99 by default) boundaries over it, and the regions
  that occur in the data named on the plot (:func:`classify`);
* ``phase_delta_gm``: the same with ``delta_gm`` (the distance to the orthogonal frame);
* ``phase_cosines``: min-min, maj-maj and maj-min cosines against R, one panel for each of up to four axis values;
* ``phase_gap``: the signed relative gap ``(loss - lower_bound) / max(1, |loss|)`` with the tolerance line: a
  point is certified exactly when it lies on or below it (the rule of ``solvers.certify``).

Points not certified carry a black "x". R is on a log axis with a tick at every sampled R; the axis values on a log
axis when they span a factor 10 or more. Beside the figures: ``phase_<key>.csv`` for every 2-D array (and
``phase_relative_gap.csv``), first row ``<axis>\\R,<ratios>``, then one row per axis value, a failed point an empty
cell; and ``phase_boundaries.csv`` (``kind,<axis>,R``).
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import TypeGuard

import matplotlib

matplotlib.use("Agg")
import matplotlib.patheffects as patheffects  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.transforms  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ufm import plots  # noqa: E402

__all__ = ["draw_phase", "phase_figures", "phase_tables", "classify", "read_phase", "ARRAYS", "REGIONS", "OF_LEVEL",
           "COLLAPSE", "FIGURES"]

ARRAYS = ("loss", "lower_bound", "min_min", "maj_maj", "maj_min", "delta_gm", "certified")
REGIONS = ("ETF-like", "minority attraction", "minority collapse", "OF")
OF_LEVEL = 1e-3  # delta_gm below this: the orthogonal frame
COLLAPSE = 0.99  # the min-min cosine of minority collapse, unless the dict says otherwise (``collapse_level``)
AXES = {"tau": ("taus", "temperature tau"), "weight_decay": ("weight_decays", "weight decay")}
PAIRS = [("min_min", "min-min", "tab:red", "o", "-"), ("maj_maj", "maj-maj", "tab:blue", "s", "--"),
         ("maj_min", "maj-min", "tab:green", "^", ":")]
BOUNDARY_STYLE = {"attraction": {"color": "black", "ls": "-", "marker": "o", "mfc": "white"},
                  "collapse": {"color": "black", "ls": "--", "marker": "s", "mfc": "black"}}
LABEL_TEXT = {"ETF-like": "ETF-like", "minority attraction": "minority\nattraction",
              "minority collapse": "minority\ncollapse", "OF": "OF"}
FAILED = "0.8"  # the colour of a failed point's cell


def _number(x) -> TypeGuard[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _table(phase, key, p, m, kind=float):
    """The 2-D array ``phase[key]`` as p x m: floats with NaN for None (``kind`` float), or objects."""
    rows = phase[key]
    if not isinstance(rows, list) or len(rows) != p or any(not isinstance(r, list) or len(r) != m for r in rows):
        raise ValueError(f"phase[{key!r}] must be {p} rows (one per axis value) of {m} values (one per ratio)")
    if kind is bool:
        for r in rows:
            for x in r:
                if x is not None and not isinstance(x, bool):
                    raise ValueError(f"phase[{key!r}]: every entry must be true, false or null, got {x!r}")
        return np.array(rows, dtype=object)
    for r in rows:
        for x in r:
            if x is not None and not _number(x):
                raise ValueError(f"phase[{key!r}]: every entry must be a finite number or null, got {x!r}")
    return np.array([[np.nan if x is None else float(x) for x in r] for r in rows], dtype=float)


def read_phase(phase: dict) -> dict:
    """Check ``phase`` and return what the figures need: ``axis``, ``axis_key`` (``taus``/``weight_decays``),
    ``axis_label``, ``values`` (p,), ``ratios`` (m,), the float arrays (p, m; NaN for null) under their keys,
    ``certified`` (p, m; objects True/False/None), ``loss_rows`` (the 2-D losses as given), ``tol``,
    ``boundaries``, ``collapse``, ``title``. Raises ``ValueError`` naming the key at fault."""
    if not isinstance(phase, dict):
        raise ValueError("phase must be a dict (the contents of phase.json)")
    axis = phase.get("axis")
    if axis not in AXES:
        raise ValueError(f"phase['axis'] must be 'tau' or 'weight_decay', got {axis!r}")
    key, label = AXES[axis]
    for k in ("ratios", key):
        v = phase.get(k)
        if not isinstance(v, list) or not v or not all(_number(x) for x in v):
            raise ValueError(f"phase[{k!r}] must be a non-empty list of finite numbers")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"phase[{k!r}] must be strictly increasing")
    ratios, values = np.array(phase["ratios"], float), np.array(phase[key], float)
    if ratios[0] < 1:
        raise ValueError(f"phase['ratios']: every R must be >= 1, got {ratios[0]!r}")
    p, m = len(values), len(ratios)
    losses = phase.get("loss")
    name = losses if isinstance(losses, str) else phase.get("loss_type")
    if isinstance(losses, str):
        losses = phase.get("losses")
    missing = [k for k in ARRAYS if k != "loss" and k not in phase] + (["loss"] if losses is None else [])
    if missing:
        raise ValueError(f"phase lacks {', '.join(repr(k) for k in missing)}")
    g = {"axis": axis, "axis_key": key, "axis_label": label, "values": values, "ratios": ratios, "loss_rows": losses}
    g["loss"] = _table({"loss": losses}, "loss", p, m)
    for k in ARRAYS[1:-1]:
        g[k] = _table(phase, k, p, m)
    g["certified"] = _table(phase, "certified", p, m, bool)
    tol = phase.get("tol")
    if not (_number(tol) and tol >= 0):
        raise ValueError(f"phase['tol'] must be a finite number >= 0, got {tol!r}")
    g["tol"] = float(tol)
    collapse = phase.get("collapse_level", COLLAPSE)
    g["collapse"] = float(collapse) if _number(collapse) else COLLAPSE
    bounds = phase.get("boundaries", {})
    if not isinstance(bounds, dict):
        raise ValueError("phase['boundaries'] must be an object {attraction: [...], collapse: [...]}")
    g["boundaries"] = {}
    for kind in ("attraction", "collapse"):
        pts = bounds.get(kind, [])
        if not isinstance(pts, list) or any(not isinstance(b, dict) or not _number(b.get(axis))
                                            or not (b.get("R") is None or _number(b["R"])) for b in pts):
            raise ValueError(f"phase['boundaries'][{kind!r}] must be a list of {{{axis!r}: value, 'R': R or null}}")
        g["boundaries"][kind] = sorted(((float(b[axis]), None if b.get("R") is None else float(b["R"])) for b in pts))
    parts = [(str(name).upper() if name else "") + ("+ReLU" if phase.get("nonneg") else "")]
    if phase.get("imbalance"):
        parts.append(f"{phase['imbalance']} imbalance")
    if phase.get("classes") is not None:
        parts.append(f"K = {phase['classes']}")
    if phase.get("dim") is not None:
        parts.append(f"d = {phase['dim']}")
    g["title"] = ", ".join(s for s in parts if s)
    g["K"] = phase.get("classes") if isinstance(phase.get("classes"), int) else None
    return g


def classify(min_min, delta_gm, collapse=COLLAPSE):
    """The region of every point (p, m; object array): ``"OF"`` where ``delta_gm < OF_LEVEL`` (an orthogonal
    frame: every cosine ~ 0), else by the min-min cosine: ``"ETF-like"`` below 0, ``"minority attraction"`` from 0
    to ``collapse``, ``"minority collapse"`` from ``collapse`` on; None where the value is missing (a failed
    point). Args: min_min, delta_gm: (p, m) float arrays, NaN for missing. collapse: the collapse level."""
    mm, dg = np.asarray(min_min, float), np.asarray(delta_gm, float)
    out = np.full(mm.shape, None, dtype=object)
    ok = np.isfinite(mm)
    out[ok & (mm < 0)] = "ETF-like"
    out[ok & (mm >= 0) & (mm < collapse)] = "minority attraction"
    out[ok & (mm >= collapse)] = "minority collapse"
    out[np.isfinite(dg) & (dg < OF_LEVEL)] = "OF"
    return out


def _log_axis(values) -> bool:
    """Whether the axis values go on a log axis: all positive and spanning a factor 10 or more."""
    values = np.asarray(values, float)
    return bool(values.min() > 0 and values.max() / values.min() >= 10 * (1 - 1e-9))


def _edges(values, log):
    """Cell edges around each value: midpoints between neighbours (geometric on a log axis), the ends mirrored."""
    v = np.asarray(values, float)
    t = np.log10(v) if log else v
    if len(t) == 1:
        h = 0.15 if log else (0.5 * abs(t[0]) or 0.5)
        e = np.array([t[0] - h, t[0] + h])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return 10 ** e if log else e


def _value_axis(ax, values, log, label, max_labels=8):
    """The y axis: log or linear, a tick at every axis value, labels thinned so that none overlap."""
    values = [float(v) for v in values]
    if log:
        ax.set_yscale("log")
    t = np.log10(values) if log else np.asarray(values)
    span = float(t[-1] - t[0])
    gap = span / max(1, max_labels - 1) * 0.999
    keep = []
    for v, s in zip(values, t):
        if not keep or s - keep[-1][1] >= gap:
            keep.append((v, s))
    if keep[-1][0] != values[-1]:
        if len(keep) > 1 and t[-1] - keep[-1][1] < gap:
            keep.pop()
        keep.append((values[-1], t[-1]))
    shown = {v for v, _ in keep}
    ax.set_yticks(values, [plots.fmt_value(v) if v in shown else "" for v in values])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylabel(label)


def _boundary_handles(ax, g):
    """Draw the two boundary curves (a null R breaks the line); return their legend handles."""
    out = []
    halo = [patheffects.withStroke(linewidth=3.2, foreground="white")]
    for kind, level in (("attraction", 0.0), ("collapse", g["collapse"])):
        pts = g["boundaries"][kind]
        style = BOUNDARY_STYLE[kind]
        reached = [(v, R) for v, R in pts if R is not None]
        label = f"{kind}: min-min = {level:g}" + ("" if reached else " (not reached in the range)")
        if reached:
            ax.plot([np.nan if R is None else R for _, R in pts], [v for v, _ in pts], lw=1.6, ms=4.5, zorder=6,
                    path_effects=halo, **style)
        out.append(Line2D([], [], lw=1.6, ms=4.5, label=label, **style) if reached else
                   Line2D([], [], lw=0, label=label, color="none"))
    return out


def _uncertified(g):
    cert = g["certified"]
    return [(i, j) for i in range(cert.shape[0]) for j in range(cert.shape[1]) if cert[i, j] is not True]


def _within(edges, k, frac, log):
    """A point of cell ``k`` (between ``edges[k]`` and ``edges[k + 1]``): its centre moved by ``frac`` of its
    width (on the axis's own scale)."""
    a, b = (math.log10(edges[k]), math.log10(edges[k + 1])) if log else (edges[k], edges[k + 1])
    t = (a + b) / 2 + frac * (b - a)
    return 10 ** t if log else t


def _region_text(ax, x, y, name):
    return ax.text(x, y, LABEL_TEXT[name], ha="center", va="center", fontsize=9, zorder=8,
                   bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.3", "alpha": 0.85})


def _label_regions(fig, ax, g, regions):
    """Name every region that occurs on the plot, each at the most interior of its cells whose label overlaps no
    label already placed (nor leaves the axes). Returns the texts."""
    renderer = fig.canvas.get_renderer()
    texts, placed = [], []
    log_y = _log_axis(g["values"])
    xe, ye = _edges(g["ratios"], True), _edges(g["values"], log_y)
    frame = ax.get_window_extent(renderer)  # labels stay inside it
    marks = []  # the boundary points and the "x" markers: a label should hide none of them
    for line in ax.get_lines():
        for x, y in line.get_xydata():
            if np.isfinite(x) and np.isfinite(y):
                px, py = ax.transData.transform((x, y))
                marks.append(matplotlib.transforms.Bbox([[px - 4, py - 4], [px + 4, py + 4]]))
    for name in REGIONS:
        mask = regions == name
        if not mask.any():
            continue
        depth = np.zeros(mask.shape, int)
        cur = mask.copy()
        while cur.any():  # erosion by the 8 neighbours: depth = cells to the region's edge (or the grid's)
            depth += cur
            pad = np.pad(cur, 1, constant_values=False)
            nxt = cur.copy()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    nxt &= pad[1 + di:1 + di + cur.shape[0], 1 + dj:1 + dj + cur.shape[1]]
            cur = nxt
        cells = np.argwhere(mask)
        centre = cells.mean(axis=0)
        order = sorted(map(tuple, cells), key=lambda c: (-depth[c], (c[0] - centre[0]) ** 2 + (c[1] - centre[1]) ** 2))
        fits = []  # (rank, position, box): 0 hides no marker nor label, 1 hides a marker, 2 another label
        for i, j in order[:200]:
            for dx, dy in ((0, 0), (0, 0.3), (0, -0.3), (0.3, 0), (-0.3, 0)):  # the centre, then nearby in the cell
                x, y = _within(xe, j, dx, True), _within(ye, i, dy, log_y)
                t = _region_text(ax, x, y, name)
                box = t.get_window_extent(renderer).expanded(1.12, 1.25)  # the rounded box around the text
                t.remove()
                # moved into the axes where it sticks out (near an edge it then covers a neighbouring cell)
                sx = max(0.0, frame.x0 + 2 - box.x0) - max(0.0, box.x1 - frame.x1 + 2)
                sy = max(0.0, frame.y0 + 2 - box.y0) - max(0.0, box.y1 - frame.y1 + 2)
                if sx or sy:
                    box = box.translated(sx, sy)
                    px, py = ax.transData.transform((x, y))
                    x, y = ax.transData.inverted().transform((px + sx, py + sy))
                free = not any(box.overlaps(b) for b in placed)
                clear = not any(box.overlaps(b) for b in marks)
                fits.append((0 if free and clear else 1 if free else 2, (x, y), box))
                if fits[-1][0] == 0:
                    break
            if fits[-1][0] == 0:
                break
        _, (x, y), box = min(fits, key=lambda f: f[0])
        texts.append(_region_text(ax, x, y, name))
        placed.append(box)
    return texts


def _map_figure(g, key):
    """``phase_diagram`` (key ``min_min``) or ``phase_delta_gm`` (key ``delta_gm``)."""
    A = g[key]
    log_y = _log_axis(g["values"])
    with plt.rc_context(plots.RC):
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        if key == "min_min":
            cmap, norm = plt.get_cmap("RdBu_r"), TwoSlopeNorm(vmin=-1.0, vcenter=0.0, vmax=1.0)
            bar = "min-min cosine (between minority class means)"
            what = "min-min cosine"
        else:
            top = float(np.nanmax(A)) if np.isfinite(A).any() else 1.0
            cmap, norm = plt.get_cmap("viridis"), Normalize(vmin=0.0, vmax=max(top, 1e-3))
            bar = "delta_gm (distance to the orthogonal frame)"
            what = "delta_gm"
        cmap = cmap.with_extremes(bad=FAILED)
        mesh = ax.pcolormesh(_edges(g["ratios"], True), _edges(g["values"], log_y), np.ma.masked_invalid(A),
                             cmap=cmap, norm=norm, shading="flat")
        cb = fig.colorbar(mesh, ax=ax, pad=0.02)
        cb.set_label(bar)
        plots.r_axis(ax, g["ratios"], max_labels=9)
        _value_axis(ax, g["values"], log_y, g["axis_label"])
        e = _edges(g["ratios"], True)
        ax.set_xlim(e[0], e[-1])
        ye = _edges(g["values"], log_y)
        ax.set_ylim(ye[0], ye[-1])
        handles = _boundary_handles(ax, g)
        bad = _uncertified(g)
        if bad:
            ax.plot([g["ratios"][j] for _, j in bad], [g["values"][i] for i, _ in bad],
                    **{**plots.UNCERTIFIED, "ms": 6, "label": "not certified"})
            handles.append(Line2D([], [], **{**plots.UNCERTIFIED, "ms": 6, "label": "not certified"}))
        if not np.isfinite(A).all():
            handles.append(Patch(fc=FAILED, ec="0.5", label="failed point (no value)"))
        ax.set_title(f"{g['title']}: {what}" if g["title"] else what)
        ncol = 1 if max(len(h.get_label()) for h in handles) > 38 else 2
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol, frameon=False)
        fig.tight_layout()
        _label_regions(fig, ax, g, classify(g["min_min"], g["delta_gm"], g["collapse"]))
    return fig


def _panels(p, most=4):
    """Up to ``most`` axis indices spread over 0..p-1, first and last included."""
    return sorted({int(round(x)) for x in np.linspace(0, p - 1, min(p, most))})


def _cosines_figure(g):
    idx = _panels(len(g["values"]))
    n = len(idx)
    nrows, ncols = (2, 2) if n == 4 else (1, n)
    with plt.rc_context(plots.RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows + 0.7), squeeze=False,
                                 sharey=True)
        any_x = False
        for ax, i in zip(axes.flat, idx):
            if g["K"]:
                ax.axhline(-1 / (g["K"] - 1), color="grey", lw=0.8, ls=(0, (4, 2)), zorder=1)
            ax.axhline(0.0, color="grey", lw=0.8, zorder=1)
            for k, (key, label, colour, marker, ls) in enumerate(PAIRS):
                x = plots.dodge(g["ratios"], k, len(PAIRS))
                y = g[key][i]
                ax.plot(x, y, color=colour, marker=marker, ls=ls, ms=4, lw=1.2, zorder=3)
                bad = [j for j in range(len(y)) if g["certified"][i, j] is not True and np.isfinite(y[j])]
                if bad:
                    any_x = True
                    ax.plot(x[bad], y[bad], **plots.UNCERTIFIED)
            plots.r_axis(ax, g["ratios"], max_labels=6)
            ax.set_title(f"{g['axis'].replace('_', ' ')} = {plots.fmt_value(g['values'][i])}")
            ax.set_ylim(-1.08, 1.08)
        for ax in axes[:, 0]:
            ax.set_ylabel("mean cosine")
        handles = [Line2D([], [], color=c, marker=mk, ls=ls, ms=4, label=lab) for _, lab, c, mk, ls in PAIRS]
        if g["K"]:
            handles.append(Line2D([], [], color="grey", lw=0.8, ls=(0, (4, 2)),
                                  label=f"ETF level -1/(K-1) = {-1 / (g['K'] - 1):.3g}"))
        handles.append(Line2D([], [], color="grey", lw=0.8, label="OF level 0"))
        if any_x:
            handles.append(Line2D([], [], **{**plots.UNCERTIFIED, "label": "not certified"}))
        ncol = min(3, len(handles))
        fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 0.0), frameon=False)
        fig.suptitle(f"{g['title']}: mean cosines between class means" if g["title"] else "mean cosines")
        legend_inches = 0.2 * math.ceil(len(handles) / ncol) + 0.1
        fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    return fig


def _relative_gaps(g):
    loss, lb = g["loss"], g["lower_bound"]
    return (loss - lb) / np.maximum(1.0, np.abs(loss))  # NaN where either is missing


def _gap_figure(g):
    rel = _relative_gaps(g)
    p = len(g["values"])
    with plt.rc_context(plots.RC):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        cmap = plt.get_cmap("viridis")
        log_v = _log_axis(g["values"])
        lo, hi = g["values"][0], g["values"][-1]
        norm = (matplotlib.colors.LogNorm if log_v else Normalize)(vmin=lo, vmax=hi if hi > lo else lo * 1.001 + 1e-12)
        colours = [cmap(0.9 * norm(v)) for v in g["values"]]  # the top of viridis is too pale on white
        any_x = False
        for i in range(p):
            ok = np.isfinite(rel[i])
            x = plots.dodge(g["ratios"], i, p, width=min(0.012, 0.06 / p))
            ax.plot(x[ok], rel[i][ok], ls="none", marker="o", ms=4.5, color=colours[i], alpha=0.9, zorder=3,
                    label=f"{g['axis'].replace('_', ' ')} = {plots.fmt_value(g['values'][i])}")
            bad = [j for j in range(len(x)) if ok[j] and g["certified"][i, j] is not True]
            if bad:
                any_x = True
                ax.plot(x[bad], rel[i][bad], **plots.UNCERTIFIED)
        tol = g["tol"]
        ax.axhline(tol, color="black", lw=1, ls="--", zorder=2, label=f"tolerance {tol:g}: certified on or below")
        if any_x:
            ax.plot([], [], **{**plots.UNCERTIFIED, "label": "not certified"})
        finite = rel[np.isfinite(rel)]
        plots.symlog_axis(ax, [float(v) for v in finite], tol)
        plots.r_axis(ax, g["ratios"], max_labels=9)
        ax.set_ylabel("(loss - lower bound) / max(1, |loss|)")
        missing = int((~np.isfinite(rel)).sum())
        title = f"{g['title']}: certificate gaps" if g["title"] else "certificate gaps"
        if missing:
            title += f" ({missing} without a bound not shown)"
        ax.set_title(title)
        handles, labels = ax.get_legend_handles_labels()
        if p > 8:  # a colour bar for the axis values instead of one legend entry each
            keep = [k for k, lab in enumerate(labels) if not lab.startswith(g["axis"].replace("_", " "))]
            handles, labels = [handles[k] for k in keep], [labels[k] for k in keep]
            sm = plt.cm.ScalarMappable(cmap=matplotlib.colors.ListedColormap(cmap(np.linspace(0, 0.9, 256))),
                                       norm=norm)
            cb = fig.colorbar(sm, ax=ax, pad=0.02)
            ticks = g["values"][_panels(p, 6)]
            cb.set_ticks(ticks, labels=[plots.fmt_value(v) for v in ticks])
            cb.ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            cb.set_label(g["axis_label"])
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
        fig.tight_layout()
    return fig


FIGURES = {"phase_diagram": lambda g: _map_figure(g, "min_min"), "phase_delta_gm": lambda g: _map_figure(g, "delta_gm"),
           "phase_cosines": _cosines_figure, "phase_gap": _gap_figure}


def phase_figures(phase: dict, names=None) -> dict:
    """The figures of ``phase`` (matplotlib ``Figure`` objects by file stem, not yet saved; the caller closes
    them). Args: phase: the ``phase.json`` dict. names: the stems to draw (default all of ``FIGURES``)."""
    g = read_phase(phase)
    return {name: FIGURES[name](g) for name in (names or FIGURES)}


def phase_tables(phase: dict) -> dict:
    """The CSV tables of ``phase``: ``{file stem: (header, rows)}``; the 2-D arrays with the values as given
    (``phase_relative_gap`` computed), the boundaries one row each."""
    g = read_phase(phase)
    axis = g["axis"]
    head = [f"{axis}\\R"] + [float(r) for r in phase["ratios"]]
    tables = {}
    rel = _relative_gaps(g)
    arrays = {"loss": g["loss_rows"], **{k: phase[k] for k in ARRAYS[1:]},
              "relative_gap": [[None if not np.isfinite(x) else float(x) for x in row] for row in rel]}
    for k, rows in arrays.items():
        tables[f"phase_{k}"] = (head, [[float(v)] + list(row) for v, row in zip(phase[g["axis_key"]], rows)])
    tables["phase_boundaries"] = (["kind", axis, "R"], [[kind, v, R] for kind in ("attraction", "collapse")
                                                        for v, R in g["boundaries"][kind]])
    return tables


def draw_phase(phase: dict, out_dir) -> list[pathlib.Path]:
    """Write the figures (PNG and PDF) and CSV tables of ``phase`` (the ``phase.json`` dict) into ``out_dir``.

    Args:
      phase: the dict (see the module's docstring); ``ValueError`` naming the key at fault when it is malformed.
      out_dir: the folder (created when missing).
    Returns:
      the paths written: ``phase_diagram``, ``phase_delta_gm``, ``phase_cosines``, ``phase_gap`` (.png, .pdf),
      then the CSVs.
    """
    tables = phase_tables(phase)  # checks the dict before anything is drawn
    os.makedirs(out_dir, exist_ok=True)
    paths, figs = [], phase_figures(phase)
    try:
        for name, fig in figs.items():
            paths += plots.save_figure(fig, str(out_dir), name)
    finally:
        for fig in figs.values():
            plt.close(fig)
    for name, (header, rows) in tables.items():
        paths.append(plots.write_csv(str(out_dir), name, header, rows))
    return [pathlib.Path(p) for p in paths]
