"""``ufm bench``: the benchmark suite of a source checkout (``python -m benchmarks run``)."""
from __future__ import annotations

from .common import UsageError

HELP = "run the benchmark suite (source checkout): SC step, certified solve, solve_many, memory"


def add_parser(sub):
    p = sub.add_parser("bench", help=HELP, description=HELP + ". Same as `python -m benchmarks run`; "
                       "JSON to benchmarks/results/, markdown tables on stdout.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes on a CPU (default)")
    mode.add_argument("--full", action="store_true", help="every size of the issue")
    p.add_argument("--only", default=None, help="comma-separated sections: sc_step,certified,many,memory")
    p.add_argument("--repeats", type=int, default=None, help="timing repetitions (median reported)")
    return p


def run(args) -> int:
    try:
        from benchmarks.__main__ import SECTIONS, main
    except ImportError:
        raise UsageError("the benchmarks live in the source tree: run `ufm bench` from a checkout of ufm "
                         "(the folder holding benchmarks/ and ufm/)") from None
    only = SECTIONS if args.only is None else [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in SECTIONS]
    if bad or not only:
        raise UsageError(f"--only: unknown section(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    argv = ["run", "--full" if args.full else "--quick", "--only", ",".join(only)]
    if args.repeats is not None:
        argv += ["--repeats", str(args.repeats)]
    return main(argv)
