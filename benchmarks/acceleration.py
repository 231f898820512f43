"""Projected gradient with and without acceleration (``solvers.pgd.solve(acceleration=True)``, FISTA with adaptive
restart on the same line search and stop test): steps, objective-and-gradient evaluations, warm wall time, and the
gap of the final loss to the problem's proved lower bound (``solvers.certify`` without a solution), per problem.

    python -m benchmarks.acceleration [--seeds 3]

Writes ``benchmarks/results/acceleration_<backend>.json`` (``$UFM_BENCH_OUT`` to write elsewhere) and prints a
markdown table (medians over the seeds; the largest gap).
"""
import argparse
import statistics
import time

from solvers import certify, pgd
from ufm import Problem

from .common import finish

CASES = {
    "SC sphere, 6x4, tau 0.5, d 4": dict(counts=(6,) * 4, tau=0.5, dim=4),
    "SC sphere, 6x3, tau 0.1, d 3": dict(counts=(6,) * 3, tau=0.1, dim=3),
    "SC sphere, 6x3, tau 0.05, d 3": dict(counts=(6,) * 3, tau=0.05, dim=3),
    "SC ball, 8,4,2, tau 0.4, d 3": dict(counts=(8, 4, 2), tau=0.4, dim=3, constraint="ball"),
    "UFM+ SC, 20,20,3,3, tau 0.2, d 6": dict(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True),
    "CE ball, 5x3, wd 5e-3": dict(counts=(5,) * 3, loss="ce", constraint="ball", weight_decay=5e-3),
    "CE ball, 5x3, wd 1e-3": dict(counts=(5,) * 3, loss="ce", constraint="ball", weight_decay=1e-3),
    "CE free, 4x3, fd 1e-3": dict(counts=(4,) * 3, loss="ce", constraint="none", feature_decay=1e-3),
    "CE free, 4x3, wd = fd = 1e-4": dict(counts=(4,) * 3, loss="ce", constraint="none", feature_decay=1e-4,
                                         weight_decay=1e-4),
}


def run(seeds: int) -> dict:
    rows = []
    for name, kw in CASES.items():
        p = Problem(**kw)
        bound = certify(p).lower_bound
        row: dict = {"problem": name, "kwargs": kw, "lower_bound": bound}
        for acc in (False, True):
            pgd.solve(p, seed=0, acceleration=acc, steps=20000)  # compile
            sols, secs = [], []
            for seed in range(seeds):
                t0 = time.perf_counter()
                sols.append(pgd.solve(p, seed=seed, acceleration=acc, steps=20000))
                secs.append(time.perf_counter() - t0)
            row["accelerated" if acc else "plain"] = {
                "steps": statistics.median(s.steps for s in sols),
                "evaluations": statistics.median(s.evaluations for s in sols),
                "median_s": statistics.median(secs), "converged": sum(s.converged for s in sols),
                "max_gap": None if bound is None else max(s.loss - bound for s in sols),
                "losses": [s.loss for s in sols]}
        rows.append(row)
    return {"seeds": seeds, "rows": rows}


def render(out: dict) -> str:
    lines = ["| problem | steps: plain / FISTA | evaluations: plain / FISTA | warm s: plain / FISTA | "
             "max gap to bound: plain / FISTA |", "|---|---|---|---|---|"]
    for r in out["rows"]:
        a, b = r["plain"], r["accelerated"]
        gap = "n/a" if a["max_gap"] is None else f"{a['max_gap']:.1e} / {b['max_gap']:.1e}"
        lines.append(f"| {r['problem']} | {a['steps']:g} / {b['steps']:g} | {a['evaluations']:g} / "
                     f"{b['evaluations']:g} | {a['median_s']:.3f} / {b['median_s']:.3f} | {gap} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="random starts per problem and variant (default 3)")
    a = ap.parse_args(argv)
    return finish("acceleration", run(a.seeds), render)


if __name__ == "__main__":
    main()
