"""Time ``ufm solve`` to 1e-6 of the closed form.

    python -m benchmarks.solve_time [--n 1000] [--classes 10] [--dim 16] [--tau 0.1] [--repeats 3]

Runs the real command in a fresh process (so compilation and start-up are included), float64, UFM+ (whose
minimum is the orthogonal-frame closed form), and reports the median wall time and the gap to the closed form.
Target: under 10 s on a 2-core CPU for N=1000, K=10, d=16, tau=0.1.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from ufm import theory

from .machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    counts = [a.n // a.classes] * a.classes
    cmd = [sys.executable, "-m", "ufm", "solve", "--counts", ",".join(map(str, counts)), "--tau", str(a.tau),
           "--dim", str(a.dim), "--nonneg", "--json"]
    target = theory.sc_of_loss(counts, a.tau)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runs = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT).stdout
        wall = time.perf_counter() - t0
        rep = json.loads(out)
        runs.append({"wall_s": wall, "solver_s": rep["seconds"], "steps": rep["steps"],
                     "gap": rep["loss"] - target})
    res = {"command": " ".join(["ufm"] + cmd[3:]), "machine": describe(), "runs": runs,
           "median_wall_s": statistics.median(r["wall_s"] for r in runs),
           "median_solver_s": statistics.median(r["solver_s"] for r in runs),
           "max_abs_gap": max(abs(r["gap"]) for r in runs), "target_s": 10.0}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "solve_time.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    print("| command | median wall (s) | median solve incl. compile (s) | steps | max gap to closed form |")
    print("|---|---|---|---|---|")
    print(f"| `{res['command']}` | {res['median_wall_s']:.2f} | {res['median_solver_s']:.2f} | "
          f"{runs[0]['steps']} | {res['max_abs_gap']:.1e} |")
    print(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores")


if __name__ == "__main__":
    main()
