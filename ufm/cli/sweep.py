"""``ufm sweep``: a grid over imbalance ratio, temperature, loss, ReLU and batching, solved and certified point
by point into ``OUT/results.jsonl`` (resumable), with figures; ``ufm plot OUT`` redraws them.

Exit codes: 0 every point solved (and certified or not, as asked), 3 some point failed (recorded as failed; a
rerun tries it again), 2 bad input (a bad grid, an unreadable results file, another sweep writing to --out,
--executor dask without Dask or with no scheduler at --scheduler), 130 Ctrl-C (the rows written are kept; a
figure is complete or absent)."""
from __future__ import annotations

import os

from ufm.defaults import DEFAULT_STEPS

from .common import (UsageError, add_dtype_args, add_size_args, check_memory, dtype_of, dumps, flag_error,
                     float_list, hold_folder, memory_estimate, seed_int)

HELP = "phase plots: solve and certify a grid over imbalance R, tau, loss, ReLU and batching"


def _list(kind):
    def parse(text):
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items:
            raise UsageError(f"empty list {text!r}")
        return items if kind is str else [kind(v) for v in items]
    return parse


POOL = 16  # points of one shape solved together (solvers.pgd.solve_many's slots per pool)
DENSE_LIMIT = 12_000  # solvers.dual.DENSE_LIMIT, written out to stay light: the largest block the dual bound factors
DUAL_COPIES = 12  # (b, b) float64 arrays the dual bound at a solution holds at once (measured: 11; docs/reliability.md)


def sweep_memory(points, certify=True) -> int:
    """Bytes the largest group of a sweep needs (``ufm.cli.common.memory_estimate`` of its problem, times the
    points of its shape solved together, at most ``POOL``; with ``certify`` the certificate of ``auto``: a dense
    ``(N, N)`` block up to N = 150, the reduced ``(2K)^2`` one beyond, plus the dual bound at the solution
    (``solvers.certificate``), which factors a dense block of the solution's Gram -- ``DUAL_COPIES`` float64
    ``(b, b)`` arrays, ``b`` the whole ``N`` unless the batching is ``fixed:b`` -- whenever ``b`` is at most
    ``DENSE_LIMIT``: the largest part of a certified sweep from a few hundred samples to ``DENSE_LIMIT``)."""
    from types import SimpleNamespace

    from .common import largest_batch

    shapes: dict = {}
    for p in points:
        key = (tuple(p["counts"]), p["dim"], p["loss_type"], p["batching"])
        shapes[key] = shapes.get(key, 0) + 1
    need = 0
    for (counts, dim, loss, batching), n in shapes.items():
        prob = SimpleNamespace(counts=counts, dim=dim, loss=loss, batching=batching)
        method = None if not certify else "full" if sum(counts) <= 150 else "reduced"
        N = sum(counts)
        block = largest_batch(prob, N) if str(batching).startswith("fixed:") else N
        dual = DUAL_COPIES * 8 * block * block if certify and block <= DENSE_LIMIT else 0
        need = max(need, memory_estimate(prob, starts=min(n, POOL))
                   + max(memory_estimate(prob, certificate=method, solve=False), dual))
    return need


def _largest(points) -> str:
    p = max(points, key=lambda p: sum(p["counts"]) * (p["dim"] + len(p["counts"])))
    return f"the largest point (N = {sum(p['counts'])}, dim = {p['dim']})"


def add_parser(sub):
    p = sub.add_parser("sweep", help=HELP, description=HELP + ". Solves in float64 unless --float32.")
    p.add_argument("--loss", default="sc", help="sc, ce, bcl, bcl-avg or a list such as sc,ce (default sc)")
    p.add_argument("--imbalance", choices=["step", "long-tail"], default="step",
                   help="step: first half majorities of R*n_min, the rest n_min; long-tail: n_c = n_max R^(-c/(K-1))")
    p.add_argument("--classes", type=int, default=4, help="K (default 4)")
    p.add_argument("--n-min", type=int, default=3, help="samples of the smallest class (default 3)")
    p.add_argument("--ratios", type=float_list, default=[1.0, 3.0, 10.0, 30.0], help="imbalance ratios R >= 1")
    p.add_argument("--taus", type=float_list, default=[0.5, 1.0], help="temperatures (SC)")
    p.add_argument("--minority-fraction", type=float, default=0.5, help="fraction of minority classes (step)")
    p.add_argument("--nonneg", nargs="?", const="yes", default="no", choices=["yes", "no", "both"],
                   help="UFM+ (ReLU): --nonneg, --nonneg no, or --nonneg both")
    p.add_argument("--batchings", default="full", help="comma-separated schemes, e.g. full,fixed:8,binding:8")
    p.add_argument("--dim", type=int, default=None, help="d (default K)")
    p.add_argument("--radius", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=None, help="CE lambda_W (default 5e-3)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"most PGD steps per point (default {DEFAULT_STEPS})")
    p.add_argument("--epochs", type=int, default=200, help="epochs for shuffled / binding batchings (default 200)")
    p.add_argument("--seed", type=seed_int, default=0)
    add_dtype_args(p)
    add_size_args(p)
    p.add_argument("--no-certify", action="store_true", help="skip the certificates")
    p.add_argument("--json", action="store_true", help="print the records as JSON lines on stdout")
    p.add_argument("--out", required=True, metavar="DIR", help="results.jsonl and figures go here")
    g = p.add_argument_group("where the points run")
    g.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: in this process (default); dask: as Dask tasks on a cluster (pip install "
                        "'ufm[cluster]'); this process alone writes results.jsonl either way")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="with --executor dask: a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a "
                        "local cluster)")
    g.add_argument("--workers", type=int, metavar="W", default=None,
                   help="with --executor dask and no --scheduler: worker processes of the local cluster (default: "
                        "the cores)")
    return p


# the record's fields (and a point's, ufm.Problem) as the flags that set them: errors name the flag
FLAGS = {"losses": "--loss", "loss": "--loss", "imbalance": "--imbalance", "classes": "--classes", "n_min": "--n-min",
         "ratios": "--ratios", "taus": "--taus", "tau": "--taus", "dim": "--dim", "nonneg": "--nonneg",
         "batchings": "--batchings", "batching": "--batchings", "minority_fraction": "--minority-fraction",
         "radius": "--radius", "weight_decay": "--weight-decay", "seed": "--seed", "steps": "--steps",
         "epochs": "--epochs"}


def run(args) -> int:
    from solvers.workflows import executors, sweep

    from .. import records
    from ..specs import SweepSpec
    from .common import eprint

    try:  # the flags first, and Dask's presence: before any work
        executors.make(args.executor, scheduler=args.scheduler, workers=args.workers)
        if args.executor == "dask":
            executors.require_dask()
    except executors.ExecutorError as e:
        raise UsageError(str(e)) from None
    nonneg = {"yes": (True,), "no": (False,), "both": (False, True)}[args.nonneg]
    try:
        spec = SweepSpec(
            losses=tuple(_list(str)(args.loss)), imbalance=args.imbalance, classes=args.classes, n_min=args.n_min,
            ratios=tuple(args.ratios), taus=tuple(args.taus), dim=args.dim, nonneg=nonneg,
            batchings=tuple(_list(str)(args.batchings)), minority_fraction=args.minority_fraction,
            radius=args.radius, weight_decay=args.weight_decay, seed=args.seed, steps=args.steps, epochs=args.epochs,
            dtype=dtype_of(args))
    except (ValueError, TypeError) as e:
        raise flag_error(e, FLAGS) from None
    points = spec.points()
    check_memory(args, sweep_memory(points, certify=not args.no_certify), _largest(points),
                 "--classes / --n-min / --ratios / --dim")
    hold_folder(args, "ufm sweep", ("results.jsonl",))
    try:
        recs = sweep.sweep(spec, args.out, certify=not args.no_certify, log=eprint, progress=not args.json,
                           executor=args.executor, scheduler=args.scheduler, workers=args.workers)
    except (records.RecordsError, executors.ExecutorError, ValueError) as e:
        raise UsageError(str(e)) from None
    figures = any(not sweep.failed(r) for r in recs)
    ids = {records.point_id(p) for p in points}
    bad = [r for r in recs if r["id"] in ids and sweep.failed(r)]
    if args.json:
        for r in recs:
            print(dumps(r))
    else:
        where = (f"figures cosines_vs_R, heatmaps, gaps (.png, .pdf) in {args.out}" if figures
                 else "no figures (no point solved)")
        print(f"{len(recs)} points in {os.path.join(args.out, sweep.RESULTS)}; {where}")
        certs = [r["certified"] for r in recs if r.get("certified") is not None]
        if certs:
            hint = " (float32 solves rarely certify gaps <= 1e-6: drop --float32)" \
                if args.float32 and not all(certs) else ""
            print(f"certified: {sum(certs)} of {len(certs)} points{hint}")
    if bad:
        eprint(f"ufm sweep: failed: {len(bad)} of {len(ids)} points (recorded with status \"failed\"; a rerun "
               f"tries them again); first: R={bad[0]['R']:g} {bad[0]['loss_type']} tau={bad[0]['tau']}: "
               f"{bad[0]['error']}")
        return 3
    return 0
