"""What JAX's persistent compilation cache saves a user, in fresh processes as a user runs them.

    python -m benchmarks.compile_cache [--quick | --full] [--repeats R]

Each run is a new process (``python -m ufm ...``), timed by wall clock and by the CPU seconds (user + system)
the operating system charged it (``os.wait4``), in rounds that run every candidate once so that the load of a
shared machine falls on all of them alike; medians over ``R`` rounds (5 by default, 9 with ``--full``).

* ``bare``: ``python -c "import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready()"``: the floor a
  JAX program pays before any work of its own;
* ``solve``: a tiny ``ufm solve --counts 3,3 --dim 3 --tau 0.5`` with the cache it filled in an earlier run
  (``warm``) and with ``UFM_JAX_CACHE=off`` (``off``);
* ``phase``: ``ufm phase``'s fixed cost, a 1 x 2 grid (``--classes 4 --ratios 1,10 --taus 0.5
  --no-figures``), warm and off.

Targets: a second ``ufm solve`` of a tiny problem costs <= 1.5x ``bare``; ``ufm phase``'s fixed cost with the
cache is at most half of it without, judged on what each run costs above ``bare`` (CPU): the interpreter and the
JAX import are no part of what a cache can save, and on the whole process the target would need a warm ``ufm
phase`` to cost no more than ``bare`` itself (its ``off`` run is about 2.4x ``bare``). The whole-process ratio is
reported beside it. The cache holds XLA's compiled programs: the tracing of each program in Python is paid by every
process.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from .common import finish, log, section_args, table

SOLVE = ["solve", "--counts", "3,3", "--dim", "3", "--tau", "0.5"]
PHASE = ["phase", "--classes", "4", "--ratios", "1,10", "--taus", "0.5", "--n-min", "5", "--no-figures"]
BARE = ["-c", "import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready()"]
TARGETS = {"solve_over_bare": 1.5, "phase_warm_over_off": 0.5}


def measured(args: list[str], env: dict) -> tuple[float, float]:
    """``(wall s, CPU s)`` of ``python *args`` in a fresh process; RuntimeError with its stderr if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"python {' '.join(args)} exited {code}: {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def run(repeats: int, tmp: str) -> dict:
    """The medians of every candidate (module doc), keyed by candidate name."""
    warm = {**os.environ, "UFM_JAX_CACHE": os.path.join(tmp, "cache")}
    off = {**os.environ, "UFM_JAX_CACHE": "off"}
    folders = iter(range(10 ** 6))

    def phase():  # a new output folder for every run: nothing is resumed
        return ["-m", "ufm", *PHASE, "--out", os.path.join(tmp, f"phase{next(folders)}")]

    candidates = {"bare": (lambda: BARE, off), "solve warm": (lambda: ["-m", "ufm", *SOLVE], warm),
                  "solve off": (lambda: ["-m", "ufm", *SOLVE], off), "phase warm": (phase, warm),
                  "phase off": (phase, off)}
    for name in ("solve warm", "phase warm"):  # fill the cache once (not timed)
        args, env = candidates[name]
        measured(args(), env)
    runs: dict = {k: [] for k in candidates}
    for k in range(repeats):
        log(f"round {k + 1}/{repeats}")
        for name, (args, env) in candidates.items():
            runs[name].append(measured(args(), env))
    return {name: {"wall_s": statistics.median(r[0] for r in rs), "cpu_s": statistics.median(r[1] for r in rs),
                   "walls_s": [r[0] for r in rs], "cpus_s": [r[1] for r in rs]} for name, rs in runs.items()}


def render(out: dict) -> str:
    rows = [[name, r["wall_s"], r["cpu_s"]] for name, r in out["rows"].items()]
    r = out["ratios"]
    return "\n".join([table(["run", "median wall s", "median CPU s"], rows), "",
                      f"tiny solve (cache warm) / bare jax: {r['solve_over_bare_wall']:.2f}x wall, "
                      f"{r['solve_over_bare_cpu']:.2f}x CPU (target <= {TARGETS['solve_over_bare']}x); "
                      f"phase fixed cost warm / off above the bare start-up: "
                      f"{r['phase_above_bare_warm_over_off_cpu']:.2f}x CPU (target <= {TARGETS['phase_warm_over_off']}x), "
                      f"{r['phase_above_bare_warm_over_off_wall']:.2f}x wall; whole process "
                      f"{r['phase_warm_over_off_cpu']:.2f}x CPU, {r['phase_warm_over_off_wall']:.2f}x wall"])


def main(argv=None):
    args = section_args(__doc__, argv)
    repeats = args.repeats or (9 if args.mode == "full" else 5)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(repeats, tmp)
    ratios = {}
    for unit in ("wall", "cpu"):
        ratios[f"solve_over_bare_{unit}"] = rows["solve warm"][f"{unit}_s"] / rows["bare"][f"{unit}_s"]
        ratios[f"phase_warm_over_off_{unit}"] = rows["phase warm"][f"{unit}_s"] / rows["phase off"][f"{unit}_s"]
        bare = rows["bare"][f"{unit}_s"]  # what the cache cannot touch: the interpreter and the JAX import
        ratios[f"phase_above_bare_warm_over_off_{unit}"] = ((rows["phase warm"][f"{unit}_s"] - bare)
                                                            / (rows["phase off"][f"{unit}_s"] - bare))
    out = {"what": "fresh processes, medians of interleaved rounds; warm = the compilation cache filled by an "
                   "earlier run, off = UFM_JAX_CACHE=off", "repeats": repeats, "rows": rows, "ratios": ratios,
           "targets": TARGETS, "load_average_at_end": list(os.getloadavg()),
           "met": {"solve_over_bare": ratios["solve_over_bare_wall"] <= TARGETS["solve_over_bare"],
                   "phase_warm_over_off": (ratios["phase_above_bare_warm_over_off_cpu"]
                                           <= TARGETS["phase_warm_over_off"])}}
    return finish("compile_cache", out, render)


if __name__ == "__main__":
    main()
