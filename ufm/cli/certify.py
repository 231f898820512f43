"""``ufm certify``: solve a problem, then certify the solution against a convex lower bound (or, with
``--bound-only``, just the bound and the relaxed geometry; with ``--local FILE``, prove that the point in FILE is
a strict local minimum, and whether it is spurious: ``solvers.local``)."""
from __future__ import annotations

import argparse
import os

from .common import (UsageError, add_output_args, add_problem_args, add_size_args, add_solver_args, atomic,
                     check_size, dumps, eprint, hold_folder, fmt_matrix, problem_from_args, versions, write_json)

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
    g.add_argument("--local", metavar="FILE", default=None,
                   help="prove the point in FILE (a `ufm solve --out` directory or its solution.npz / result.json, or "
                        "a .npz / .npy holding Z) a strict local minimum; exit 0 proved, 3 not proved")
    g.add_argument("--global", dest="global_", metavar="FILE", default=None,
                   help="with --local: the global solution to certify (default: solve the problem and certify it)")
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


def load_point(path: str, problem, flag: str = "--local"):
    """``Z (N, d)`` float64 from a ``ufm solve --out`` directory (its ``solution.npz``), its ``result.json``
    (the ``solution.npz`` beside it), an ``.npz`` holding ``Z`` or an ``.npy``; ``UsageError`` (one line naming
    ``flag``) for a missing file, a missing ``Z``, a wrong shape, or labels that are not the problem's."""
    import numpy as np

    if os.path.isdir(path):
        path = os.path.join(path, "solution.npz")
    elif path.endswith(".json"):
        path = os.path.join(os.path.dirname(path) or ".", "solution.npz")
    if not os.path.isfile(path):
        raise UsageError(f"{flag}: no such file {path!r}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 (any unreadable file is bad input)
        raise UsageError(f"{flag}: cannot read {path!r} as .npz/.npy: {e}") from None
    labels = None
    if isinstance(data, np.ndarray):
        Z = data
    else:
        if "Z" not in data.files:
            raise UsageError(f"{flag}: {path!r} holds no array named Z (it has {', '.join(data.files) or 'none'})")
        Z = data["Z"]
        labels = data["labels"] if "labels" in data.files else None
    if Z.ndim != 2 or Z.shape != (problem.N, problem.dim):
        raise UsageError(f"{flag}: Z has shape {tuple(Z.shape)}, the problem has N = {problem.N} samples in dim "
                         f"{problem.dim}: expected ({problem.N}, {problem.dim}) (check --counts and --dim)")
    if not np.issubdtype(Z.dtype, np.number) or not np.all(np.isfinite(Z)):
        raise UsageError(f"{flag}: Z holds non-finite or non-numeric values")
    if labels is not None and (labels.shape != (problem.N,) or np.any(labels != problem.label_array)):
        raise UsageError(f"{flag}: the file's labels are not the problem's (check --counts)")
    return np.asarray(Z, dtype=np.float64)


def local_summary(rep) -> str:
    """One short block: what was proved at the point."""
    c, g = rep["local_minimum"], rep["global"]
    if c["proved"]:
        lo, hi = c["loss_interval"]
        head = (f"local minimum PROVED (strict, modulo rotation): loss in [{lo:.12f}, {hi:.12f}], within radius "
                f"{c['radius']:.1e}; gradient <= {c['gradient_norm_upper']:.1e}, Hessian eigenvalue >= "
                f"{c['hessian_min_eig_lower']:.3g} on the slice")
    elif c["kind"] == "saddle":
        lo, hi = c["loss_interval"]
        head = (f"NOT a local minimum: a proved saddle (critical point within {c['radius']:.1e}, loss in [{lo:.12f}, "
                f"{hi:.12f}], curvature <= {c['negative_curvature_upper']:.3g} along a direction)")
    else:
        head = f"local minimum NOT PROVED: {c['why']}"
    if g.get("certified"):
        tail = (f"global: certified solution of loss <= {g['loss_upper']:.12f} ({g['source']}); " +
                {True: "SPURIOUS: the local minimum is not global", False: "not spurious (its loss interval reaches "
                 "the global loss)", None: "spurious: not decided"}[c["spurious"]])
    else:
        tail = f"global: not certified ({g.get('why', '')}); spurious not decided"
    return f"{head}\n{tail}\n({c['seconds']:.2f} s, rank {c['rank']}, orbit {c['orbit_dim']}, slice {c['slice_dim']})"


def run_local(args, problem) -> int:
    """``ufm certify --local FILE``: the local certificate at FILE's point, and the global certificate that
    decides whether it is spurious."""
    import types

    from solvers.certificate import SolverFailure, certify
    from solvers.local import certify_local, loss_upper

    from .solve import solve_with_progress

    if args.bound_only:
        raise UsageError("--local proves a point; it cannot be combined with --bound-only")
    if not (args.tol >= 0):
        raise UsageError(f"--tol must be a number >= 0, got {args.tol}")
    hold_folder(args, "ufm certify", ("result.json", "local.npz"))
    Z = load_point(args.local, problem)
    if args.global_:
        gsol = types.SimpleNamespace(Z=load_point(args.global_, problem, "--global"), W=None, b=None)
        source = args.global_
    else:
        solve_args = argparse.Namespace(**{**vars(args), "tol": args.solve_tol})
        gsol = solve_with_progress(problem, solve_args, "certify")
        source = f"solved here (seed {args.seed})"
    glob = {"source": source}
    try:
        cert = certify(problem, gsol, method=args.method, solver=args.solver, tol=args.tol)
        glob.update(certified=bool(cert.certified), loss=cert.loss, lower_bound=cert.lower_bound, gap=cert.gap)
        if not cert.certified:
            glob["why"] = cert.details.get("why", "") or f"gap {cert.gap} above tol"
    except SolverFailure as e:
        glob.update(certified=False, why=f"solver failure: {e}")
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        gl = loss_upper(problem, gsol.Z) if glob["certified"] else None
        glob["loss_upper"] = gl
        lc = certify_local(problem, Z, global_loss=gl)
    except ValueError as e:
        raise UsageError(f"--local: {e}") from None
    rep = {"problem": problem.to_dict(), "local_file": args.local, "local_minimum": lc.to_dict(), "global": glob,
           "versions": versions()}
    if args.out:
        import numpy as np

        write_json(os.path.join(args.out, "result.json"), rep)
        with atomic(os.path.join(args.out, "local.npz")) as tmp:
            np.savez(tmp, Z=lc.Z, labels=problem.label_array)  # type: ignore[arg-type]  # certify_local sets Z
    print(dumps(rep) if args.json else local_summary(rep))
    if not lc.proved:
        eprint(f"ufm certify: local minimum not proved: {lc.why}")
    return 0 if lc.proved else 3


def run(args) -> int:
    from solvers.certificate import SolverFailure, certify
    from solvers.workflows.report import save_arrays, solution_report
    from ufm import objectives, theory

    from .solve import solve_with_progress

    problem = problem_from_args(args)
    if args.global_ and not args.local:
        raise UsageError("--global needs --local (the point whose local minimum it decides)")
    if not objectives.of(problem).certifiable:  # the objective declares no proof: one line, nothing solved
        eprint(f"ufm certify: loss {problem.loss!r} is not certifiable: its objective declares no convex relaxation "
               "and dual bound (ufm.objectives); `ufm solve` runs it")
        return 3
    if args.local:
        return run_local(args, problem)
    check_size(problem, args, certificate=args.method, solve=not args.bound_only)
    hold_folder(args, "ufm certify", ("result.json", "solution.npz"))
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
