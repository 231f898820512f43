"""``ufm landscape``: where the full-batch SC landscape is benign. Over a grid of integer class counts x
temperatures, many random starts per point, the stationary points they reach grouped, the global minimum proved,
and each group certified as a strict local minimum or a saddle (``solvers.workflows.landscape``).

Writes ``OUT/landscape.jsonl`` (one record per point, appended as each point finishes; a rerun skips the points
done), then ``OUT/landscape.json`` (one list entry per point: ``counts``, ``taus``, ``starts``, ``global_loss``,
``local_minima``, ``spurious_fraction``, ...; docs/landscape.md) and the heat map ``landscape.png`` / ``.pdf``.
Exit codes: 0 every point proved, 3 some point not proved (the local certificate missing, a bound not tight, a start
that did not converge, a stationary point neither proved a local minimum nor a saddle), 2 bad input."""
from __future__ import annotations

import math
import os
import sys

from ufm.defaults import DEFAULT_STEPS

from .common import (UsageError, dumps, eprint, hold_folder, named_int_list, seed_int, write_json)

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


def _spec(args):
    """The validated grid arguments: ``(kwargs of grid_points, settings)``; ``UsageError`` naming the flag."""
    from .phase import axis_values

    family = {"--classes": args.classes, "--imbalance": args.imbalance, "--n-min": args.n_min,
              "--minority-fraction": args.minority_fraction, "--ratios": args.ratios}
    if args.counts is not None:
        given = [k for k, v in family.items() if v is not None]
        if given:
            raise UsageError(f"--counts states the class sizes: drop {', '.join(given)} (the family flags)")
        counts = [c for group in args.counts for c in group]
        for c in counts:
            if len(c) < 2 or min(c) < 1 or max(c) < 2:
                raise UsageError(f"--counts: every vector needs >= 2 classes, each of >= 1 sample, one of >= 2; "
                                 f"got {','.join(map(str, c))}")
        K = {len(c) for c in counts}
    else:
        classes = 3 if args.classes is None else args.classes
        if classes < 2:
            raise UsageError(f"--classes must be >= 2, got {classes}")
        n_min = 2 if args.n_min is None else args.n_min
        if n_min < 1:
            raise UsageError(f"--n-min must be an integer >= 1, got {n_min}")
        frac = 0.5 if args.minority_fraction is None else args.minority_fraction
        if not 0 < frac < 1:
            raise UsageError(f"--minority-fraction must lie in (0, 1), got {frac}")
        ratios = axis_values(args.ratios or "1,2,5", "--ratios")
        if ratios[0] < 1:
            raise UsageError(f"--ratios: every R must be >= 1, got {ratios[0]}")
        counts = None
        K = {classes}
    taus = axis_values(args.taus, "--taus")
    if args.dim is not None and args.dim < 1:
        raise UsageError(f"--dim must be >= 1, got {args.dim}")
    if not 1 <= args.starts <= MAX_STARTS:
        raise UsageError(f"--starts must be an integer in 1..{MAX_STARTS}, got {args.starts}")
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise UsageError(f"--tol must be a finite number >= 0, got {args.tol}")
    if not (math.isfinite(args.gram_tol) and args.gram_tol > 0):
        raise UsageError(f"--gram-tol must be a finite number > 0, got {args.gram_tol}")
    kwargs = {"taus": taus, "dim": args.dim, "starts": args.starts, "seed": args.seed, "steps": args.steps,
              "tol": args.tol, "gram_tol": args.gram_tol}
    settings = {"loss": "sc", "constraint": "sphere", "radius": 1.0, "batching": "full", "nonneg": False,
                "dtype": "float64", "dim": args.dim if args.dim is not None else "K+1", "starts": args.starts,
                "steps": args.steps, "tol": args.tol, "gram_tol": args.gram_tol, "seed": args.seed}
    if counts is not None:
        kwargs["counts"] = counts
        settings.update(family=None)
    else:
        kwargs.update(classes=classes, n_min=n_min, ratios=ratios, imbalance_profile=args.imbalance or "step",
                      minority_fraction=frac)
        settings.update(family={"classes": classes, "imbalance": args.imbalance or "step", "n_min": n_min,
                                "minority_fraction": frac, "ratios": ratios})
    n = (len(counts) if counts is not None else len(ratios)) * len(taus)
    if n > MAX_POINTS:
        raise UsageError(f"{n} points exceed this command's limit ({MAX_POINTS}); split the grid into several runs")
    if args.dim is not None and min(K) >= args.dim:
        eprint(f"ufm landscape: note: --dim {args.dim} <= K: outside the theorem's d > K")
    return kwargs, settings


def run(args) -> int:
    kwargs, settings = _spec(args)
    try:
        from solvers.workflows.landscape import grid_points

        points = grid_points(**kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    asked = len(kwargs.get("counts") or kwargs.get("ratios") or []) * len(kwargs["taus"])
    if len(points) < asked:
        eprint(f"ufm landscape: note: {(asked - len(points)) // len(kwargs['taus'])} count vector(s) repeat one "
               "already in the grid (after rounding); each is run once")
    out = hold_folder(args, "ufm landscape", ("landscape.jsonl", "landscape.json", "landscape.png", "landscape.pdf"))
    from solvers.workflows import landscape as ls
    from ufm.progress import Progress
    from ufm.records import RecordsError

    from .common import versions

    try:
        certify_local = ls.local_certifier()
        missing = None
    except ls.LocalCertificateMissing as e:
        certify_local, missing = None, str(e)
    try:
        with Progress(len(points), "ufm landscape", enabled=not args.json) as bar:
            recs = ls.run_landscape(points, out, certify_local=certify_local, progress=bar,
                                    log=lambda line: bar.write(f"ufm landscape: {line}", file=sys.stderr))
    except RecordsError as e:
        raise UsageError(str(e)) from None
    result = ls.assemble(recs, settings)
    result.update(seed=args.seed, versions=versions())
    write_json(os.path.join(out, "landscape.json"), result)
    if not args.no_figures:
        from solvers.workflows.landscape_figures import draw_landscape

        draw_landscape(result, out)
    if args.json:
        print(dumps(result))
    n, ok = result["points"], result["certified_points"]
    if missing is not None or result["local_certificate"] != "available":
        eprint(f"ufm landscape: {missing or 'some points lack the local certificate'}: local minima not proved; "
               f"spurious_fraction is null, above_global_fraction measured; wrote {out}/landscape.json")
        return 3
    eprint(f"ufm landscape: {ok}/{n} points proved; wrote {out}/landscape.json")
    return 0 if ok == n else 3
