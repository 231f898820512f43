"""A fixed set of problems and what ``solve``/``certify`` answer for them: the reference a refactoring must keep.

    python tests/golden.py        # rewrite tests/data/golden.json (only when an answer is meant to change)
"""
import json
import os
import warnings

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "golden.json")

PROBLEMS = [
    dict(counts=(6, 6, 6), tau=0.5, dim=3),
    dict(counts=(8, 4, 2), tau=0.4, dim=3, constraint="ball"),
    dict(counts=(5, 3, 2, 1), tau=0.3, nonneg=True),
    dict(counts=(4, 4, 4), tau=0.5, nonneg=True, batching="fixed:4"),
    dict(counts=(5, 5, 5), loss="ce", constraint="ball", weight_decay=5e-3),
    dict(counts=(6, 3, 2), loss="ce", constraint="ball", nonneg=True),
    dict(counts=(4, 4, 4), loss="ce", constraint="none", feature_decay=1e-3),
]


def answers():
    from ufm import Problem
    from solvers import certify, solve

    warnings.simplefilter("ignore")
    out = []
    for kw in PROBLEMS:
        p = Problem(**kw)
        sol = solve(p, dtype="float64", seed=0, steps=3000)
        c = certify(p, sol)
        out.append({"problem": kw, "loss": float(sol.loss), "steps": int(sol.steps),
                    "lower_bound": c.lower_bound, "certified": c.certified, "method": c.method})
    return out


if __name__ == "__main__":
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w") as f:
        json.dump(answers(), f, indent=1)
