"""``ufm bench``: the benchmark suite (``python -m benchmarks run``), installed with ufm."""
from __future__ import annotations

from .common import UsageError

HELP = "run the benchmark suite: SC step, certified solve, solve_many, memory, phase diagrams, compile cache"

# benchmarks.__main__.SECTIONS, written out for the help text (the parser imports nothing; a test checks they agree)
SECTIONS = ["sc_step", "certified", "many", "memory", "phase", "phase_long_tail", "phase_ce", "phase_bcl",
            "compile_cache"]


def add_parser(sub):
    p = sub.add_parser("bench", help=HELP, description=HELP + ". Same as `python -m benchmarks run`: markdown "
                       "tables on stdout, JSON in --out (default a new folder ./ufm-bench-YYYYmmdd-HHMMSS); the "
                       "repository's benchmarks/results/ only with --update-results.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes on a CPU (default)")
    mode.add_argument("--full", action="store_true", help="every size (about an hour on a CPU)")
    p.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=None, help="timing repetitions (median reported)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", default=None,
                       help="write the results here (default: a new folder ./ufm-bench-YYYYmmdd-HHMMSS)")
    where.add_argument("--update-results", action="store_true",
                       help="write the repository's benchmarks/results/ instead (source checkout only)")
    return p


def run(args) -> int:
    try:
        from benchmarks.__main__ import SECTIONS as sections
        from benchmarks.__main__ import main, out_dir
    except ImportError as e:
        raise UsageError(f"cannot import the benchmark suite ({e}): reinstall ufm (`pip install .` from a "
                         "checkout), which installs the package `benchmarks` beside `ufm`") from None
    only = sections if args.only is None else [s for s in args.only.split(",") if s]
    bad = [s for s in only if s not in sections]
    if bad or not only:
        raise UsageError(f"--only: unknown section(s) {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(sections)}")
    if args.repeats is not None and args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    try:
        out = out_dir(args.out, args.update_results)
    except ValueError as e:
        raise UsageError(str(e)) from None
    argv = ["run", "--full" if args.full else "--quick", "--only", ",".join(only)]
    if args.repeats is not None:
        argv += ["--repeats", str(args.repeats)]
    argv += ["--update-results"] if args.update_results else ["--out", out]
    return main(argv)
