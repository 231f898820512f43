"""Time to a certified solution: UFM+ (non-negative sphere), balanced K = 10, d = 16, tau = 0.1, float64.

    python -m benchmarks.certified [--quick | --full] [--repeats R]

The closed-form orthogonal-frame minimum (Kini et al. 2024; docs/theory.md §4) is a proven lower bound, so
``gap = loss - L*`` certifies a solution; a run counts as certified when ``gap <= 1e-6``. Each tool runs with its
own stopping rule (none is told L*):
  * ``ufm``: ``solvers.solve(problem, dtype="float64")`` (default tol 1e-12); ``cold`` is the first call
    (jit compilation included), the median is over later calls with other seeds (same shapes: no compilation);
  * ``torch_pgd``: the same algorithm in eager PyTorch (``benchmarks.torch_ref.solve_pgd``: same metric, step
    rule, line search and stopping test);
  * ``pymanopt``: conjugate gradient on the Oblique manifold (JAX backend, jit-compiled ``ufm.sc_loss`` as the
    cost), with ``z = x^2 / ||x^2||`` row-wise so that ``z >= 0`` on the sphere (the orthogonal frame is
    attained at ``x = e_c``); stops at gradient norm 1e-8.
A tool that has not stopped after ``MAX_SECONDS`` is cut off and reported with the gap it reached.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .common import finish, log, ratio, section_args, table

SIZES = {"quick": [100, 1000], "full": [100, 1000, 10000]}
K, DIM, TAU, TARGET = 10, 16, 0.1, 1e-6
MAX_SECONDS = {"quick": 120.0, "full": 600.0}
TORCH_MAX_N = 10000


def run_ufm(problem, seeds):
    from solvers import solve

    runs = []
    for seed in seeds:
        s = solve(problem, dtype="float64", seed=seed)
        runs.append({"seconds": s.seconds, "steps": s.steps, "loss": s.loss})
    return runs


def run_torch(problem, seeds, max_seconds):
    import jax
    import torch

    from .torch_ref import solve_pgd

    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    runs = []
    for seed in seeds:
        _, loss, steps, sec = solve_pgd(problem.label_array, problem.tau, problem.dim, seed=seed,
                                        max_seconds=max_seconds, device=device)
        runs.append({"seconds": sec, "steps": steps, "loss": loss})
    return runs


def run_pymanopt(problem, seeds, max_seconds):
    import jax
    import jax.numpy as jnp
    import pymanopt
    from pymanopt.manifolds import Oblique
    from pymanopt.optimizers import ConjugateGradient

    from ufm import sc_loss

    y = jnp.asarray(problem.label_array)
    manifold = Oblique(problem.dim, problem.N)

    @jax.jit
    def loss(X):
        Z = (X.T) ** 2
        return sc_loss(Z / jnp.linalg.norm(Z, axis=1, keepdims=True), y, problem.tau)

    cost = pymanopt.function.jax(manifold)(lambda X: loss(X))
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        opt = ConjugateGradient(min_gradient_norm=1e-8, max_iterations=100000, max_time=max_seconds, verbosity=0)
        X0 = manifold.random_point() if seed is None else _start(manifold, seed)
        res = opt.run(pymanopt.Problem(manifold, cost), initial_point=X0)
        runs.append({"seconds": time.perf_counter() - start, "steps": res.iterations, "loss": float(res.cost)})
    return runs


def _start(manifold, seed):
    X = np.abs(np.random.default_rng(seed).normal(size=manifold.random_point().shape))
    return X / np.linalg.norm(X, axis=0, keepdims=True)


def summarise(runs, target):
    gaps = [r["loss"] - target for r in runs]
    warm = runs[1:] or runs
    return {"cold_s": runs[0]["seconds"], "median_s": statistics.median(r["seconds"] for r in warm),
            "steps": [r["steps"] for r in runs], "max_gap": max(gaps), "certified": max(gaps) <= TARGET,
            "runs": runs}


def main(argv=None):
    from ufm import Problem, theory

    a = section_args(__doc__, argv)
    repeats = a.repeats or (2 if a.mode == "quick" else 3)
    cap = MAX_SECONDS[a.mode]
    rows = []
    for N in SIZES[a.mode]:
        p = Problem(counts=(N // K,) * K, tau=TAU, dim=DIM, nonneg=True)
        target = theory.sc_of_loss(p.counts, TAU)
        seeds = list(range(repeats + 1))  # the first run is the cold one
        row = {"N": N, "target_loss": target, "results": {}}
        log(f"certified: N={N}: ufm")
        row["results"]["ufm"] = summarise(run_ufm(p, seeds), target)
        if N <= TORCH_MAX_N:
            try:
                log(f"certified: N={N}: torch_pgd")
                row["results"]["torch_pgd"] = summarise(run_torch(p, seeds[:2 if N >= 10000 else None], cap), target)
            except ImportError:
                log("certified: torch not installed: skipped")
        try:
            log(f"certified: N={N}: pymanopt")
            row["results"]["pymanopt"] = summarise(run_pymanopt(p, seeds[:2 if N >= 10000 else None], cap), target)
        except ImportError:
            log("certified: pymanopt not installed: skipped")
        rows.append(row)
    out = {"what": "seconds to a certified UFM+ solution (gap <= 1e-6), float64", "mode": a.mode,
           "repeats": repeats, "max_seconds": cap, "K": K, "dim": DIM, "tau": TAU, "rows": rows}
    return finish("certified", out, render)


def render(out) -> str:
    head = ["N", "ufm cold (s)", "ufm (s)", "PyTorch PGD (s)", "pymanopt CG (s)", "PyTorch / ufm",
            "pymanopt / ufm", "max gap ufm / torch / pymanopt"]
    body = []
    for r in out["rows"]:
        res = r["results"]
        t = {k: v["median_s"] for k, v in res.items()}
        gaps = " / ".join(f"{res[k]['max_gap']:.1e}" if k in res else "—" for k in ("ufm", "torch_pgd", "pymanopt"))
        body.append([r["N"], res["ufm"]["cold_s"], t["ufm"], t.get("torch_pgd"), t.get("pymanopt"),
                     ratio(t.get("torch_pgd"), t["ufm"]), ratio(t.get("pymanopt"), t["ufm"]), gaps])
    return "Time to a certified solution (UFM+, gap <= 1e-6, median)\n\n" + table(head, body)


if __name__ == "__main__":
    main()
