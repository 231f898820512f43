"""Shared pieces of the ``ufm`` command line: the parser (one-line errors with a suggestion, exit 2), problem
flags, JSON output, errors (exit 2 = bad input).

Nothing heavy is imported here at module level (no JAX, numpy, cvxpy, scipy, matplotlib): ``ufm --help`` and
``ufm CMD --help`` load only the standard library and ``ufm.cli``; each command imports what it needs in
``run()``.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import warnings
from typing import TYPE_CHECKING

from ufm.defaults import DEFAULT_STEPS
from ufm.runs import clean_stale_tmp  # noqa: F401  (one implementation; the commands and tests reach it here)

if TYPE_CHECKING:
    from ufm.problem import Problem


class UsageError(Exception):
    """Bad input found after parsing: reported on stderr with exit code 2, no traceback."""


def flag_error(e: Exception, flags: dict) -> UsageError:
    """A library's error about a field (``"n_min: must be ..."``: the message starts with the field's name, as a
    ``ufm.specs`` record or ``ufm.Problem`` raises it) as a ``UsageError`` naming the flag instead
    (``"--n-min: must be ..."``); ``flags`` maps field names to flags, and a message about another field is kept
    as it is."""
    text = str(e)
    name, sep, rest = text.partition(":")
    if sep and name in flags:
        text = f"{flags[name]}:{rest}"
    return UsageError(text)


CACHE_FLAG = "--no-compile-cache"
CACHE_ENV = "UFM_JAX_CACHE"  # "off" (or 0, no, false) turns the cache off; a folder moves it
CACHE_MAX_BYTES = 2 * 1024 ** 3  # the cache evicts its least recently used programs beyond this


def compile_cache_dir() -> str:
    """The per-user folder of JAX's compiled programs: ``$UFM_JAX_CACHE`` when it names a folder, else
    ``$XDG_CACHE_HOME/ufm/jax`` (``~/.cache/ufm/jax``)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env and env.lower() not in ("on", "1", "yes", "true"):
        return os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ufm", "jax")


def compile_cache(disabled: bool = False) -> str | None:
    """Turn on JAX's persistent compilation cache for this process (before its first compilation), so a second
    run of a command loads its compiled programs instead of compiling them again. Off with ``disabled`` (the
    ``--no-compile-cache`` flag) or ``UFM_JAX_CACHE=off``. Nothing is imported: the settings go into the
    environment JAX reads when it is imported (or into ``jax.config`` when it already is), and a setting the
    user made (``JAX_COMPILATION_CACHE_DIR`` ...) wins. Every program is cached (no minimum compile time); the
    folder is capped at ``CACHE_MAX_BYTES``, which also makes JAX take a file lock around each read and write,
    so processes may share it. Returns the folder, or None when off (or when the folder cannot be made)."""
    env = os.environ.get(CACHE_ENV, "").strip().lower()
    if disabled or env in ("off", "0", "no", "false", "none"):
        return None
    path = compile_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": -1, "jax_compilation_cache_max_size": CACHE_MAX_BYTES}
    jax = sys.modules.get("jax")
    for name, value in settings.items():
        if name.upper() in os.environ:
            continue
        if jax is not None:
            jax.config.update(name, value)
        else:
            os.environ[name.upper()] = str(value)
    return path


def closest(word: str, choices) -> str | None:
    """The choice closest to ``word`` (``difflib``), or None when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def closest_flag(flag: str, flags) -> str | None:
    """The flag of ``flags`` closest to ``flag``, compared without their leading dashes (``--bogus`` is not near
    ``--out`` for sharing ``--``)."""
    bare = {f.lstrip("-"): f for f in flags}
    near = closest(flag.lstrip("-"), bare)
    return None if near is None else bare[near]


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` (``--tau``, ``-h``, ``--help``, ...)."""
    return [s for action in parser._actions for s in action.option_strings]


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr, with the closest valid flag where an
    unknown one was given and a pointer to ``PROG --help``; exit code 2, no traceback."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def unknown(self, extras: list[str]):
        """Report arguments this parser does not know (``parse_known_args``'s leftovers) and exit 2. The words
        right after an unknown flag are taken as its values, not reported again."""
        flags, parts, after_flag = option_strings(self), [], False
        for arg in extras:
            if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
                name = arg.split("=", 1)[0]
                near = closest_flag(name, flags)
                parts.append(f"unknown flag {name}" + (f" (did you mean {near}?)" if near else ""))
                after_flag = True
            elif not after_flag:
                parts.append(f"unexpected argument {arg!r}")
        self.error("; ".join(parts))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def loss_choices() -> tuple[str, ...]:
    """The ``--loss`` choices: the objective registry's names (``ufm.objectives.NAMES``, a plain tuple importable
    without JAX)."""
    from ufm.objectives import NAMES

    return tuple(NAMES)


def constraint_choices() -> tuple[str, ...]:
    """The ``--constraint`` choices: ``ufm.constraints.CONSTRAINTS`` (a plain tuple importable without JAX)."""
    from ufm.constraints import CONSTRAINTS

    return tuple(CONSTRAINTS)


def clean(obj):
    """``ufm.records.clean`` (imported when called: the parser stays light)."""
    from ufm.records import clean as _clean

    return _clean(obj)


def dumps(obj) -> str:
    """``ufm.records.dumps``: one JSON line (imported when called)."""
    from ufm.records import dumps as _dumps

    return _dumps(obj)


def write_json(path, obj):
    """``ufm.records.write_json``: atomic JSON file (imported when called)."""
    from ufm.records import write_json as _write_json

    return _write_json(path, obj)


def comma_entries(text: str, what: str) -> list[str]:
    """The comma-separated entries of ``text``, every one non-empty (``3,,4`` and ``3,4,`` are refused, not read
    as ``3,4``)."""
    parts = [v.strip() for v in str(text).split(",")]
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{what}: empty list; give comma-separated values, e.g. 30,30,3,3")
    if any(not v for v in parts):
        raise argparse.ArgumentTypeError(f"{what}: empty entry in {text!r} (a doubled, leading or trailing comma); "
                                         "give comma-separated values, e.g. 30,30,3,3")
    return parts


def named_int_list(what: str):
    """An argparse type: ``"30,30,3,3"`` -> ``[30, 30, 3, 3]``, errors naming ``what`` (exit 2)."""
    def parse(text: str) -> list[int]:
        parts = comma_entries(text, what)
        try:
            return [int(v) for v in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected comma-separated integers, got {text!r}") from None
    parse.__name__ = f"{what} list"
    return parse


def named_float_list(what: str):
    """An argparse type: ``"0.5,1"`` -> ``[0.5, 1.0]``, errors naming ``what`` (exit 2)."""
    def parse(text: str) -> list[float]:
        parts = comma_entries(text, what)
        try:
            return [float(v) for v in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    parse.__name__ = f"{what} list"
    return parse


def int_list(text: str) -> list[int]:
    """``"30,30,3,3"`` -> ``[30, 30, 3, 3]``; an argparse type (errors exit 2; an empty entry is an error)."""
    return named_int_list("list")(text)


def float_list(text: str) -> list[float]:
    return named_float_list("list")(text)


SEED_MAX = 2 ** 32 - 1


def seed_int(text: str) -> int:
    """An argparse type for ``--seed``: an integer in ``0..2^32-1`` (what NumPy and JAX seeds accept)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"seed must be an integer in 0..2^32-1, got {text!r}")
    return value


# --- size guard ------------------------------------------------------------------------------------------------

TILE = 512  # the side of the full-batch SC kernel's tiles (ufm.kernels.BLOCK), written out to stay light
CERTIFY_COPIES = 4  # a certificate's dense (n, n) block: the matrix, its solver copies and the dual


def counts_and_dim(problem):
    counts = [int(c) for c in problem.counts]
    dim = getattr(problem, "dim", None)
    return counts, (len(counts) if dim is None else int(dim))


def largest_batch(problem, N: int) -> int:
    """The largest batch of ``problem``'s batching (N for ``full``)."""
    batches = getattr(problem, "batches", None)
    if batches is not None and getattr(problem, "batching", "") == "explicit":
        return max((len(b) for b in batches), default=N)
    name, _, size = str(getattr(problem, "batching", "full") or "full").partition(":")
    try:
        return min(N, max(1, int(size))) if size else N
    except ValueError:
        return N


def memory_estimate(problem, *, certificate: str | None = None, starts: int = 1, solve: bool = True) -> int:
    """Bytes a solve (and, with ``certificate`` = the method, a certificate) of ``problem`` needs, roughly: the
    solver holds ``Z (N, d)`` float64 a few times over (iterate, gradient, trial point, best, optimizer state),
    ``W (K, d)`` for CE, and per batch ``b x b`` logits (the full-batch SC kernel in ``TILE``-wide tiles); a
    full certificate a dense ``(N, N)`` block ``CERTIFY_COPIES`` times. ``problem`` is a ``ufm.Problem`` or any
    object with ``counts``, ``dim`` (None: K), ``loss`` and ``batching``; ``starts`` random starts solved together
    multiply the solver's part; ``solve=False`` (a bound alone) counts the certificate only."""
    from ufm.objectives import NAMES, get

    counts, d = counts_and_dim(problem)
    N, K = sum(counts), len(counts)
    f8 = 8
    total = 6 * N * d * f8 + 2 * K * d * f8  # Z and its companions; W for CE (BCL's prototypes C)
    b = largest_batch(problem, N)
    loss = str(getattr(problem, "loss", "sc"))
    if loss in NAMES and not get(loss).contrastive:  # a classifier's logits (the objective says, not the name)
        total += 3 * N * K * f8
    else:
        rows = min(N, TILE) if b == N else b  # the full batch: one row of TILE-wide tiles at a time
        total += 3 * rows * b * f8 + 4 * N * f8  # logits, labels / lse per row
    total *= max(1, int(starts or 1))
    if not solve:
        total = 0
    if certificate == "full":
        total += CERTIFY_COPIES * N * N * f8
    elif certificate is not None:
        total += CERTIFY_COPIES * (2 * K) ** 2 * f8
    return int(total)


def available_memory() -> int:
    """Bytes this machine can give: ``MemAvailable`` of ``/proc/meminfo`` where readable, else the physical
    memory (``SC_PHYS_PAGES * SC_PAGE_SIZE``)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def add_size_args(p: argparse.ArgumentParser):
    p.add_argument("--allow-large", action="store_true",
                   help="run even when the memory estimate exceeds the machine's available memory")


def check_memory(args, need: int, what: str, shrink: str) -> int:
    """Refuse (``UsageError``, exit 2) a run whose estimate ``need`` (bytes) exceeds :func:`available_memory`,
    unless ``--allow-large``; ``what`` describes the run, ``shrink`` the flags to shrink. Returns ``need``."""
    have = available_memory()
    if need > have and not getattr(args, "allow_large", False):
        raise UsageError(f"too large: {what} needs about {human_bytes(need)} of memory, the machine has "
                         f"{human_bytes(have)} available; shrink {shrink}, or give --allow-large to try anyway")
    return need


def check_size(problem: Problem, args, *, certificate: str | None = None, extra: int = 0,
               shrink: str = "--counts / --dim", solve: bool = True) -> int:
    """Refuse (``UsageError``, exit 2) a problem whose :func:`memory_estimate` (plus ``extra`` bytes) exceeds
    :func:`available_memory`, unless ``--allow-large``; returns the estimate."""
    starts = getattr(args, "starts", None) or 1
    need = memory_estimate(problem, certificate=certificate, starts=max(1, starts), solve=solve) + int(extra)
    have = available_memory()
    if starts > 1 and "--starts" not in shrink:
        shrink += " / --starts"
    if need > have and not getattr(args, "allow_large", False):
        counts, d = counts_and_dim(problem)
        raise UsageError(f"problem too large: N={sum(counts)}, dim={d} needs about {human_bytes(need)} of memory, "
                         f"the machine has {human_bytes(have)} available; shrink {shrink}, or give "
                         "--allow-large to try anyway")
    return need


# --- atomic files ----------------------------------------------------------------------------------------------


def tmp_path(path) -> str:
    """A temporary name beside ``path`` that keeps its extension (NumPy and matplotlib read it):
    ``DIR/.NAME.tmpPID.EXT``; :func:`clean_stale_tmp` recognises it."""
    folder, name = os.path.split(os.fspath(path))
    ext = os.path.splitext(name)[1]
    return os.path.join(folder, f".{name}.tmp{os.getpid()}{ext}")


@contextlib.contextmanager
def atomic(path):
    """``with atomic(path) as tmp: write(tmp)``: ``tmp`` is renamed onto ``path`` when the block succeeds and
    removed when it fails, so ``path`` is either the old file or the whole new one."""
    from ufm.records import WRITE_LOCK  # a Ctrl-C's watchdog waits for the write (ufm.cli.interrupt)

    tmp = tmp_path(path)
    with WRITE_LOCK:
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

def add_problem_args(p: argparse.ArgumentParser, default_counts="30,30,3,3"):
    """The flags that state a ``ufm.Problem``."""
    g = p.add_argument_group("problem")
    g.add_argument("--loss", choices=loss_choices(), default="sc", help="the loss (default sc: supervised contrastive; "
                   "ce: cross-entropy; bcl: balanced contrastive of Zhu et al., with class prototypes; bcl-avg: its "
                   "class-averaging part alone)")
    g.add_argument("--counts", type=named_int_list("counts"), default=int_list(default_counts),
                   help=f"samples per class, comma-separated (default {default_counts})")
    g.add_argument("--tau", type=float, default=0.1, help="temperature of SC and BCL (default 0.1)")
    g.add_argument("--dim", type=int, default=None, help="embedding dimension d (default: K)")
    g.add_argument("--nonneg", action="store_true", help="UFM+: non-negative features (a ReLU before the loss)")
    g.add_argument("--constraint", choices=constraint_choices(), default="sphere")
    g.add_argument("--radius", type=float, default=1.0, help="rho, the sphere/ball radius (default 1)")
    g.add_argument("--weight-decay", type=float, default=None, help="CE lambda_W (default 5e-3)")
    g.add_argument("--feature-decay", type=float, default=0.0, help="CE lambda_Z on ||Z||^2/N (default 0)")
    g.add_argument("--bias", action="store_true", help="CE classifier bias")
    g.add_argument("--batching", default="full", metavar="SCHEME",
                   help="full | fixed:b | shuffled:b | binding:b | subsets:b (default full); the random "
                        "partitions come from --seed")
    g.add_argument("--batches", default=None, metavar="BATCHES",
                   help="explicit batches instead of a scheme: '0,1,3;2,4,5', or a file (.json: a list of index "
                        "lists; else one batch per line)")
    return g


def add_solver_args(p: argparse.ArgumentParser, tol_flag: str = "--tol"):
    """The flags of the projected-gradient solver; ``tol_flag`` renames its stopping tolerance (``ufm certify``
    uses ``--solve-tol``, keeping ``--tol`` for the certificate); the value lands in ``args.tol`` or, renamed,
    in ``args.solve_tol``."""
    g = p.add_argument_group("solver")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"most projected-gradient steps (default {DEFAULT_STEPS})")
    g.add_argument("--lr", type=float, default=None, help="initial/fixed step (default: the tau/N rule)")
    g.add_argument("--optimizer", default="pgd", choices=["pgd", "sgd", "momentum", "nesterov", "adam"])
    g.add_argument("--acceleration", action="store_true",
                   help="FISTA momentum with adaptive restart on the projected-gradient step (--optimizer pgd; "
                        "fewer steps at a low temperature)")
    g.add_argument(tol_flag, type=float, default=None,
                   help="stopping tolerance (default 1e-12 in float64, 1e-6 with --float32)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs of stochastic projected gradient: the solver for shuffled/binding (default 1000); "
                        "on a fixed batch set, stochastic passes instead of the deterministic solve")
    g.add_argument("--seed", type=seed_int, default=0, help="random start and batch_seed of the batching (default 0)")
    g.add_argument("--starts", type=int, default=None,
                   help="random starts, the lowest loss kept (default: 4 for imbalanced counts with --nonneg, "
                        "whose landscape has spurious minima, else 1)")
    add_dtype_args(g)
    return g


def add_dtype_args(g):
    """``--float32`` (opt in to float32; the default is float64, which 1e-6 claims need) and ``--x64`` (kept for
    old command lines: a no-op). Read the choice with :func:`dtype_of`."""
    g.add_argument("--float32", action="store_true",
                   help="solve in float32 (default float64: small problems, accuracy first; float32 resolves the "
                        "loss to ~1e-7 only)")
    g.add_argument("--x64", action="store_true", help="a no-op, kept for old command lines: float64 is the default")


def dtype_of(args) -> str:
    """``"float32"`` with ``--float32``, else ``"float64"`` (``--x64`` changes nothing)."""
    return "float32" if getattr(args, "float32", False) else "float64"


def add_output_args(p: argparse.ArgumentParser):
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", metavar="DIR", default=None, help="write result.json and arrays here")


def problem_from_args(args):
    """Build the ``ufm.Problem``; a bad value raises ``UsageError`` naming the field."""
    from ufm import Problem
    from ufm.batching import batches_from_text

    kwargs = dict(counts=args.counts, loss=args.loss, tau=args.tau, dim=args.dim, constraint=args.constraint,
                  radius=args.radius, nonneg=args.nonneg, weight_decay=args.weight_decay,
                  feature_decay=args.feature_decay, bias=args.bias, batching=getattr(args, "batching", "full"),
                  batch_seed=getattr(args, "seed", 0))
    if getattr(args, "batches", None) is not None:
        if kwargs["batching"] != "full":
            raise UsageError("batches: give --batches or --batching, not both")
        try:
            kwargs.update(batches=batches_from_text(args.batches), batching="explicit")
        except ValueError as e:
            raise UsageError(str(e)) from None
    kwargs.update(getattr(args, "_problem_extra", {}))
    if kwargs.get("counts") is not None and len(kwargs["counts"]) < 2 and "labels" not in kwargs:
        raise UsageError(f"counts: one class ({args.counts[0]} samples); the geometry between classes needs at "
                         "least 2, e.g. --counts 30,30")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            return Problem(**kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def versions() -> dict:
    """``ufm.records.versions``: what a result records of the versions (JAX imported when called)."""
    from ufm.records import versions as _versions

    return _versions()


def ensure_dir(path, outputs=(), flag="--out"):
    """``ufm.runs.prepare``: create ``path``, check that it takes a write (a probe file) and that no output name
    in ``outputs`` is a folder, and remove the stale temporaries of killed writers; a ``UsageError`` otherwise."""
    from ufm import runs

    try:
        return runs.prepare(path, outputs, flag)
    except runs.FolderError as e:
        raise UsageError(str(e)) from None


@contextlib.contextmanager
def run_folder(path, what, outputs=(), flag="--out"):
    """``with run_folder(args.out, "ufm phase", ("phase.json",)):`` :func:`ensure_dir`, then hold the folder's
    lock (``ufm.records.lock_folder``) for the block; a second writer gets a ``UsageError`` ("already in use by
    another ufm process"). ``path`` None: nothing to do."""
    if path is None:
        yield None
        return
    from ufm import records

    ensure_dir(path, outputs, flag)
    try:
        key = records.lock_folder(path, what)
    except records.RecordsError as e:
        raise UsageError(str(e)) from None
    try:
        yield path
    finally:
        records.unlock_folder(key)


def hold_folder(args, what, outputs=(), path=None, flag="--out"):
    """:func:`run_folder` for the rest of the command: the folder (``path``, default ``args.out``) is prepared and
    locked now and released when the command ends (``ufm.cli.main`` closes ``args._folders``); returns it."""
    path = getattr(args, "out", None) if path is None else path
    if path is None:
        return None
    stack = getattr(args, "_folders", None)
    if stack is None:  # called outside ufm.cli.main: prepared, not locked
        return ensure_dir(path, outputs, flag)
    return stack.enter_context(run_folder(path, what, outputs, flag))


def fmt_matrix(M, indent="  ") -> str:
    import numpy as np

    return "\n".join(indent + " ".join(f"{v:7.3f}" for v in row) for row in np.asarray(M))


def eprint(*a):
    print(*a, file=sys.stderr)
