"""How often does projected gradient reach the orthogonal frame on UFM+ (SC + ReLU)? One start without and
with the low-temperature continuation stage of ``solvers.pgd``, and the default (``AUTO_STARTS`` starts,
alternately without and with it, the best kept).

    python -m benchmarks.ufm_plus_starts [--seeds 8] [--quick]

For each STEP-imbalanced problem and temperature, solves for ``--seeds`` seeds (float64) and counts the solves
that stop more than 1e-6 above the OF closed form (a failure: the closed form is the minimum, Kini
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

CASES = [((300, 300, 3, 3), 4), ((300, 300, 3, 3), 6), ((50, 50, 50, 5, 5, 5), 8), ((20,) * 5 + (2,) * 5, 10),
         ((36,) * 5 + (3,) * 5, 10)]
VARIANTS = [("plain", {"continuation": False, "starts": 1}), ("continuation", {"continuation": True, "starts": 1}),
            ("default", {})]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--taus", default="0.1,0.2,1.0")
    ap.add_argument("--quick", action="store_true", help="two problems, four seeds")
    a = ap.parse_args(argv)
    cases = CASES[-2:] if a.quick else CASES
    seeds = 4 if a.quick else a.seeds
    rows = []
    for counts, dim in cases:
        for tau in map(float, a.taus.split(",")):
            p = Problem(counts=counts, tau=tau, dim=dim, nonneg=True)
            best = theory.sc_of_loss(counts, tau)
            row = {"counts": counts, "dim": dim, "tau": tau, "seeds": seeds, "default_starts": pgd.n_starts(p)}
            for name, kw in VARIANTS:
                gaps, steps, secs = [], [], []
                for seed in range(seeds):
                    t0 = time.perf_counter()
                    s = pgd.solve(p, dtype="float64", seed=seed, **kw)
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
    print("\n| counts | d | tau | failures: plain | continuation | default (starts) | median s: plain / default |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["seeds"]
        print(f"| {','.join(map(str, r['counts']))} | {r['dim']} | {r['tau']:g} | {r['plain']['failures']}/{n}"
              f" | {r['continuation']['failures']}/{n} | {r['default']['failures']}/{n} ({r['default_starts']})"
              f" | {r['plain']['median_s']:.2f} / {r['default']['median_s']:.2f} |")


if __name__ == "__main__":
    main()
