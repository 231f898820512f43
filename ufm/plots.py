"""Figures of a sweep, drawn from its records alone (the lines of ``results.jsonl``).

Each record holds ``R``, ``tau``, ``loss_type``, ``nonneg``, ``batching``, ``mean_cosines`` {``maj_maj``,
``min_min``, ``maj_min``}, ``delta_gm``, ``gap``, ``K``. Figures are written as PNG and PDF:

* ``cosines_vs_R``: mean cosines maj-maj / min-min / maj-min against R (log axis), one panel per tau, one
  colour per variant (SC, SC+ReLU, CE), with the ETF level ``-1/(K-1)`` and the OF level ``0`` marked;
* ``heatmaps``: ``delta_gm`` and the min-min cosine over (R, tau), one row per variant;
* ``gaps``: the certified gap of every point (log axis) against the tolerance.

Records of failed points (``status = "failed"``) are left out. Each file is drawn under a temporary name and
renamed into place, so a figure is complete or absent, never half written (a Ctrl-C included).
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["variant", "plot_all", "drawable", "cosines_vs_R", "heatmaps", "gaps", "PLOT_KEYS"]

PLOT_KEYS = ("R", "tau", "loss_type", "nonneg", "K", "mean_cosines", "delta_gm")  # what a solved record needs


PAIRS = [("maj_maj", "maj-maj", "-"), ("min_min", "min-min", "--"), ("maj_min", "maj-min", ":")]
COLOURS = {"SC": "tab:blue", "SC+ReLU": "tab:orange", "CE": "tab:green", "CE+ReLU": "tab:red"}


def variant(rec) -> str:
    """``SC``, ``SC+ReLU``, ``CE`` or ``CE+ReLU``, with the batching appended when it is not the full batch."""
    name = rec["loss_type"].upper() + ("+ReLU" if rec["nonneg"] else "")
    return name if rec.get("batching", "full") == "full" else f"{name} [{rec['batching']}]"


def _colour(v):
    return COLOURS.get(v.split(" ")[0], None)


def _save(fig, out, name):
    paths = []
    try:
        for ext in ("png", "pdf"):
            path = os.path.join(out, f"{name}.{ext}")
            tmp = os.path.join(out, f".{name}.tmp{os.getpid()}.{ext}")
            try:
                fig.savefig(tmp, dpi=120, bbox_inches="tight")
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def _taus(records):
    """The temperatures of the sweep (CE records carry ``tau = None``: they belong to every tau)."""
    return sorted({r["tau"] for r in records if r["tau"] is not None}) or [None]


def _at(r, tau):
    return r["tau"] is None or r["tau"] == tau


def _series(records, v, tau, key):
    pts = sorted((r["R"], r["mean_cosines"][key]) for r in records
                 if variant(r) == v and _at(r, tau) and r["mean_cosines"][key] is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def cosines_vs_R(records, out):
    taus = _taus(records)
    variants = sorted({variant(r) for r in records})
    K = records[0]["K"]
    fig, axes = plt.subplots(1, len(taus), figsize=(4.2 * len(taus), 3.6), squeeze=False, sharey=True)
    for ax, tau in zip(axes[0], taus):
        ax.axhline(-1 / (K - 1), color="grey", lw=1, alpha=0.7)
        ax.axhline(0.0, color="black", lw=1, alpha=0.7)
        ax.text(1.0, -1 / (K - 1), " ETF", va="bottom", fontsize=8, color="grey")
        ax.text(1.0, 0.0, " OF", va="bottom", fontsize=8)
        for v in variants:
            for key, label, ls in PAIRS:
                x, y = _series(records, v, tau, key)
                if x:
                    ax.plot(x, y, ls, marker="o", ms=3, color=_colour(v), label=f"{v} {label}")
        ax.set_xscale("log")
        ax.set_title("CE (no tau)" if tau is None else f"tau = {tau:g}")
        ax.set_xlabel("imbalance ratio R")
    axes[0][0].set_ylabel("mean cosine between class means")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Geometry of the minimiser vs imbalance (K = {K})")
    return _save(fig, out, "cosines_vs_R")


def _heat(records, v, key):
    Rs = sorted({r["R"] for r in records})
    taus = _taus(records)
    H = np.full((len(taus), len(Rs)), np.nan)
    for r in records:
        if variant(r) == v:
            val = r[key] if key != "min_min" else r["mean_cosines"]["min_min"]
            for i, tau in enumerate(taus):
                if _at(r, tau):
                    H[i, Rs.index(r["R"])] = np.nan if val is None else val
    return Rs, taus, H


def heatmaps(records, out):
    variants = sorted({variant(r) for r in records})
    top = max([1.0] + [r["delta_gm"] for r in records if r.get("delta_gm") is not None])
    fig, axes = plt.subplots(len(variants), 2, figsize=(9, 3.0 * len(variants)), squeeze=False)
    for row, v in zip(axes, variants):
        for ax, key, title, cmap in [(row[0], "delta_gm", "delta_gm (0 = orthogonal frame)", "viridis"),
                                     (row[1], "min_min", "min-min cosine (minority attraction)", "coolwarm")]:
            Rs, taus, H = _heat(records, v, key)
            kw = {"vmin": -1, "vmax": 1} if key == "min_min" else {"vmin": 0, "vmax": top}  # one scale for all
            im = ax.imshow(H, origin="lower", aspect="auto", cmap=cmap, **kw)
            ax.set_xticks(range(len(Rs)), [f"{R:g}" for R in Rs])
            ax.set_yticks(range(len(taus)), ["-" if t is None else f"{t:g}" for t in taus])
            ax.set_xlabel("R")
            ax.set_ylabel("tau")
            ax.set_title(f"{v}: {title}", fontsize=9)
            for i in range(H.shape[0]):
                for j in range(H.shape[1]):
                    if np.isfinite(H[i, j]):
                        r, g, b, _ = im.cmap(im.norm(H[i, j]))
                        ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"  # readable on the cell
                        ax.text(j, i, f"{H[i, j]:.2f}", ha="center", va="center", fontsize=7, color=ink)
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return _save(fig, out, "heatmaps")


def gaps(records, out, tol=1e-6):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    variants = sorted({variant(r) for r in records})
    for v in variants:
        pts = [(r["R"], r["gap"]) for r in records if variant(r) == v and r.get("gap") is not None]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, np.maximum(np.abs(y), 1e-16), s=14, color=_colour(v), label=v)
    ax.axhline(tol, color="red", lw=1, ls="--", label=f"tolerance {tol:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("imbalance ratio R")
    ax.set_ylabel("|loss - lower bound| (certified gap)")
    ax.set_title("Certificate gaps: below the line = proven global minimum")
    ax.legend(fontsize=7)
    return _save(fig, out, "gaps")


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
    written. Raises ``ValueError`` when no record can be drawn or one lacks a key (``drawable``)."""
    records = drawable(records)
    if not records:
        raise ValueError("no solved point to plot")
    return cosines_vs_R(records, out) + heatmaps(records, out) + gaps(records, out)
