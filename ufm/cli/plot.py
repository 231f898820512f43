"""``ufm plot OUT``: redraw a sweep's figures from ``OUT/results.jsonl`` alone."""
from __future__ import annotations

import os

from .common import UsageError

HELP = "redraw the figures of a sweep from its results.jsonl"


def add_parser(sub):
    p = sub.add_parser("plot", help=HELP, description=HELP)
    p.add_argument("out", metavar="OUT", help="a sweep's folder (holding results.jsonl)")
    p.add_argument("--to", metavar="DIR", default=None, help="write the figures here (default OUT)")
    return p


def run(args) -> int:
    from ..plots import drawable, plot_all
    from ..records import SWEEP_KEYS, RecordsError, check, scan

    path = os.path.join(args.out, "results.jsonl")
    if not os.path.lexists(path):
        raise UsageError(f"{path} does not exist: run `ufm sweep --out {args.out}` first")
    hint = f"; `ufm sweep` with --out {args.out} moves corrupt lines to {path}.rejected"
    try:
        recs = check(path, SWEEP_KEYS)
        lines = [n for n, _, _ in scan(path, SWEEP_KEYS)[0]]
    except RecordsError as e:
        raise UsageError(str(e) + (hint if " line " in str(e) else "")) from None
    try:
        drawable(recs, lines)
    except ValueError as e:
        raise UsageError(f"{path} {e}") from None
    dest = args.to or args.out
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--to {dest}: cannot create the folder ({e.strerror})") from None
    try:
        paths = plot_all(recs, dest)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    for p in paths:
        print(p)
    return 0
