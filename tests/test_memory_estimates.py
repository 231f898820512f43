"""The memory estimates the commands check before any work, against the measured peak.

Each size runs in a fresh subprocess: the command once at a tiny size (imports, JIT caches), then the peak
resident set is reset (``/proc/self/clear_refs``), the resident memory read as the baseline, and the command run
at the size under test through ``ufm.cli.main``; the growth of the peak (``VmHWM``) over the baseline is compared
with the estimate the command itself passed to ``check_memory``. docs/reliability.md has the measured table."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}

PEAK = r"""
import importlib, json, os, re, sys
from ufm.cli import main
cmd, warm, real = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
mod = importlib.import_module("ufm.cli." + cmd)
seen = []
check = mod.check_memory
def spy(args, need, *a, **k):
    seen.append(int(need))
    return check(args, need, *a, **k)
mod.check_memory = spy
if warm:
    assert main(warm) in (0, 3)
else:  # the baseline after the imports alone: the run's compilation counts
    import solvers.workflows.phase, solvers.deepnet.train, jax.numpy as jnp
    jnp.zeros(3).block_until_ready()
with open('/proc/self/clear_refs', 'w') as fh:
    fh.write('5')  # the peak resident set starts again from the resident set now
base = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
assert main(real) in (0, 3)
peak = int(re.search(r'VmHWM:\s+(\d+)', open('/proc/self/status').read()).group(1)) * 1024
print(json.dumps({"growth": peak - base, "estimate": seen[-1]}))
"""

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's clear_refs")


def measured(tmp_path, cmd, warm, real):
    r = subprocess.run([sys.executable, "-c", PEAK, cmd, json.dumps(warm), json.dumps(real)], env=ENV, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{cmd} {real[1:]}: measured {out['growth'] / 2**20:.1f} MiB, estimated {out['estimate'] / 2**20:.1f} MiB, "
          f"ratio {out['growth'] / out['estimate']:.2f}")
    return out["growth"], out["estimate"]


def test_the_sweep_estimate_counts_the_dense_dual_block_up_to_its_limit():
    from solvers import dual

    from ufm.cli import sweep

    assert sweep.DENSE_LIMIT == dual.DENSE_LIMIT
    point = {"counts": [1000] * 4, "dim": 4, "loss_type": "sc", "batching": "full"}
    with_cert, without = sweep.sweep_memory([point]), sweep.sweep_memory([point], certify=False)
    assert with_cert - without >= sweep.DUAL_COPIES * 8 * 4000 ** 2
    big = {**point, "counts": [4000] * 4}  # N = 16000 > DENSE_LIMIT: no dense block
    assert sweep.sweep_memory([big]) - sweep.sweep_memory([big], certify=False) < 8 * 16000 ** 2
    fixed = {**point, "batching": "fixed:100"}  # disjoint batches: blocks of b
    assert sweep.sweep_memory([fixed]) - sweep.sweep_memory([fixed], certify=False) < 8 * 4000 ** 2


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize("n_min", [250, 1000])  # both ends of docs/reliability.md's table
def test_the_sweep_estimate_matches_the_measured_peak_within_2x(tmp_path, n_min):
    def argv(n, out):
        return ["sweep", "--classes", "4", "--n-min", str(n), "--ratios", "1", "--taus", "1", "--steps", "5",
                "--json", "--out", str(tmp_path / out)]
    growth, estimate = measured(tmp_path, "sweep", argv(3, "warm"), argv(n_min, "run"))
    assert 0.5 <= growth / estimate <= 2.0, (growth, estimate)


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize("imbalance", ["step", "long-tail"])  # the reduced path, the class-level path
@pytest.mark.parametrize("classes", [20, 80])
def test_the_phase_estimate_matches_the_measured_peak_within_2x(tmp_path, imbalance, classes):
    def argv(K, taus, out):  # the baseline after the imports: the first solve's compilation is the most of it
        return ["phase", "--classes", str(K), "--imbalance", imbalance, "--ratios", "1,10", "--taus", taus,
                "--no-figures", "--out", str(tmp_path / out)]
    growth, estimate = measured(tmp_path, "phase", [], argv(classes, "0.5,1", "run"))
    assert 0.5 <= growth / estimate <= 2.0, (growth, estimate)


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize("width", [64, 1024])
def test_the_train_estimate_matches_the_measured_peak_within_2x(tmp_path, width):
    argv = ["train", "--dataset", "digits", "--arch", "mlp", "--width", str(width), "--epochs", "1", "--no-probe",
            "--out", str(tmp_path / "run")]
    growth, estimate = measured(tmp_path, "train", [], argv)
    assert 0.5 <= growth / estimate <= 2.0, (growth, estimate)
