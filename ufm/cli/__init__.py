"""The ``ufm`` command. Each sub-command lives in its own module with ``HELP``, ``add_parser(sub)`` and
``run(args)``; a module imports nothing heavy (JAX, cvxpy, scipy, matplotlib, optax) before ``run()``, and only
the sub-command being run has its parser built, so ``ufm --help`` and ``ufm CMD --help`` stay fast.

Every command that runs (not ``--help``) turns on JAX's persistent compilation cache first
(``common.compile_cache``: ``~/.cache/ufm/jax``; ``--no-compile-cache`` anywhere on the line or
``UFM_JAX_CACHE=off`` turn it off, ``UFM_JAX_CACHE=DIR`` moves it).

Exit codes: 0 success, 1 a run that failed (message says why), 2 bad input (an unknown flag or sub-command gets
one line with the closest valid one), 3 a certificate's convex solver failed or was inaccurate, 130 Ctrl-C.

:func:`main` is the last line of defence: no traceback reaches the terminal. Ctrl-C is handled by
``ufm.cli.interrupt.Guard`` (exit 130 within a second or two, even while XLA compiles). An error the input
provoked and the command did not name (``MemoryError``, ``OverflowError``, ``RecursionError``, an ``OSError``
such as a full disk or a closed pipe, an unreadable results file) is one line and exit 2; any other exception is
a bug: one line saying where its traceback was written (:func:`crash_log`, under the user's cache folder) and
exit 1.
"""
from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import signal
import sys
import traceback

from .common import CACHE_FLAG, Parser, UsageError, closest, compile_cache, eprint
from .interrupt import EXIT as INTERRUPTED
from .interrupt import Guard

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
    with Guard("ufm") as guard:
        try:
            return _main(argv, guard, no_cache)
        except KeyboardInterrupt:
            eprint(f"{guard.name}: interrupted")
            return INTERRUPTED


def _main(argv, guard, no_cache=False) -> int:
    command = _command(argv)
    parser, modules = _parser([] if command is None else [command])
    args, extras = parser.parse_known_args(argv)
    if extras:
        (parser if command is None else parser.commands[command]).unknown(extras)
    if args.command is None:
        parser.print_help()
        return 2
    compile_cache(disabled=no_cache)
    name = guard.name = f"ufm {args.command}"
    try:
        with contextlib.ExitStack() as args._folders:  # the output folders the command holds (common.hold_folder)
            code = modules[args.command].run(args)
        return INTERRUPTED if guard.hit else code  # a Ctrl-C a library swallowed still ends as one
    except UsageError as e:
        eprint(f"{name}: error: {e}")
        return 2
    except KeyboardInterrupt:
        eprint(f"{name}: interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        eprint(f"{name}: error: the output was closed before it was all written (broken pipe)")
        return 2
    except MemoryError:
        eprint(f"{name}: error: out of memory; the input is too large for this machine (shrink it)")
        return 2
    except RecursionError:
        eprint(f"{name}: error: the input is nested too deeply to read")
        return 2
    except OverflowError as e:
        eprint(f"{name}: error: a value is out of range ({_first_line(e)})")
        return 2
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        eprint(f"{name}: error: {where}{e.strerror or _first_line(e)}")
        return 2
    except RuntimeError as e:
        if "RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e):
            eprint(f"{name}: error: out of memory in the solver; shrink the problem ({_first_line(e)[:200]})")
            return 2
        eprint(f"{name}: failed: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if _input_error(e):
            eprint(f"{name}: error: {_first_line(e)}")
            return 2
        log = crash_log(name, argv)
        where = f"the traceback is in {log}" if log else "the traceback could not be written"
        eprint(f"{name}: internal error: {type(e).__name__}: {_first_line(e)[:300]}; {where} (please report it)")
        return 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _input_error(e: BaseException) -> bool:
    """A results file that cannot be read, or a folder that cannot take the results (``ufm.records``)."""
    records = sys.modules.get("ufm.records")
    return records is not None and isinstance(e, records.RecordsError)


def _quiet_stdout():
    """Point stdout at /dev/null: the reader is gone, and Python's flush at exit must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def cache_dir() -> str:
    """The user's cache folder for ufm: ``$XDG_CACHE_HOME/ufm`` or ``~/.cache/ufm``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ufm")


def crash_log(name: str, argv) -> str | None:
    """Write the traceback of the exception being handled to ``cache_dir()/crash-TIME-PID.log`` (the system's
    temporary folder when the cache cannot be written); returns the path, or None."""
    import tempfile

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"{name} {' '.join(map(str, argv))}\n\n{traceback.format_exc()}"
    for folder in (cache_dir(), tempfile.gettempdir()):
        path = os.path.join(folder, f"crash-{stamp}-{os.getpid()}.log")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def entry():
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit: an OSError (EFBIG) to report, not a silent kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    code = main()
    if code == INTERRUPTED:  # end now: native threads (XLA compiling) must not run into the interpreter's teardown
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(INTERRUPTED)
    sys.exit(code)
