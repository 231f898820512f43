"""Proved lower bounds against closed-form minima: how far below the minimum, what was subtracted, how long.

    python -m benchmarks.bound_margins

For settings with a known minimum (simplex ETF, orthogonal frame, CE with r_W, a mini-batch OF), ``certify`` with
``--bound-only``: the proved ``lower_bound`` minus the minimum (must be <= 0, and >= -1e-6 to certify a converged
solve), the convex solver's own value minus the minimum (information: it may be > 0, which is why it is not the
bound), the floating-point margin subtracted, and the seconds. Writes ``benchmarks/results/bound_margins.json``.
"""
import json
import os
import time
import warnings

from ufm import Problem, theory

from .common import RESULTS
from .machine import describe

SETTINGS = [
    ("SC ETF, counts 10x4, tau 0.5", Problem(counts=(10,) * 4, tau=0.5, dim=3)),
    ("SC ETF, 4 x 10^7, tau 0.2", Problem(counts=(10 ** 7,) * 4, tau=0.2, dim=3)),
    ("SC ETF, counts 6,6,6, tau 0.01", Problem(counts=(6, 6, 6), tau=0.01, dim=2)),
    ("UFM+ OF, counts 40,4,4,4,4, tau 0.15", Problem(counts=(40, 4, 4, 4, 4), tau=0.15, dim=5, nonneg=True)),
    ("UFM+ OF, counts 4,4,4, fixed:4", Problem(counts=(4, 4, 4), tau=0.5, nonneg=True, batching="fixed:4")),
    ("CE ETF, counts 20x4, ball radius 1", Problem(counts=(20,) * 4, loss="ce", constraint="ball")),
    ("CE ETF, counts 5,5,5, ball radius 100", Problem(counts=(5, 5, 5), loss="ce", constraint="ball", radius=100.0)),
]


def main():
    from solvers import certify

    warnings.simplefilter("ignore")
    rows = []
    for name, p in SETTINGS:
        ref = theory.predict(p).loss
        t = time.perf_counter()
        c = certify(p, None)
        rows.append({"setting": name, "problem": p.to_dict(), "method": c.method, "minimum": ref,
                     "bound_minus_minimum": c.lower_bound - ref,
                     "solver_minus_minimum": None if c.solver_bound is None else c.solver_bound - ref,
                     "bound_margin": c.bound_margin, "seconds": time.perf_counter() - t})
    out = {"machine": describe(), "rows": rows}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "bound_margins.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("| setting | method | proved bound - minimum | solver value - minimum | margin subtracted | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sv = "" if r["solver_minus_minimum"] is None else f"{r['solver_minus_minimum']:.1e}"
        print(f"| {r['setting']} | {r['method']} | {r['bound_minus_minimum']:.1e} | {sv} | {r['bound_margin']:.1e} "
              f"| {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
