"""Shared pieces of the benchmark sections: interleaved timing, results files, markdown tables.

Where results go: :func:`results_dir`, the folder named by the environment variable ``UFM_BENCH_OUT`` when it is
set, else the repository's ``benchmarks/results/`` (``COMMITTED``). The suite's runner (``python -m benchmarks
run``, ``ufm bench``) sets it for itself and for the sections it starts, so every section writes through
:func:`save` (and :mod:`benchmarks.store`) into the run's ``--out`` folder; the committed results change only
with ``--update-results`` or when a section is run on its own from a checkout. ``RESULTS`` is kept as a
name for :func:`results_dir` at the time it is read.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(ROOT, "benchmarks", "results")
OUT_ENV = "UFM_BENCH_OUT"


def results_dir() -> str:
    """The folder results are written to and read from: ``$UFM_BENCH_OUT``, else ``COMMITTED``."""
    return os.environ.get(OUT_ENV) or COMMITTED


@contextlib.contextmanager
def results_in(path: str):
    """Within the block, :func:`results_dir` is ``path`` (made absolute), here and in the processes started from
    here (the environment variable is inherited); restored afterwards."""
    old = os.environ.get(OUT_ENV)
    os.environ[OUT_ENV] = os.path.abspath(path)
    try:
        yield os.environ[OUT_ENV]
    finally:
        if old is None:
            os.environ.pop(OUT_ENV, None)
        else:
            os.environ[OUT_ENV] = old


def __getattr__(name):
    if name == "RESULTS":  # read when imported or used: the folder of the run at hand
        return results_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def timed(fn, *args):
    """Seconds of one call of ``fn(*args)``; ``fn`` must block until its result is ready."""
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def interleaved(candidates: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds per call of each ``name -> fn`` (no arguments), measured in rounds that call every
    candidate once, so that the load of a shared machine falls on all of them alike. Also the spread."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    runs: dict = {k: [] for k in candidates}
    for _ in range(repeats):
        for k, fn in candidates.items():
            runs[k].append(timed(fn))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "repeats": len(v)}
            for k, v in runs.items()}


def section_args(doc: str, argv=None):
    """The flags every section takes: ``--quick`` / ``--full``, ``--repeats``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes (default)")
    mode.add_argument("--full", action="store_true", help="every size")
    ap.add_argument("--repeats", type=int, default=None, help="timing repetitions (median reported)")
    a = ap.parse_args(argv)
    a.mode = "full" if a.full else "quick"
    return a


def backend() -> str:
    import jax

    return jax.default_backend()


def save(name: str, result: dict) -> str:
    """Write ``<results_dir()>/<name>_<backend>.json`` (with the machine), atomically, and return the path."""
    from .machine import describe

    folder = results_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}_{backend()}.json")
    result = {"section": name, "machine": describe(), **result}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2, default=float)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def finish(name: str, out: dict, render) -> dict:
    """Print a section's table, write its JSON, return its result."""
    print(render(out))
    log("wrote", save(name, out))
    return out


def load(name: str, backend_name: str) -> dict | None:
    """The result :func:`save` wrote for ``name`` on ``backend_name`` in :func:`results_dir`, or None."""
    path = os.path.join(results_dir(), f"{name}_{backend_name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats printed with 3 significant digits, None as an em dash."""
    def cell(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds):
    return None if seconds is None else 1e3 * seconds


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def log(*a):
    print(*a, file=sys.stderr, flush=True)
