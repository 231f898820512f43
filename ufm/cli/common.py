"""Shared pieces of the ``ufm`` command line: the parser (one-line errors with a suggestion, exit 2), problem
flags, JSON output, errors (exit 2 = bad input).

Nothing heavy is imported here at module level (no JAX, numpy, cvxpy, scipy, matplotlib): ``ufm --help`` and
``ufm CMD --help`` load only the standard library and ``ufm.cli``; each command imports what it needs in
``run()``.
"""
from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
import warnings


class UsageError(Exception):
    """Bad input found after parsing: reported on stderr with exit code 2, no traceback."""


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


def int_list(text: str) -> list[int]:
    """``"30,30,3,3"`` -> ``[30, 30, 3, 3]``; an argparse type (errors exit 2)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_problem_args(p: argparse.ArgumentParser, default_counts="30,30,3,3"):
    """The flags that state a ``ufm.Problem``."""
    g = p.add_argument_group("problem")
    g.add_argument("--loss", choices=loss_choices(), default="sc", help="the loss (default sc: supervised contrastive; "
                   "ce: cross-entropy)")
    g.add_argument("--counts", type=int_list, default=int_list(default_counts),
                   help=f"samples per class, comma-separated (default {default_counts})")
    g.add_argument("--tau", type=float, default=0.1, help="SC temperature (default 0.1)")
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
    g.add_argument("--steps", type=int, default=5000, help="most projected-gradient steps (default 5000)")
    g.add_argument("--lr", type=float, default=None, help="initial/fixed step (default: the tau/N rule)")
    g.add_argument("--optimizer", default="pgd", choices=["pgd", "sgd", "momentum", "nesterov", "adam"])
    g.add_argument(tol_flag, type=float, default=None,
                   help="stopping tolerance (default 1e-12 in float64, 1e-6 with --float32)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs of stochastic projected gradient: the solver for shuffled/binding (default 1000); "
                        "on a fixed batch set, stochastic passes instead of the deterministic solve")
    g.add_argument("--seed", type=int, default=0, help="random start and batch_seed of the batching (default 0)")
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            return Problem(**kwargs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def versions() -> dict:
    import jax
    import numpy as np

    import ufm

    return {"ufm": ufm.__version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def ensure_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {path}: cannot create the folder ({e.strerror})") from None
    return path


def fmt_matrix(M, indent="  ") -> str:
    import numpy as np

    return "\n".join(indent + " ".join(f"{v:7.3f}" for v in row) for row in np.asarray(M))


def eprint(*a):
    print(*a, file=sys.stderr)
