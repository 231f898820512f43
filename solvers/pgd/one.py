"""``solve``: one problem, from one or several random starts (``solvers.pgd``'s module doc), at unit radius and
back."""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ufm import objectives
from ufm.defaults import DEFAULT_STEPS
from ufm.kernels import ROW_AXIS

from .loop import PROGRESS_WORK, run_jit, run_with_bar
from .state import NonFiniteLoss, PGDState, Solution, check_args, hyper_of, static_of, stop_reason

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["F32_AGREEMENT", "AUTO_STARTS", "solve", "n_starts", "start_key", "start_keys", "init_arrays", "to_unit",
           "restore", "best_of_starts", "solution_of", "row_mesh"]

F32_AGREEMENT = 1e-5  # a float32 run is converged only if its loss agrees with float64 at its point to this
AUTO_STARTS = 4  # random starts for imbalanced problems with nonneg under starts=None (module doc)


def init_arrays(init, static):
    """A warm start as a dict of arrays of the solver's dtype (None: a random start)."""
    if init is None:
        return None
    if isinstance(init, Solution):
        init = {"Z": init.Z, "W": init.W, "b": init.b, "C": init.C}
    elif not isinstance(init, dict):
        init = {"Z": init}
    shapes = {"Z": (static.N, static.dim), "W": (static.K, static.dim), "b": (static.K,), "C": (static.K, static.dim)}
    out = {}
    for k, v in init.items():
        if v is None or k not in objectives.get(static.loss).variables or (k == "b" and not static.bias):
            continue
        v = jnp.asarray(v, jnp.dtype(static.dtype))
        if k not in shapes or v.shape != shapes[k]:
            raise ValueError(f"init: {k} must have shape {shapes.get(k)}, got {v.shape}")
        out[k] = v
    return out



def solve(problem: Problem, *, steps: int = DEFAULT_STEPS, lr: float | None = None, optimizer="pgd",
          tol: float | None = None, seed: int = 0, dtype: str | None = None, init=None,
          continuation: bool | None = None, starts: int | None = None, devices=None,
          progress: bool | None = None, acceleration: bool = False) -> Solution:
    """Minimise ``problem`` by projected gradient from a random start drawn from ``seed``.

    Args:
      problem: a ``ufm.Problem``.
      steps: the most steps to take (``tol=0``: exactly this many).
      lr: initial (``pgd``) or fixed (optax optimizers) step in the metric of the module doc; None: the rule.
      optimizer: ``"pgd"`` (backtracking, default), ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, or an
        ``optax.GradientTransformation`` (it brings its own learning rate).
      tol: stopping tolerance (module doc); None: 1e-12 in float64, 1e-6 in float32.
      seed: the random start. dtype: ``"float64"`` (default) or ``"float32"`` (opt-in; recorded in ``dtype``).
      init: a warm start: a ``Solution``, a ``Z`` array ``(N, d)``, or a dict with some of ``Z``, ``W``, ``b``, ``C``
        (what it lacks is drawn from ``seed``); projected onto the feasible set first.
      continuation: first minimise at a low temperature (module doc); None: on for the odd starts of SC with
        ``nonneg``.
      starts: random starts, run one after the other; the lowest final loss wins and ``start_losses`` lists all.
        Start 0 is the start of ``seed``; start i > 0 folds i into it. None: ``AUTO_STARTS`` for imbalanced
        counts with ``nonneg`` (whose landscape has spurious minima, module doc), else 1; 1 with ``init``.
      devices: several devices split the rows of the SC loss's pair work between them (a ``"rows"`` mesh, see
        ``ufm.kernels``; full-batch SC from ``BLOCKED_MIN`` samples); None (default): one device.
      progress: a bar on stderr (the run cut into segments of steps, the same iterations); None: when
        ``N * (d + batch width)`` reaches ``PROGRESS_WORK``.
      acceleration: FISTA momentum with adaptive restart on top of the same line search and stop test
        (``optimizer="pgd"`` only; module doc); fewer steps on ill-conditioned problems, about two evaluations
        per step instead of one (``Solution.evaluations`` counts them).
    Raises:
      NonFiniteLoss: when the loss becomes NaN or infinite (with what to try).
    """
    check_args(steps, lr, optimizer, tol, dtype, acceleration)
    n = n_starts(problem, starts, init)
    dtype = dtype or "float64"
    tol = (1e-12 if dtype == "float64" else 1e-6) if tol is None else float(tol)
    start = time.perf_counter()
    original, (problem, rho) = problem, problem.at_unit_radius()
    with jax.enable_x64(dtype == "float64"), row_mesh(devices):
        static = static_of(problem, steps, optimizer, dtype, continuation, acceleration)
        lr_, tol_ = jnp.asarray(lr or 0.0, dtype), jnp.asarray(tol, dtype)
        x0 = to_unit(init_arrays(init, static), rho)
        # one start after the other: the compiled program is the one-start one (on a CPU a vmap of the starts
        # is slower than the loop; solve_many vmaps them with its problems)
        hs = [hyper_of(problem, jnp.dtype(dtype), continuation, i) for i in range(n)]
        width = problem.N if static.batch_shape is None else static.batch_shape[1]
        if progress is None:
            progress = problem.N * (problem.dim + width) >= PROGRESS_WORK
        if progress:
            from ufm.progress import Progress

            bar = Progress(n * static.steps, f"solve N={problem.N}")
            s = []
            for i, h in enumerate(hs):
                si, t = run_with_bar(static, h, start_key(seed, i), lr_, tol_, x0, bar, i)
                bar.update(static.steps - t, "converged" if bool(si.done) else "")
                s.append(jax.device_get(si))
        else:
            s = [jax.device_get(run_jit(static, h, start_key(seed, i), lr_, tol_, x0)) for i, h in enumerate(hs)]
    return restore(best_of_starts(problem, s, start, dtype, seed, optimizer), original, rho)


def to_unit(x, rho):
    """A warm start of the problem at radius ``rho`` in the variables of its radius-1 version
    (``Problem.at_unit_radius``: ``Z' = Z / rho``, ``W' = rho W``)."""
    if x is None or rho == 1.0:
        return x
    return {k: v / rho if k in ("Z", "C") else v * rho if k == "W" else v for k, v in x.items()}


def restore(sol, problem, rho):
    """A solution of the radius-1 version back in the problem's own variables (``Z = rho Z'``, ``W = W' / rho``;
    the objective values are equal), and a float32 run's final loss evaluated in float64 at its point (a float32
    evaluation can even lie below the proved minimum)."""
    if rho != 1.0:
        sol.Z = sol.Z * rho
        sol.W = None if sol.W is None else sol.W / rho
        sol.C = None if sol.C is None else sol.C * rho
    sol.problem = problem
    if sol.dtype != "float64":
        from ..first_order import solution_loss

        f32, sol.loss = sol.loss, solution_loss(problem, sol.Z, sol.W, sol.b, C=sol.C)
        if sol.converged and abs(sol.loss - f32) > F32_AGREEMENT * (1 + abs(sol.loss)):
            # float32 could not evaluate this problem (logits too large for its 24 bits): its stopping test
            # proves nothing about the point
            sol.converged, sol.reason = False, "float32_inaccurate"
    return sol


def n_starts(problem: Problem, starts=None, init=None) -> int:
    """The number of random starts ``solve`` runs for ``starts`` (its docstring)."""
    if starts is not None:
        if not isinstance(starts, (int, np.integer)) or isinstance(starts, bool) or starts < 1:
            raise ValueError(f"starts must be an integer >= 1 (or None), got {starts!r}")
        return 1 if init is not None else int(starts)
    spurious = problem.nonneg and len(set(problem.counts)) > 1
    return AUTO_STARTS if spurious and init is None else 1


def start_key(seed, i):
    """The PRNG key of start ``i`` of ``seed`` (start 0: ``PRNGKey(seed)``, so one start is the plain solve)."""
    key = jax.random.PRNGKey(seed)
    return key if i == 0 else jax.random.fold_in(key, i)


@jax.jit
def _fold_in_starts(keys, starts):
    return jax.vmap(lambda k, i: jnp.where(i == 0, k, jax.random.fold_in(k, i)))(keys, starts)


def start_keys(seeds, starts):
    """``start_key(seeds[k], starts[k])`` for every ``k``, stacked ``(len(seeds), 2)``: one key per distinct seed,
    then one device call for all the starts (not one call per key)."""
    base = {s: np.asarray(jax.random.PRNGKey(s)) for s in set(seeds)}
    return _fold_in_starts(jnp.asarray(np.stack([base[s] for s in seeds])), jnp.asarray(starts, jnp.uint32))


def best_of_starts(problem: Problem, states, start, dtype, seed, optimizer):
    """The ``Solution`` of the first start whose final loss is the lowest up to rounding (64 eps, relative: so
    that ``solve`` and ``solve_many`` keep the same start); ``NonFiniteLoss`` when no loss is finite."""
    losses = [float(s.f) if bool(s.finite) else float("nan") for s in states]
    finite = [i for i, f in enumerate(losses) if np.isfinite(f)]
    best = 0
    if finite:
        low = min(losses[i] for i in finite)
        best = next(i for i in finite if losses[i] <= low + 64 * np.finfo(dtype).eps * (1 + abs(low)))
    sol = solution_of(problem, states[best], start, dtype, seed, optimizer)
    sol.start_losses = tuple(losses)
    return sol


def row_mesh(devices):
    """``jax.set_mesh`` of a 1-D ``"rows"`` mesh over ``devices`` (the SC kernel splits its rows over it), or a
    no-op for None or one device."""
    if devices is None or len(devices) < 2:
        return contextlib.nullcontext()
    return jax.set_mesh(jax.sharding.Mesh(np.asarray(devices), (ROW_AXIS,)))


def solution_of(problem: Problem, s: PGDState, start, dtype, seed, optimizer):
    """The ``Solution`` of a final state ``s`` (``start``: the ``perf_counter`` at the start of the run);
    ``NonFiniteLoss`` when its loss is not finite."""
    t = int(s.t)
    if not bool(s.finite):
        raise NonFiniteLoss(f"the loss became non-finite at step {t}; try dtype='float64', a larger tau or a "
                            "smaller lr")
    x = s.x
    return Solution(
        Z=np.asarray(x["Z"]), W=None if "W" not in x else np.asarray(x["W"]),
        b=None if "b" not in x else np.asarray(x["b"]), C=None if "C" not in x else np.asarray(x["C"]),
        loss=float(s.f),
        history=np.asarray(s.hist[: t + 1]), steps=t, converged=bool(s.done),
        seconds=time.perf_counter() - start, dtype=dtype, seed=int(seed), problem=problem,
        gradient_mapping=float(s.gm), optimizer=optimizer if isinstance(optimizer, str) else "custom",
        lr=float(s.eta), continuation_steps=int(s.stage1), reason=stop_reason(s),
        evaluations=0 if s.evals is None else int(s.evals), acceleration=s.momentum is not None)
