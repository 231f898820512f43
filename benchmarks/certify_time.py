"""Time of each certificate method against N .

    python -m benchmarks.certify_time [--methods full,full-batches,reduced,first-order] [--timeout 300]
                                      [--repeats 3] [--quick]

* ``full``: the full Gram program, full batch (one dense N x N PSD block), Clarabel; N = 25, 50, 100, 200.
* ``full-batches``: the full program under ``fixed:25`` batches (one 25 x 25 block per batch); N = 25 .. 200.
* ``reduced``: the symmetry-reduced program (bound only, no N-sized array); N = 10^2 .. 10^8.
* ``first-order``: the linearisation bound at a near-optimal point (the simplex ETF embedding plus 1e-6 noise,
  K = 10, d = 16); N = 10^2 .. 10^4 (the proved bound: a dense Cholesky factorisation of the dual matrix).

SC, K = 10 balanced classes (N/K each; the full program's N = 25 uses 5 classes of 5), tau = 0.1 (first-order) or
0.5 (programs), sphere. Each case runs in a child process with a wall-clock limit (``--timeout``): the first run
includes JAX / cvxpy compilation ("cold"), "warm" is the median of the later ``--repeats`` runs in that process; targets are judged on the cold
time. Writes
``benchmarks/results/certify_time.json`` and prints a markdown table. Targets (2-core CPU): full N=200 < 60 s,
reduced N=10^7 < 1 s, first-order N=10^4 < 60 s.
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import time

from .machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"full": [25, 50, 100, 200], "full-batches": [25, 50, 100, 200],
         "reduced": [10 ** k for k in range(2, 9)], "first-order": [100, 1000, 4000, 10000]}
TARGETS = {("full", 200): 60.0, ("reduced", 10 ** 7): 1.0, ("first-order", 10000): 60.0}


def _problem(method, n):
    from ufm import Problem

    K = 5 if n < 50 else 10
    counts = (n // K,) * K
    if method == "first-order":
        return Problem(counts=counts, tau=0.1, dim=16)
    return Problem(counts=counts, tau=0.5, batching="fixed:25" if method == "full-batches" else "full")


def _point(p, noise=1e-6):
    """The simplex ETF embedding of ``p`` plus Gaussian noise (a near-optimal solution), as a Solution."""
    import numpy as np

    from solvers.pgd import Solution
    from ufm import theory

    w, V = np.linalg.eigh(theory.etf_gram(p.K))
    Z = np.zeros((p.N, p.dim))
    Z[:, :p.K] = (V * np.sqrt(np.clip(w, 0, None)))[p.label_array]
    Z += noise * np.random.default_rng(0).standard_normal(Z.shape)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return Solution(Z, None, None, float("nan"), np.zeros(1), 0, True, 0.0, "float64", 0, p)


def _case(method, n, repeats, queue):
    from solvers import certify

    p = _problem(method, n)
    sol = _point(p) if method == "first-order" else None
    kind = "first-order" if method == "first-order" else "reduced" if method == "reduced" else "full"
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = certify(p, sol, method=kind)
        runs.append(time.perf_counter() - t0)
        pred = c.prediction["loss"]
        queue.put({"cold_s": runs[0], "warm_s": statistics.median(runs[1:]) if len(runs) > 1 else None,
                   "runs": len(runs), "lower_bound": c.lower_bound, "gap": c.gap,
                   "bound_minus_closed_form": None if pred is None else c.lower_bound - pred,
                   "solver": c.solver, "status": c.status, "rank": c.rank})


def measure(method, n, repeats, timeout):
    """Run one case in a child process; returns its last report, or a timeout record."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_case, args=(method, n, repeats, q))
    start = time.perf_counter()
    proc.start()
    last = None
    while proc.is_alive() and time.perf_counter() - start < timeout:
        proc.join(1.0)
    while not q.empty():
        last = q.get()
    if proc.is_alive():
        proc.terminate()
        proc.join()
    out = {"method": method, "N": n, **(last or {})}
    if last is None:
        out["timeout_s"] = timeout
    if (method, n) in TARGETS and last is not None:
        out["target_s"] = TARGETS[method, n]
        out["meets_target"] = last["cold_s"] < TARGETS[method, n]  # compilation included
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="full,full-batches,reduced,first-order")
    ap.add_argument("--timeout", type=float, default=300.0, help="wall-clock limit per case (s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smallest two sizes of each method")
    a = ap.parse_args(argv)
    rows = []
    for method in a.methods.split(","):
        stopped = None
        for n in SIZES[method][: 2 if a.quick else None]:
            row = {"method": method, "N": n, "skipped": f"N={stopped} ran past the limit"} if stopped else \
                measure(method, n, a.repeats, a.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if "timeout_s" in row:
                stopped = n  # larger N only takes longer
    res = {"command": "python -m benchmarks.certify_time " + " ".join(argv or []), "machine": describe(),
           "rows": rows}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "certify_time.json"), "w") as fh:
        json.dump(res, fh, indent=2)
    print("\n| method | N | cold (s) | warm (s) | solver | gap of the solution | bound - closed form | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = f"{r['N']:,}" if r["N"] <= 10 ** 4 else f"10^{len(str(r['N'])) - 1}"
        target = (r["method"], r["N"]) in TARGETS and f"< {TARGETS[r['method'], r['N']]:.0f} s"
        if "timeout_s" in r or "skipped" in r:
            what = f"> {r['timeout_s']:.0f} (stopped)" if "timeout_s" in r else f"not run ({r['skipped']})"
            print(f"| {r['method']} | {n} | {what} | | | | | {target + ': NOT met' if target else ''} |")
            continue
        warm = "" if r["warm_s"] is None else f"{r['warm_s']:.2f}"
        gap = "" if r["gap"] is None else f"{r['gap']:.1e}"
        closed = "" if r["bound_minus_closed_form"] is None else f"{r['bound_minus_closed_form']:.1e}"
        met = f"{target}: {'met' if r['meets_target'] else 'NOT met'}" if target else ""
        print(f"| {r['method']} | {n} | {r['cold_s']:.2f} | {warm} | {r['solver']} | {gap} | {closed} | {met} |")
    m = res["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, jax {m['jax']}, devices {m['devices']}")


if __name__ == "__main__":
    main()
