"""Figures of a sweep, drawn from its records alone (the lines of ``results.jsonl``).

Each record holds ``R``, ``tau``, ``loss_type``, ``nonneg``, ``batching``, ``mean_cosines`` {``maj_maj``,
``min_min``, ``maj_min``}, ``delta_gm``, ``K`` and, when certified, ``loss``, ``lower_bound``, ``gap`` and
``certified``. A record with ``tau = None`` (CE: a classifier has no temperature) is drawn once, in its own panel
or row marked "(no tau)", never repeated under every temperature. Figures are written as PNG and PDF, each with a
CSV of the plotted values beside it:

* ``cosines_vs_R``: one row per cosine (maj-maj, min-min, maj-min), one column per tau plus one for the variants
  without a tau; in each panel one line per variant (SC, SC+ReLU, ...), told apart by colour, marker and
  linestyle and nudged sideways by a small fraction of the axis where several share an R; the ETF level
  ``-1/(K-1)`` and the OF level ``0`` marked;
* ``heatmaps``: ``delta_gm`` and the min-min cosine over (R, tau), one row per variant (a one-line row for a
  variant without a tau);
* ``gaps``: the signed relative gap ``(loss - lower_bound) / max(1, |loss|)`` of every point with a bound (symlog
  axis) and the tolerance line: a point is certified exactly when it lies on or below the line, the rule of
  ``solvers.certify`` (``gap <= tol * max(1, |loss|)``).

Points not certified (``certified`` not True: the proof failed or was not attempted) carry a black "x" (no
variant is drawn in black). The R axis is logarithmic with the sampled R values as its ticks. Records of failed
points (``status = "failed"``) are left out. Each file is drawn under a temporary name and renamed into place, so
a figure is complete or absent, never half written (a Ctrl-C included).
"""
from __future__ import annotations

import csv
import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

__all__ = ["variant", "plot_all", "drawable", "cosines_vs_R", "heatmaps", "gaps", "cosines_figure",
           "heatmaps_figure", "gaps_figure", "relative_gap", "is_certified", "r_axis", "save_figure", "write_csv",
           "fmt_value", "dodge", "symlog_axis", "PLOT_KEYS", "DEFAULT_TOL", "UNCERTIFIED", "RC"]

PLOT_KEYS = ("R", "tau", "loss_type", "nonneg", "K", "mean_cosines", "delta_gm")  # what a solved record needs
DEFAULT_TOL = 1e-6  # the default ``tol`` of ``solvers.certify.certify``, for records that do not store theirs
RC = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "legend.fontsize": 8, "figure.titlesize": 10}  # readable when a figure is printed at paper width

PAIRS = [("maj_maj", "maj-maj", "-"), ("min_min", "min-min", "--"), ("maj_min", "maj-min", ":")]
# No variant is black or grey: black marks uncertified points, grey the reference levels.
COLOURS = {"SC": "tab:blue", "SC+ReLU": "tab:orange", "CE": "tab:green", "CE+ReLU": "tab:purple",
           "BCL": "tab:brown", "BCL+ReLU": "tab:pink"}
MARKERS = {"SC": "o", "SC+ReLU": "s", "CE": "^", "CE+ReLU": "D", "BCL": "v", "BCL+ReLU": "P"}
SPARE_COLOURS = ["tab:cyan", "tab:olive", "tab:red", "navy", "darkgoldenrod"]
SPARE_MARKERS = ["<", ">", "h", "*", "p"]
BATCH_STYLES = ["-", "--", "-.", ":"]
UNCERTIFIED: dict[str, Any] = {"marker": "x", "color": "black", "ls": "none", "ms": 7, "mew": 1.5, "zorder": 5}


def variant(rec) -> str:
    """``SC``, ``SC+ReLU``, ``CE`` or ``CE+ReLU``, with the batching appended when it is not the full batch."""
    name = rec["loss_type"].upper() + ("+ReLU" if rec["nonneg"] else "")
    return name if rec.get("batching", "full") == "full" else f"{name} [{rec['batching']}]"


def is_certified(rec) -> bool:
    """Whether the record holds a certificate that proved its point (``certified`` is True)."""
    return rec.get("certified") is True


def relative_gap(loss, lower_bound):
    """``(loss - lower_bound) / max(1, |loss|)``, None when either is None: ``solvers.certify`` certifies a point
    exactly when this is ``<= tol``."""
    if loss is None or lower_bound is None:
        return None
    return (loss - lower_bound) / max(1.0, abs(loss))


def fmt_value(x) -> str:
    """A grid value as a tick label: ``3``, ``100``, ``0.5``, ``1e+05``."""
    if float(x).is_integer() and abs(x) < 1e5:
        return str(int(x))
    return f"{x:.3g}"


def _styles(variants):
    """A distinct (colour, marker, linestyle) per variant: the colour and marker of its loss and ReLU, the
    linestyle of its batching."""
    out, spare = {}, 0
    batchings = sorted({v.split(" ", 1)[1] if " " in v else "" for v in variants})
    for v in variants:
        base, batch = (v.split(" ", 1) + [""])[:2]
        if base in COLOURS:
            colour, marker = COLOURS[base], MARKERS[base]
        else:
            colour, marker = SPARE_COLOURS[spare % len(SPARE_COLOURS)], SPARE_MARKERS[spare % len(SPARE_MARKERS)]
            spare += 1
        out[v] = {"color": colour, "marker": marker, "ls": BATCH_STYLES[batchings.index(batch) % len(BATCH_STYLES)]}
    return out


def r_axis(ax, Rs, max_labels=7, label="imbalance ratio R"):
    """Make ``ax``'s x axis logarithmic with a tick at every sampled R; labels thinned (every tick kept) so that at
    most about ``max_labels`` are printed and none overlap. Args: ax: the Axes. Rs: the sampled R values (> 0).
    max_labels: the most labels for the panel's width. label: the axis label."""
    Rs = sorted({float(r) for r in Rs})
    ax.set_xscale("log")
    lo, hi = math.log10(Rs[0]), math.log10(Rs[-1])
    span = hi - lo
    pad = 0.06 * span if span > 0 else 0.1
    ax.set_xlim(10 ** (lo - pad), 10 ** (hi + pad))
    gap = span / max(1, max_labels - 1) * 0.999
    keep = []
    for r in Rs:  # greedy from the left, each label at least ``gap`` decades after the previous one
        if not keep or math.log10(r) - math.log10(keep[-1]) >= gap:
            keep.append(r)
    if keep[-1] != Rs[-1]:  # the largest R always labelled: it replaces the last label when too close to it
        if len(keep) > 1 and math.log10(Rs[-1]) - math.log10(keep[-1]) < gap:
            keep.pop()
        keep.append(Rs[-1])
    ax.set_xticks(Rs, [fmt_value(r) if r in keep else "" for r in Rs])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if label:
        ax.set_xlabel(label)


def dodge(Rs, k, n, width=0.012):
    """``Rs`` shifted sideways (in log space, by ``width`` of the axis span per step) for the ``k``-th of ``n``
    series, so that series with equal values stay visible side by side."""
    Rs = np.asarray(Rs, dtype=float)
    if n <= 1 or len(Rs) == 0:
        return Rs
    span = max(math.log10(max(Rs) / min(Rs)), 1.0)
    return Rs * 10 ** (width * span * (k - (n - 1) / 2))


def save_figure(fig, out, name) -> list[str]:
    """Write ``fig`` as ``out/name.png`` and ``out/name.pdf`` (each under a temporary name, then renamed) and
    close it; returns the two paths."""
    paths = []
    try:
        for ext in ("png", "pdf"):
            path = os.path.join(out, f"{name}.{ext}")
            tmp = os.path.join(out, f".{name}.tmp{os.getpid()}.{ext}")
            try:
                fig.savefig(tmp, dpi=150, bbox_inches="tight")
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def _cell(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    return str(x)


def write_csv(out, name, header, rows) -> str:
    """Write ``out/name.csv`` atomically: ``header`` then ``rows``; None (and NaN) as an empty cell, booleans as
    ``true``/``false``, floats with every digit (``repr``). Returns the path."""
    path = os.path.join(out, f"{name}.csv")
    tmp = os.path.join(out, f".{name}.tmp{os.getpid()}.csv")
    try:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for row in rows:
                w.writerow([_cell(x) for x in row])
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _taus(records):
    """The temperatures of the sweep's records that have one."""
    return sorted({r["tau"] for r in records if r["tau"] is not None})


def _cos(r, key):
    mc = r.get("mean_cosines")
    return None if not isinstance(mc, dict) else mc.get(key)


def _columns(records):
    """The panels' columns: one per tau, then one (``None``) for the variants without a tau."""
    cols = _taus(records)
    return cols + ([None] if any(r["tau"] is None for r in records) else [])


def _column_title(records, tau):
    if tau is not None:
        return f"tau = {fmt_value(tau)}"
    names = sorted({variant(r) for r in records if r["tau"] is None})
    return f"{', '.join(names)} (no tau)"


def _legend_handles(styles, extra):
    hs = [Line2D([], [], color=s["color"], marker=s["marker"], ls=s["ls"], ms=5, label=v) for v, s in styles.items()]
    return hs + extra


def cosines_figure(records):
    """The ``cosines_vs_R`` figure and its CSV: returns ``(fig, header, rows)``, one row per plotted point."""
    cols = _columns(records)
    variants = sorted({variant(r) for r in records})
    styles = _styles(variants)
    K = records[0]["K"]
    Rs = sorted({r["R"] for r in records})
    rows = []
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(PAIRS), len(cols), figsize=(2.7 * len(cols) + 0.6, 2.0 * len(PAIRS) + 0.9),
                                 squeeze=False, sharey=True, sharex=True)
        any_x = False
        for c, tau in enumerate(cols):
            here = [r for r in records if r["tau"] == tau]
            vs = sorted({variant(r) for r in here})
            for p, (key, label, _) in enumerate(PAIRS):
                ax = axes[p][c]
                ax.axhline(-1 / (K - 1), color="grey", lw=0.8, ls=(0, (4, 2)), zorder=1)
                ax.axhline(0.0, color="grey", lw=0.8, zorder=1)
                for k, v in enumerate(vs):
                    pts = sorted((r["R"], _cos(r, key), is_certified(r)) for r in here
                                 if variant(r) == v and _cos(r, key) is not None)
                    if not pts:
                        continue
                    x = dodge([q[0] for q in pts], k, len(vs))
                    y = [q[1] for q in pts]
                    ax.plot(x, y, ms=4, lw=1.2, zorder=3, **styles[v])
                    bad = [i for i, q in enumerate(pts) if not q[2]]
                    if bad:
                        any_x = True
                        ax.plot(x[bad], [y[i] for i in bad], **UNCERTIFIED)
                r_axis(ax, Rs, max_labels=6, label="imbalance ratio R" if p == len(PAIRS) - 1 else "")
                if c == 0:
                    ax.set_ylabel(f"{label} cosine")
                if p == 0:
                    ax.set_title(_column_title(records, tau))
        for r in sorted(records, key=lambda r: (variant(r), -1 if r["tau"] is None else r["tau"], r["R"])):
            rows.append([variant(r), r["loss_type"], r["nonneg"], r.get("batching", "full"), r["tau"], r["R"],
                         _cos(r, "maj_maj"), _cos(r, "min_min"), _cos(r, "maj_min"), r.get("certified")])
        extra = [Line2D([], [], color="grey", lw=0.8, ls=(0, (4, 2)), label=f"ETF level -1/(K-1) = {-1 / (K - 1):.3g}"),
                 Line2D([], [], color="grey", lw=0.8, label="OF level 0")]
        if any_x:
            extra.append(Line2D([], [], **{**UNCERTIFIED, "label": "not certified"}))
        ncol = min(4, len(styles) + len(extra))
        fig.legend(handles=_legend_handles(styles, extra), loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 0.0),
                   frameon=False)
        fig.suptitle(f"Mean cosines between class means against imbalance (K = {K})")
        legend_inches = 0.2 * math.ceil((len(styles) + len(extra)) / ncol) + 0.1
        fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    header = ["variant", "loss_type", "nonneg", "batching", "tau", "R", "maj_maj", "min_min", "maj_min", "certified"]
    return fig, header, rows


def cosines_vs_R(records, out) -> list[str]:
    """Draw ``cosines_vs_R`` (.png, .pdf, .csv) into ``out``; returns the paths."""
    fig, header, rows = cosines_figure(records)
    return save_figure(fig, out, "cosines_vs_R") + [write_csv(out, "cosines_vs_R", header, rows)]


def _heat(records, v, key):
    Rs = sorted({r["R"] for r in records})
    mine = [r for r in records if variant(r) == v]
    taus = sorted({r["tau"] for r in mine if r["tau"] is not None}) or [None]
    H = np.full((len(taus), len(Rs)), np.nan)
    C = np.ones((len(taus), len(Rs)), dtype=bool)
    for r in mine:
        if r["tau"] not in taus:
            continue  # a variant with and without a tau: its rows with one
        i, j = taus.index(r["tau"]), Rs.index(r["R"])
        val = r.get(key) if key != "min_min" else _cos(r, "min_min")
        H[i, j] = np.nan if val is None else val
        C[i, j] = is_certified(r)
    return Rs, taus, H, C


def heatmaps_figure(records):
    """The ``heatmaps`` figure and its CSV: returns ``(fig, header, rows)``."""
    variants = sorted({variant(r) for r in records}, key=lambda v: (all(r["tau"] is None for r in records
                                                                         if variant(r) == v), v))
    top = max([1.0] + [r["delta_gm"] for r in records if r.get("delta_gm") is not None])
    heights = [max(1, len(_heat(records, v, "delta_gm")[1])) + 1.2 for v in variants]
    rows, any_x = [], False
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(variants), 2, figsize=(9, 0.55 * sum(heights) + 0.8), squeeze=False,
                                 gridspec_kw={"height_ratios": heights})
        for row, v in zip(axes, variants):
            for ax, key, title, cmap in [(row[0], "delta_gm", "delta_gm (0 = orthogonal frame)", "viridis"),
                                         (row[1], "min_min", "min-min cosine", "RdBu_r")]:
                Rs, taus, H, C = _heat(records, v, key)
                kw = {"vmin": -1, "vmax": 1} if key == "min_min" else {"vmin": 0, "vmax": top}  # one scale for all
                im = ax.imshow(H, origin="lower", aspect="auto", cmap=cmap, **kw)
                ax.set_xticks(range(len(Rs)), [fmt_value(R) for R in Rs])
                notau = taus == [None]
                ax.set_yticks([] if notau else range(len(taus)), [] if notau else [fmt_value(t) for t in taus])
                ax.set_xlabel("R")
                ax.set_ylabel("no tau" if notau else "tau")
                ax.set_title(f"{v}{' (no tau)' if notau else ''}: {title}")
                for i in range(H.shape[0]):
                    for j in range(H.shape[1]):
                        if np.isfinite(H[i, j]):
                            r, g, b, _ = im.cmap(im.norm(H[i, j]))
                            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # readable
                            ax.text(j, i, f"{H[i, j]:.2f}", ha="center", va="center", fontsize=7, color=ink)
                            if not C[i, j]:
                                any_x = True
                                ax.plot([j + 0.34], [i + 0.3], **{**UNCERTIFIED, "color": ink, "ms": 5})
                fig.colorbar(im, ax=ax)
        if any_x:
            fig.text(0.01, 0.0, "x in a cell: point not certified", fontsize=8, va="bottom")
        fig.tight_layout(rect=(0, 0.02 if any_x else 0, 1, 1))
    for r in sorted(records, key=lambda r: (variant(r), -1 if r["tau"] is None else r["tau"], r["R"])):
        rows.append([variant(r), r["tau"], r["R"], r.get("delta_gm"), _cos(r, "min_min"), r.get("certified")])
    return fig, ["variant", "tau", "R", "delta_gm", "min_min", "certified"], rows


def heatmaps(records, out) -> list[str]:
    """Draw ``heatmaps`` (.png, .pdf, .csv) into ``out``; returns the paths."""
    fig, header, rows = heatmaps_figure(records)
    return save_figure(fig, out, "heatmaps") + [write_csv(out, "heatmaps", header, rows)]


def symlog_axis(ax, values, tol):
    """A symlog y axis for signed relative gaps: linear within the decade of the smallest nonzero |value| (never
    above ``tol / 100``, never below 1e-16), logarithmic outside, room for the tolerance line, and at most about
    eight labelled decades in all (no label crowding near 0)."""
    nz = [abs(v) for v in values if v]
    lin = max(1e-16, min([tol / 100 if tol > 0 else 1e-12] + [10.0 ** math.floor(math.log10(a)) for a in nz]))
    e_lin = round(math.log10(lin))
    top = max([tol] + [v for v in values if v > 0]) * 5
    neg = [-v for v in values if v < 0]
    bottom = max(neg) * 5 if neg else lin
    ax.set_yscale("symlog", linthresh=lin, linscale=0.6)
    ax.set_ylim(-bottom, top)
    sides = [(1, list(range(e_lin + 1, math.floor(math.log10(top)) + 1)))]
    if neg:
        sides.append((-1, list(range(e_lin + 1, math.floor(math.log10(bottom)) + 1))))
    step = max(1, math.ceil(sum(len(es) for _, es in sides) / 8))  # one step for both sides: even spacing
    ticks = [0.0] + [sign * 10.0 ** e for sign, es in sides for e in es if (es[-1] - e) % step == 0]
    ax.set_yticks(sorted(ticks))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.axhline(0.0, color="grey", lw=0.6, zorder=1)


def gaps_figure(records):
    """The ``gaps`` figure and its CSV: returns ``(fig, header, rows)``."""
    variants = sorted({variant(r) for r in records})
    styles = _styles(variants)
    Rs = sorted({r["R"] for r in records})
    rows, shown, missing, any_x = [], [], 0, False
    for r in sorted(records, key=lambda r: (variant(r), -1 if r["tau"] is None else r["tau"], r["R"])):
        rel = relative_gap(r.get("loss"), r.get("lower_bound"))
        tol = DEFAULT_TOL if r.get("tol") is None else r["tol"]
        rows.append([variant(r), r["tau"], r["R"], r.get("loss"), r.get("lower_bound"),
                     None if rel is None else r.get("loss") - r.get("lower_bound"), rel, tol, r.get("certified")])
        if rel is None:
            missing += 1
        else:
            shown.append((r, rel, tol))
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for k, v in enumerate(variants):
            pts = [(r["R"], rel, is_certified(r)) for r, rel, _ in shown if variant(r) == v]
            if not pts:
                continue
            x = dodge([p[0] for p in pts], k, len(variants))
            y = [p[1] for p in pts]
            s = styles[v]
            ax.plot(x, y, ls="none", marker=s["marker"], color=s["color"], ms=5, alpha=0.85, label=v, zorder=3)
            bad = [i for i, p in enumerate(pts) if not p[2]]
            if bad:
                any_x = True
                ax.plot(x[bad], [y[i] for i in bad], **UNCERTIFIED)
        tols = sorted({t for _, _, t in shown}) or [DEFAULT_TOL]
        for t in tols:
            ax.axhline(t, color="black", lw=1, ls="--", zorder=2, label=f"tolerance {t:g}: certified on or below")
        if any_x:
            ax.plot([], [], **{**UNCERTIFIED, "label": "not certified"})
        symlog_axis(ax, [rel for _, rel, _ in shown], max(tols))
        r_axis(ax, Rs, max_labels=10)
        ax.set_ylabel("(loss - lower bound) / max(1, |loss|)")
        title = "Certificate gaps, signed and relative"
        if missing:
            title += f" ({missing} point{'s' if missing > 1 else ''} without a bound not shown)"
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
        fig.tight_layout()
    header = ["variant", "tau", "R", "loss", "lower_bound", "gap", "relative_gap", "tol", "certified"]
    return fig, header, rows


def gaps(records, out) -> list[str]:
    """Draw ``gaps`` (.png, .pdf, .csv) into ``out``; returns the paths."""
    fig, header, rows = gaps_figure(records)
    return save_figure(fig, out, "gaps") + [write_csv(out, "gaps", header, rows)]


def drawable(records, lines=None) -> list[dict]:
    """The records of solved points; ``ValueError`` naming the first record (``record I``, or ``line N`` when
    ``lines`` gives their line numbers) that lacks a key the figures need or holds a value of the wrong kind."""
    out = []
    for i, r in enumerate(records, 1):
        where, i = ("record", i) if lines is None else ("line", lines[i - 1])
        if not isinstance(r, dict):
            raise ValueError(f"{where} {i}: not a JSON object")
        if r.get("status") == "failed":
            continue
        missing = [k for k in PLOT_KEYS if k not in r]
        if missing:
            raise ValueError(f"{where} {i}: missing the key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        mc = r["mean_cosines"]
        if not isinstance(mc, dict) or any(k not in mc for k, _, _ in PAIRS):
            raise ValueError(f"{where} {i}: mean_cosines must be an object with maj_maj, min_min and maj_min")
        if not isinstance(r["R"], (int, float)) or isinstance(r["R"], bool) or r["R"] <= 0:
            raise ValueError(f"{where} {i}: R must be a positive number, got {r['R']!r}")
        if not isinstance(r["K"], int) or r["K"] < 2:
            raise ValueError(f"{where} {i}: K must be an integer >= 2, got {r['K']!r}")
        if not isinstance(r["loss_type"], str):
            raise ValueError(f"{where} {i}: loss_type must be a string, got {r['loss_type']!r}")
        out.append(r)
    return out


def plot_all(records, out) -> list[str]:
    """Draw every figure of a sweep into ``out`` from the records of its solved points; returns the paths
    written (PNG, PDF and CSV of each figure). Raises ``ValueError`` when no record can be drawn or one lacks a
    key (``drawable``)."""
    records = drawable(records)
    if not records:
        raise ValueError("no solved point to plot")
    return cosines_vs_R(records, out) + heatmaps(records, out) + gaps(records, out)
