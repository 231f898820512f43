"""The ``ufm`` command. Each sub-command lives in its own module with ``HELP``, ``add_parser(sub)`` and
``run(args)``; a module imports nothing heavy (JAX, cvxpy, scipy, matplotlib, optax) before ``run()``, and only
the sub-command being run has its parser built, so ``ufm --help`` and ``ufm CMD --help`` stay fast.

Every command that runs (not ``--help``) turns on JAX's persistent compilation cache first
(``common.compile_cache``: ``~/.cache/ufm/jax``; ``--no-compile-cache`` anywhere on the line or
``UFM_JAX_CACHE=off`` turn it off, ``UFM_JAX_CACHE=DIR`` moves it).

Exit codes: 0 success, 1 a run that failed (message says why), 2 bad input (an unknown flag or sub-command gets
one line with the closest valid one), 3 a certificate's convex solver failed or was inaccurate, 130 Ctrl-C.
"""
from __future__ import annotations

import importlib
import sys

from .common import CACHE_FLAG, Parser, UsageError, closest, compile_cache, eprint

COMMANDS = ["solve", "certify", "batches", "sweep", "phase", "landscape", "plot", "verify", "train", "bench", "measure"]


def _parser(build=COMMANDS):
    """``(parser, modules)``: the ``ufm`` parser and the command modules by name. The commands in ``build`` (by
    default all) get their full parser; the others are a name and a one-line help, enough for ``ufm --help``
    (``main`` builds only the command it runs)."""
    parser = Parser(prog="ufm", description="Unconstrained-features model: solve, certify, sweep and compare the "
                    "geometry of classification losses.", epilog="`ufm COMMAND --help` for a command's flags.")
    from ufm import __version__

    parser.add_argument("--version", action="version", version=f"ufm {__version__}")
    parser.add_argument(CACHE_FLAG, action="store_true",
                        help="do not keep compiled programs in ~/.cache/ufm/jax (also UFM_JAX_CACHE=off; "
                        "UFM_JAX_CACHE=DIR moves the cache); accepted anywhere on the line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    modules = {}
    for name in COMMANDS:
        mod = importlib.import_module(f"{__name__}.{name}")
        if name in build:
            mod.add_parser(sub)
        else:
            sub.add_parser(name, help=mod.HELP, add_help=False)
        modules[name] = mod
    parser.commands = sub.choices  # name -> that command's parser
    return parser, modules


def _command(argv) -> str | None:
    """The sub-command named by ``argv`` (its first word), None when it starts with a flag or is empty; an unknown
    name exits 2 with the closest command."""
    if not argv or argv[0].startswith("-"):
        return None
    if argv[0] not in COMMANDS:
        near = closest(argv[0], COMMANDS)
        hint = f" (did you mean {near!r}?)" if near else f" (choose from {', '.join(COMMANDS)})"
        Parser(prog="ufm").error(f"unknown command {argv[0]!r}{hint}")
    return argv[0]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    no_cache = CACHE_FLAG in argv
    argv = [a for a in argv if a != CACHE_FLAG]
    command = _command(argv)
    parser, modules = _parser([] if command is None else [command])
    args, extras = parser.parse_known_args(argv)
    if extras:
        (parser if command is None else parser.commands[command]).unknown(extras)
    if args.command is None:
        parser.print_help()
        return 2
    compile_cache(disabled=no_cache)
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
