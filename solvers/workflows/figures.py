"""Figures of a training run (matplotlib, Agg backend): geometry vs epoch, and the class-mean Grams of the
network and the UFM side by side."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_history", "plot_grams"]


def plot_history(history, path, ufm=None, title=""):
    """``delta_gm``, ``etf_distance``, ``nc1`` (log) and the accuracies against the epoch; the UFM's
    ``delta_gm`` and ``etf_distance`` as dashed lines when ``ufm`` (a ``compare`` dict) is given."""
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for key, color in (("delta_gm", "C0"), ("etf_distance", "C1")):
        ax.plot(ep, [r[key] for r in history], color=color, label=key)
        if ufm is not None and ufm.get(key) is not None:
            ax.axhline(ufm[key], color=color, ls="--", lw=1, label=f"UFM {key}")
    ax.set_xlabel("epoch")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("distance to OF / ETF")
    ax = axes[1]
    nc1 = np.array([np.nan if r["nc1"] is None else r["nc1"] for r in history], dtype=float)
    ax.semilogy(ep, np.maximum(nc1, 1e-12), color="C2")
    ax.set_xlabel("epoch")
    ax.set_title("NC1")
    ax = axes[2]
    for key in ("train_accuracy", "test_accuracy", "probe_test_accuracy"):
        if key in history[0]:
            ax.plot(ep, [r[key] for r in history], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grams(net, ufm, path, title=""):
    """Heatmaps of the cosines between class means: the network's (``net``, K x K) beside the UFM's."""
    mats = [("network", np.asarray(net))] + ([] if ufm is None else [("UFM", np.asarray(ufm))])
    fig, axes = plt.subplots(1, len(mats), figsize=(4.6 * len(mats) + 0.6, 4.2), squeeze=False)
    for ax, (name, G) in zip(axes[0], mats):
        im = ax.imshow(G, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(f"{name}: cosines of class means")
        ax.set_xlabel("class")
        ax.set_ylabel("class")
        if len(G) <= 12:
            for (i, j), v in np.ndenumerate(G):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
