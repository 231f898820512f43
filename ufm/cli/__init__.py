"""The ``ufm`` command. Each sub-command lives in its own module with ``add_parser(sub)`` and ``run(args)``.

Exit codes: 0 success, 1 a run that failed (message says why), 2 bad input, 3 a certificate's convex solver
failed or was inaccurate.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .common import UsageError, eprint

COMMANDS = ["solve", "certify", "batches", "sweep", "plot", "verify", "train", "bench"]


def _parser():
    parser = argparse.ArgumentParser(prog="ufm", description="Unconstrained-features model: solve, certify, "
                                     "sweep and compare the geometry of classification losses.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        mod.add_parser(sub)
        modules[name] = mod
    return parser, modules


def main(argv=None) -> int:
    parser, modules = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return modules[args.command].run(args)
    except UsageError as e:
        eprint(f"ufm {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        eprint(f"ufm {args.command}: interrupted")
        return 130
    except RuntimeError as e:
        eprint(f"ufm {args.command}: failed: {e}")
        return 1


def entry():
    sys.exit(main())
