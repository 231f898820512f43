"""Certified phase diagrams: ``ufm phase`` (class-level, N-independent) against ``ufm sweep`` (full PGD and a
certificate per point), side by side in one run, both as a user runs them (a fresh process each: JAX import and
compilation included), float64, SC on the sphere, STEP imbalance, K = 4, d = 4, n_min = 5.

    python -m benchmarks.phase [--quick | --full] [--repeats R]

* ``phase``: ``ufm phase --ratios 1:100:M --taus 0.05:1:P`` (P x M points; 100 x 100 with ``--full``, 40 x 40
  quick), boundaries included (their bisection solves are not counted as points).
* ``sweep``: ``ufm sweep --ratios ... --taus ...`` on a 2 x 4 grid of the same family.
Reported: wall seconds (median over repeats, runs interleaved), points per second, their ratio, and whether every
point was certified. Targets: 100 x 100 certified in < 60 s; >= 50x the sweep's points per second.

* ``scale``: ``ufm phase --classes K --ratios 1:100:100 --taus 0.05:1:100`` (STEP, n_min = 5, the reduced path) at
  K = 10, 100, 1,000, 10,000 in fresh processes: once with an empty compilation cache (``cold``), then ``repeats``
  times with the cache it filled (``warm``, the median); wall and CPU seconds (user + system of the process) and
  its peak resident memory. Target: the 100 x 100 grid, every point certified, in <= 10 s at each K. The K = 1,000
  diagram is drawn in one more run, not timed, to ``phase_diagram_k1000.png`` beside the results.

* ``long-tail`` (``python -m benchmarks.phase --long-tail [--quick | --full]``): the class-level path, where every
  class size differs (``--imbalance long-tail``, n_min = 5, SC on the sphere, d = K): ``ufm phase`` grids at K = 100
  (4 x 4 quick; 10 x 10 and 100 x 100 with ``--full``) and one point at K = 1,000, each in a fresh process with
  the compilation cache warm (a grid of 1,000 points or more runs once, after a 2-value grid with its ratios has
  filled the cache; ``cold_cache_*`` are then that grid's); wall and CPU seconds, CPU milliseconds per point (boundary bisection included in the
  seconds, not in the points), peak resident memory beside ``solvers.workflows.phase.memory_bytes``'s estimate, and
  the load average. Targets: the 100 x 100 grid at K = 100 certified in <= 15 minutes (90 ms per point); the
  K = 1,000 point in <= 30 s.
* ``bcl`` (``python -m benchmarks.phase --bcl [--repeats R]``): ``scale``'s grid for BCL with its class prototypes
  (``--loss bcl``, the reduced path) at the same K, one fresh process with an empty compilation cache each
  (``R`` more with it warm); the same columns. Measured against ``scale``'s target (<= 10 s, every point
  certified).
* ``ce`` (``python -m benchmarks.phase --ce [--repeats R]``): the cost of CE against SC on grids of the same shape
  on the reduced path: ``ufm phase --loss ce --classes 10 --ratios 1:100:8 --weight-decays 1e-3:1e-1:8`` and
  ``ufm phase --classes 10 --ratios 1:100:8 --taus 0.05:1:8`` (STEP, n_min = 5, boundaries included), each in a
  fresh process with the compilation cache warm (one unmeasured run of each fills it), ``R`` rounds (default 3)
  interleaved so that the machine's load falls on both alike; the median CPU seconds (user + system), their
  ratio, wall seconds, peak resident memory, certified points and the load average. Target: CE <= 2x SC's CPU
  seconds, every point certified.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from .common import finish, log, results_dir, section_args, table

GRID = {"quick": (40, 40), "full": (100, 100)}
SWEEP_RATIOS, SWEEP_TAUS = "1,4,16,64", "0.1,0.5"
TARGET_SECONDS, TARGET_SPEEDUP = 60.0, 50.0
SCALE_K = (10, 100, 1000, 10000)
SCALE_TARGET_SECONDS = 10.0
SCALE_GRID = (100, 100)  # the target's grid, in every mode


def _run(argv):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ufm", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"ufm {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, proc.returncode


def run_phase(P, M, out):
    seconds, code = _run(["phase", "--ratios", f"1:100:{M}", "--taus", f"0.05:1:{P}", "--n-min", "5", "--classes",
                          "4", "--no-figures", "--out", out])
    with open(os.path.join(out, "phase.json")) as fh:
        d = json.load(fh)
    return {"seconds": seconds, "points": d["points"], "certified": d["certified_points"],
            "solve_seconds": d["solve_seconds"], "exit": code}


def run_sweep(out):
    seconds, code = _run(["sweep", "--ratios", SWEEP_RATIOS, "--taus", SWEEP_TAUS, "--n-min", "5", "--classes", "4",
                          "--out", out])
    rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    return {"seconds": seconds, "points": len(rows), "certified": sum(bool(r.get("certified")) for r in rows),
            "exit": code}


def _run_measured(argv, env):
    """``(wall s, cpu s, peak RSS bytes, exit code)`` of ``ufm *argv`` in a fresh process (``os.wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ufm", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        raise RuntimeError(f"ufm {' '.join(argv)} exited {code}: {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, code


def run_scale(P, M, repeats, tmp, loss="sc"):
    rows = []
    for K in SCALE_K:
        cache = os.path.join(tmp, f"cache{loss}{K}")
        env = {**os.environ, "UFM_JAX_CACHE": cache}
        out = os.path.join(tmp, f"scale{loss}{K}")
        argv = ["phase", "--loss", loss, "--classes", str(K), "--ratios", f"1:100:{M}", "--taus", f"0.05:1:{P}",
                "--n-min", "5", "--out", out]
        runs = []
        for k in range(1 + repeats):  # the first with an empty cache
            log(f"{loss}, K = {K}, run {k + 1}/{1 + repeats}")
            runs.append(_run_measured(argv + ["--no-figures"], env))
        if K == 1000 and loss == "sc":  # the figure, in a run of its own (not timed: the target leaves figures out)
            _run_measured(argv, env)
            shutil.copyfile(os.path.join(out, "phase_diagram.png"), os.path.join(results_dir(),
                                                                                "phase_diagram_k1000.png"))
        with open(os.path.join(out, "phase.json")) as fh:
            d = json.load(fh)
        warm = runs[1:] or [(math.nan, math.nan)]
        rows.append({"K": K, "loss": loss, "points": d["points"], "certified": d["certified_points"],
                     "method": d["method"], "cold_wall_s": runs[0][0], "cold_cpu_s": runs[0][1],
                     "warm_wall_s": statistics.median(r[0] for r in warm),
                     "warm_cpu_s": statistics.median(r[1] for r in warm),
                     "warm_runs_s": [r[0] for r in warm], "peak_rss_bytes": max(r[2] for r in runs),
                     "solve_seconds": d["solve_seconds"], "seconds_in_phase": d["seconds"],
                     "attraction_R_at_first_tau": d["boundaries"]["attraction"][0]["R"]})
    return rows


LONG_TAIL = {"quick": [(100, 4, 4), (1000, 1, 1)], "full": [(100, 10, 10), (1000, 1, 1), (100, 100, 100)]}
LONG_TAIL_TARGETS = {"grid_ms_per_point": 90.0, "k1000_seconds": 30.0}


def run_long_tail(mode, tmp):
    from solvers.workflows.phase import memory_bytes

    rows = []
    env = {**os.environ, "UFM_JAX_CACHE": os.path.join(tmp, "cache-long-tail")}
    for K, P, M in LONG_TAIL[mode]:
        out = os.path.join(tmp, f"lt{K}_{P}x{M}")
        ratios = f"1:100:{M}" if M > 1 else "30"
        taus = f"0.05:1:{P}" if P > 1 else "0.1"
        argv = ["phase", "--classes", str(K), "--imbalance", "long-tail", "--ratios", ratios, "--taus", taus,
                "--n-min", "5", "--no-figures", "--out", out]
        log(f"long-tail K = {K}, {P} x {M}")
        if P * M >= 1000:  # a long grid runs once, after a 2-value grid of the same ratios fills the cache (the
            # same stacks: one slot per ratio, compacted alike, the bisection padded to the axis values)
            small = [a if a != taus else "0.05:1:2" for a in argv[:-1]] + [out + "-fill"]
            runs = [_run_measured(small, env), _run_measured(argv, env)]
        else:  # the first fills the compilation cache
            runs = [_run_measured(argv, env) for _ in range(2)]
        wall, cpu, rss, code = runs[1]
        with open(os.path.join(out, "phase.json")) as fh:
            d = json.load(fh)
        spec = {"classes": K, "dim": K}
        rows.append({"K": K, "grid": [P, M], "points": d["points"], "certified": d["certified_points"],
                     "method": d["method"], "warm_start": d.get("warm"), "wall_s": wall, "cpu_s": cpu,
                     "cpu_ms_per_point": 1000 * cpu / d["points"], "solve_seconds": d["solve_seconds"],
                     "cold_cache_wall_s": runs[0][0], "cold_cache_cpu_s": runs[0][1], "peak_rss_bytes": rss,
                     "estimated_bytes": memory_bytes(spec, M, P), "load_average": list(os.getloadavg())})
    return rows


def render_long_tail(out):
    rows = [[r["K"], f"{r['grid'][0]} x {r['grid'][1]}", f"{r['certified']}/{r['points']}", r["wall_s"], r["cpu_s"],
             r["cpu_ms_per_point"], r["peak_rss_bytes"] / 2 ** 20, r["estimated_bytes"] / 2 ** 20,
             r["load_average"][0]] for r in out["rows"]]
    return table(["K", "grid", "certified", "wall s", "CPU s", "CPU ms/point", "peak RSS MiB", "estimate MiB",
                  "load 1 min"], rows)


def main_long_tail(argv):
    args = section_args(__doc__, argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_long_tail(args.mode, tmp)
    out = {"what": "ufm phase on the class-level path: SC sphere, long-tail n_min=5, d=K, float64, fresh process per "
                   "run, compilation cache warm", "mode": args.mode, "rows": rows, "cores": os.cpu_count(),
           "targets": LONG_TAIL_TARGETS}
    return finish("phase_long_tail", out, render_long_tail)


CE_ARGV = ["phase", "--loss", "ce", "--classes", "10", "--ratios", "1:100:8", "--weight-decays", "1e-3:1e-1:8",
           "--n-min", "5", "--no-figures"]
SC_ARGV = ["phase", "--classes", "10", "--ratios", "1:100:8", "--taus", "0.05:1:8", "--n-min", "5", "--no-figures"]
CE_TARGET_RATIO = 2.0


def run_ce(repeats, tmp):
    """``{"ce": [...], "sc": [...]}``: one row per measured run (module doc)."""
    env = {**os.environ, "UFM_JAX_CACHE": os.path.join(tmp, "cache-ce")}
    runs: dict = {"ce": [], "sc": []}
    for k in range(1 + repeats):  # the first round fills the compilation cache and is not counted
        for what, argv in (("ce", CE_ARGV), ("sc", SC_ARGV)):
            out = os.path.join(tmp, f"{what}{k}")
            log(f"{what}, round {k + 1}/{1 + repeats}")
            load = os.getloadavg()[0]
            wall, cpu, rss, code = _run_measured(argv + ["--out", out], env)
            with open(os.path.join(out, "phase.json")) as fh:
                d = json.load(fh)
            if k:
                runs[what].append({"wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": rss, "exit": code,
                                   "points": d["points"], "certified": d["certified_points"],
                                   "load_1min_before": load,
                                   "collapse_R": [b["R"] for b in d["boundaries"]["collapse"]]})
    return runs


def render_ce(out):
    rows = [[r["what"], f"{r['certified']}/{r['points']}", r["cpu_s"], r["wall_s"], r["peak_rss_bytes"] / 2 ** 20,
             ", ".join(f"{c:.2f}" for c in r["cpu_runs_s"])] for r in out["rows"]]
    return "\n".join([table(["grid", "certified", "median CPU s", "median wall s", "peak RSS MiB", "CPU s per run"],
                             rows), "",
                      f"CE / SC CPU: {out['ratio']:.2f} (target <= {CE_TARGET_RATIO:g}); load average "
                      f"{out['load_average'][0]:.1f} to {out['load_average'][1]:.1f} (1 min)"])


def main_ce(argv):
    args = section_args(__doc__, argv)
    repeats = args.repeats or 3
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_ce(repeats, tmp)
    rows = []
    for what, argv_ in (("ce", CE_ARGV), ("sc", SC_ARGV)):
        rs = runs[what]
        rows.append({"what": what, "argv": argv_, "points": rs[0]["points"],
                     "certified": min(r["certified"] for r in rs),
                     "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                     "wall_s": statistics.median(r["wall_s"] for r in rs),
                     "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
                     "cpu_runs_s": [r["cpu_s"] for r in rs], "runs": rs})
    loads = [r["load_1min_before"] for rs in runs.values() for r in rs]
    ratio = rows[0]["cpu_s"] / rows[1]["cpu_s"]
    out = {"what": "ufm phase, CE against SC on grids of the same shape (8 x 8, STEP K=10 d=10 n_min=5, the "
                   "reduced path, boundaries included), fresh process per run, compilation cache warm, rounds "
                   "interleaved", "repeats": repeats, "rows": rows, "ratio": ratio, "cores": os.cpu_count(),
           "load_average": [min(loads), max(loads)], "target_ratio": CE_TARGET_RATIO,
           "met": {"ratio": ratio <= CE_TARGET_RATIO,
                   "all_certified": all(r["certified"] == r["points"] for r in rows)}}
    return finish("phase_ce", out, render_ce)


def render_bcl(out):
    rows = [[r["K"], r["method"], f"{r['certified']}/{r['points']}", r["cold_wall_s"], r["cold_cpu_s"],
             r["peak_rss_bytes"] / 2 ** 20] for r in out["rows"]]
    return table(["K", "path", "certified", "cold wall s", "cold CPU s", "peak RSS MiB"], rows)


def main_bcl(argv):
    args = section_args(__doc__, argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_scale(*SCALE_GRID, args.repeats or 0, tmp, loss="bcl")
    out = {"what": "ufm phase --loss bcl (class prototypes), 100 x 100 STEP grid over R in [1, 100] and tau in "
                   "[0.05, 1], n_min = 5, d = K, the reduced path, boundaries included; a fresh process with an "
                   "empty compilation cache per K", "rows": rows, "cores": os.cpu_count(),
           "load_average_at_end": list(os.getloadavg()), "target_seconds": SCALE_TARGET_SECONDS,
           "met": {"seconds": all(r["cold_wall_s"] <= SCALE_TARGET_SECONDS for r in rows),
                   "all_certified": all(r["certified"] == r["points"] for r in rows)}}
    return finish("phase_bcl", out, render_bcl)


def render(out):
    rows = [[r["what"], r["points"], r["median_s"], r["points_per_s"], r["certified"]] for r in out["rows"]]
    lines = [table(["run", "points", "median s", "points/s", "certified"], rows), "",
             f"speed-up in points per second: {out['speedup']:.0f}x (target >= {TARGET_SPEEDUP:.0f}x); "
             f"phase grid in {out['rows'][0]['median_s']:.1f} s"]
    if out.get("scale"):
        rows = [[r["K"], r["method"], f"{r['certified']}/{r['points']}", r["cold_wall_s"], r["cold_cpu_s"],
                 r["warm_wall_s"], r["warm_cpu_s"], r["peak_rss_bytes"] / 2 ** 20] for r in out["scale"]]
        lines += ["", table(["K", "path", "certified", "cold wall s", "cold CPU s", "warm wall s", "warm CPU s",
                             "peak RSS MiB"], rows)]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--long-tail" in argv:
        return main_long_tail([a for a in argv if a != "--long-tail"])
    if "--ce" in argv:
        return main_ce([a for a in argv if a != "--ce"])
    if "--bcl" in argv:
        return main_bcl([a for a in argv if a != "--bcl"])
    args = section_args(__doc__, argv)
    P, M = GRID[args.mode]
    repeats = args.repeats or 3
    runs = {"phase": [], "sweep": []}
    with tempfile.TemporaryDirectory() as tmp:
        scale = run_scale(*SCALE_GRID, repeats, tmp)
        for k in range(repeats):  # interleaved: the machine's load falls on both alike
            log(f"round {k + 1}/{repeats}")
            runs["phase"].append(run_phase(P, M, os.path.join(tmp, f"phase{k}")))
            runs["sweep"].append(run_sweep(os.path.join(tmp, f"sweep{k}")))
    rows = []
    for what, rs in runs.items():
        med = statistics.median(r["seconds"] for r in rs)
        rows.append({"what": f"ufm {what}", "points": rs[0]["points"], "median_s": med,
                     "runs_s": [r["seconds"] for r in rs], "points_per_s": rs[0]["points"] / med, "certified": f"{rs[0]['certified']}/{rs[0]['points']}",
                     "all_certified": all(r["certified"] == r["points"] for r in rs)})
    speedup = rows[0]["points_per_s"] / rows[1]["points_per_s"]
    load = os.getloadavg()
    out = {"what": "ufm phase vs ufm sweep, SC sphere, STEP K=4 d=4 n_min=5, float64, fresh process per run; "
                   "scale: ufm phase at K = 10 ... 10,000 (reduced path), cold and warm compilation cache",
           "mode": args.mode, "repeats": repeats, "grid": [P, M], "rows": rows, "speedup": speedup,
           "scale": scale, "load_average_at_end": list(load),
           "targets": {"phase_seconds": TARGET_SECONDS, "speedup": TARGET_SPEEDUP},
           "met": {"phase_seconds": rows[0]["median_s"] < TARGET_SECONDS or args.mode != "full",
                   "speedup": speedup >= TARGET_SPEEDUP, "all_certified": rows[0]["all_certified"],
                   "scale_seconds": all(r["warm_wall_s"] <= SCALE_TARGET_SECONDS for r in scale),
                   "scale_certified": all(r["certified"] == r["points"] for r in scale)}}
    return finish("phase", out, render)


if __name__ == "__main__":
    main()
