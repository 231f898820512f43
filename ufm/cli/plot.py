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
    from ..plots import plot_all
    from ..records import read_records

    path = os.path.join(args.out, "results.jsonl")
    if not os.path.exists(path):
        raise UsageError(f"{path} does not exist: run `ufm sweep --out {args.out}` first")
    recs = read_records(path)
    if not recs:
        raise UsageError(f"{path} holds no complete record")
    dest = args.to or args.out
    os.makedirs(dest, exist_ok=True)
    for p in plot_all(recs, dest):
        print(p)
    return 0
