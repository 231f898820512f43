"""solve_many: one vmap-ed loop per group gives what solve gives one by one, compiles once, shards over devices."""
import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from solvers import pgd, solve, solve_many
from ufm import Problem, theory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# one family of full-batch SC problems (sizes differ: padded together), one with fixed batches, and CE
SC = [Problem(counts=(12, 12, 3, 3), tau=0.2, dim=5, nonneg=True),
      Problem(counts=(12, 12, 3, 3), tau=1.0, dim=5, nonneg=False, radius=2.0),
      Problem(counts=(12, 12, 3, 3), tau=0.1, dim=5, nonneg=True, radius=0.5),
      Problem(counts=(8, 3, 2), tau=0.3, dim=5, nonneg=True)]  # N = 13: padded to 30 with masked rows
BATCHED = [Problem(counts=(5, 5, 5), tau=0.5, dim=5, batching="fixed:6", batch_seed=s) for s in (0, 1)]
CE = [Problem(counts=(6,) * 4, loss="ce", constraint="ball", weight_decay=wd) for wd in (5e-3, 1e-2)]
ALL = SC + BATCHED + CE


@pytest.fixture(scope="module")
def one_by_one():
    return [solve(p, dtype="float64") for p in ALL]


@pytest.fixture(scope="module")
def many():
    return solve_many(ALL, dtype="float64")


def test_same_results_as_solve_one_by_one(many, one_by_one):
    """Same start, same steps, same answer (to 1e-5; in practice to rounding), in the input order. The problems
    stop after different numbers of steps: a stopped problem's state stays frozen while the others go on."""
    assert len({s.steps for s in one_by_one}) > 2
    for p, a, b in zip(ALL, many, one_by_one):
        assert a.problem is p and a.steps == b.steps and a.converged and b.converged
        assert abs(a.loss - b.loss) <= 1e-5 and a.Z.shape == b.Z.shape == (p.N, p.dim)
        assert np.abs(a.Z - b.Z).max() <= 1e-5
        assert np.allclose(a.history, b.history, rtol=1e-5, atol=1e-8)
        if p.loss == "ce":
            assert np.abs(a.W - b.W).max() <= 1e-5
    for p, a in zip(SC, many):  # and the answers are the closed forms
        if p.nonneg:
            assert abs(a.loss - theory.sc_of_loss(p.counts, p.tau, p.radius)) <= 1e-6


def test_groups_pad_small_problems_together():
    statics = [pgd.static_of(p, 100, "pgd", "float64") for p in ALL]
    groups = pgd._groups(ALL, statics, "auto")
    assert sorted(len(m) for _, m, _ in groups) == [2, 2, 4]  # SC (padded), batched, CE
    padded = next(st for st, m, _ in groups if len(m) == 4)
    assert padded.N == 30 and padded.batch_shape == (1, 30)
    assert len(pgd._groups(ALL, statics, False)) == 4  # exact shapes: N=13 alone


def test_no_recompilation_for_new_values(caplog):
    """A second call with other numbers (tau, radius, nonneg, seeds) of the same shapes reuses the program."""
    base = [Problem(counts=(4, 4, 2), tau=0.5, dim=3), Problem(counts=(4, 4, 2), tau=0.2, dim=3, nonneg=True)]
    solve_many(base, steps=20)
    other = [p.replace(tau=p.tau * 1.7, radius=1.5, nonneg=not p.nonneg) for p in base]
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        sols = solve_many(other, steps=20, seed=[3, 4])
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
        assert not [m for m in compiled if "_run_many" in m], compiled
        solve_many([Problem(counts=(6, 6), tau=0.5, dim=3)], steps=20)  # a new shape does compile
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert [m for m in compiled if "_run_many" in m]
    assert [s.seed for s in sols] == [3, 4] and all(np.isfinite(s.loss) for s in sols)


def test_bad_arguments():
    p = Problem(counts=(2, 2))
    with pytest.raises(ValueError, match="seed"):
        solve_many([p, p], seed=[1, 2, 3])
    with pytest.raises(ValueError, match="pad"):
        solve_many([p], pad="yes")
    with pytest.raises(ValueError, match="steps"):
        solve_many([p], steps=0)


def test_non_finite_names_the_problem():
    sphere = Problem(counts=(6,) * 4)  # projected onto the sphere: stays finite whatever the step
    ce = Problem(counts=(6,) * 4, loss="ce", constraint="none", weight_decay=5e-3, feature_decay=1e-3)
    with pytest.raises(pgd.NonFiniteLoss, match="problem 1"):
        solve_many([sphere, ce], optimizer="sgd", lr=1e30, steps=20)


SHARDED = r"""
import json, jax, jax.numpy as jnp, numpy as np
from solvers import pgd, solve, solve_many
from ufm import Problem, kernels
from ufm.losses import sc_loss_blocked
ps = [Problem(counts=(6, 6, 2), tau=t, dim=4, nonneg=t > 0.3) for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)]
H = pgd._stack([pgd._hyper(p, np.float32) for p in ps[:4]])
sh = pgd._problem_sharding(None)
out = pgd._run_many_jit(pgd.static_of(ps[0], 50, "pgd", "float32"), jax.device_put(H, sh),
                        jax.device_put(jax.numpy.stack([jax.random.PRNGKey(0)] * 4), sh), 0.0, 1e-6)
spread = len(out.x["Z"].sharding.device_set)
a = solve_many(ps, dtype="float64")                          # 6 problems on 4 devices (padded to 8)
b = solve_many(ps, dtype="float64", devices=jax.devices()[:1])
# the rows of one problem over a "rows" mesh: the SC kernel's pair work split by shard_map
with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(301, 6))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    y = rng.integers(0, 7, 301)
    vg = jax.jit(jax.value_and_grad(lambda z, t: sc_loss_blocked(z, y, t, block=32)))
    ref = [vg(jnp.asarray(Z), t) for t in (0.1, 1e-3)]
    with jax.set_mesh(jax.sharding.Mesh(np.asarray(jax.devices()), ("rows",))):
        rows = kernels.row_devices()
        got = [vg(jnp.asarray(Z), t) for t in (0.1, 1e-3)]
    rel = max(max(abs(float(f - g)) / abs(float(f)), float(jnp.abs(gf - gg).max() / jnp.abs(gf).max()))
              for (f, gf), (g, gg) in zip(ref, got))
p = Problem(counts=(100, 100, 60, 40), tau=0.2, dim=6, nonneg=True)  # N = 300: the tiled kernel
one, four = solve(p, dtype="float64"), solve(p, dtype="float64", devices=jax.devices())
print(json.dumps({"devices": len(jax.devices()), "spread": spread,
                  "dZ": max(float(np.abs(x.Z - y.Z).max()) for x, y in zip(a, b)),
                  "steps": [x.steps == y.steps for x, y in zip(a, b)], "row_devices": rows, "row_rel": rel,
                  "row_solve": [one.steps == four.steps, float(np.abs(one.Z - four.Z).max()), four.loss - one.loss]}))
"""


def test_sharded_over_four_cpu_devices():
    """The problem axis of solve_many, and the rows of one problem's SC kernel (solve(devices=...)), split over 4
    CPU devices: the same answers as on one device."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": ROOT,
           "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4 and res["spread"] == 4
    assert res["dZ"] <= 1e-5 and all(res["steps"])
    assert res["row_devices"] == 4 and res["row_rel"] <= 1e-12
    same_steps, dZ, dloss = res["row_solve"]
    assert same_steps and dZ <= 1e-6 and abs(dloss) <= 1e-12
