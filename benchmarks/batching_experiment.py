"""Batch-binding in the UFM+: the UFM version of Kini et al. (ICLR 2024), Sec. 5.

    python -m benchmarks.batching_experiment [--classes 4] [--majority 200] [--ratios 1,10,100] [--batch 16]
                                             [--tau 0.1] [--dim 8] [--epochs 400] [--seeds 3] [--x64]

For STEP imbalance (half the classes majorities of ``--majority`` samples, the others minorities of
``majority / R``) and each of the batchings ``fixed:b``, ``shuffled:b`` and ``binding:b``, the same stochastic
projected gradient (``solvers.epochs``; for ``fixed`` every epoch visits the same partition) runs ``--epochs``
epochs from ``--seeds`` random starts (seed ``s`` also draws the batches). Reported: whether the graph
conditions (a) and (b) hold for one epoch's batches (epoch 0) and whether the OF is the unique minimiser of
the batches of all the epochs run (``ufm.interaction``), the first epoch with ``delta_gm < 1e-3`` (median over
seeds, and how many seeds got there), the final ``delta_gm`` (median and max) and the gap of the final loss to the
OF minimum of the run's batches (max over seeds). Writes ``benchmarks/results/batching_experiment.json`` and
prints a markdown table.
"""
import argparse
import json
import os
import statistics
import sys
import time

from solvers import epochs as epoch_solver
from ufm import Problem, interaction
from ufm.batching import epoch_batch_list, union_batches
from ufm.imbalance import step_counts

from .machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(counts, scheme, a, seed):
    """One run: the facts of the table row for one seed."""
    p = Problem(counts=counts, tau=a.tau, dim=a.dim, nonneg=True, batching=scheme, batch_seed=seed)
    sol = epoch_solver.solve(p, epochs=a.epochs, tol=0, seed=seed, dtype="float64" if a.x64 else "float32",
                             progress=False)
    one = interaction.check(epoch_batch_list(p, 0), p.label_array, p.dim, p.K, verify=False)
    union = interaction.check(union_batches(p, sol.epochs), p.label_array, p.dim, p.K, verify=False)
    below = [e for e, v in enumerate(sol.delta_gm) if v < a.threshold]
    return {"seed": seed, "epochs": sol.epochs, "seconds": sol.seconds,
            "conditions_one_epoch": not one.disconnected_classes and not one.unmet_class_pairs,
            "unique_of_one_epoch": one.unique_of, "unique_of_all_epochs": union.unique_of,
            "epochs_to_threshold": below[0] if below else None, "final_delta_gm": float(sol.delta_gm[-1]),
            "gap_to_of": sol.loss - sol.of_loss}


def summarise(runs):
    hit = [r["epochs_to_threshold"] for r in runs if r["epochs_to_threshold"] is not None]
    final = [r["final_delta_gm"] for r in runs]
    return {"conditions_one_epoch": all(r["conditions_one_epoch"] for r in runs),
            "unique_of_all_epochs": sorted({str(r["unique_of_all_epochs"]) for r in runs}),
            "median_epochs_to_threshold": statistics.median(hit) if hit else None, "reached": len(hit),
            "median_final_delta_gm": statistics.median(final), "max_final_delta_gm": max(final),
            "max_gap_to_of": max(r["gap_to_of"] for r in runs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--majority", type=int, default=200)
    ap.add_argument("--ratios", default="1,10,100")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=1e-3)
    ap.add_argument("--x64", action="store_true", help="float64 (default float32)")
    a = ap.parse_args(argv)
    rows, start = [], time.perf_counter()
    for R in [float(r) for r in a.ratios.split(",")]:
        counts = step_counts(a.classes, max(1, round(a.majority / R)), R)
        for name in ("fixed", "shuffled", "binding"):
            scheme = f"{name}:{a.batch}"
            runs = [run_one(counts, scheme, a, seed) for seed in range(a.seeds)]
            rows.append({"R": R, "counts": list(counts), "batching": scheme, **summarise(runs), "runs": runs})
            print(f"R={R:g} {scheme}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    argv = sys.argv[1:] if argv is None else argv
    res = {"command": " ".join(["python -m benchmarks.batching_experiment", *argv]),
           "settings": vars(a), "machine": describe(), "rows": rows}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "batching_experiment.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"\n| R | counts | batching | (a), (b) in one epoch | OF unique, all epochs | epochs to delta_gm < "
          f"{a.threshold:g} (median; seeds) | final delta_gm (median / max) | max gap to OF min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        to = "never" if r["median_epochs_to_threshold"] is None else f"{r['median_epochs_to_threshold']:g}"
        print(f"| {r['R']:g} | {','.join(map(str, r['counts']))} | {r['batching']} | "
              f"{'yes' if r['conditions_one_epoch'] else 'no'} | {'/'.join(r['unique_of_all_epochs'])} | "
              f"{to} ({r['reached']}/{a.seeds}) | {r['median_final_delta_gm']:.1e} / {r['max_final_delta_gm']:.1e} | "
              f"{r['max_gap_to_of']:.1e} |")
    m = res["machine"]
    print(f"\n{a.epochs} epochs, tau {a.tau:g}, dim {a.dim}, {'float64' if a.x64 else 'float32'}; "
          f"{m['cpu']}, {m['cores']} cores; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
