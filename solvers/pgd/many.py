"""``solve_many``: many problems at once, one compiled loop per group of equal shape; on a CPU pools of slots
refilled as rows stop (:func:`run_pool`), SC problems with disjoint batches through the slot-layout kernel
(``ufm.kernels.sc_slots_vg``)."""
from __future__ import annotations

import concurrent.futures
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ufm import objectives
from ufm.batching import batch_list
from ufm.defaults import DEFAULT_STEPS
from ufm.kernels import sc_slots_vg, slot_layout

from .loop import loop_parts, run, run_jit
from .one import best_of_starts, n_starts, restore, start_keys
from .state import NonFiniteLoss, Solution, check_args, hyper_of, static_of
from .step import init_params, project_vars

__all__ = ["PAD_SMALL", "POOL_CHUNK", "POOL_SLOTS", "LOCKSTEP_MAX_N", "solve_many", "pool_threads", "lockstep_pays",
           "run_many", "run_many_jit", "run_pool", "run_pool_jit", "group_problems", "group_layout", "stack",
           "problem_sharding"]

PAD_SMALL = 256  # SC problems up to this N share one padded group under pad="auto" (their steps cost ~nothing)


def run_many(static, H, keys, lr, tol):
    """``run`` over a leading problem axis of ``H`` and ``keys``. Under ``vmap`` the ``while_loop`` runs until
    every problem stops; a stopped problem's state is frozen (JAX selects the old carry where the predicate is
    false)."""
    return jax.vmap(lambda h, key: run(static, h, key, lr, tol))(H, keys)


run_many_jit = jax.jit(run_many, static_argnums=0)


def _where_rows(mask, a, b):
    """``a`` where ``mask`` (one flag per leading row) else ``b``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(mask.reshape(mask.shape + (1,) * (u.ndim - 1)), u, v),
                                  a, b)



def run_pool(static, H, keys, lr, tol, slots, layout=None, chunk=None):
    """``run`` over the rows of ``H`` and ``keys`` in a pool of ``slots`` slots (continuous batching): one
    compiled ``while_loop`` whose every iteration runs ``chunk`` (default ``POOL_CHUNK``) ``vmap``-ed iterations
    of ``run``'s body on the slots (a stopped row's state frozen); then the rows that stopped (their stop rule,
    or ``static.steps``) go to the output and their slots load the next rows' starts. Each row runs exactly the
    iterations ``run`` runs, so the answers are ``run``'s (to rounding), while the loop lasts about ``sum of
    iterations / slots`` instead of the slowest row's count times the rows. The histories go to an
    ``(R, steps + 1)`` table, outside the slots' state (a state carrying them would be copied whole at every
    iteration).

    ``layout``: None, or the stacked :func:`slot_layout` of every row (SC with disjoint batches): then ``Z``
    lives in slot order (``x["Z"]`` of the result is ``(R, NB*BW, d)``, ``perm`` maps it back) and the loss is
    :func:`sc_slots_vg`; the start is the same random point as ``run``'s, permuted.

    Returns:
      the final ``PGDState`` of every row, stacked (``hist`` ``(R, steps + 1)``).
    """
    R = keys.shape[0]
    P = min(slots, R)
    if layout is None:
        run_static = static
        parts = lambda h: loop_parts(static, h, lr, tol, history=False)  # noqa: E731
        S0 = jax.vmap(lambda h, key: parts(h)[0](key, None))(H, keys)
    else:
        perm, other, A, Wp = layout
        run_static = static._replace(N=perm.shape[1], batch_shape=None)

        def parts(h, draw=None):  # the slot layout's masks ride in h.labels
            def fun(x, tau):
                f, g = sc_slots_vg(x["Z"], *h.labels, tau)
                return f, {"Z": g}
            return loop_parts(run_static, h._replace(labels=None), lr, tol, history=False, fun=fun, draw=draw)

        def row_start(h, key, perm, other, A, Wp):
            dt = jnp.dtype(static.dtype)
            n = jnp.asarray(static.N, dt) if h.n is None else h.n
            hs = h._replace(labels=(other, A, Wp), batches=None, mask=perm >= 0, n=n)
            empty = project_vars(run_static, {"Z": jnp.zeros((perm.shape[0], static.dim), dt)}, h)["Z"]
            Z = init_params(static, key, h)["Z"]  # the random start of run, in the problem's own row order
            Zs = jnp.where((perm >= 0)[:, None], Z[jnp.maximum(perm, 0)], empty)
            return parts(hs, draw=lambda key: {"Z": Zs})[0](key, None), hs

        S0, H = jax.vmap(row_start)(H, keys, perm, other, A, Wp)
    W = static.steps + 1
    hout = jnp.full((R, W), jnp.nan, S0.f.dtype).at[:, 0].set(S0.hist).reshape(-1)
    take = lambda tree, idx: jax.tree_util.tree_map(lambda a: a[idx], tree)  # noqa: E731
    rows = jnp.arange(P, dtype=jnp.int32)
    C = chunk or POOL_CHUNK

    def live(S, rows):
        return (rows >= 0) & ~S.done & (S.t < static.steps)

    def iteration(i, c):  # one iteration of every live slot; its objective and step go to the chunk's table
        S, Hs, rows, hc, tc = c
        go = live(S, rows)
        S1 = _where_rows(go, jax.vmap(lambda h, s: parts(h)[1](s))(Hs, S), S)
        stepped = go & (S1.t != S.t)  # a failed trial takes no step: nothing to record (each step once)
        return S1, Hs, rows, hc.at[:, i].set(S1.hist), tc.at[:, i].set(jnp.where(stepped, S1.t, -1))

    def chunk(c):  # C iterations, then the stopped rows' states out and the next rows in
        S, Hs, rows, nxt, out, hout = c
        hc, tc = jnp.zeros((P, C), S.f.dtype), jnp.zeros((P, C), jnp.int32)
        S1, _, _, hc, tc = jax.lax.fori_loop(0, C, iteration, (S, Hs, rows, hc, tc))
        at = jnp.where(tc >= 0, rows[:, None] * W + tc, hout.size).reshape(-1)
        hout = hout.at[at].set(hc.reshape(-1), mode="drop", unique_indices=True)
        fin = (rows >= 0) & ~live(S1, rows)
        out = jax.tree_util.tree_map(lambda o, v: o.at[jnp.where(fin, rows, R)].set(v, mode="drop"), out, S1)
        new = jnp.where(fin, nxt + jnp.cumsum(fin, dtype=jnp.int32) - 1, rows)
        new = jnp.where(new < R, new, -1)
        src = jnp.clip(new, 0, R - 1)
        load = fin & (new >= 0)
        return (_where_rows(load, take(S0, src), S1), _where_rows(load, take(H, src), Hs), new,
                nxt + jnp.sum(fin, dtype=jnp.int32), out, hout)

    c = (take(S0, rows), take(H, rows), rows, jnp.int32(P), S0, hout)
    _, _, _, _, out, hout = jax.lax.while_loop(lambda c: jnp.any(c[2] >= 0), chunk, c)
    out = jax.vmap(lambda h, s: parts(h)[2](s))(H, out)
    return out._replace(hist=hout.reshape(R, W))


run_pool_jit = jax.jit(run_pool, static_argnums=(0, 5, 7))


def _group_key(static, problem, pad):
    """Problems with equal keys run in one compiled loop. SC problems of one family (everything but N, K and the
    batch shape) share a key when padding is on: under ``"auto"``, all under ``PAD_SMALL`` samples together,
    above it one group per power of two of N (padding at most doubles N), and in both cases one group per power
    of two of the batch width (every batch is padded to the group's widest); under ``True``, one group."""
    if pad is False or not objectives.get(static.loss).contrastive or objectives.get(static.loss).prototypes:
        return static
    family = static._replace(N=0, K=0, batch_shape=static.batch_shape is not None)
    if pad is True:
        return family, 0, 0
    width = 0 if static.batch_shape is None else int(np.ceil(np.log2(max(static.batch_shape[1], 1))))
    return family, 0 if problem.N <= PAD_SMALL else int(np.ceil(np.log2(problem.N))), width


def _padded_hyper(problem, dtype, continuation, start, n, shape):
    """``hyper_of`` of ``problem`` with ``n - N`` masked rows appended: labels 0, in no batch (``-1`` slots), and
    the real ``n`` and row mask for the metric and the start."""
    h = hyper_of(problem, dtype, continuation, start)
    N = problem.N
    b = h.batches if h.batches is not None else np.arange(N, dtype=np.int32)[None, :]
    b = np.pad(b, ((0, shape[0] - b.shape[0]), (0, shape[1] - b.shape[1])), constant_values=-1)
    labels = np.zeros((n,), np.int32)
    labels[:N] = h.labels
    return h._replace(labels=labels, batches=b, mask=np.arange(n) < N, n=np.asarray(N, np.dtype(dtype)))


def group_problems(problems, statics, pad):
    """``[(static, member indices, hypers-maker)]``: one compiled loop per entry."""
    buckets: dict = {}
    for i, (p, st) in enumerate(zip(problems, statics)):
        buckets.setdefault(_group_key(st, p, pad), []).append(i)
    out = []
    for members in buckets.values():
        sts = {statics[i] for i in members}
        if len(sts) == 1:  # one shape: exactly solve's program
            out.append((statics[members[0]], members, hyper_of))
            continue
        first = statics[members[0]]
        n = max(statics[i].N for i in members)
        shapes = [statics[i].batch_shape or (1, statics[i].N) for i in members]
        shape = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        static = first._replace(N=n, K=max(statics[i].K for i in members), batch_shape=shape)
        out.append((static, members, lambda p, dt, c, r, n=n, shape=shape: _padded_hyper(p, dt, c, r, n, shape)))
    return out


def stack(trees):
    """Trees of equal structure stacked leaf by leaf on a new leading axis (NumPy leaves stacked in NumPy, then
    one transfer each)."""
    return jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)) if isinstance(a[0], np.ndarray)
                                  else jnp.stack(a), *trees)


def problem_sharding(devices):
    """A 1-D mesh over ``devices`` with the problem axis split across it (None for one device)."""
    if devices is None:
        devices = jax.devices()
    if len(devices) < 2:
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), ("problems",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("problems"))


def _fetch(tree):
    """Device arrays to NumPy; across hosts (``jax.distributed``) every process gathers the whole result."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


POOL_CHUNK = 8  # iterations of solve_many's pool between two refills (a stopped slot idles until the chunk ends)
POOL_SLOTS = 16  # slots of each of solve_many's pools on a CPU: an iteration costs about the same per slot from 4
# to 32 slots, and fewer slots leave a shorter idle tail once every row has started (docs/benchmarks.md)


def group_layout(static, problems):
    """The :func:`slot_layout` of each of ``problems`` (one compiled group) on one grid, or None where the slot
    kernel does not apply: a loss other than SC, a batch width from ``ufm.losses.BLOCKED_MIN`` on (the tiled
    kernel's regime), or a sample in two batches."""
    from ufm.losses import BLOCKED_MIN

    if not objectives.get(static.loss).slot_kernel:
        return None
    sets = [batch_list(p) or [list(range(p.N))] for p in problems]
    BW = max(len(b) for bs in sets for b in bs)
    if BW >= BLOCKED_MIN:
        return None
    NB = max(max(len(bs), -(-p.N // BW)) for p, bs in zip(problems, sets))
    out = [slot_layout(bs, p.label_array, (NB, BW)) for p, bs in zip(problems, sets)]
    return None if any(o is None for o in out) else out


def pool_threads() -> int:
    """The pools :func:`solve_many` runs at once on a CPU: one per core this process may use (each pool is one
    compiled loop on one thread; XLA gives a loop of such small steps no second core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_POOL_EXECUTABLES: dict = {}  # compiled pools by (static, argument shapes): threads share one compilation


def _pool_executable(static, args):
    """``run_pool`` compiled for ``args = (H, keys, lr, tol, layout)``, once per shape (ahead of time, so that
    the threads of :func:`_pool_rows` do not each compile it)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (static, POOL_SLOTS, POOL_CHUNK, tree, tuple((a.shape, a.dtype) for a in leaves))
    if key not in _POOL_EXECUTABLES:
        if len(_POOL_EXECUTABLES) >= 64:
            _POOL_EXECUTABLES.pop(next(iter(_POOL_EXECUTABLES)))
        H, keys, lr, tol, layout = args
        _POOL_EXECUTABLES[key] = run_pool_jit.lower(static, H, keys, lr, tol, POOL_SLOTS, layout,
                                                     POOL_CHUNK).compile()
    return _POOL_EXECUTABLES[key]


def _pool_rows(static, row_problems, hs, keys, lr, tol) -> list:
    """The final state of every row of a group (one start of ``row_problems[k]`` with hyper ``hs[k]`` and PRNG
    key ``keys[k]``), run in up to :func:`pool_threads` pools at once (of 4 rows or more). The rows are dealt to
    the pools in a fixed shuffled order (so that the slow rows, such as the odd starts that run the continuation
    stage, spread); every pool has the same number of rows (its last row repeated: one compilation); each pool is
    :func:`run_pool` on its own thread. A row's answer does not depend on its pool, up to rounding (a pool of
    another width may sum in another order), so machines with other core counts agree to rounding."""
    layout = group_layout(static, row_problems)
    R = len(hs)
    n = max(1, min(pool_threads(), -(-R // 4)))  # pools of 4 rows at least (a repeated row is a whole run)
    order = np.random.default_rng(0).permutation(R)  # spread the slow rows (a problem's odd starts, say) evenly
    shards = [sorted(order[k::n].tolist()) for k in range(n)]
    shards = [ix + [ix[-1]] * (len(shards[0]) - len(ix)) for ix in shards]

    def args(ix):
        lay = None if layout is None else tuple(jnp.asarray(np.stack([layout[i][j] for i in ix])) for j in range(4))
        return stack([hs[i] for i in ix]), keys[np.asarray(ix)], lr, tol, lay

    shard_args = [args(ix) for ix in shards]
    run = _pool_executable(static, shard_args[0])
    def one(a):  # a worker thread's x64 setting as the caller's (a thread-local config)
        with jax.enable_x64(static.dtype == "float64"):
            return jax.device_get(run(*a))

    if n == 1:
        results = [one(shard_args[0])]
    else:
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            results = list(ex.map(one, shard_args))
    out: list = [None] * R
    for ix, s in zip(shards, results):
        for k, i in enumerate(ix):
            si = jax.tree_util.tree_map(lambda a, k=k: a[k], s)
            if layout is not None:  # slot order back to the problem's row order (padded with zero rows)
                perm = layout[i][0]
                Z = np.zeros((static.N, static.dim), si.x["Z"].dtype)
                Z[perm[perm >= 0]] = si.x["Z"][perm >= 0]
                si = si._replace(x={**si.x, "Z": Z})
            out[i] = si
    return out


LOCKSTEP_MAX_N = PAD_SMALL  # on a CPU, groups of larger problems run row by row (lockstep_pays)


def lockstep_pays(static) -> bool:
    """Whether a group runs batched (on a GPU or TPU one ``vmap`` of all rows in lockstep, on a CPU the slot pool
    of :func:`run_pool`) rather than row by row. On a GPU or TPU, always: a batched step costs about one
    problem's. On a CPU only for small problems (``N <= LOCKSTEP_MAX_N``), where a step is mostly per-operation
    overhead that the batch shares; above, a step is compute-bound and the batch saves nothing
    (docs/benchmarks.md has the measurement)."""
    return jax.default_backend() != "cpu" or static.N <= LOCKSTEP_MAX_N


def solve_many(problems, *, steps: int = DEFAULT_STEPS, lr: float | None = None, optimizer="pgd",
               tol: float | None = None, seed=0, dtype: str | None = None, pad="auto", devices=None,
               progress: bool = False, continuation: bool | None = None, starts: int | None = None,
               acceleration: bool = False) -> list[Solution]:
    """Solve many problems, one jit-compiled loop per group of equal shape; returns one ``Solution`` per problem,
    in order, as ``solve(problem, ...)`` would (same start, same steps, same stop rule, to rounding).

    How a group runs: on a CPU, :func:`pool_threads` pools of ``POOL_SLOTS`` slots at once, each one compiled loop
    on its own thread (:func:`_pool_rows`, :func:`run_pool`: each slot runs one row of ``solve``'s iterations
    and loads the next row when its row stops), SC problems with disjoint batches through a slot-layout kernel
    of the loss (:func:`slot_layout`); groups of problems above ``LOCKSTEP_MAX_N`` samples run row by row
    (``lockstep_pays``). On other devices, and split over several
    devices, one ``vmap`` of all rows in lockstep.

    Problems in one group may differ in every number: ``tau``, ``radius``, ``nonneg``, the decays, the labels,
    the batches (all traced). What fixes a group (one compilation each, cached for later calls with new values):
    ``loss``, ``constraint``, ``bias``, ``dim`` and the sizes.

    Args:
      problems: ``ufm.Problem`` s.
      steps, lr, optimizer, tol, dtype: as for ``solve``, shared by all.
      seed: one int for all, or one per problem.
      pad: SC problems of different N (and batch shapes) join one group, padded with masked samples (in no
        batch, never moved), where that is cheaper than another compilation. ``"auto"`` (default): all problems
        with ``N <= PAD_SMALL`` in one group (their steps cost microseconds, a compilation seconds), above that
        one group per power of two of N (padding at most doubles N, i.e. at most 4x the pair work of the
        smallest); under mini-batches, one group per power of two of the batch width as well. ``True``: one
        group per family; ``False``: exact shapes only. CE problems are never padded.
      devices: devices to split each group's problem axis over (``jax.sharding``; default ``jax.devices()``;
        a group is padded to a multiple of their number). One device: no sharding.
      progress: one line per group on stderr.
      continuation: as for ``solve`` (None: on for the odd starts of each SC problem with ``nonneg``).
      starts: as for ``solve``, per problem (None: ``AUTO_STARTS`` for each imbalanced problem with ``nonneg``); every
        start is one more row of its group's vmap.
      acceleration: as for ``solve`` (the FISTA step; part of each group's compiled program).
    Returns:
      ``Solution`` s; ``seconds`` is the wall time of the problem's group (compilation included).
    Raises:
      NonFiniteLoss: a problem's loss became NaN or infinite (its index in the message).
    """
    problems = list(problems)
    check_args(steps, lr, optimizer, tol, dtype, acceleration)
    if pad not in ("auto", True, False):
        raise ValueError(f"pad must be 'auto', True or False, got {pad!r}")
    seeds = [seed] * len(problems) if isinstance(seed, (int, np.integer)) else list(seed)
    if len(seeds) != len(problems):
        raise ValueError(f"seed: give one int or one per problem ({len(problems)}), got {len(seeds)}")
    dtype = dtype or "float64"
    tol = (1e-12 if dtype == "float64" else 1e-6) if tol is None else float(tol)
    originals = problems
    units = [p.at_unit_radius() for p in problems]
    problems = [u for u, _ in units]
    sharding = problem_sharding(devices)
    width = 1 if sharding is None else sharding.mesh.size
    out: list = [None] * len(problems)
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.dtype(dtype)
        statics = [static_of(p, steps, optimizer, dtype, continuation, acceleration) for p in problems]
        groups = group_problems(problems, statics, pad)
        for g, (static, members, hyper) in enumerate(groups):
            start = time.perf_counter()
            rows = [(i, r) for i in members for r in range(n_starts(problems[i], starts))]
            real = len(rows)
            rows += [rows[-1]] * (-real % width)  # whole shards
            hs = [hyper(problems[i], dt, continuation, r) for i, r in rows]
            keys = start_keys([seeds[i] for i, _ in rows], [r for _, r in rows])
            lr_, tol_ = jnp.asarray(lr or 0.0, dt), jnp.asarray(tol, dt)
            if sharding is None and not lockstep_pays(static):  # one row after the other, same program as solve
                row_states = [jax.device_get(run_jit(static, h, key, lr_, tol_)) for h, key in zip(hs, keys)]
            elif sharding is None and jax.default_backend() == "cpu":  # pools of slots, refilled as rows stop
                row_states = _pool_rows(static, [problems[i] for i, _ in rows], hs, keys, lr_, tol_)
            else:
                H, K_ = stack(hs), keys
                if sharding is not None:
                    H, K_ = jax.device_put((H, K_), sharding)
                s = _fetch(run_many_jit(static, H, K_, lr_, tol_))
                row_states = [jax.tree_util.tree_map(lambda a, k=k: a[k], s) for k in range(len(rows))]
            for i in members:
                states = []
                for k in [k for k, (j, _) in enumerate(rows[:real]) if j == i]:
                    si = row_states[k]
                    states.append(si._replace(x={**si.x, "Z": si.x["Z"][: problems[i].N]}))
                try:
                    out[i] = restore(best_of_starts(problems[i], states, start, dtype, seeds[i], optimizer), originals[i],
                                      units[i][1])
                except NonFiniteLoss as e:
                    raise NonFiniteLoss(f"problem {i}: {e}") from None
            if progress:
                print(f"solve_many: group {g + 1}/{len(groups)}: {len(members)} problems, N={static.N}, "
                      f"{time.perf_counter() - start:.2f} s", file=sys.stderr)
    return out
