"""The benchmark suite: ``python -m benchmarks run [--quick | --full] [--only a,b] [--repeats R]
[--out DIR | --update-results]`` (also ``ufm bench``).

Sections (each ``python -m benchmarks.<name>`` on its own, each run here in a fresh process):
  * ``sc_step``: SC loss + gradient time vs N: ufm's tiled kernel, naive JAX, SupContrast in PyTorch, pymanopt,
    and two floors: the exps alone (one per ordered pair, N^2) and those exps with the two N x N x d products;
  * ``certified``: time to a certified UFM+ solution (gap <= 1e-6): ufm vs PyTorch PGD vs pymanopt;
  * ``many``: ``solve_many`` of 256 problems vs a Python loop of ``solve``;
  * ``memory``: peak memory of one full-batch loss + gradient for N up to 10^5;
  * ``phase``: ``ufm phase`` against ``ufm sweep`` at K = 4, and the 100 x 100 STEP grid at K = 10 ... 10,000
    (the symmetry-reduced path), cold and warm compilation cache;
  * ``phase_long_tail`` (``benchmarks.phase --long-tail``): the class-level path at K = 100 and one K = 1,000
    point, every class size different;
  * ``phase_ce`` (``benchmarks.phase --ce``): a cross-entropy phase grid against SC's of the same shape;
  * ``phase_bcl`` (``benchmarks.phase --bcl``): the 100 x 100 STEP grid for BCL with its class prototypes at
    K = 10 ... 10,000 (the reduced path), cold compilation cache;
  * ``compile_cache``: a tiny ``ufm solve`` and ``ufm phase``'s fixed cost with the compilation cache and without.
Results: ``OUT/<section>_<backend>.json`` and ``OUT/suite_<backend>.json`` (the targets), where backend is what
JAX runs on (``cpu``, ``gpu``): on a machine where JAX sees a GPU the same command is the GPU mode. ``OUT`` is
``--out DIR``, by default a new folder ``./ufm-bench-YYYYmmdd-HHMMSS``; the repository's ``benchmarks/results/``
is written only with ``--update-results`` (from a source checkout). Each section prints a markdown table; the
suite ends with its targets, met or not.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time

from .common import COMMITTED, ROOT, backend, load, log, results_in, save, table

SECTIONS = ["sc_step", "certified", "many", "memory", "phase", "phase_long_tail", "phase_ce", "phase_bcl",
            "compile_cache"]
# a section that is a mode of another module: name -> (module, extra flags, its render function)
MODES = {"phase_long_tail": ("phase", ["--long-tail"], "render_long_tail"),
         "phase_ce": ("phase", ["--ce"], "render_ce"),
         "phase_bcl": ("phase", ["--bcl"], "render_bcl")}


def targets(res) -> list[dict]:
    """The suite's targets, evaluated on the results at hand (None where a section did not run)."""
    out = []

    def row(name, goal, value, ok):
        out.append({"target": name, "goal": goal, "measured": value, "met": ok})

    step = res.get("sc_step")
    r4000 = next((r["results"] for r in (step or {}).get("rows", []) if r["N"] == 4000), None)
    if r4000 and "torch" in r4000:
        v = r4000["torch"]["median_s"] / r4000["ufm"]["median_s"]
        row("SC loss+grad vs PyTorch SupCon step, N=4000, d=32", ">= 20x", f"{v:.1f}x", v >= 20)
    if r4000:
        v = r4000["ufm"]["median_s"] / r4000["exp_floor"]["median_s"]
        row("SC loss+grad vs exp floor (N^2 exps), N=4000", "<= 2x", f"{v:.2f}x", v <= 2)
        if "gram_matmul" in r4000:
            floor = r4000["exp_floor"]["median_s"] + 2 * r4000["gram_matmul"]["median_s"]
            v = r4000["ufm"]["median_s"] / floor
            row("SC loss+grad vs exp + matmul floor, N=4000", "<= 2x", f"{v:.2f}x", v <= 2)
    mem = res.get("memory")
    big = next((r for r in (mem or {}).get("rows", []) if r.get("N") == 100_000 and r.get("impl") == "ufm"), None)
    if big and "error" not in big:
        peak = big.get("device_peak_bytes") or big["peak_rss_bytes"]
        row("peak memory, N=100,000 full batch", "< 4 GiB", f"{peak / 2**30:.2f} GiB", peak < 4 * 2**30)
    many = res.get("many")
    same = next((r for r in (many or {}).get("rows", []) if r["set"] == "same shape"), None)
    if same:
        v = same["loop_s"] / same["many_s"]
        row("solve_many of 256 vs a loop of solve", ">= 20x", f"{v:.1f}x", v >= 20)
    mini = next((r for r in (many or {}).get("rows", []) if r["set"] == "mini-batches"), None)
    if mini and mini.get("cold_many_s"):
        v = mini["cold_loop_s"] / mini["cold_many_s"]
        row("solve_many of 256 mini-batch problems (N 20-60) vs a loop of solve, compilation included", ">= 5x",
            f"{v:.1f}x", v >= 5)
    if mini:
        v = mini["loop_s"] / mini["many_s"]
        row("the same, warm (every program compiled)", ">= 5x", f"{v:.2f}x", v >= 5)
    phase = res.get("phase")
    for r in (phase or {}).get("scale", []):
        ok = r["certified"] == r["points"] and r["warm_wall_s"] <= 10
        row(f"ufm phase, 100 x 100 STEP grid, K = {r['K']:,}, all certified", "<= 10 s",
            f"{r['warm_wall_s']:.1f} s wall ({r['cold_wall_s']:.1f} s cold), {r['certified']}/{r['points']}", ok)
    lt = res.get("phase_long_tail")
    for r in (lt or {}).get("rows", []):
        P, M = r["grid"]
        if P * M >= 10_000:  # the target's grid (a coarse grid is mostly its boundary bisection: no target)
            ms = r["cpu_ms_per_point"]
            row(f"long-tail phase grid, K = {r['K']}, {P} x {M}, all certified", "<= 15 min wall on 2 cores",
                f"{r['wall_s'] / 60:.1f} min wall, {r['cpu_s'] / 60:.1f} min CPU ({ms:.0f} ms a point), "
                f"{r['certified']}/{r['points']}", r["wall_s"] <= 900 and r["certified"] == r["points"])
        elif P * M == 1:
            row(f"one long-tail point, K = {r['K']:,}", "<= 30 s", f"{r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU",
                r["wall_s"] <= 30 and r["certified"] == r["points"])
        est, peak = r["estimated_bytes"], r["peak_rss_bytes"]
        row(f"long-tail memory estimate vs peak RSS, K = {r['K']}, {P} x {M}", "within 2x", f"{est / peak:.2f}x",
            0.5 <= est / peak <= 2)
    ce = res.get("phase_ce")
    if ce and "ratio" in ce:
        every = all(r["certified"] == r["points"] for r in ce["rows"])
        done = ", ".join(f"{r['certified']}/{r['points']}" for r in ce["rows"])
        row("CE phase grid vs SC's, K = 10, 8 x 8, all certified", "<= 2x CPU", f"{ce['ratio']:.2f}x, {done}",
            ce["ratio"] <= 2 and every)
    for r in (res.get("phase_bcl") or {}).get("rows", []):
        row(f"ufm phase --loss bcl, 100 x 100 STEP grid, K = {r['K']:,}, all certified", "<= 10 s",
            f"{r['cold_wall_s']:.1f} s wall cold, {r['certified']}/{r['points']}",
            r["certified"] == r["points"] and r["cold_wall_s"] <= 10)
    cc = res.get("compile_cache")
    if cc:
        r = cc["ratios"]
        row("tiny ufm solve (cache warm) vs import jax + one operation", "<= 1.5x",
            f"{r['solve_over_bare_wall']:.2f}x", r["solve_over_bare_wall"] <= 1.5)
        above = r["phase_above_bare_warm_over_off_cpu"]  # what a cache can save (benchmarks.compile_cache)
        row("ufm phase fixed cost above the bare JAX start, cache warm vs off", "<= 0.5x CPU",
            f"{above:.2f}x ({r['phase_warm_over_off_cpu']:.2f}x of the whole process)", above <= 0.5)
    return out


def default_out(now: float | None = None) -> str:
    """``./ufm-bench-YYYYmmdd-HHMMSS`` (a suffix ``-2``, ``-3``, ... where that folder exists already)."""
    base = time.strftime("ufm-bench-%Y%m%d-%H%M%S", time.localtime(now))
    path, k = base, 1
    while os.path.exists(path):
        k += 1
        path = f"{base}-{k}"
    return path


def is_checkout() -> bool:
    """Whether the suite runs from a source checkout (``ROOT`` holds ``pyproject.toml`` and ``benchmarks/``)."""
    return os.path.isfile(os.path.join(ROOT, "pyproject.toml")) and os.path.isdir(os.path.join(ROOT, "benchmarks"))


def out_dir(out: str | None, update_results: bool) -> str:
    """The results folder of a run, created: ``COMMITTED`` with ``update_results``, else ``out`` or a new
    :func:`default_out`. ``ValueError`` (saying what to do) when it cannot be."""
    if update_results:
        if out is not None:
            raise ValueError("give --out DIR or --update-results, not both")
        if not is_checkout():
            raise ValueError(f"--update-results rewrites the repository's benchmarks/results/, but the suite runs "
                             f"from an installed package ({ROOT}): run it from a source checkout, or use --out DIR")
        path = COMMITTED
    else:
        path = default_out() if out is None else out
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {path}: cannot create the folder ({e.strerror})") from None
    return os.path.abspath(path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the suite")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes on a 2-core CPU (default)")
    mode.add_argument("--full", action="store_true", help="every size (about an hour on a CPU)")
    run.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({','.join(SECTIONS)})")
    run.add_argument("--repeats", type=int, default=None, help="timing repetitions per section (median)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", default=None,
                       help="write the results here (default: a new folder ./ufm-bench-YYYYmmdd-HHMMSS)")
    where.add_argument("--update-results", action="store_true",
                       help="write the repository's benchmarks/results/ (source checkout only)")
    a = ap.parse_args(argv)
    only = [s for s in a.only.split(",") if s]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    if a.repeats is not None and a.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {a.repeats}")
    try:
        out = out_dir(a.out, a.update_results)
    except ValueError as e:
        ap.error(str(e))
    with results_in(out):
        return _run(a, only, out)


def _run(a, only, out) -> int:
    flags = ["--full" if a.full else "--quick"] + ([] if a.repeats is None else ["--repeats", str(a.repeats)])
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    be = backend()
    log(f"benchmarks: {'full' if a.full else 'quick'} suite on {be}: {', '.join(only)}; results in {out}")
    from ufm.progress import Progress

    failed, seconds, res = [], {}, {}
    bar = Progress(len(only), "ufm bench", eta=False)  # sections of unequal cost: no time estimate
    for name in only:
        bar.update(0, f"{name} running")
        start = time.perf_counter()
        module, extra, render = MODES.get(name, (name, [], "render"))
        code = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *extra, *flags], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL).returncode  # its table is printed here, as it finishes
        seconds[name] = time.perf_counter() - start
        res[name] = load(name, be)
        if code != 0:
            failed.append(name)
            log(f"benchmarks: {name} failed (exit {code})")
        elif res[name] is not None:
            bar.write("\n" + getattr(importlib.import_module(f"benchmarks.{module}"), render)(res[name]) + "\n")
        bar.update(1, f"{name} done in {seconds[name]:.0f} s")
    bar.close()
    tg = targets(res)
    print("Targets\n\n" + table(["target", "goal", "measured", "met"],
                                [[t["target"], t["goal"], t["measured"], "yes" if t["met"] else "no"] for t in tg]))
    log("wrote", save("suite", {"mode": "full" if a.full else "quick", "sections": only, "failed": failed,
                                "seconds": seconds, "targets": tg}))
    log(f"benchmarks: results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
