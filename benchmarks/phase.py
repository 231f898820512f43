"""Certified phase diagrams: ``ufm phase`` (class-level, N-independent) against ``ufm sweep`` (full PGD and a
certificate per point), side by side in one run, both as a user runs them (a fresh process each: JAX import and
compilation included), float64, SC on the sphere, STEP imbalance, K = 4, d = 4, n_min = 5.

    python -m benchmarks.phase [--quick | --full] [--repeats R]

* ``phase``: ``ufm phase --ratios 1:100:M --taus 0.05:1:P`` (P x M points; 100 x 100 with ``--full``, 40 x 40
  quick), boundaries included (their bisection solves are not counted as points).
* ``sweep``: ``ufm sweep --ratios ... --taus ...`` on a 2 x 4 grid of the same family.
Reported: wall seconds (median over repeats, runs interleaved), points per second, their ratio, and whether every
point was certified. Targets: 100 x 100 certified in < 60 s; >= 50x the sweep's points per second.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time

from .common import finish, log, section_args, table

GRID = {"quick": (40, 40), "full": (100, 100)}
SWEEP_RATIOS, SWEEP_TAUS = "1,4,16,64", "0.1,0.5"
TARGET_SECONDS, TARGET_SPEEDUP = 60.0, 50.0


def _run(argv):
    start = time.perf_counter()
    proc = subprocess.run(["ufm", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"ufm {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, proc.returncode


def run_phase(P, M, out):
    seconds, code = _run(["phase", "--ratios", f"1:100:{M}", "--taus", f"0.05:1:{P}", "--n-min", "5", "--classes",
                          "4", "--no-figures", "--out", out])
    with open(os.path.join(out, "phase.json")) as fh:
        d = json.load(fh)
    return {"seconds": seconds, "points": d["points"], "certified": d["certified_points"],
            "solve_seconds": d["solve_seconds"], "exit": code}


def run_sweep(out):
    seconds, code = _run(["sweep", "--ratios", SWEEP_RATIOS, "--taus", SWEEP_TAUS, "--n-min", "5", "--classes", "4",
                          "--out", out])
    rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    return {"seconds": seconds, "points": len(rows), "certified": sum(bool(r.get("certified")) for r in rows),
            "exit": code}


def render(out):
    rows = [[r["what"], r["points"], r["median_s"], r["points_per_s"], r["certified"]] for r in out["rows"]]
    lines = [table(["run", "points", "median s", "points/s", "certified"], rows), "",
             f"speed-up in points per second: {out['speedup']:.0f}x (target >= {TARGET_SPEEDUP:.0f}x); "
             f"phase grid in {out['rows'][0]['median_s']:.1f} s"]
    return "\n".join(lines)


def main(argv=None):
    args = section_args(__doc__, argv)
    P, M = GRID[args.mode]
    repeats = args.repeats or 3
    runs = {"phase": [], "sweep": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):  # interleaved: the machine's load falls on both alike
            log(f"round {k + 1}/{repeats}")
            runs["phase"].append(run_phase(P, M, os.path.join(tmp, f"phase{k}")))
            runs["sweep"].append(run_sweep(os.path.join(tmp, f"sweep{k}")))
    rows = []
    for what, rs in runs.items():
        med = statistics.median(r["seconds"] for r in rs)
        rows.append({"what": f"ufm {what}", "points": rs[0]["points"], "median_s": med,
                     "runs_s": [r["seconds"] for r in rs], "points_per_s": rs[0]["points"] / med, "certified": f"{rs[0]['certified']}/{rs[0]['points']}",
                     "all_certified": all(r["certified"] == r["points"] for r in rs)})
    speedup = rows[0]["points_per_s"] / rows[1]["points_per_s"]
    out = {"what": "ufm phase vs ufm sweep, SC sphere, STEP K=4 d=4 n_min=5, float64, fresh process per run",
           "mode": args.mode, "repeats": repeats, "grid": [P, M], "rows": rows, "speedup": speedup,
           "targets": {"phase_seconds": TARGET_SECONDS, "speedup": TARGET_SPEEDUP},
           "met": {"phase_seconds": rows[0]["median_s"] < TARGET_SECONDS or args.mode != "full",
                   "speedup": speedup >= TARGET_SPEEDUP, "all_certified": rows[0]["all_certified"]}}
    return finish("phase", out, render)


if __name__ == "__main__":
    main()
