"""``ufm solve``: minimise one problem and report loss, geometry and the theory's prediction."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .common import (add_output_args, add_problem_args, add_size_args, add_solver_args, atomic, check_size,
                     dtype_of, dumps, eprint, fmt_matrix, hold_folder, problem_from_args, versions, write_json)

if TYPE_CHECKING:
    from ufm.problem import Problem

HELP = "minimise a UFM problem by projected gradient; report loss, geometry and prediction"


def add_parser(sub):
    p = sub.add_parser("solve", help=HELP, description=HELP + ". Solves in float64 unless --float32.")
    add_problem_args(p)
    add_solver_args(p)
    add_size_args(p)
    add_output_args(p)
    return p


SLOW_WORK = 5e6  # N * (d + largest batch) above which a solve is announced on stderr (a few seconds or more)


def expected_work(problem: Problem) -> float:
    """A rough size of one solve: ``N * (d + b)`` (the per-step cost is ~ N d and ~ N b in the logits)."""
    from .common import largest_batch, counts_and_dim

    counts, d = counts_and_dim(problem)
    N = sum(counts)
    return float(N) * (d + largest_batch(problem, N))


def solve_with_progress(problem: Problem, args, what="solve"):
    """``run_solve``, announced on stderr (the size) when :func:`expected_work` exceeds ``SLOW_WORK``, with the
    solver's progress bar (steps, elapsed time, ETA, loss) or, for the epoch solver, its per-epoch bar."""
    if expected_work(problem) <= SLOW_WORK:
        return run_solve(problem, args)
    counts = [int(c) for c in problem.counts]
    eprint(f"ufm {what}: solving N={sum(counts)}, K={len(counts)}, dim={problem.dim}, "
           f"{problem.batching} batching; this may take a while")
    return run_solve(problem, args, progress=True)


def run_solve(problem: Problem, args, progress=None):
    """Solve with the solver flags of ``args``; returns the Solution. Epoch schemes, and ``--epochs`` on any
    batching, run the stochastic epoch solver (``solvers.epochs``); the rest the deterministic ``solvers.pgd``.
    float64 unless ``args.float32``."""
    from solvers import solve
    from solvers.epochs import DEFAULT_EPOCHS
    from ufm.batching import is_epoch_scheme

    kw = dict(lr=args.lr, optimizer=args.optimizer, tol=args.tol, seed=args.seed, dtype=dtype_of(args))
    quiet = bool(getattr(args, "json", False))  # a --json run draws no bar (a bar shows on a terminal only anyway)
    if getattr(args, "epochs", None) is not None or is_epoch_scheme(problem):
        if getattr(args, "starts", None) is not None:
            from .common import UsageError

            raise UsageError("--starts: the epoch solver runs one start (use --seed)")
        if getattr(args, "acceleration", False):
            from .common import UsageError

            raise UsageError("--acceleration: the epoch solver has none (it runs the projected-gradient step)")
        kw.update(epochs=DEFAULT_EPOCHS if args.epochs is None else args.epochs, progress=False if quiet else None)
    else:
        kw.update(steps=args.steps, starts=getattr(args, "starts", None), progress=False if quiet else progress,
                  acceleration=bool(getattr(args, "acceleration", False)))
    try:
        return solve(problem, **kw)
    except ValueError as e:
        from .common import UsageError

        raise UsageError(str(e)) from None


def summary(rep) -> str:
    """A short human summary of a solve report."""
    from ufm import objectives

    p, pred, g = rep["problem"], rep["prediction"], rep["geometry"]
    counts = ",".join(map(str, p["counts"]))
    what = f"{p['loss'].upper()}, counts {counts} (N={sum(p['counts'])}, K={len(p['counts'])}), dim={p['dim']}"
    for name in objectives.get(p["loss"]).summary_fields:  # the loss's own numbers: a temperature, a decay
        v = p.get(name)
        what += f", {name}={v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f", {name}={v}"
    what += f", {p['constraint']} r={p['radius']:g}" + (", nonneg (UFM+)" if p["nonneg"] else "")
    state = "converged" if rep["converged"] else f"NOT converged (raise --{'epochs' if 'batching' in rep else 'steps'})"
    lines = [what, f"loss       {rep['loss']:.10f}   ({rep['dtype']}, {rep['steps']} steps, {state}, "
                   f"{rep['seconds']:.2f} s)"]
    if pred["loss"] is not None:
        lines.append(f"predicted  {pred['loss']:.10f}   ({pred['geometry']}: {pred['reason']})")
        lines.append(f"difference {rep['loss'] - pred['loss']:.2e}")
    else:
        lines.append(f"predicted  {pred['geometry']}: {pred['reason']}")
    if "batching" in rep:
        b = rep["batching"]
        lines.append(f"batching   {b['scheme']}: {b['epochs']} epochs of {b['batches_per_epoch']} batches; loss is "
                     f"the {b['objective']}")
        if b["of_loss"] is not None:
            lines.append(f"OF minimum of these batches {b['of_loss']:.10f}, gap {b['gap_to_of']:.2e}; "
                         f"OF unique: {b['unique_of']}")
    lines.append("cosines between class means:")
    lines.append(fmt_matrix(g["mean_cosines"]))
    lines.append(f"delta_gm {g['delta_gm']:.3e} (0 at OF)   etf_distance {g['etf_distance']:.3e}   "
                 f"nc1 {g['nc1']:.3e}")
    if g["classifier_norms"] is not None:
        lines.append("classifier norms " + " ".join(f"{v:.4f}" for v in g["classifier_norms"]))
    if rep["dtype"] == "float32":
        lines.append("note: float32 resolves the loss to ~1e-7; where the loss is flat in the geometry (small tau) "
                     "the cosines can be far from the minimiser's: drop --float32 (and run ufm certify) for the "
                     "geometry")
    return "\n".join(lines)


def run(args) -> int:
    from solvers.workflows.report import save_arrays, solution_report

    problem = problem_from_args(args)
    check_size(problem, args)
    hold_folder(args, "ufm solve", ("result.json", "solution.npz"))
    sol = solve_with_progress(problem, args)
    rep = solution_report(sol)
    rep["versions"] = versions()
    if args.out:
        write_json(os.path.join(args.out, "result.json"), rep)
        with atomic(os.path.join(args.out, "solution.npz")) as tmp:
            save_arrays(tmp, sol)
    print(dumps(rep) if args.json else summary(rep))
    return 0
