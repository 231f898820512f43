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
from ufm import Problem, kernels, theory
from ufm.batching import batch_list
from ufm.losses import sc_loss_dense

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


@pytest.mark.slow
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
    groups = pgd.many.group_problems(ALL, statics, "auto")
    assert sorted(len(m) for _, m, _ in groups) == [2, 2, 4]  # SC (padded), batched, CE
    padded = next(st for st, m, _ in groups if len(m) == 4)
    assert padded.N == 30 and padded.batch_shape == (1, 30)
    assert len(pgd.many.group_problems(ALL, statics, False)) == 4  # exact shapes: N=13 alone


@pytest.mark.slow
def test_no_recompilation_for_new_values(caplog):
    """A second call with other numbers (tau, radius, nonneg, seeds) of the same shapes reuses the program."""
    base = [Problem(counts=(4, 4, 2), tau=0.5, dim=3), Problem(counts=(4, 4, 2), tau=0.2, dim=3, nonneg=True)]
    solve_many(base, steps=20)
    other = [p.replace(tau=p.tau * 1.7, radius=1.5, nonneg=not p.nonneg) for p in base]
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        sols = solve_many(other, steps=20, seed=[3, 4])
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
        assert not [m for m in compiled if "run_many" in m or "run_pool" in m], compiled
        solve_many([Problem(counts=(6, 6), tau=0.5, dim=3)], steps=20)  # a new shape does compile
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert [m for m in compiled if "run_many" in m or "run_pool" in m]
    assert [s.seed for s in sols] == [3, 4] and all(np.isfinite(s.loss) for s in sols)


def test_bad_arguments():
    p = Problem(counts=(2, 2))
    with pytest.raises(ValueError, match="seed"):
        solve_many([p, p], seed=[1, 2, 3])
    with pytest.raises(ValueError, match="pad"):
        solve_many([p], pad="yes")
    with pytest.raises(ValueError, match="steps"):
        solve_many([p], steps=0)


@pytest.mark.slow
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
H = pgd.many.stack([pgd.hyper_of(p, np.float32) for p in ps[:4]])
sh = pgd.many.problem_sharding(None)
out = pgd.many.run_many_jit(pgd.static_of(ps[0], 50, "pgd", "float32"), jax.device_put(H, sh),
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


@pytest.mark.slow
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


def minibatch_problems(n):
    """``n`` small SC problems under mini-batches (``fixed:8``, or three disjoint explicit batches that leave
    some samples out), with and without ReLU, on three shapes (so that the loop of ``solve`` compiles three
    programs)."""
    shapes = [(8, 8, 4), (12, 12, 6, 6), (20, 12, 12, 8)]
    out = []
    for i, tau in enumerate(np.geomspace(0.1, 1.0, n)):
        counts = shapes[i % 3]
        if i % 5 == 4:  # explicit batches: disjoint, not covering every sample
            order = np.random.default_rng(i).permutation(sum(counts))
            kw = {"batches": tuple(tuple(int(j) for j in order[k::4]) for k in range(3))}
        else:
            kw = {"batching": "fixed:8", "batch_seed": i}
        out.append(Problem(counts=counts, tau=float(tau), dim=5, nonneg=i % 2 == 1, **kw))
    return out


@pytest.mark.slow
def test_slot_kernel_is_the_sc_loss():
    """The slot-layout SC loss and gradient (solve_many's pool) against autodiff of the reference loss, on a
    problem with a ragged last batch and one whose batches leave samples out; a sample in two batches has no
    slot layout."""
    with jax.enable_x64(True):
        for p in minibatch_problems(5)[2:]:
            rng = np.random.default_rng(p.N)
            Z = rng.normal(size=(p.N, p.dim))
            layout = pgd.many.group_layout(pgd.static_of(p, 10, "pgd", "float64"), [p])
            perm, other, A, Wp = layout[0]
            Zs = np.where((perm >= 0)[:, None], Z[np.maximum(perm, 0)], 0.0)
            f, g = jax.jit(kernels.sc_slots_vg)(Zs, other, A, Wp, p.tau)
            ref_f, ref_g = jax.jit(jax.value_and_grad(sc_loss_dense))(Z, p.label_array, p.tau, pgd.batch_array(p))
            g = np.asarray(g)
            assert abs(float(f) - float(ref_f)) <= 1e-12 * abs(float(ref_f))
            assert np.abs(g[perm >= 0] - np.asarray(ref_g)[perm[perm >= 0]]).max() <= 1e-12
            assert np.all(g[perm < 0] == 0)
    overlapping = Problem(counts=(4, 4), batches=((0, 1, 4, 5), (1, 2, 5, 6), (3, 7)))
    assert kernels.slot_layout(batch_list(overlapping), overlapping.label_array, (3, 4)) is None


@pytest.mark.parametrize("BW, d", [(5, 3), (40, 8)])  # the gradient unrolled per coordinate, and summed at once
def test_slot_kernel_gradient_is_the_derivative_of_its_value(BW, d):
    """Both ways of forming the slot kernel's gradient against autodiff of its own value (random masks,
    weights and temperatures, problems on the last axis)."""
    rng = np.random.default_rng(BW)
    NB, P = 3, 4
    with jax.enable_x64(True):
        Z = rng.normal(size=(NB * BW, d, P))
        other = rng.random((NB, BW, BW, P)) < 0.7
        A, Wp = rng.random((NB, BW, P)), rng.random((NB, BW, BW, P)) * other
        tau = rng.random(P) + 0.1
        f, g = jax.jit(kernels.sc_slots_kernel)(Z, other, A, Wp, tau)
        ref = jax.jit(jax.grad(lambda Z: kernels.sc_slots_kernel(Z, other, A, Wp, tau)[0].sum()))(Z)
        assert np.all(np.isfinite(np.asarray(f)))
        assert np.abs(np.asarray(g) - np.asarray(ref)).max() <= 1e-12 * (1 + np.abs(np.asarray(ref)).max())


def test_start_keys_are_start_key():
    """The start keys of a group, made in one device call, are those ``solve`` makes one by one."""
    seeds, starts = [0, 5, np.int64(7), 123456789, 0, 2 ** 31 + 5], [0, 1, 3, 0, 2, 1]
    for x64 in (False, True):
        with jax.enable_x64(x64):
            keys = np.asarray(pgd.start_keys(seeds, starts))
            for k, (s, i) in enumerate(zip(seeds, starts)):
                assert np.array_equal(keys[k], np.asarray(pgd.start_key(s, i)))


@pytest.mark.slow
def test_pools_on_threads_agree_with_one_pool(monkeypatch):
    """The rows of a group dealt to three pools on three threads (15 rows: pools of 5) give, row for row, the
    answers of one pool: every run is independent of its pool, to rounding (a pool of another width may sum in
    another order, which moves the step where a slow row meets the tolerance by a few percent; no row here stops
    near the cap of 2000)."""
    problems = minibatch_problems(6)
    answers = []
    for n in (1, 3):
        monkeypatch.setattr(pgd, "pool_threads", lambda n=n: n)
        answers.append(solve_many(problems, dtype="float64", steps=2000))
    for a, b in zip(*answers):
        assert a.reason == b.reason and len(a.start_losses) == len(b.start_losses)
        assert len(a.history) == a.steps + 1 and np.all(np.isfinite(a.history))  # every step recorded once
        assert abs(a.steps - b.steps) <= 0.1 * b.steps
        assert np.allclose(a.start_losses, b.start_losses, rtol=1e-7, atol=0)
        assert abs(a.loss - b.loss) <= 1e-7 * abs(b.loss)


@pytest.mark.slow
def test_pool_of_minibatch_problems_agrees_with_solve():
    """40 small mini-batch problems (different N, batches, tau, ReLU: one padded group, a pool of slots that
    refills as rows stop): the loss of a loop of ``solve`` to 1e-6 relative, the same stop reason. (Rounding
    moves the step where a slow row meets the tolerance by a few percent, so a row that converges just below
    ``steps`` on one side may reach ``max_steps`` on the other; no row here stops near 2000.)"""
    problems = minibatch_problems(40)
    many = solve_many(problems, dtype="float64", steps=2000)
    loop = [solve(p, dtype="float64", steps=2000) for p in problems]
    assert len({s.reason for s in loop}) > 1 and len({s.steps for s in loop}) > 10
    for p, a, b in zip(problems, many, loop):
        assert a.problem is p and a.reason == b.reason and a.Z.shape == b.Z.shape == (p.N, p.dim)
        assert abs(a.loss - b.loss) <= 1e-6 * abs(b.loss)
        assert len(a.history) == a.steps + 1 and abs(a.history[-1] - b.history[-1]) <= 1e-6 * abs(b.loss)
        assert len(a.start_losses) == len(b.start_losses)
