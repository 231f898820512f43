"""``solve_many`` of 256 problems vs a Python loop of ``solve`` (same problems, same seeds, same answers).

    python -m benchmarks.many [--quick | --full] [--repeats R]

The problems: UFM+ with counts (8, 8, 4, 4) (N = 24), dim 6, tau log-spaced in [0.1, 1], float64, default
tolerance; every answer is checked against the orthogonal-frame closed form. Both sides are timed warm (their
programs compiled by a first call; ``cold`` columns include it). ``--full`` adds a padded mix: the same 256
taus over eight class-count patterns (N from 12 to 40), which ``solve_many`` pads into one group while ``solve``
compiles once per shape.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .common import finish, log, ratio, section_args, table

N_PROBLEMS = 256


def problem_sets(mode):
    from ufm import Problem

    taus = np.geomspace(0.1, 1.0, N_PROBLEMS)
    sets = {"same shape": [Problem(counts=(8, 8, 4, 4), tau=float(t), dim=6, nonneg=True) for t in taus]}
    if mode == "full":
        patterns = [(8, 8, 4, 4), (3, 3, 3, 3), (10, 10, 10, 10), (6, 2, 2, 2), (9, 9, 2, 2), (5, 5, 5, 5),
                    (12, 4, 4, 4), (7, 7, 7, 3)]
        sets["padded mix"] = [Problem(counts=patterns[i % len(patterns)], tau=float(t), dim=6, nonneg=True)
                              for i, t in enumerate(taus)]
    return sets


def main(argv=None):
    from solvers import solve, solve_many
    from ufm import theory

    a = section_args(__doc__, argv)
    repeats = a.repeats or 3
    rows = []
    for name, problems in problem_sets(a.mode).items():
        log(f"many: {name}: cold runs")
        t = time.perf_counter()
        many = solve_many(problems, dtype="float64")
        cold_many = time.perf_counter() - t
        t = time.perf_counter()
        loop = [solve(p, dtype="float64") for p in problems]
        cold_loop = time.perf_counter() - t
        gaps = [s.loss - theory.sc_of_loss(p.counts, p.tau) for p, s in zip(problems, many)]
        agree = max(abs(x.loss - y.loss) for x, y in zip(many, loop))
        t_many, t_loop = [], []
        for r in range(repeats):
            log(f"many: {name}: round {r + 1}/{repeats}")
            t = time.perf_counter()
            solve_many(problems, dtype="float64")
            t_many.append(time.perf_counter() - t)
            t = time.perf_counter()
            for p in problems:
                solve(p, dtype="float64")
            t_loop.append(time.perf_counter() - t)
        rows.append({"set": name, "problems": len(problems), "N": sorted({p.N for p in problems}),
                     "steps_max": max(s.steps for s in many), "steps_median": statistics.median(s.steps for s in many),
                     "many_s": statistics.median(t_many), "loop_s": statistics.median(t_loop),
                     "many_runs_s": t_many, "loop_runs_s": t_loop, "cold_many_s": cold_many, "cold_loop_s": cold_loop,
                     "max_gap_to_closed_form": max(gaps), "max_loss_difference_many_vs_loop": agree})
    out = {"what": "solve_many vs a loop of solve, 256 UFM+ problems, float64", "mode": a.mode,
           "repeats": repeats, "rows": rows}
    return finish("many", out, render)


def render(out) -> str:
    head = ["problems", "N", "solve_many (s)", "loop of solve (s)", "loop / solve_many", "cold: solve_many / loop (s)",
            "max gap to L*", "max |many - loop|"]
    body = [[f"{r['problems']} ({r['set']})", ",".join(map(str, r["N"])), r["many_s"], r["loop_s"],
             ratio(r["loop_s"], r["many_s"]), f"{r['cold_many_s']:.2f} / {r['cold_loop_s']:.2f}",
             f"{r['max_gap_to_closed_form']:.1e}", f"{r['max_loss_difference_many_vs_loop']:.1e}"]
            for r in out["rows"]]
    return "solve_many vs a loop of solve (median, warm)\n\n" + table(head, body)


if __name__ == "__main__":
    main()
