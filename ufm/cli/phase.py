"""``ufm phase``: a certified phase diagram over the imbalance ratio R and tau (CE: the weight decay), on the
class-level problem (class sizes as real numbers: any N costs the same), with its boundaries and figures.

Writes ``OUT/phase.json`` (``ratios``, ``taus`` or ``weight_decays``, 2-D arrays ``[value][ratio]``: ``loss``,
``lower_bound``, ``certified``, ``min_min``, ``maj_maj``, ``maj_min``, ``delta_gm``; ``boundaries``), the figures
(PNG, PDF) and a CSV of every array. Exit codes: 0 every point certified, 3 some point not certified (marked in
the JSON and the figures), 2 bad input."""
from __future__ import annotations

import argparse
import math

from .common import (UsageError, add_size_args, check_memory, comma_entries, dumps, eprint, flag_error, hold_folder,
                     seed_int)

HELP = "certified phase diagram over imbalance R and tau (or CE weight decay), with its boundaries"
MAX_POINTS = 250_000  # a grid larger than this is refused (memory: points x K x dim floats, several copies)
MAX_WORK = 5 * 10**7  # points x G x (G + 1) on the reduced path (the class-level path: memory_bytes, below)
MAX_CLASSES = 10**6  # K: the families are built class by class
OUTPUTS = ("phase.json",) + tuple(f"phase_{name}.{ext}" for name in ("diagram", "delta_gm", "cosines", "gap")
                                  for ext in ("png", "pdf"))  # solvers.workflows.phase.OUTPUTS, written out to stay light


def axis_size(text: str) -> int:
    """The number of values of an axis, read from its text without building it (``LO:HI:N`` -> N; a list: its
    entries); 0 when the text is malformed (:func:`axis_values` says why)."""
    text = text.strip()
    if ":" in text:
        try:
            return max(0, int(text.split(":")[-1]))
        except ValueError:
            return 0
    return text.count(",") + 1


def axis_values(text: str, name: str, max_n: int = MAX_POINTS) -> list[float]:
    """``LO:HI:N`` (N values log-spaced from LO to HI, both included) or a comma-separated list; positive,
    finite, strictly increasing, at most ``max_n`` values (checked before the list is built). ``UsageError``
    naming ``name``."""
    text = text.strip()
    if axis_size(text) > max_n:
        raise UsageError(f"{name}: {axis_size(text)} values, more than this command's limit of {max_n}; split the "
                         "grid into several runs")
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1 or not (0 < lo <= hi) or not math.isfinite(hi):
                raise ValueError
            if n == 1:
                if lo != hi:
                    raise ValueError
                vals = [lo]
            else:
                vals = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
                vals[-1] = hi
        else:
            vals = [float(v) for v in comma_entries(text, name)]
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    except ValueError:
        raise UsageError(f"{name}: expected LO:HI:N (log-spaced, 0 < LO <= HI, N >= 1) or a comma-separated list, "
                         f"got {text!r}") from None
    for v in vals:
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"{name}: every value must be a finite number > 0, got {v!r}")
    if any(b <= a for a, b in zip(vals, vals[1:])):
        raise UsageError(f"{name}: the values must be strictly increasing, got {text!r}")
    return vals


def add_parser(sub):
    p = sub.add_parser("phase", help=HELP, description=HELP + ". float64; every point proved by a lower bound.")
    p.add_argument("--loss", default="sc", help="sc, ce, bcl or bcl-avg (default sc; bcl: full batch, no --nonneg)")
    p.add_argument("--nonneg", action="store_true", help="UFM+: a ReLU before the loss (Z >= 0)")
    p.add_argument("--classes", type=int, default=4, help="K (default 4)")
    p.add_argument("--imbalance", choices=["step", "long-tail"], default="step",
                   help="step: majorities of R*n_min, minorities of n_min; long-tail: n_c = n_min R^(1-c/(K-1))")
    p.add_argument("--n-min", type=float, default=5.0, help="size of the smallest class, real >= 2 (default 5)")
    p.add_argument("--minority-fraction", type=float, default=0.5, help="fraction of minority classes (default 0.5)")
    p.add_argument("--ratios", default="1:100:25", help="R: LO:HI:N log-spaced, or a list (default 1:100:25)")
    p.add_argument("--taus", default=None, help="tau (SC, BCL): LO:HI:N log-spaced, or a list (default 0.05:1:8)")
    p.add_argument("--weight-decays", default=None,
                   help="CE's axis, lambda_W: LO:HI:N log-spaced, or a list (default 1e-3:1e-1:8)")
    p.add_argument("--dim", type=int, default=None, help="d (default K)")
    p.add_argument("--constraint", choices=["sphere", "ball"], default="sphere")
    p.add_argument("--tol", type=float, default=1e-6, help="relative tolerance of a certificate (default 1e-6)")
    p.add_argument("--boundary-rtol", type=float, default=1e-3, help="relative accuracy of the boundaries")
    p.add_argument("--seed", type=seed_int, default=0, help="random starts (default 0)")
    add_size_args(p)
    p.add_argument("--no-figures", action="store_true", help="write phase.json and the CSVs only")
    p.add_argument("--json", action="store_true", help="print phase.json on stdout")
    p.add_argument("--out", required=True, metavar="DIR", help="phase.json, figures and CSVs go here")
    return p


FLAGS = {"loss": "--loss", "nonneg": "--nonneg", "classes": "--classes", "imbalance": "--imbalance",
         "n_min": "--n-min", "minority_fraction": "--minority-fraction", "dim": "--dim", "constraint": "--constraint",
         "ratios": "--ratios", "taus": "--taus", "weight_decays": "--weight-decays", "tol": "--tol",
         "rtol": "--boundary-rtol", "seed": "--seed"}


def _spec(args):
    """The ``ufm.specs.PhaseSpec`` of the flags, within this command's limits; ``UsageError`` naming the flag."""
    from ufm.specs import PhaseSpec

    if args.classes > MAX_CLASSES:  # the families are built class by class: refused before anything is built
        raise UsageError(f"--classes: K = {args.classes} exceeds this command's limit (K <= {MAX_CLASSES}); shrink "
                         "--classes")
    taus = None if args.taus is None else axis_values(args.taus, "--taus")
    decays = None if args.weight_decays is None else axis_values(args.weight_decays, "--weight-decays")
    ratios = axis_values(args.ratios, "--ratios")
    try:
        spec = PhaseSpec(loss=args.loss, nonneg=bool(args.nonneg), classes=args.classes, imbalance=args.imbalance,
                         n_min=args.n_min, minority_fraction=args.minority_fraction, dim=args.dim,
                         constraint=args.constraint, ratios=tuple(ratios), taus=taus, weight_decays=decays)
    except (ValueError, TypeError) as e:
        raise flag_error(e, FLAGS) from None
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise UsageError(f"--tol must be a finite number >= 0, got {args.tol}")
    if not (math.isfinite(args.boundary_rtol) and 0 < args.boundary_rtol < 1):
        raise UsageError(f"--boundary-rtol must lie in (0, 1), got {args.boundary_rtol}")
    K, dim, points, n_r, n_v = spec.classes, spec.dim, spec.points, len(spec.ratios), len(spec.values)
    from ufm import objectives
    from ufm.imbalance import group_sizes

    from solvers.workflows.phase import choose_path

    if choose_path(spec) == "reduced":
        G = len(group_sizes(spec.imbalance, spec.classes, spec.n_min, 1.0, spec.minority_fraction)[1])
        work, what = points * G * (G + 1), f"G = {G} groups of equal-size classes, points x G x (G + 1)"
        need = memory_estimate(points, G, G + 1) + REDUCED_WORKSPACE
    else:  # solved in chains, one slot per ratio: the estimated memory, not points x K x d, is the limit
        from solvers.workflows.phase import BASE_BYTES, memory_bytes

        rows = 2 if objectives.get(spec.loss).prototypes else 1  # BCL: the prototypes are K more rows
        work, what = 0, f"K = {K}, d = {dim}, points x {rows * K} x d"
        need = rows * rows * max(memory_bytes(spec, n_r, n_v) - BASE_BYTES, 0) + CLASS_WORKSPACE
    if points > MAX_POINTS or work > MAX_WORK:
        raise UsageError(f"{n_v} x {n_r} points with {what} exceed this command's limits "
                         f"({MAX_POINTS} points, work <= {MAX_WORK:.0e}); split the grid into several runs")
    check_memory(args, need, f"{n_v} x {n_r} points with {what.split(', points')[0]}",
                 "--classes / --dim / the grid")
    return spec


REDUCED_WORKSPACE = 64 << 20  # what the reduced path's first solve compiles and holds, whatever G (measured ~55 MiB)
CLASS_WORKSPACE = 96 << 20  # the same for the class-level path (measured 55-63 MiB with the compiled programs cached, 92-98 MiB earlier; docs/reliability.md)


def memory_estimate(points: int, K: int, dim: int) -> int:
    """Bytes a phase run of ``points`` points needs beyond what the process holds: per point, the class means
    ``(K, dim)`` and their companions (iterate, gradient, momentum, trial, best, classifier: ``12 K dim`` floats)
    and the ``K x K`` Grams and kernels of the loss and the certificate (``8 K^2`` floats), float64 (the reduced
    path: ``K`` groups of ``dim = K + 1``). The command adds what XLA compiles and holds for the path's first
    solve (``REDUCED_WORKSPACE``, ``CLASS_WORKSPACE``), which dominates at the sizes the limits allow."""
    return int(8 * points * (12 * K * dim + 8 * K * K))


def run(args) -> int:
    spec = _spec(args)
    from solvers.workflows.phase import check_points

    try:
        check_points(spec)  # a bad family (a class size below 2, a temperature too small) exits 2 before any work
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = hold_folder(args, "ufm phase", OUTPUTS)
    from solvers.workflows import phase as workflow

    from ufm.progress import stages

    # one line redrawn in place on a terminal (solve the grid, bisect two boundaries); quiet under --json or
    # when stderr is not a terminal
    say = stages("ufm phase", 3, enabled=not args.json)
    try:
        result = workflow.phase(spec, seed=args.seed, tol=args.tol, rtol=args.boundary_rtol, progress=say, out=out,
                                figures=not args.no_figures)
    except BaseException:
        say.abort()
        raise
    say.close()
    if args.json:
        print(dumps(result))
    n, ok = result["points"], result["certified_points"]
    eprint(f"ufm phase: {ok}/{n} points certified in {result['seconds']:.1f} s ({result['method']} path); wrote "
           f"{out}/phase.json")
    return 0 if ok == n else 3
