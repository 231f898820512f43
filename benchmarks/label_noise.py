"""Label-noise experiment (Graf et al. 2021, §7 of docs/theory.md): steps until 100% training accuracy against
the fraction of flipped training labels, for SC and CE.

    python -m benchmarks.label_noise [--dataset digits] [--fractions 0,0.1,0.2,0.3,0.4] [--seeds 0,1]
                                     [--max-epochs 400] [--arch mlp]

Each point trains an encoder (defaults of ``ufm train``: MLP width 512, dim 128, ReLU, SGD lr 0.1 momentum 0.9,
weight decay 5e-4, tau 0.1) on the balanced training set with ``round(p N)`` labels moved to another class,
``shuffled:128`` batches and a **constant** learning rate, and stops after the first epoch whose training
accuracy is 100% (SC: nearest class centre of the normalised training embeddings against the noisy labels; CE:
the network's classifier). Steps are counted at epoch ends (resolution: one epoch). A point that does not fit
within ``--max-epochs`` is reported as not fitted (``steps_to_fit`` null).

Points are appended to ``benchmarks/results/label_noise.jsonl`` as they finish (a rerun skips the points already
there: ``--fresh`` starts over); the summary goes to ``label_noise.json``, the plot to ``label_noise.png``, and a
markdown table is printed.
"""
import argparse
import os
import statistics
import time

from solvers.deepnet.train import TrainConfig, train
from ufm.records import write_json

from .machine import describe
from .store import RESULTS, open_store, run_once


def _floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def run_point(dataset, arch, loss, p, seed, max_epochs, batch):
    cfg = TrainConfig(dataset=dataset, arch=arch, loss=loss, label_noise=p, seed=seed, epochs=max_epochs,
                      batching=f"shuffled:{batch}", schedule="constant", probe=False)
    t0 = time.perf_counter()
    r = train(cfg, progress=False, until_fit=True)
    return {"steps_to_fit": r.steps_to_fit, "epochs_run": len(r.history), "steps_per_epoch":
            r.history[0]["step"], "final_train_accuracy": r.final["train_accuracy"],
            "test_accuracy": r.final["test_accuracy"], "flipped": r.data.info["flipped"],
            "n_train": r.data.info["n_train"], "seconds": time.perf_counter() - t0}


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for loss, marker, color in (("sc", "o", "C0"), ("ce", "s", "C1")):
        rows = [r for r in summary if r["loss"] == loss and r["median_steps_to_fit"] is not None]
        ax.plot([r["label_noise"] for r in rows], [r["median_steps_to_fit"] for r in rows], marker=marker,
                color=color, label=f"{loss.upper()} (median)")
        seeds = [(r["label_noise"], s) for r in summary if r["loss"] == loss for s in r["steps_to_fit"] if s]
        ax.scatter(*zip(*seeds), marker=marker, color=color, alpha=0.3, s=14)
    ax.set_xlabel("fraction of flipped training labels")
    ax.set_ylabel("steps to 100% training accuracy")
    ax.set_title("label noise: steps to fit (faint: single seeds)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits", choices=["digits", "mnist1d"])
    ap.add_argument("--arch", default="mlp")
    ap.add_argument("--fractions", type=_floats, default=_floats("0,0.1,0.2,0.3,0.4"))
    ap.add_argument("--seeds", type=_ints, default=_ints("0,1"))
    ap.add_argument("--losses", default="sc,ce")
    ap.add_argument("--max-epochs", type=int, default=400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--fresh", action="store_true", help="forget the points of earlier runs")
    a = ap.parse_args(argv)
    store, done = open_store("label_noise", a.fresh)
    losses = a.losses.split(",")
    for loss in losses:
        for p in a.fractions:
            for seed in a.seeds:
                key = {"dataset": a.dataset, "arch": a.arch, "loss": loss, "label_noise": p, "seed": seed,
                       "max_epochs": a.max_epochs, "batch": a.batch}
                rec = run_once(store, done, key, lambda: run_point(a.dataset, a.arch, loss, p, seed, a.max_epochs,
                                                                   a.batch))
                print(f"{loss} p={p:g} seed={seed}: steps to fit {rec['steps_to_fit']} "
                      f"({rec['seconds']:.0f} s)", flush=True)
    summary = []
    for loss in losses:
        for p in a.fractions:
            runs = [r for r in done.values() if r["loss"] == loss and r["label_noise"] == p
                    and r["dataset"] == a.dataset and r["arch"] == a.arch and r["max_epochs"] == a.max_epochs
                    and r["batch"] == a.batch and r["seed"] in a.seeds]
            fitted = [r["steps_to_fit"] for r in runs if r["steps_to_fit"] is not None]
            summary.append({"loss": loss, "label_noise": p, "runs": len(runs), "fitted": len(fitted),
                            "median_steps_to_fit": statistics.median(fitted) if len(fitted) == len(runs) and runs
                            else None, "steps_to_fit": [r["steps_to_fit"] for r in runs],
                            "median_test_accuracy": statistics.median(r["test_accuracy"] for r in runs)})
    cmd = (f"python -m benchmarks.label_noise --dataset {a.dataset} --fractions "
           f"{','.join(f'{p:g}' for p in a.fractions)} --seeds {','.join(map(str, a.seeds))} "
           f"--max-epochs {a.max_epochs}")
    write_json(os.path.join(RESULTS, "label_noise.json"),
               {"command": cmd, "machine": describe(), "summary": summary})
    plot(summary, os.path.join(RESULTS, "label_noise.png"))
    print(f"\n`{cmd}`\n")
    print("| flipped fraction | " + " | ".join(f"{loss.upper()} steps to fit" for loss in losses) + " |")
    print("|---|" + "---|" * len(losses))
    for p in a.fractions:
        cells = []
        for loss in losses:
            s = next(r for r in summary if r["loss"] == loss and r["label_noise"] == p)
            cells.append(f"{s['median_steps_to_fit']:g} ({s['steps_to_fit']})" if s["median_steps_to_fit"]
                         is not None else f"not fitted in {a.max_epochs} epochs ({s['steps_to_fit']})")
        print(f"| {p:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
