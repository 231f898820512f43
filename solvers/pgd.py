"""Projected gradient for UFM problems, the whole loop inside one jit-compiled ``lax.while_loop``.

**Variables.** ``Z (N, d)`` (projected onto the problem's set after every step), and for CE ``W (K, d)`` and, with
``bias``, ``b (K,)`` (free).

**Metric and step-size rule** (why no tuning is needed for tau in [0.05, 5] and N up to 10^4). Every sample's
row moves by its *own* gradient, ``N * dL/dz_i``, which is O(rho / tau) whatever N is (the loss is a mean over
N anchors); ``W`` and ``b`` move by their plain gradients. The initial step is ``eta0 = tau / rho^2`` for SC
(one step moves a row by O(1) of the radius) and ``1 / rho^2`` for CE (``1`` with ``constraint="none"``);
``lr`` overrides it. The default optimizer ``"pgd"`` then adapts the step by Armijo backtracking on the
projected step (halve until ``f(x+) <= f(x) + <g, x+ - x> + ||x+ - x||^2 / (2 eta)`` in that metric) and grows
it by 1.25 after each accepted step, capped at ``1000 * eta0``. The optax optimizers ``"sgd"``,
``"momentum"``, ``"nesterov"`` and ``"adam"`` (or any ``optax.GradientTransformation`` you pass) use the fixed
rate ``0.5 * eta0`` (``0.01 * rho`` for adam) and no line search.

**Stopping.** After step t, with ``x+ = P(x - eta g)``: the gradient mapping ``G = (x - x+) / eta`` (row RMS,
in units of ``eta0``) and the relative loss change. The run has converged when
``eta0 * rms(G) <= sqrt(tol) * rho`` *and* ``|f(x+) - f(x)| <= tol * (1 + |f(x)|)``, or when the line search
can no longer decrease the loss (numerical stationarity). ``tol=0`` runs exactly ``steps`` steps. Default
``tol``: 1e-12 in float64, 1e-6 in float32.

**Spurious minima (UFM+) and what the solver does.** With ``nonneg`` and imbalanced counts the landscape
has stationary points above the orthogonal frame (the global minimum, Kini et al. 2024): two minority classes
sit on one coordinate axis while a majority class spreads over two; rows sit *exactly* on one point and the
separating gradient is exactly zero, so no local step escapes. Two remedies, measured in
``benchmarks/ufm_plus_starts.py`` (docs/solve.md): *continuation* (first minimise at
``tau1 = min(tau, 0.05 rho^2)`` to tolerance 1e-8, within half of the steps, then at ``tau`` from there: at a low
temperature the loss looks at the hardest negatives only) removes the failures of some problems and causes them
in others; *several starts*, the lowest loss kept. So by default (``starts=None``) an
imbalanced problem with ``nonneg`` runs ``AUTO_STARTS`` starts, SC ones alternately without and with
continuation (CE with ReLU has a trap of its own: a minority class whose rows all reach 0 stays there; its
``W`` starts at unit scale, which makes that rarer); other problems run one start, without continuation.
``continuation=True``/``False`` forces it for every start. The history holds the low-temperature objective for
the first ``Solution.continuation_steps`` steps.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ufm.batching import batch_list, pad as pad_batches
from ufm.constraints import project
from ufm.kernels import ROW_AXIS
from ufm import constraints, objectives

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["Solution", "solve", "solve_many", "n_starts", "OPTIMIZERS", "objective", "NonFiniteLoss"]

OPTIMIZERS = ("pgd", "sgd", "momentum", "nesterov", "adam")
F32_AGREEMENT = 1e-5  # a float32 run is converged only if its loss agrees with float64 at its point to this
ETA_MAX = 1000  # the step never grows beyond ETA_MAX * eta0
CONTINUATION_TAU = 0.05  # UFM+ SC first minimises at tau = min(tau, CONTINUATION_TAU * rho^2) (module doc)
CONTINUATION_TOL = 1e-8  # ... to this tolerance (or tol, if looser), in at most half of the steps
AUTO_STARTS = 4  # random starts for imbalanced problems with nonneg under starts=None (module doc)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: raised, never returned."""


@dataclass
class Solution:
    """A solver's answer. Arrays are NumPy: ``Z (N, d)``, ``W (K, d)`` or None, ``b (K,)`` or None,
    ``history (steps + 1,)`` the objective before the first step and after each step (of the start kept).
    ``C (K, d)`` or None: the class prototypes of a loss that has them (BCL).
    ``start_losses``: the final loss of every random start (NaN for one that became non-finite). ``loss``: the
    objective at ``Z`` (``W``, ``b``), evaluated in float64 whatever the run's dtype. ``converged`` and ``reason``,
    why the run stopped (:func:`stop_reason`: ``converged``, ``stationary``, ``max_steps``; ``float32_inaccurate``
    when a float32 run's own loss disagrees with float64 at its point; epoch runs: ``converged`` or
    ``max_epochs``)."""

    Z: np.ndarray
    W: np.ndarray | None
    b: np.ndarray | None
    loss: float
    history: np.ndarray
    steps: int
    converged: bool
    seconds: float
    dtype: str
    seed: int
    problem: Problem = field(default=None, repr=False)  # type: ignore[assignment]  # the engines always set it
    gradient_mapping: float = float("nan")
    optimizer: str = "pgd"
    lr: float = float("nan")
    continuation_steps: int = 0
    start_losses: tuple = ()
    reason: str = ""
    C: np.ndarray | None = None


class _Static(NamedTuple):
    """What fixes the compiled program: shapes and discrete choices."""

    loss: str
    constraint: str
    bias: bool
    N: int
    K: int
    dim: int
    batch_shape: tuple | None
    steps: int
    optimizer: object
    dtype: str
    continuation: bool = False


class Hyper(NamedTuple):
    """The numbers of a problem, as arrays (traced: a vmap over problems may vary them); what an objective's
    ``value`` reads. ``n``: the real sample count (None: ``N``; set for problems padded by ``solve_many``),
    ``mask``: the real rows of a padded problem (None: all)."""

    labels: jax.Array | np.ndarray  # NumPy leaves from _hyper; jax.Arrays once traced
    tau: jax.Array | np.ndarray
    radius: jax.Array | np.ndarray
    nonneg: jax.Array | np.ndarray
    weight_decay: jax.Array | np.ndarray
    feature_decay: jax.Array | np.ndarray
    batches: jax.Array | np.ndarray | None
    continuation: jax.Array | np.ndarray
    n: jax.Array | None = None
    mask: jax.Array | None = None


class PGDState(NamedTuple):
    """The loop state of :func:`_run` (one compiled ``lax.while_loop``).

    ``x`` the variables (``Z``; ``W``, ``b``), ``f``/``g`` the objective and gradient at ``x``, ``t`` steps
    taken, ``hist`` the objective after each step, ``gm`` the last gradient mapping, ``done``/``finite``/
    ``stalled`` (the line search could not decrease the loss), ``tau`` the temperature of the current stage,
    ``stage0`` still in the low-temperature stage, ``stage1`` the step where it ended; ``eta`` the step,
    ``eta_step`` the step the current line search began with, ``k`` its halvings; ``opt`` the optax state."""

    x: dict
    f: jax.Array
    g: dict
    t: jax.Array
    hist: jax.Array
    done: jax.Array
    gm: jax.Array
    finite: jax.Array
    stalled: jax.Array
    tau: jax.Array
    stage0: jax.Array
    stage1: jax.Array
    eta: jax.Array
    eta_step: jax.Array
    k: jax.Array
    opt: object = None


def _hyper(problem, dtype, continuation=None, start=0) -> Hyper:
    """The :class:`Hyper` of a problem. ``continuation``: whether this start runs the low-temperature stage
    (None: contrastive losses with ``nonneg``, odd starts only)."""
    contrastive = objectives.of(problem).contrastive
    if continuation is None:
        continuation = contrastive and problem.nonneg and start % 2 == 1
    dt = np.dtype(dtype)  # NumPy leaves: built without a device operation (solve_many builds hundreds)
    return Hyper(labels=np.asarray(problem.label_array, np.int32), tau=np.asarray(problem.tau, dt),
                 radius=np.asarray(problem.radius, dt), nonneg=np.asarray(problem.nonneg),
                 weight_decay=np.asarray(problem.weight_decay, dt),
                 feature_decay=np.asarray(problem.feature_decay, dt), batches=_batches(problem),
                 continuation=np.asarray(contrastive and bool(continuation)))


def _batches(problem):
    """The fixed batch set of the objective as a padded ``int32`` array ``(n_batches, width)``, ``-1`` marking an
    empty slot, or None (full batch)."""
    b = batch_list(problem)
    return None if b is None else pad_batches(b)


def objective(static: _Static, x, h):
    """The objective ``x -> f`` of a problem, regularisers included (``ufm.objectives``: the loss's ``value``)."""
    return objectives.get(static.loss).value(x, h._replace(n=_n_samples(static, h)))


def _project(static, x, h):
    """``Z`` (and the prototypes ``C``, which live on the features' set) projected onto the feasible set."""
    out = {**x, "Z": project(x["Z"], static.constraint, h.radius, h.nonneg)}
    if "C" in x:
        out["C"] = project(x["C"], static.constraint, h.radius, h.nonneg)
    return out


def _n_samples(static, h):
    """N: the static row count, or the real one of a problem padded with masked rows (``solve_many``)."""
    return static.N if h is None or h.n is None else h.n


def _metric(static, h=None):
    """Weights of the step metric per variable: rows of Z (and of the prototypes C) move by N * gradient (see
    module doc)."""
    n = _n_samples(static, h)
    return {"Z": 1.0 / n, "C": 1.0 / n, "W": 1.0, "b": 1.0}


def default_eta0(static, h):
    """Initial step of the rule in the module doc."""
    if objectives.get(static.loss).contrastive:
        return h.tau / h.radius ** 2
    if not constraints.get(static.constraint).bounded:
        return jnp.ones_like(h.radius)
    return 1.0 / h.radius ** 2


def _optax(name, lr):
    if not isinstance(name, str):
        return name
    return {"sgd": lambda: optax.sgd(lr), "momentum": lambda: optax.sgd(lr, momentum=0.9),
            "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
            "adam": lambda: optax.adam(lr)}[name]()


def init_params(static, key, h):
    """Random feasible start: Gaussian rows (absolute values under ReLU) projected; Gaussian W (entries of scale
    0.1, 1 under ReLU); b = 0."""
    dt = jnp.dtype(static.dtype)
    kz, kw = jax.random.split(key)
    Z = jax.random.normal(kz, (static.N, static.dim), dt)
    if h.mask is not None:  # padded rows (solve_many): zero, so they project to a fixed point and never move
        Z = jnp.where(h.mask[:, None], Z, 0.0)
    Z = jnp.where(h.nonneg, jnp.abs(Z), Z)
    if not constraints.get(static.constraint).bounded:
        Z = Z * 0.1
    x = {"Z": Z}
    if "C" in objectives.get(static.loss).variables:  # prototypes: Gaussian rows on the features' set
        Cp = jax.random.normal(kw, (static.K, static.dim), dt)
        x["C"] = jnp.where(h.nonneg, jnp.abs(Cp), Cp)
    if not objectives.get(static.loss).contrastive:
        # ReLU features: a small W lets a minority class's rows reach 0, where they stay (a dead class)
        x["W"] = jnp.where(h.nonneg, 1.0, 0.1) * jax.random.normal(kw, (static.K, static.dim), dt)
        if static.bias:
            x["b"] = jnp.zeros((static.K,), dt)
    return _project(static, x, h)


def inner(w, a, b):
    """``<a, b>`` in the step metric with weights ``w`` per variable (:func:`_metric`)."""
    return sum(w[k] * jnp.sum(a[k] * b[k]) for k in a)


def armijo_trial(value_and_grad, project_fn, x, f, g, eta, w):
    """One trial of the projected Armijo rule (module doc), shared by ``pgd`` and ``epochs``.

    Args:
      value_and_grad: ``x -> (f, grad)``. project_fn: ``x -> P(x)``, the feasible set.
      x: the point (a dict of arrays). f: ``f(x)``. g: ``grad f(x)`` (plain gradient).
      eta: the trial step. w: metric weights per variable (rows of ``Z`` move by ``g / w``).
    Returns:
      ``(xn, fn, gn, ok)``: the projected trial point, its value and gradient, and whether it passes
      ``f(xn) <= f(x) + <g, xn - x> + ||xn - x||_w^2 / (2 eta)`` (plus ``10 eps |f(x)|`` of rounding slack).
    """
    tm = jax.tree_util.tree_map
    gs = {k: g[k] / w[k] for k in g}
    xn = project_fn(tm(lambda a, b: a - eta * b, x, gs))
    fn, gn = value_and_grad(xn)
    d = tm(lambda a, b: a - b, xn, x)
    eps = jnp.finfo(f.dtype).eps
    ok = fn <= f + inner(w, gs, d) + inner(w, d, d) / (2 * eta) + 10 * eps * jnp.abs(f)
    return xn, fn, gn, ok


def _parts(static: _Static, h: Hyper, lr, tol, history=True, fun=None, draw=None):
    """The pieces of the compiled solve: ``(start(key, init) -> PGDState, body(PGDState) -> PGDState,
    final(PGDState) -> PGDState)``. The start is a random point drawn from ``key`` (the arrays of ``init``, a dict
    with some of ``Z``, ``W``, ``b``, put in their place), projected. With the continuation stage
    (``static.continuation`` and the problem's flag ``h.continuation``) the loop first minimises at ``tau1`` and
    switches to ``tau`` when that stage stops (module doc): one loop, one compiled body. ``history=False``: the
    state's ``hist`` is a scalar, the objective recorded at the last step (``solve_many``'s slot pool writes it
    to its own table, so that the loop state stays small). ``fun``: ``(x, tau) -> (f, grad)`` in place of the
    autodiff of :func:`objective` (the same function, computed another way); ``draw``: ``key -> x0`` in place of
    :func:`init_params` (a feasible point)."""
    tm = jax.tree_util.tree_map
    vg = fun or jax.value_and_grad(lambda x, tau: objective(static, x, h._replace(tau=tau)))
    w = _metric(static, h)
    scale = h.radius if constraints.get(static.constraint).bounded else jnp.ones_like(h.radius)
    cont = static.continuation and static.optimizer == "pgd"
    stage0 = jnp.asarray(cont) & h.continuation  # True: the low-temperature stage comes first
    tau1 = jnp.where(stage0, jnp.minimum(h.tau, CONTINUATION_TAU * h.radius ** 2), h.tau)
    project_fn = lambda x: _project(static, x, h)  # noqa: E731

    def eta0_at(tau):
        return jnp.where(lr > 0, lr, default_eta0(static, h._replace(tau=tau)))

    def rms_rows(d):  # per-row RMS displacement (Z rows, W rows, b counted as one row)
        n = _n_samples(static, h) + (static.K if "W" in d else 0) + (static.K if "C" in d else 0) + (
            1 if "b" in d else 0)
        return jnp.sqrt(sum(jnp.sum(v ** 2) for v in d.values()) / n)

    pgd_ = static.optimizer == "pgd"
    eta0 = eta0_at(tau1 if pgd_ else h.tau)
    rate = eta0 if pgd_ else jnp.where(lr > 0, lr, jnp.where(static.optimizer == "adam", 0.01 * scale, 0.5 * eta0))
    opt = None if pgd_ else _optax(static.optimizer, rate)

    def start(key, init):
        x0 = init_params(static, key, h) if draw is None else draw(key)
        if init is not None:
            x0 = _project(static, {**x0, **init}, h)
        f0, g0 = vg(x0, tau1)
        hist = jnp.full((static.steps + 1,), jnp.nan, jnp.dtype(static.dtype)).at[0].set(f0) if history else f0
        return PGDState(x=x0, f=f0, g=g0, t=jnp.int32(0), hist=hist, done=~jnp.isfinite(f0),
                        gm=jnp.asarray(jnp.inf, f0.dtype), finite=jnp.isfinite(f0), stalled=jnp.asarray(False),
                        tau=tau1, stage0=stage0, stage1=jnp.int32(0), eta=rate, eta_step=rate, k=jnp.int32(0),
                        opt=None if pgd_ else opt.init(x0))

    def stop_test(s, xn, fn, step):
        d = tm(lambda a, b: a - b, s.x, xn)
        gm = rms_rows(d) / step * eta0_at(s.tau)
        t_ = jnp.where(s.stage0, jnp.maximum(tol, CONTINUATION_TOL), tol)
        small = (gm <= jnp.sqrt(t_) * scale) & (jnp.abs(fn - s.f) <= t_ * (1 + jnp.abs(s.f)))
        return gm, small & (tol > 0)

    def finish(s, xn, fn, gn, gm, conv, **extra):
        """Record the step; end the run at convergence, or end the low-temperature stage instead: from the
        next step on, the loss is at ``tau`` (``f = inf`` lets that first step pass the line search)."""
        t = s.t + 1
        switch = s.stage0 & (conv | (t >= static.steps // 2))
        out = s._replace(**extra, x=xn, g=gn, t=t, hist=s.hist.at[t].set(fn) if s.hist.ndim else fn, gm=gm,
                         done=(conv & ~switch) | ~jnp.isfinite(fn), finite=jnp.isfinite(fn))
        out = out._replace(stage0=s.stage0 & ~switch, tau=jnp.where(switch, h.tau, s.tau),
                           f=jnp.where(switch, jnp.inf, fn), stage1=jnp.where(switch, t, s.stage1))
        if pgd_:
            out = out._replace(eta=jnp.where(switch, eta0_at(h.tau), out.eta),
                               eta_step=jnp.where(switch, eta0_at(h.tau), out.eta_step))
        return out

    if pgd_:
        # One trial step per loop iteration: the backtracking search (halve eta until the Armijo test passes, at
        # most 50 times) is unrolled into the main loop, so that under vmap (solve_many) every iteration costs
        # one evaluation per problem instead of the most halvings any problem needs. The sequence of trials, and
        # so the result, is that of a nested search.
        def body(s):
            xn, fn, gn, ok = armijo_trial(lambda x: vg(x, s.tau), project_fn, s.x, s.f, s.g, s.eta, w)
            stalled = ~ok & (s.k >= 50)  # no step decreases the loss: numerically stationary
            xn, fn, gn = tm(lambda a, b: jnp.where(ok, a, b), (xn, fn, gn), (s.x, s.f, s.g))
            gm, conv = stop_test(s, xn, fn, s.eta)
            conv = conv | (stalled & (tol > 0))
            eta_next = jnp.where(ok, jnp.minimum(s.eta * 1.25, ETA_MAX * eta0_at(s.tau)), s.eta_step)
            stepped = finish(s, xn, fn, gn, gm, conv, eta=eta_next, eta_step=eta_next, k=jnp.int32(0),
                             stalled=stalled)
            retry = s._replace(eta=s.eta * 0.5, k=s.k + 1)
            return tm(lambda a, b: jnp.where(ok | stalled, a, b), stepped, retry)
    else:
        def body(s):
            u, opt_state = opt.update({k: s.g[k] / w[k] for k in s.g}, s.opt, s.x)
            xn = project_fn(optax.apply_updates(s.x, u))
            fn, gn = vg(xn, s.tau)
            gm, conv = stop_test(s, xn, fn, rate)
            return finish(s, xn, fn, gn, gm, conv, opt=opt_state)

    def final(s):  # a run that ended at the switch has f = inf: its value at tau
        value = objective(static, s.x, h) if fun is None else fun(s.x, h.tau)[0]
        return s._replace(f=jnp.where(jnp.isfinite(s.f), s.f, value), opt=None)

    return start, body, final


def _run(static: _Static, h: Hyper, key, lr, tol, init=None) -> PGDState:
    """The compiled solve (:func:`_parts`): start, loop until converged or ``static.steps``, final state."""
    start, body, final = _parts(static, h, lr, tol)
    return final(jax.lax.while_loop(lambda s: (s.t < static.steps) & ~s.done, body, start(key, init)))


def _start(static, h, key, lr, tol, init=None):
    return _parts(static, h, lr, tol)[0](key, init)


def _segment(static, h, lr, tol, state, t_stop):
    """The loop of :func:`_run` from ``state`` until step ``t_stop`` (or convergence): the same iterations, so a
    run cut into segments (for a progress bar) ends where one loop would."""
    body = _parts(static, h, lr, tol)[1]
    return jax.lax.while_loop(lambda s: (s.t < jnp.minimum(t_stop, static.steps)) & ~s.done, body, state)


def _final(static, h, lr, tol, state):
    return _parts(static, h, lr, tol)[2](state)


_start_jit = jax.jit(_start, static_argnums=0)
_segment_jit = jax.jit(_segment, static_argnums=0)
_final_jit = jax.jit(_final, static_argnums=0)
PROGRESS_WORK = 5e6  # N * (d + batch width) from which solve(progress=None) shows a bar (a solve of seconds or more)
MAX_STEPS = 2**31 - 2  # the compiled loop's step counter is an int32 (steps + 1 must fit)
PROGRESS_SEGMENTS = 50  # a bar's run is cut into this many segments of steps


def _run_with_bar(static, h, key, lr, tol, init, bar, start_index):
    """``_run`` in segments, advancing ``bar`` by the steps taken (identical iterations, module-level jits)."""
    seg = max(1, -(-static.steps // PROGRESS_SEGMENTS))
    s = _start_jit(static, h, key, lr, tol, init)
    t = 0
    while True:
        s = _segment_jit(static, h, lr, tol, s, jnp.int32(t + seg))
        t_new = int(s.t)
        bar.update(t_new - t, f"start {start_index + 1}, loss {float(s.f):.6g}")
        if t_new < t + seg or bool(s.done) or t_new >= static.steps:
            bar.update(0)
            return _final_jit(static, h, lr, tol, s), t_new
        t = t_new


_run_jit = jax.jit(_run, static_argnums=0)


def static_of(problem, steps, optimizer, dtype, continuation=None) -> _Static:
    """The static part of a solve. The program holds the continuation stage for SC unless
    ``continuation=False`` (``_hyper``'s flag then turns it on or off per problem)."""
    b = _batches(problem)
    shape = None if b is None else tuple(b.shape)
    return _Static(problem.loss, problem.constraint, problem.bias, problem.N, problem.K, problem.dim, shape,
                   int(steps), optimizer, dtype, objectives.of(problem).contrastive and optimizer == "pgd"
                   and continuation is not False)


def _init_arrays(init, static):
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


def _check_args(steps, lr, optimizer, tol, dtype):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > MAX_STEPS:  # the compiled loop counts in int32
        raise ValueError(f"steps must be at most {MAX_STEPS} (the loop's int32 counter), got {steps}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0 (or None for the rule), got {lr!r}")
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} or an optax.GradientTransformation, "
                         f"got {optimizer!r}")
    if tol is not None and not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def solve(problem: Problem, *, steps: int = 5000, lr: float | None = None,
          optimizer: str | optax.GradientTransformation = "pgd", tol: float | None = None,
          seed: int = 0, dtype: str | None = None, init: Any = None, continuation: bool | None = None,
          starts: int | None = None, devices: Sequence[jax.Device] | None = None,
          progress: bool | None = None) -> Solution:
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
    Raises:
      NonFiniteLoss: when the loss becomes NaN or infinite (with what to try).
    """
    _check_args(steps, lr, optimizer, tol, dtype)
    n = n_starts(problem, starts, init)
    dtype = dtype or "float64"
    tol = (1e-12 if dtype == "float64" else 1e-6) if tol is None else float(tol)
    start = time.perf_counter()
    original, (problem, rho) = problem, problem.at_unit_radius()
    with jax.enable_x64(dtype == "float64"), _row_mesh(devices):
        static = static_of(problem, steps, optimizer, dtype, continuation)
        lr_, tol_ = jnp.asarray(lr or 0.0, dtype), jnp.asarray(tol, dtype)
        x0 = _to_unit(_init_arrays(init, static), rho)
        # one start after the other: the compiled program is the one-start one (on a CPU a vmap of the starts
        # is slower than the loop; solve_many vmaps them with its problems)
        hs = [_hyper(problem, jnp.dtype(dtype), continuation, i) for i in range(n)]
        width = problem.N if static.batch_shape is None else static.batch_shape[1]
        if progress is None:
            progress = problem.N * (problem.dim + width) >= PROGRESS_WORK
        if progress:
            from ufm.progress import Progress

            bar = Progress(n * static.steps, f"solve N={problem.N}")
            s = []
            for i, h in enumerate(hs):
                si, t = _run_with_bar(static, h, start_key(seed, i), lr_, tol_, x0, bar, i)
                bar.update(static.steps - t, "converged" if bool(si.done) else "")
                s.append(jax.device_get(si))
        else:
            s = [jax.device_get(_run_jit(static, h, start_key(seed, i), lr_, tol_, x0)) for i, h in enumerate(hs)]
    return _restore(_best(problem, s, start, dtype, seed, optimizer), original, rho)


def _to_unit(x, rho):
    """A warm start of the problem at radius ``rho`` in the variables of its radius-1 version
    (``Problem.at_unit_radius``: ``Z' = Z / rho``, ``W' = rho W``)."""
    if x is None or rho == 1.0:
        return x
    return {k: v / rho if k in ("Z", "C") else v * rho if k == "W" else v for k, v in x.items()}


def _restore(sol, problem, rho):
    """A solution of the radius-1 version back in the problem's own variables (``Z = rho Z'``, ``W = W' / rho``;
    the objective values are equal), and a float32 run's final loss evaluated in float64 at its point (a float32
    evaluation can even lie below the proved minimum)."""
    if rho != 1.0:
        sol.Z = sol.Z * rho
        sol.W = None if sol.W is None else sol.W / rho
        sol.C = None if sol.C is None else sol.C * rho
    sol.problem = problem
    if sol.dtype != "float64":
        from .first_order import solution_loss

        f32, sol.loss = sol.loss, solution_loss(problem, sol.Z, sol.W, sol.b, C=sol.C)
        if sol.converged and abs(sol.loss - f32) > F32_AGREEMENT * (1 + abs(sol.loss)):
            # float32 could not evaluate this problem (logits too large for its 24 bits): its stopping test
            # proves nothing about the point
            sol.converged, sol.reason = False, "float32_inaccurate"
    return sol


def n_starts(problem: Problem, starts: int | None = None, init: Any = None) -> int:
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


def _best(problem, states, start, dtype, seed, optimizer):
    """The ``Solution`` of the first start whose final loss is the lowest up to rounding (64 eps, relative: so
    that ``solve`` and ``solve_many`` keep the same start); ``NonFiniteLoss`` when no loss is finite."""
    losses = [float(s.f) if bool(s.finite) else float("nan") for s in states]
    finite = [i for i, f in enumerate(losses) if np.isfinite(f)]
    best = 0
    if finite:
        low = min(losses[i] for i in finite)
        best = next(i for i in finite if losses[i] <= low + 64 * np.finfo(dtype).eps * (1 + abs(low)))
    sol = _solution(problem, states[best], start, dtype, seed, optimizer)
    sol.start_losses = tuple(losses)
    return sol


def _row_mesh(devices):
    """``jax.set_mesh`` of a 1-D ``"rows"`` mesh over ``devices`` (the SC kernel splits its rows over it), or a
    no-op for None or one device."""
    if devices is None or len(devices) < 2:
        return contextlib.nullcontext()
    return jax.set_mesh(jax.sharding.Mesh(np.asarray(devices), (ROW_AXIS,)))


def stop_reason(s: PGDState) -> str:
    """Why a run stopped: ``"converged"`` (the stopping test of the module doc), ``"stationary"`` (no step could
    decrease the loss: numerically stationary), ``"max_steps"``, or ``"non_finite"``."""
    if not bool(s.finite):
        return "non_finite"
    if bool(s.done):
        return "stationary" if bool(s.stalled) else "converged"
    return "max_steps"


def _solution(problem, s: PGDState, start, dtype, seed, optimizer):
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
        lr=float(s.eta), continuation_steps=int(s.stage1), reason=stop_reason(s))


# ---------------------------------------------------------------------------------------------------------------
# Many problems at once
# ---------------------------------------------------------------------------------------------------------------

PAD_SMALL = 256  # SC problems up to this N share one padded group under pad="auto" (their steps cost ~nothing)


def _run_many(static, H, keys, lr, tol):
    """``_run`` over a leading problem axis of ``H`` and ``keys``. Under ``vmap`` the ``while_loop`` runs until
    every problem stops; a stopped problem's state is frozen (JAX selects the old carry where the predicate is
    false)."""
    return jax.vmap(lambda h, key: _run(static, h, key, lr, tol))(H, keys)


_run_many_jit = jax.jit(_run_many, static_argnums=0)


def _where_rows(mask, a, b):
    """``a`` where ``mask`` (one flag per leading row) else ``b``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(mask.reshape(mask.shape + (1,) * (u.ndim - 1)), u, v),
                                  a, b)


def _slot_layout(problem, shape):
    """The slot layout of an SC problem whose batches are disjoint, for :func:`_sc_slots_vg`, or None when a
    sample sits in two batches (or the problem does not fit ``shape``).

    The rows of ``Z`` are stored batch by batch in a grid of ``shape = (NB, BW)`` slots: batch ``n`` in slots
    ``n * BW ...``, the samples in no batch and the empty slots after them, so that a batch is a slice (no gather
    and no scatter-add per evaluation). Returns NumPy arrays ``(perm (NB*BW,), other (NB, BW, BW), A (NB, BW),
    Wp (NB, BW, BW))``: ``perm`` the sample in each slot (-1: empty); ``other`` the pairs of distinct slots of
    one batch (the negatives); ``A = [anchor has a positive] / T`` and ``Wp = A * [positive pair] / #positives``
    (``T`` the number of anchor slots), so that the SC loss is ``sum A * lse - sum Wp * S``
    (:func:`ufm.losses.sc_loss_dense`).
    """
    NB, BW = shape
    N = problem.N
    batches = batch_list(problem) or [list(range(N))]
    flat = [i for b in batches for i in b]
    if len(flat) != len(set(flat)) or len(batches) > NB or max(map(len, batches)) > BW or N > NB * BW:
        return None
    perm = np.full(NB * BW, -1, np.int64)
    valid = np.zeros((NB, BW), bool)
    for n, b in enumerate(batches):
        perm[n * BW: n * BW + len(b)] = b
        valid[n, : len(b)] = True
    rest = sorted(set(range(N)) - set(flat))
    perm[np.flatnonzero(perm < 0)[: len(rest)]] = rest
    y = np.asarray(problem.label_array)[np.maximum(perm, 0)].reshape(NB, BW)
    other = valid[:, :, None] & valid[:, None, :] & ~np.eye(BW, dtype=bool)
    pos = other & (y[:, :, None] == y[:, None, :])
    npos = pos.sum(-1)
    A = (npos > 0) / max(len(flat), 1)
    return perm, other, A, pos * (A / np.maximum(npos, 1))[:, :, None]


def _sc_slots_kernel(Z, other, A, Wp, tau):
    """The SC loss and its gradient for ``P`` problems in slot layout, problems on the *last* axis: every
    operation is an elementwise pass over P-long vectors (on a CPU about 3x faster than the same computation with
    the problems first, where XLA loops over tiny per-batch matrices). ``Z (NB*BW, d, P)``, ``other``/``Wp (NB, BW, BW,
    P)``, ``A (NB, BW, P)``, ``tau (P,)`` (:func:`_slot_layout`). Returns ``(f (P,), dZ (NB*BW, d, P))``."""
    NB, BW = A.shape[:2]
    d = Z.shape[1]
    Zs = Z.reshape(NB, BW, d, -1)
    inv = 1.0 / tau
    if d <= 32:  # one fused pass per coordinate (a reduction over a short axis is slow on CPUs)
        S = sum(Zs[:, :, None, k] * Zs[:, None, :, k] for k in range(d)) * inv
    else:
        S = jnp.sum(Zs[:, :, None] * Zs[:, None], axis=3) * inv
    Sm = jnp.where(other, S, -jnp.inf)
    m = jnp.max(Sm, axis=2, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    E = jnp.exp(Sm - m)
    se = jnp.sum(E, axis=2)
    se = jnp.where(se > 0, se, 1.0)
    f = jnp.sum(A * (jnp.log(se) + m[:, :, 0]), axis=(0, 1)) - jnp.sum(Wp * S, axis=(0, 1, 2))
    G = (A / se)[:, :, None] * E - Wp  # dL/dS
    G = (G + jnp.swapaxes(G, 1, 2)) * inv
    if BW * d <= 256:  # dZ[:, i, k] = sum_j G[:, i, j] Z[:, j, k], one fused pass per k (no (BW, BW, d) product)
        dZ = jnp.stack([sum(G[:, :, j] * Zs[:, j, None, k] for j in range(BW)) for k in range(d)], axis=2)
    else:
        dZ = jnp.sum(G[:, :, :, None] * Zs[:, None], axis=2)
    return f, dZ.reshape(NB * BW, d, -1)


@jax.custom_batching.custom_vmap
def _sc_slots_vg(Z, other, A, Wp, tau):
    """One problem's SC loss and gradient in slot layout (``Z (NB*BW, d)``, :func:`_slot_layout`); under ``vmap``
    the problems go to the last axis for :func:`_sc_slots_kernel`."""
    f, dZ = _sc_slots_kernel(Z[..., None], other[..., None], A[..., None], Wp[..., None], tau[None])
    return f[0], dZ[..., 0]


@_sc_slots_vg.def_vmap
def _sc_slots_vg_vmap(axis_size, in_batched, *args):
    last = [jnp.moveaxis(a, 0, -1) if b else jnp.broadcast_to(a[..., None], a.shape + (axis_size,))
            for a, b in zip(args, in_batched)]
    f, dZ = _sc_slots_kernel(*last)
    return (f, jnp.moveaxis(dZ, -1, 0)), (True, True)


def _run_pool(static, H, keys, lr, tol, slots, layout=None, chunk=None):
    """``_run`` over the rows of ``H`` and ``keys`` in a pool of ``slots`` slots (continuous batching): one
    compiled ``while_loop`` whose every iteration runs ``chunk`` (default ``POOL_CHUNK``) ``vmap``-ed iterations
    of ``_run``'s body on the slots (a stopped row's state frozen); then the rows that stopped (their stop rule,
    or ``static.steps``) go to the output and their slots load the next rows' starts. Each row runs exactly the
    iterations ``_run`` runs, so the answers are ``_run``'s (to rounding), while the loop lasts about ``sum of
    iterations / slots`` instead of the slowest row's count times the rows. The histories go to an
    ``(R, steps + 1)`` table, outside the slots' state (a state carrying them would be copied whole at every
    iteration).

    ``layout``: None, or the stacked :func:`_slot_layout` of every row (SC with disjoint batches): then ``Z``
    lives in slot order (``x["Z"]`` of the result is ``(R, NB*BW, d)``, ``perm`` maps it back) and the loss is
    :func:`_sc_slots_vg`; the start is the same random point as ``_run``'s, permuted.

    Returns:
      the final ``PGDState`` of every row, stacked (``hist`` ``(R, steps + 1)``).
    """
    R = keys.shape[0]
    P = min(slots, R)
    if layout is None:
        run_static = static
        parts = lambda h: _parts(static, h, lr, tol, history=False)  # noqa: E731
        S0 = jax.vmap(lambda h, key: parts(h)[0](key, None))(H, keys)
    else:
        perm, other, A, Wp = layout
        run_static = static._replace(N=perm.shape[1], batch_shape=None)

        def parts(h, draw=None):  # the slot layout's masks ride in h.labels
            def fun(x, tau):
                f, g = _sc_slots_vg(x["Z"], *h.labels, tau)
                return f, {"Z": g}
            return _parts(run_static, h._replace(labels=None), lr, tol, history=False, fun=fun, draw=draw)

        def row_start(h, key, perm, other, A, Wp):
            dt = jnp.dtype(static.dtype)
            n = jnp.asarray(static.N, dt) if h.n is None else h.n
            hs = h._replace(labels=(other, A, Wp), batches=None, mask=perm >= 0, n=n)
            empty = _project(run_static, {"Z": jnp.zeros((perm.shape[0], static.dim), dt)}, h)["Z"]
            Z = init_params(static, key, h)["Z"]  # the random start of _run, in the problem's own row order
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


_run_pool_jit = jax.jit(_run_pool, static_argnums=(0, 5, 7))


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
    """``_hyper`` of ``problem`` with ``n - N`` masked rows appended: labels 0, in no batch (``-1`` slots), and
    the real ``n`` and row mask for the metric and the start."""
    h = _hyper(problem, dtype, continuation, start)
    N = problem.N
    b = h.batches if h.batches is not None else np.arange(N, dtype=np.int32)[None, :]
    b = np.pad(b, ((0, shape[0] - b.shape[0]), (0, shape[1] - b.shape[1])), constant_values=-1)
    labels = np.zeros((n,), np.int32)
    labels[:N] = h.labels
    return h._replace(labels=labels, batches=b, mask=np.arange(n) < N, n=np.asarray(N, np.dtype(dtype)))


def _groups(problems, statics, pad):
    """``[(static, member indices, hypers-maker)]``: one compiled loop per entry."""
    buckets: dict = {}
    for i, (p, st) in enumerate(zip(problems, statics)):
        buckets.setdefault(_group_key(st, p, pad), []).append(i)
    out = []
    for members in buckets.values():
        sts = {statics[i] for i in members}
        if len(sts) == 1:  # one shape: exactly solve's program
            out.append((statics[members[0]], members, _hyper))
            continue
        first = statics[members[0]]
        n = max(statics[i].N for i in members)
        shapes = [statics[i].batch_shape or (1, statics[i].N) for i in members]
        shape = (max(s[0] for s in shapes), max(s[1] for s in shapes))
        static = first._replace(N=n, K=max(statics[i].K for i in members), batch_shape=shape)
        out.append((static, members, lambda p, dt, c, r, n=n, shape=shape: _padded_hyper(p, dt, c, r, n, shape)))
    return out


def _stack(trees):
    """Trees of equal structure stacked leaf by leaf on a new leading axis (NumPy leaves stacked in NumPy, then
    one transfer each)."""
    return jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)) if isinstance(a[0], np.ndarray)
                                  else jnp.stack(a), *trees)


def _problem_sharding(devices):
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


def _group_layout(static, problems):
    """The :func:`_slot_layout` of each of ``problems`` (one compiled group) on one grid, or None where the slot
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
    out = [_slot_layout(p, (NB, BW)) for p in problems]
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
    """``_run_pool`` compiled for ``args = (H, keys, lr, tol, layout)``, once per shape (ahead of time, so that
    the threads of :func:`_pool_rows` do not each compile it)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (static, POOL_SLOTS, POOL_CHUNK, tree, tuple((a.shape, a.dtype) for a in leaves))
    if key not in _POOL_EXECUTABLES:
        if len(_POOL_EXECUTABLES) >= 64:
            _POOL_EXECUTABLES.pop(next(iter(_POOL_EXECUTABLES)))
        H, keys, lr, tol, layout = args
        _POOL_EXECUTABLES[key] = _run_pool_jit.lower(static, H, keys, lr, tol, POOL_SLOTS, layout,
                                                     POOL_CHUNK).compile()
    return _POOL_EXECUTABLES[key]


def _pool_rows(static, row_problems, hs, keys, lr, tol) -> list:
    """The final state of every row of a group (one start of ``row_problems[k]`` with hyper ``hs[k]`` and PRNG
    key ``keys[k]``), run in up to :func:`pool_threads` pools at once (of 4 rows or more). The rows are dealt to
    the pools in a fixed shuffled order (so that the slow rows, such as the odd starts that run the continuation
    stage, spread); every pool has the same number of rows (its last row repeated: one compilation); each pool is
    :func:`_run_pool` on its own thread. A row's answer does not depend on its pool, up to rounding (a pool of
    another width may sum in another order), so machines with other core counts agree to rounding."""
    layout = _group_layout(static, row_problems)
    R = len(hs)
    n = max(1, min(pool_threads(), -(-R // 4)))  # pools of 4 rows at least (a repeated row is a whole run)
    order = np.random.default_rng(0).permutation(R)  # spread the slow rows (a problem's odd starts, say) evenly
    shards = [sorted(order[k::n].tolist()) for k in range(n)]
    shards = [ix + [ix[-1]] * (len(shards[0]) - len(ix)) for ix in shards]

    def args(ix):
        lay = None if layout is None else tuple(jnp.asarray(np.stack([layout[i][j] for i in ix])) for j in range(4))
        return _stack([hs[i] for i in ix]), keys[np.asarray(ix)], lr, tol, lay

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
    of :func:`_run_pool`) rather than row by row. On a GPU or TPU, always: a batched step costs about one
    problem's. On a CPU only for small problems (``N <= LOCKSTEP_MAX_N``), where a step is mostly per-operation
    overhead that the batch shares; above, a step is compute-bound and the batch saves nothing
    (docs/benchmarks.md has the measurement)."""
    return jax.default_backend() != "cpu" or static.N <= LOCKSTEP_MAX_N


def solve_many(problems: Sequence[Problem], *, steps: int = 5000, lr: float | None = None,
               optimizer: str | optax.GradientTransformation = "pgd", tol: float | None = None,
               seed: int | Sequence[int] = 0, dtype: str | None = None, pad: str | bool = "auto",
               devices: Sequence[jax.Device] | None = None,
               progress: bool = False, continuation: bool | None = None, starts: int | None = None
               ) -> list[Solution]:
    """Solve many problems, one jit-compiled loop per group of equal shape; returns one ``Solution`` per problem,
    in order, as ``solve(problem, ...)`` would (same start, same steps, same stop rule, to rounding).

    How a group runs: on a CPU, :func:`pool_threads` pools of ``POOL_SLOTS`` slots at once, each one compiled loop
    on its own thread (:func:`_pool_rows`, :func:`_run_pool`: each slot runs one row of ``solve``'s iterations
    and loads the next row when its row stops), SC problems with disjoint batches through a slot-layout kernel
    of the loss (:func:`_slot_layout`); groups of problems above ``LOCKSTEP_MAX_N`` samples run row by row
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
    Returns:
      ``Solution`` s; ``seconds`` is the wall time of the problem's group (compilation included).
    Raises:
      NonFiniteLoss: a problem's loss became NaN or infinite (its index in the message).
    """
    problems = list(problems)
    _check_args(steps, lr, optimizer, tol, dtype)
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
    sharding = _problem_sharding(devices)
    width = 1 if sharding is None else sharding.mesh.size
    out: list = [None] * len(problems)
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.dtype(dtype)
        statics = [static_of(p, steps, optimizer, dtype, continuation) for p in problems]
        groups = _groups(problems, statics, pad)
        for g, (static, members, hyper) in enumerate(groups):
            start = time.perf_counter()
            rows = [(i, r) for i in members for r in range(n_starts(problems[i], starts))]
            real = len(rows)
            rows += [rows[-1]] * (-real % width)  # whole shards
            hs = [hyper(problems[i], dt, continuation, r) for i, r in rows]
            keys = start_keys([seeds[i] for i, _ in rows], [r for _, r in rows])
            lr_, tol_ = jnp.asarray(lr or 0.0, dt), jnp.asarray(tol, dt)
            if sharding is None and not lockstep_pays(static):  # one row after the other, same program as solve
                row_states = [jax.device_get(_run_jit(static, h, key, lr_, tol_)) for h, key in zip(hs, keys)]
            elif sharding is None and jax.default_backend() == "cpu":  # pools of slots, refilled as rows stop
                row_states = _pool_rows(static, [problems[i] for i, _ in rows], hs, keys, lr_, tol_)
            else:
                H, K_ = _stack(hs), keys
                if sharding is not None:
                    H, K_ = jax.device_put((H, K_), sharding)
                s = _fetch(_run_many_jit(static, H, K_, lr_, tol_))
                row_states = [jax.tree_util.tree_map(lambda a, k=k: a[k], s) for k in range(len(rows))]
            for i in members:
                states = []
                for k in [k for k, (j, _) in enumerate(rows[:real]) if j == i]:
                    si = row_states[k]
                    states.append(si._replace(x={**si.x, "Z": si.x["Z"][: problems[i].N]}))
                try:
                    out[i] = _restore(_best(problems[i], states, start, dtype, seeds[i], optimizer), originals[i],
                                      units[i][1])
                except NonFiniteLoss as e:
                    raise NonFiniteLoss(f"problem {i}: {e}") from None
            if progress:
                print(f"solve_many: group {g + 1}/{len(groups)}: {len(members)} problems, N={static.N}, "
                      f"{time.perf_counter() - start:.2f} s", file=sys.stderr)
    return out
