"""The digits target: STEP R = 10, SC, binding:64, 60 epochs, with and without the final ReLU.

    python -m benchmarks.digits_target [--seeds 0,1,2] [--epochs 60] [--extra-tau 0.5]

Runs the real command ``ufm train --dataset digits --arch mlp --loss sc --relu|--no-relu --imbalance step:10
--batching binding:64 --epochs 60 --seed S --json --out DIR`` in a fresh process (start-up and compilation
included in the wall time) and reports, per run: the network's ``delta_gm``, test accuracy (nearest class
centre), the mean cosine between minority classes (``min_min``), the UFM's ``delta_gm`` and ``min_min`` for the
same counts, tau and ReLU, ``distance_to_ufm``, and the wall time. ``--extra-tau`` adds runs without ReLU at
that temperature (the UFM's minority classes attract each other at larger tau, docs/theory.md §4).

Results: ``benchmarks/results/digits_target.jsonl`` (one line per run, reruns skip what is there),
``digits_target.json`` (summary + machine), the figures of the seed-0 runs as
``digits_{relu,norelu}_{geometry,gram}.png``, and a markdown table on stdout.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from ufm.records import write_json

from .machine import describe
from .store import RESULTS, ROOT, open_store, run_once
BASE = ["--dataset", "digits", "--arch", "mlp", "--loss", "sc", "--imbalance", "step:10", "--batching",
        "binding:64"]


def run(relu, tau, seed, epochs, keep_figures):
    args = BASE + ["--relu" if relu else "--no-relu", "--tau", f"{tau:g}", "--epochs", str(epochs), "--seed",
                   str(seed), "--json", "--quiet"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ufm", "train", *args, "--out", out], capture_output=True,
                              text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"ufm train failed: {proc.stderr[-2000:]}")
        rep = json.loads(proc.stdout)
        if keep_figures:
            tag = "relu" if relu else "norelu"
            for name in ("geometry", "gram"):
                shutil.copy(os.path.join(out, f"{name}.png"), os.path.join(RESULTS, f"digits_{tag}_{name}.png"))
    g, u = rep["geometry"], rep["ufm_prediction"]
    return {"command": "ufm train " + " ".join(args), "wall_s": wall, "train_seconds": rep["seconds"],
            "delta_gm": g["delta_gm"], "test_accuracy": rep["test_accuracy"],
            "probe_test_accuracy": rep["probe_test_accuracy"], "min_cosine": g["min_cosine"],
            "min_min": g["cosine_groups"]["min_min"], "maj_maj": g["cosine_groups"]["maj_maj"],
            "ufm_delta_gm": u["delta_gm"], "ufm_min_min": u["cosine_groups"]["min_min"],
            "ufm_maj_maj": u["cosine_groups"]["maj_maj"], "ufm_geometry": u["prediction"]["geometry"],
            "distance_to_ufm": rep["distance_to_ufm"], "seconds_per_step": rep["seconds_per_step"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--extra-tau", type=float, default=0.5, help="no-ReLU runs at this tau too (0: none)")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    store, done = open_store("digits_target", a.fresh)
    settings = [(True, 0.1), (False, 0.1)] + ([(False, a.extra_tau)] if a.extra_tau else [])
    rows = []
    for relu, tau in settings:
        for seed in seeds:
            key = {"relu": relu, "tau": tau, "seed": seed, "epochs": a.epochs}
            figures = seed == seeds[0] and tau == 0.1
            rec = run_once(store, done, key, lambda: run(relu, tau, seed, a.epochs, figures))
            print(f"relu={relu} tau={tau:g} seed={seed}: delta_gm {rec['delta_gm']:.3f} test "
                  f"{rec['test_accuracy']:.3f} ({rec['wall_s']:.0f} s)", file=sys.stderr, flush=True)
            rows.append(rec)
    write_json(os.path.join(RESULTS, "digits_target.json"), {"machine": describe(), "runs": rows})
    print("| final ReLU | tau | seed | delta_gm | test acc. (NCC) | min-min cos. | UFM delta_gm | UFM min-min "
          "| distance_to_ufm | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'yes' if r['relu'] else 'no'} | {r['tau']:g} | {r['seed']} | {r['delta_gm']:.3f} | "
              f"{r['test_accuracy']:.3f} | {r['min_min']:+.3f} | {r['ufm_delta_gm']:.3f} | {r['ufm_min_min']:+.3f} "
              f"| {r['distance_to_ufm']:.3f} | {r['wall_s']:.0f} |")
    walls = [r["wall_s"] for r in rows]
    print(f"\nmedian wall {statistics.median(walls):.0f} s; machine: {describe()['cpu']}, "
          f"{describe()['cores']} cores")


if __name__ == "__main__":
    main()
