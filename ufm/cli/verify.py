"""``ufm verify``: run every theorem that applies to the given label counts (and batching, tau, dim) and print
one table: theorem, prediction, geometry found, loss vs predicted minimum, certified gap, verdict.

With no arguments it checks a built-in imbalanced example (counts 20,20,2,2, tau 0.5, dim 6)."""
from __future__ import annotations

import os

from .common import UsageError, dumps, ensure_dir, int_list, versions, write_json

HELP = "check every theorem that applies to some label counts: solve, certify, compare (a table)"


def add_parser(sub):
    p = sub.add_parser("verify", help=HELP, description=HELP)
    p.add_argument("--counts", type=int_list, default=None, help="samples per class (default 20,20,2,2)")
    p.add_argument("--tau", type=float, default=0.5, help="SC temperature (default 0.5)")
    p.add_argument("--dim", type=int, default=None, help="d (default K + 2: room for every theorem)")
    p.add_argument("--radius", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=None, help="CE lambda_W (default 5e-3)")
    p.add_argument("--batching", default="full", metavar="SCHEME", help="full | fixed:b | binding:b | ...")
    p.add_argument("--batches", default=None, help="explicit batches '0,1,3;2,4,5' or a file")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0, help="random start and batch seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    p.add_argument("--out", metavar="DIR", default=None, help="write verify.json here")
    return p


def table(rows) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = []
    for r in rows:
        lines.append(f"{r.theorem}")
        if r.verdict == "not applicable":
            lines.append(f"    verdict      NOT APPLICABLE: {r.reason}")
            continue
        lines.append(f"    prediction   {r.prediction}")
        lines.append(f"    found        {r.found}")
        lines.append(f"    loss         {num(r.loss, '.10f')}   predicted minimum {num(r.predicted_loss, '.10f')}"
                     f"   difference {num(r.loss_difference, '.1e')}")
        lines.append(f"    certificate  lower bound {num(r.lower_bound, '.10f')}   gap {num(r.gap, '.1e')}"
                     f"   {'certified' if r.certified else 'not certified' if r.certified is False else ''}")
        lines.append(f"    verdict      {r.verdict.upper()}: {r.reason}   ({r.seconds:.1f} s)")
    return "\n".join(lines)


def run(args) -> int:
    from solvers.verify import DEFAULT_EXAMPLE, verify

    from ufm.batching import batches_from_text

    counts = args.counts if args.counts is not None else DEFAULT_EXAMPLE["counts"]
    dim = args.dim
    if dim is None:
        dim = DEFAULT_EXAMPLE["dim"] if args.counts is None else len(counts) + 2
    kw = dict(tau=args.tau, dim=dim, radius=args.radius, batching=args.batching, batch_seed=args.seed,
              weight_decay=args.weight_decay, steps=args.steps, seed=args.seed)
    try:
        if args.batches is not None:
            if args.batching != "full":
                raise ValueError("batches: give --batches or --batching, not both")
            kw.update(batches=batches_from_text(args.batches), batching="explicit")
        rows = verify(counts, **kw)
    except ValueError as e:
        raise UsageError(str(e)) from None
    setting = {"counts": list(counts), "tau": args.tau, "dim": dim, "radius": args.radius,
               "batching": kw["batching"], "seed": args.seed}
    out = {"setting": setting, "rows": [r.to_dict() for r in rows],
           "holds": all(r.verdict != "fails" for r in rows), "versions": versions()}
    if args.out:
        write_json(os.path.join(ensure_dir(args.out), "verify.json"), out)
    if args.json:
        print(dumps(out))
    else:
        print(f"ufm verify: counts {','.join(map(str, counts))}, tau {args.tau:g}, dim {dim}, "
              f"batching {kw['batching']} (float64 PGD + convex-relaxation certificates)\n")
        print(table(rows))
        n = sum(r.verdict != "not applicable" for r in rows)
        bad = sum(r.verdict == "fails" for r in rows)
        print(f"\n{n} theorems applied, {n - bad} hold, {bad} fail.")
    return 0 if out["holds"] else 1
