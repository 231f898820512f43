"""``solve_many`` vs a Python loop of ``solve`` (same problems, same seeds, same steps, tolerance and dtype).

    python -m benchmarks.many [--quick | --full] [--repeats R]

Two sets of 256 problems, float64, default steps and tolerance:

* ``mini-batches``: SC on 20 to 60 samples (2 to 5 classes, random counts, dim 6, tau log-spaced in [0.1, 1]),
  every other problem with ReLU (``nonneg``; imbalanced, so four starts each); three in four under
  ``batching="fixed:8"``, the others three disjoint explicit batches that leave some samples out. Many shapes:
  ``solve`` compiles one program per shape, ``solve_many`` pads them into one group.
* ``same shape``: UFM+ with counts (8, 8, 4, 4) (N = 24, full batch), every answer checked against the
  orthogonal-frame closed form.

Each set is timed twice: ``cold``, the first call of each side in this process, compilation included (what a
user sees once per shape), and ``warm``, the median of ``R`` further calls (compiled programs reused).
``--full`` adds a padded mix: the same-shape set's taus over eight class-count patterns (N from 12 to 40).
The environment variable ``UFM_BENCH_MANY_N`` sets the problems per set (default 256; the tests use a few, to
check the plumbing only).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from .common import finish, log, ratio, section_args, table

N_PROBLEMS = int(os.environ.get("UFM_BENCH_MANY_N", 256))


def minibatch_problems(n=N_PROBLEMS, seed=0):
    """``n`` small SC problems under mini-batches (module doc)."""
    from ufm import Problem

    rng = np.random.default_rng(seed)
    out = []
    for i, tau in enumerate(np.geomspace(0.1, 1.0, n)):
        K = int(rng.integers(2, 6))
        N = int(rng.integers(20, 61))
        counts = tuple(int(c) for c in rng.multinomial(N - 2 * K, np.ones(K) / K) + 2)
        if i % 4 == 3:
            order = rng.permutation(N)
            kw = {"batches": tuple(tuple(int(j) for j in order[k::4]) for k in range(3))}
        else:
            kw = {"batching": "fixed:8", "batch_seed": i}
        out.append(Problem(counts=counts, tau=float(tau), dim=6, nonneg=i % 2 == 1, **kw))
    return out


def problem_sets(mode):
    from ufm import Problem

    taus = np.geomspace(0.1, 1.0, N_PROBLEMS)
    sets = {"mini-batches": minibatch_problems(),
            "same shape": [Problem(counts=(8, 8, 4, 4), tau=float(t), dim=6, nonneg=True) for t in taus]}
    if mode == "full":
        patterns = [(8, 8, 4, 4), (3, 3, 3, 3), (10, 10, 10, 10), (6, 2, 2, 2), (9, 9, 2, 2), (5, 5, 5, 5),
                    (12, 4, 4, 4), (7, 7, 7, 3)]
        sets["padded mix"] = [Problem(counts=patterns[i % len(patterns)], tau=float(t), dim=6, nonneg=True)
                              for i, t in enumerate(taus)]
    return sets


def main(argv=None):
    from solvers import solve, solve_many
    from solvers.pgd import n_starts, static_of
    from ufm import theory

    a = section_args(__doc__, argv)
    repeats = a.repeats or 3
    rows = []
    for name, problems in problem_sets(a.mode).items():
        log(f"many: {name}: cold runs (compilation included)")
        t = time.perf_counter()
        many = solve_many(problems, dtype="float64")
        cold_many = time.perf_counter() - t
        t = time.perf_counter()
        loop = [solve(p, dtype="float64") for p in problems]
        cold_loop = time.perf_counter() - t
        closed = [theory.sc_of_loss(p.counts, p.tau) for p in problems] if name != "mini-batches" else None
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
        rows.append({
            "set": name, "problems": len(problems), "N": sorted({p.N for p in problems}),
            "shapes": len({static_of(p, 1, "pgd", "float64") for p in problems}),
            "runs": sum(n_starts(p) for p in problems),
            "steps_max": max(s.steps for s in loop), "steps_median": statistics.median(s.steps for s in loop),
            "many_s": statistics.median(t_many), "loop_s": statistics.median(t_loop),
            "many_runs_s": t_many, "loop_runs_s": t_loop, "cold_many_s": cold_many, "cold_loop_s": cold_loop,
            "max_gap_to_closed_form": None if closed is None else max(s.loss - c for s, c in zip(many, closed)),
            "max_loss_difference_many_vs_loop": max(abs(x.loss - y.loss) for x, y in zip(many, loop)),
            "max_relative_loss_difference": max(abs(x.loss - y.loss) / abs(y.loss) for x, y in zip(many, loop)),
            "same_reason": sum(x.reason == y.reason for x, y in zip(many, loop)),
            "reasons": {r: sum(s.reason == r for s in loop) for r in sorted({s.reason for s in loop})}})
    out = {"what": f"solve_many vs a loop of solve, {N_PROBLEMS} problems per set, float64, default steps and "
                   "tolerance",
           "mode": a.mode, "repeats": repeats, "rows": rows}
    return finish("many", out, render)


def render(out) -> str:
    head = ["problems", "N", "timing", "solve_many (s)", "loop of solve (s)", "loop / solve_many",
            "max rel. loss diff", "same reason", "max gap to L*"]
    body = []
    for r in out["rows"]:
        what = f"{r['problems']} ({r['set']}, {r.get('shapes', 1)} shapes)"
        n = f"{min(r['N'])}-{max(r['N'])}" if len(r["N"]) > 1 else str(r["N"][0])
        gap = r.get("max_gap_to_closed_form")
        common = [f"{r['max_relative_loss_difference']:.1e}" if "max_relative_loss_difference" in r else None,
                  f"{r['same_reason']}/{r['problems']}" if "same_reason" in r else None,
                  None if gap is None else f"{gap:.1e}"]
        body.append([what, n, "cold (compilation included)", r["cold_many_s"], r["cold_loop_s"],
                     ratio(r["cold_loop_s"], r["cold_many_s"]), *common])
        body.append([what, n, f"warm (median of {out['repeats']})", r["many_s"], r["loop_s"],
                     ratio(r["loop_s"], r["many_s"]), *common])
    return "solve_many vs a loop of solve\n\n" + table(head, body)


if __name__ == "__main__":
    main()
