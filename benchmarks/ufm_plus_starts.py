"""How often does projected gradient reach the orthogonal frame on UFM+ (SC + ReLU), with and without the
low-temperature continuation stage of ``solvers.pgd``?

    python -m benchmarks.ufm_plus_starts [--seeds 8] [--quick]

For each STEP-imbalanced problem and temperature, solves from ``--seeds`` random starts (float64) and counts
the starts that stop more than 1e-6 above the OF closed form (a failure: the closed form is the minimum, Kini
et al. 2024). Writes ``benchmarks/results/ufm_plus_starts.json`` and prints a markdown table.
"""
import argparse
import json
import os
import statistics
import time

from solvers import pgd
from ufm import Problem, theory

from .machine import describe

CASES = [((300, 300, 3, 3), 4), ((300, 300, 3, 3), 6), ((50, 50, 50, 5, 5, 5), 8), ((20,) * 5 + (2,) * 5, 10)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--taus", default="0.2,1.0")
    ap.add_argument("--quick", action="store_true", help="two problems, four seeds")
    a = ap.parse_args(argv)
    cases = CASES[-2:] if a.quick else CASES
    seeds = 4 if a.quick else a.seeds
    rows = []
    for counts, dim in cases:
        for tau in map(float, a.taus.split(",")):
            p = Problem(counts=counts, tau=tau, dim=dim, nonneg=True)
            best = theory.sc_of_loss(counts, tau)
            row = {"counts": counts, "dim": dim, "tau": tau, "seeds": seeds}
            for name, cont in [("plain", False), ("continuation", True)]:
                gaps, steps, secs = [], [], []
                for seed in range(seeds):
                    t0 = time.perf_counter()
                    s = pgd.solve(p, dtype="float64", seed=seed, continuation=cont)
                    secs.append(time.perf_counter() - t0)
                    gaps.append(s.loss - best)
                    steps.append(s.steps)
                row[name] = {"failures": sum(g > 1e-6 for g in gaps), "max_gap": max(gaps),
                             "median_steps": statistics.median(steps), "median_s": statistics.median(secs)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = os.path.join(os.path.dirname(__file__), "results", "ufm_plus_starts.json")
    with open(out, "w") as fh:
        json.dump({"machine": describe(), "rows": rows}, fh, indent=2)
    print("\n| counts | d | tau | failures plain | failures continuation | median steps plain / cont. |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {','.join(map(str, r['counts']))} | {r['dim']} | {r['tau']:g} | {r['plain']['failures']}/{r['seeds']}"
              f" | {r['continuation']['failures']}/{r['seeds']} | {r['plain']['median_steps']:.0f} / "
              f"{r['continuation']['median_steps']:.0f} |")


if __name__ == "__main__":
    main()
