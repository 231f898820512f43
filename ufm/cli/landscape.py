"""``ufm landscape``: where the full-batch SC landscape is benign. Over a grid of integer class counts x
temperatures, many random starts per point, the stationary points they reach grouped, the global minimum proved,
and each group certified as a strict local minimum or a saddle (``solvers.workflows.landscape``).

Writes ``OUT/landscape.jsonl`` (one record per point, appended as each point finishes; a rerun skips the points
done), then ``OUT/landscape.json`` (one list entry per point: ``counts``, ``taus``, ``starts``, ``global_loss``,
``local_minima``, ``spurious_fraction``, ...; docs/landscape.md) and the heat map ``landscape.png`` / ``.pdf``.
Exit codes: 0 every point proved, 3 some point not proved (the local certificate missing, a bound not tight, a start
that did not converge, a stationary point neither proved a local minimum nor a saddle), 2 bad input."""
from __future__ import annotations

import sys

from ufm.defaults import DEFAULT_STEPS

from .common import UsageError, dumps, eprint, flag_error, hold_folder, named_int_list, seed_int

HELP = "where the SC landscape is benign: random starts per point, stationary points grouped and certified"
MAX_POINTS = 2000
MAX_STARTS = 1000


def _counts_list(text: str) -> list[list[int]]:
    """``"10,1,1;4,2,2"`` -> ``[[10, 1, 1], [4, 2, 2]]`` (several vectors separated by ``;``)."""
    return [named_int_list("--counts")(part) for part in text.split(";")]


def add_parser(sub):
    p = sub.add_parser("landscape", help=HELP, description=HELP + ". Full-batch SC on the unit sphere, float64.")
    g = p.add_argument_group("grid (a family of integer class sizes, or --counts)")
    g.add_argument("--classes", type=int, default=None, help="K (default 3)")
    g.add_argument("--imbalance", choices=["step", "long-tail"], default=None,
                   help="step: majorities of round(R*n_min), minorities of n_min; long-tail: "
                        "n_c = round(n_max R^(-c/(K-1))) (default step)")
    g.add_argument("--n-min", type=int, default=None, help="size of the smallest class, integer >= 1 (default 2)")
    g.add_argument("--minority-fraction", type=float, default=None, help="fraction of minority classes (default 0.5)")
    g.add_argument("--ratios", default=None, help="R: LO:HI:N log-spaced, or a list (default 1,2,5); sizes are "
                   "rounded to integers and recorded")
    g.add_argument("--counts", action="append", type=_counts_list, default=None, metavar="N1,N2,...",
                   help="explicit count vectors instead of the family: '10,1,1' (repeat the flag or separate "
                        "vectors by ';')")
    g.add_argument("--taus", default="0.05,0.1,0.2,0.5", help="tau: LO:HI:N log-spaced, or a list "
                   "(default 0.05,0.1,0.2,0.5)")
    g.add_argument("--dim", type=int, default=None, help="d (default K+1: the theorem's d > K)")
    s = p.add_argument_group("starts and certificates")
    s.add_argument("--starts", type=int, default=8, help="random starts per point (default 8)")
    s.add_argument("--seed", type=seed_int, default=0, help="start i of every point is drawn from seed + i")
    s.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"most projected-gradient steps per start (default {DEFAULT_STEPS})")
    s.add_argument("--tol", type=float, default=1e-6,
                   help="relative tolerance of the global certificate and of equal losses (default 1e-6)")
    s.add_argument("--gram-tol", type=float, default=1e-2,
                   help="two stationary points are one when their Gram invariants agree to this (default 1e-2)")
    p.add_argument("--no-figures", action="store_true", help="write landscape.json only")
    p.add_argument("--json", action="store_true", help="print landscape.json on stdout")
    p.add_argument("--out", required=True, metavar="DIR", help="landscape.jsonl, landscape.json and the figure")
    return p


FLAGS = {"counts": "--counts", "classes": "--classes", "imbalance": "--imbalance", "n_min": "--n-min",
         "minority_fraction": "--minority-fraction", "ratios": "--ratios", "taus": "--taus", "dim": "--dim",
         "starts": "--starts", "seed": "--seed", "steps": "--steps", "tol": "--tol", "gram_tol": "--gram-tol"}


def _spec(args):
    """The ``ufm.specs.LandscapeSpec`` of the flags, within this command's limits; ``UsageError`` naming the
    flag."""
    from ufm.specs import LandscapeSpec

    from .phase import axis_values

    family = {"--classes": args.classes, "--imbalance": args.imbalance, "--n-min": args.n_min,
              "--minority-fraction": args.minority_fraction, "--ratios": args.ratios}
    counts = None
    if args.counts is not None:
        given = [k for k, v in family.items() if v is not None]
        if given:
            raise UsageError(f"--counts states the class sizes: drop {', '.join(given)} (the family flags)")
        counts = tuple(tuple(c) for group in args.counts for c in group)
    ratios = None if args.ratios is None else tuple(axis_values(args.ratios, "--ratios"))
    if not 1 <= args.starts <= MAX_STARTS:
        raise UsageError(f"--starts must be an integer in 1..{MAX_STARTS}, got {args.starts}")
    taus = tuple(axis_values(args.taus, "--taus"))
    n = len(counts if counts is not None else ratios or (1.0, 2.0, 5.0)) * len(taus)
    if n > MAX_POINTS:  # before the record builds its points
        raise UsageError(f"{n} points exceed this command's limit ({MAX_POINTS}); split the grid into several runs")
    try:
        spec = LandscapeSpec(counts=counts, classes=args.classes, imbalance=args.imbalance, n_min=args.n_min,
                             minority_fraction=args.minority_fraction, ratios=ratios,
                             taus=taus, dim=args.dim, starts=args.starts,
                             seed=args.seed, steps=args.steps, tol=args.tol, gram_tol=args.gram_tol)
    except (ValueError, TypeError) as e:
        raise flag_error(e, FLAGS) from None
    K = {len(c) for c in spec.vectors()}
    if args.dim is not None and min(K) >= args.dim:
        eprint(f"ufm landscape: note: --dim {args.dim} <= K: outside the theorem's d > K")
    return spec


def run(args) -> int:
    spec = _spec(args)
    points = spec.points()
    asked = len(spec.vectors()) * len(spec.taus)
    if len(points) < asked:
        eprint(f"ufm landscape: note: {(asked - len(points)) // len(spec.taus)} count vector(s) repeat one "
               "already in the grid (after rounding); each is run once")
    out = hold_folder(args, "ufm landscape", ("landscape.jsonl", "landscape.json", "landscape.png", "landscape.pdf"))
    from solvers.workflows import landscape as ls
    from ufm.progress import Progress
    from ufm.records import RecordsError

    try:
        certify_local = ls.local_certifier()
        missing = None
    except ls.LocalCertificateMissing as e:
        certify_local, missing = None, str(e)
    try:
        with Progress(len(points), "ufm landscape", enabled=not args.json) as bar:
            result = ls.landscape(spec, out, figures=not args.no_figures, certify_local=certify_local,
                                  progress=bar, log=lambda line: bar.write(f"ufm landscape: {line}", file=sys.stderr))
    except RecordsError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(dumps(result))
    n, ok = result["points"], result["certified_points"]
    if missing is not None or result["local_certificate"] != "available":
        eprint(f"ufm landscape: {missing or 'some points lack the local certificate'}: local minima not proved; "
               f"spurious_fraction is null, above_global_fraction measured; wrote {out}/landscape.json")
        return 3
    eprint(f"ufm landscape: {ok}/{n} points proved; wrote {out}/landscape.json")
    return 0 if ok == n else 3
