"""``ufm certify``: solve a problem, then certify the solution against a convex lower bound (or, with
``--bound-only``, just the bound and the relaxed geometry)."""
from __future__ import annotations

import argparse
import os

from .common import (UsageError, add_output_args, add_problem_args, add_size_args, add_solver_args, atomic,
                     check_size, dumps, ensure_dir, eprint, fmt_matrix, problem_from_args, versions, write_json)

HELP = "certify global optimality: a convex lower bound, the gap, and the relaxation's geometry"


def add_parser(sub):
    p = sub.add_parser("certify", help=HELP, description=HELP + ". Solves in float64 unless --float32.")
    add_problem_args(p)
    add_solver_args(p, tol_flag="--solve-tol")
    g = p.add_argument_group("certificate")
    g.add_argument("--method", choices=["auto", "full", "reduced", "first-order"], default="auto",
                   help="reduced (full batch), full (N <= ~150), first-order (any N); auto picks in that order")
    g.add_argument("--solver", type=str.upper, choices=["CLARABEL", "SCS"], default=None,
                   help="convex solver (default: Clarabel, then SCS)")
    g.add_argument("--bound-only", action="store_true", help="no solve: the bound and the relaxed geometry only")
    g.add_argument("--tol", type=float, default=1e-6, help="certified when gap <= tol * max(1, |loss|) (1e-6)")
    add_size_args(p)
    add_output_args(p)
    return p


def _fmt(v, spec=".10f"):
    return "n/a" if v is None else format(v, spec)


def summary(rep) -> str:
    """A short human summary of a certify report."""
    from .solve import summary as solve_summary

    lines = [solve_summary(rep)] if "steps" in rep else []
    state = {True: "CERTIFIED", False: "NOT certified", None: "bound only"}[rep["certified"]]
    lines.append(f"certificate ({rep['method']}, {rep['solver']}, {rep['status']}, "
                 f"{rep['certificate_seconds']:.2f} s): {state}")
    if rep["lower_bound"] is None:
        lines.append(f"lower bound NOT PROVED: {rep['details'].get('why', '')}")
    else:
        lines.append(f"lower bound {_fmt(rep['lower_bound'])}   (proved; floating-point margin "
                     f"{rep['bound_margin']:.1e} subtracted)")
    if rep.get("solver_bound") is not None:
        lines.append(f"solver's value {_fmt(rep['solver_bound'])}   (the convex solver's own number, not a proof)")
    if rep["certified"] is False and rep["gap"] is not None and rep.get("solver_bound") is not None:
        loss = rep["certificate_loss"]
        if loss - rep["solver_bound"] <= rep["tol"] * max(1.0, abs(loss)):
            lines.append(f"not certified: the solver's value would certify, but the proved bound is "
                         f"{rep['solver_bound'] - rep['lower_bound']:.1e} below it (too loose to prove the gap)")
    if rep["gap"] is not None:
        lines.append(f"loss (f64)  {_fmt(rep['certificate_loss'])}   gap {rep['gap']:.2e} (tol {rep['tol']:g} "
                     "relative)")
    rel = rep["relaxation"]
    if rel["rank"] is not None:
        dim = rep["problem"]["dim"]
        lines.append(f"relaxed Gram: rank {rel['rank']} (dim {dim}: {'tight' if rel['rank'] <= dim else 'NOT tight'})")
        lines.append("relaxation's cosines between class means:")
        lines.append(fmt_matrix(rel["mean_cosines"]))
    chk = rep["prediction_check"]
    line = f"prediction {chk['geometry']}: {chk['reason']}"
    for side in ("solution", "relaxation"):
        s = chk[side]
        if s["max_abs_diff"] is not None:
            line += f"\n  {side}: max |cos - {chk['geometry']}| = {s['max_abs_diff']:.1e} " \
                    f"({'matches' if s['matches'] else 'does NOT match'} at {chk['tol']:g})"
    if chk["bound_minus_predicted"] is not None:
        line += f"\n  bound - predicted loss = {chk['bound_minus_predicted']:.1e}"
    s = chk["solution_vs_relaxation"]
    if s["max_abs_diff"] is not None:
        line += f"\n  solution vs relaxation: max |cos difference| = {s['max_abs_diff']:.1e}"
    lines.append(line)
    if rep["certified"] is False and rep.get("dtype") == "float32":
        lines.append("hint: a float32 solution rarely certifies at 1e-6; drop --float32")
    return "\n".join(lines)


def run(args) -> int:
    from solvers.certify import SolverFailure, certify
    from solvers.workflows.report import save_arrays, solution_report
    from ufm import theory

    from .solve import solve_with_progress

    problem = problem_from_args(args)
    check_size(problem, args, certificate=args.method, solve=not args.bound_only)
    if args.out:
        ensure_dir(args.out)
    if not (args.tol >= 0):
        raise UsageError(f"--tol must be a number >= 0, got {args.tol}")
    sol = None
    if args.bound_only:
        rep = {"problem": problem.to_dict(), "prediction": theory.predict(problem).to_dict()}
    else:
        solve_args = argparse.Namespace(**{**vars(args), "tol": args.solve_tol})  # float64 unless --float32
        sol = solve_with_progress(problem, solve_args, "certify")
        rep = solution_report(sol)
    try:
        cert = certify(problem, sol, method=args.method, solver=args.solver, tol=args.tol)
    except SolverFailure as e:
        eprint(f"ufm certify: solver failure: {e}")
        return 3
    except ValueError as e:
        raise UsageError(str(e)) from None
    rep.update(cert.to_dict())
    rep["versions"] = versions()
    code = 0
    if cert.lower_bound is None and sol is None:
        eprint(f"ufm certify: no lower bound could be proved: {cert.details.get('why', '')}")
        code = 3
    if args.out:
        write_json(os.path.join(args.out, "result.json"), rep)
        if sol is not None:
            with atomic(os.path.join(args.out, "solution.npz")) as tmp:
                save_arrays(tmp, sol)
    print(dumps(rep) if args.json else summary(rep))
    return code
