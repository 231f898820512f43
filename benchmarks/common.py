"""Shared pieces of the benchmark sections: interleaved timing, results files, markdown tables."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


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
    runs = {k: [] for k in candidates}
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
    mode.add_argument("--full", action="store_true", help="every size of the issue")
    ap.add_argument("--repeats", type=int, default=None, help="timing repetitions (median reported)")
    a = ap.parse_args(argv)
    a.mode = "full" if a.full else "quick"
    return a


def backend() -> str:
    import jax

    return jax.default_backend()


def save(name: str, result: dict) -> str:
    """Write ``benchmarks/results/<name>_<backend>.json`` (with the machine) and return the path."""
    from .machine import describe

    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}_{backend()}.json")
    result = {"section": name, "machine": describe(), **result}
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2, default=float)
        fh.write("\n")
    return path


def finish(name: str, out: dict, render) -> dict:
    """Print a section's table, write its JSON, return its result."""
    print(render(out))
    log("wrote", save(name, out))
    return out


def load(name: str, backend_name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}_{backend_name}.json")
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
