"""The compiled loop of ``solvers.pgd``: start, body and final state of one ``lax.while_loop`` (:func:`loop_parts`),
run whole (:func:`run`) or in segments under a progress bar (:func:`run_with_bar`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ufm import constraints

from .state import Hyper, PGDState, Static
from .step import (MAX_HALVINGS, SHRINK, armijo_trial, default_eta0, extrapolate, init_params, metric, n_samples,
                   next_eta, objective, optax_of, project_vars, small_step)

__all__ = ["CONTINUATION_TAU", "CONTINUATION_TOL", "PROGRESS_WORK", "PROGRESS_SEGMENTS", "loop_parts", "run",
           "run_jit", "run_with_bar"]

CONTINUATION_TAU = 0.05  # UFM+ SC first minimises at tau = min(tau, CONTINUATION_TAU * rho^2) (module doc)
CONTINUATION_TOL = 1e-8  # ... to this tolerance (or tol, if looser), in at most half of the steps


def loop_parts(static: Static, h: Hyper, lr, tol, history=True, fun=None, draw=None):
    """The pieces of the compiled solve: ``(start(key, init) -> PGDState, body(PGDState) -> PGDState,
    final(PGDState) -> PGDState)``. The start is a random point drawn from ``key`` (the arrays of ``init``, a dict
    with some of ``Z``, ``W``, ``b``, put in their place), projected. With the continuation stage
    (``static.continuation`` and the problem's flag ``h.continuation``) the loop first minimises at ``tau1`` and
    switches to ``tau`` when that stage stops (module doc): one loop, one compiled body. ``history=False``: the
    state's ``hist`` is a scalar, the objective recorded at the last step (``solve_many``'s slot pool writes it
    to its own table, so that the loop state stays small). ``fun``: ``(x, tau) -> (f, grad)`` in place of the
    autodiff of :func:`objective` (the same function, computed another way); ``draw``: ``key -> x0`` in place of
    :func:`init_params` (a feasible point).

    With ``static.acceleration`` the body is the accelerated one (the docstring of its ``body`` below): the same
    trial, step-size rule and stop test, taken from the extrapolated point."""
    tm = jax.tree_util.tree_map
    vg = fun or jax.value_and_grad(lambda x, tau: objective(static, x, h._replace(tau=tau)))
    w = metric(static, h)
    scale = h.radius if constraints.get(static.constraint).bounded else jnp.ones_like(h.radius)
    cont = static.continuation and static.optimizer == "pgd"
    stage0 = jnp.asarray(cont) & h.continuation  # True: the low-temperature stage comes first
    tau1 = jnp.where(stage0, jnp.minimum(h.tau, CONTINUATION_TAU * h.radius ** 2), h.tau)
    project_fn = lambda x: project_vars(static, x, h)  # noqa: E731

    def eta0_at(tau):
        return jnp.where(lr > 0, lr, default_eta0(static, h._replace(tau=tau)))

    def rms_rows(d):  # per-row RMS displacement (Z rows, W rows, b counted as one row)
        n = n_samples(static, h) + (static.K if "W" in d else 0) + (static.K if "C" in d else 0) + (
            1 if "b" in d else 0)
        return jnp.sqrt(sum(jnp.sum(v ** 2) for v in d.values()) / n)

    pgd_ = static.optimizer == "pgd"
    acc = pgd_ and static.acceleration
    eta0 = eta0_at(tau1 if pgd_ else h.tau)
    rate = eta0 if pgd_ else jnp.where(lr > 0, lr, jnp.where(static.optimizer == "adam", 0.01 * scale, 0.5 * eta0))
    opt = None if pgd_ else optax_of(static.optimizer, rate)

    def start(key, init):
        x0 = init_params(static, key, h) if draw is None else draw(key)
        if init is not None:
            x0 = project_vars(static, {**x0, **init}, h)
        f0, g0 = vg(x0, tau1)
        hist = jnp.full((static.steps + 1,), jnp.nan, jnp.dtype(static.dtype)).at[0].set(f0) if history else f0
        s0 = PGDState(x=x0, f=f0, g=g0, t=jnp.int32(0), hist=hist, done=~jnp.isfinite(f0),
                      gm=jnp.asarray(jnp.inf, f0.dtype), finite=jnp.isfinite(f0), stalled=jnp.asarray(False),
                      tau=tau1, stage0=stage0, stage1=jnp.int32(0), eta=rate, eta_step=rate, k=jnp.int32(0),
                      opt=None if pgd_ else opt.init(x0), evals=jnp.int32(1))
        if acc:  # y = x: the first step is a plain one
            s0 = s0._replace(y=x0, fy=f0, gy=g0, momentum=jnp.ones_like(f0))
        return s0

    def stop_test(s, xn, fn, step, origin=None):
        """The gradient mapping of the step from ``origin`` (default ``s.x``; the accelerated loop's ``y``) to
        ``xn`` and the stop test (``step.small_step``) on it and the loss change from ``s.f`` to ``fn``."""
        d = tm(lambda a, b: a - b, s.x if origin is None else origin, xn)
        gm = rms_rows(d) / step * eta0_at(s.tau)
        t_ = jnp.where(s.stage0, jnp.maximum(tol, CONTINUATION_TOL), tol)
        small = small_step(gm, fn, s.f, t_, scale)
        # f = inf (the first step after the low-temperature stage) leaves no loss change to test: not converged
        return gm, small & (tol > 0) & jnp.isfinite(s.f)

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

    if acc:
        def body(s):
            """FISTA with the engine's rules (``solvers.pgd.step``): one projected Armijo trial per iteration from
            the extrapolated point ``y`` (its value ``fy`` and gradient ``gy``). A passed trial whose loss is not
            above ``f(x)`` is the step: ``x+`` the trial point, ``y+ = P(x+ + (t - 1) / t+ (x+ - x))``
            (:func:`extrapolate`, then projected, so every point evaluated is feasible). A passed trial that raises
            the loss takes no step and restarts the momentum (O'Donoghue & Candes's function restart): ``y = x``,
            ``t = 1``; so the loss never rises and ``hist`` is monotone, as without acceleration. A failed trial
            halves the step (at most ``MAX_HALVINGS`` times: then a restart, or, when ``y`` is ``x``, numerical
            stationarity as without acceleration). The step size follows :func:`next_eta`; the stop test is
            :func:`small_step` on the gradient mapping at ``y``. While the counter is below 2 (``t = 1``, or
            the counter after it) the momentum coefficient was 0: ``y`` is ``x`` and the trial is exactly the
            plain loop's step. When the low-temperature stage ends, the momentum restarts at ``x`` with its value
            and gradient at ``tau`` (one evaluation more; the plain loop's first step at ``tau`` instead uses the
            last gradient at ``tau1`` and ``f = inf``, which passes any trial: momentum from there overshoots)."""
            plain = s.momentum < 2
            xn, fn, gn, ok = armijo_trial(lambda x: vg(x, s.tau), project_fn, s.y, s.fy, s.gy, s.eta, w)
            searched_out = ~ok & (s.k >= MAX_HALVINGS)
            stalled = searched_out & plain  # no step from x decreases the loss: numerically stationary
            accept = ok & (plain | (fn <= s.f))
            restart = (ok & ~accept) | (searched_out & ~plain)
            xa, fa, ga = tm(lambda a, b: jnp.where(accept, a, b), (xn, fn, gn), (s.x, s.f, s.g))
            gm, conv = stop_test(s, xa, fa, s.eta, origin=tm(lambda a, b: jnp.where(accept, a, b), s.y, s.x))
            conv = conv | (stalled & (tol > 0))
            eta_next = next_eta(ok, s.eta, eta0_at(s.tau), s.eta_step)
            y_raw, t_new = extrapolate(xa, s.x, s.momentum, accept)
            stepped = finish(s, xa, fa, ga, gm, conv, eta=eta_next, eta_step=eta_next, k=jnp.int32(0),
                             stalled=stalled)
            # the low-temperature stage ended: restart at x with its value and gradient at tau (body's doc)
            switch = s.stage0 & ~stepped.stage0
            momentum = accept & (s.momentum > 1) & ~switch  # the coefficient (t - 1) / t+ is > 0: y+ is not x+
            y_new = tm(lambda a, b: jnp.where(momentum, a, b), project_fn(y_raw), xa)  # else y+ is x+, bit for bit
            moved = momentum | switch  # y+ is not x+, or tau changed: evaluate there
            fy, gy = jax.lax.cond(moved, lambda: vg(y_new, stepped.tau), lambda: (fa, ga))
            stepped = stepped._replace(y=y_new, fy=fy, gy=gy, momentum=jnp.where(switch, 1.0, t_new),
                                       f=jnp.where(switch, fy, stepped.f),
                                       g=tm(lambda a, b: jnp.where(switch, a, b), gy, stepped.g),
                                       evals=s.evals + 1 + moved.astype(jnp.int32))
            again = s._replace(y=s.x, fy=s.f, gy=s.g, momentum=jnp.ones_like(s.momentum), k=jnp.int32(0),
                               eta=jnp.where(ok, s.eta, s.eta_step), eta_step=jnp.where(ok, s.eta, s.eta_step),
                               evals=s.evals + 1)
            retry = s._replace(eta=s.eta * SHRINK, k=s.k + 1, evals=s.evals + 1)
            out = tm(lambda a, b: jnp.where(restart, a, b), again, retry)
            return tm(lambda a, b: jnp.where(accept | stalled, a, b), stepped, out)
    elif pgd_:
        # One trial step per loop iteration: the backtracking search (halve eta until the Armijo test passes, at
        # most MAX_HALVINGS times) is unrolled into the main loop, so that under vmap (solve_many) every iteration costs
        # one evaluation per problem instead of the most halvings any problem needs. The sequence of trials, and
        # so the result, is that of a nested search.
        def body(s):
            xn, fn, gn, ok = armijo_trial(lambda x: vg(x, s.tau), project_fn, s.x, s.f, s.g, s.eta, w)
            stalled = ~ok & (s.k >= MAX_HALVINGS)  # no step decreases the loss: numerically stationary
            xn, fn, gn = tm(lambda a, b: jnp.where(ok, a, b), (xn, fn, gn), (s.x, s.f, s.g))
            gm, conv = stop_test(s, xn, fn, s.eta)
            conv = conv | (stalled & (tol > 0))
            eta_next = next_eta(ok, s.eta, eta0_at(s.tau), s.eta_step)
            stepped = finish(s, xn, fn, gn, gm, conv, eta=eta_next, eta_step=eta_next, k=jnp.int32(0),
                             stalled=stalled, evals=s.evals + 1)
            retry = s._replace(eta=s.eta * SHRINK, k=s.k + 1, evals=s.evals + 1)
            return tm(lambda a, b: jnp.where(ok | stalled, a, b), stepped, retry)
    else:
        def body(s):
            u, opt_state = opt.update({k: s.g[k] / w[k] for k in s.g}, s.opt, s.x)
            xn = project_fn(optax.apply_updates(s.x, u))
            fn, gn = vg(xn, s.tau)
            gm, conv = stop_test(s, xn, fn, rate)
            return finish(s, xn, fn, gn, gm, conv, opt=opt_state, evals=s.evals + 1)

    def final(s):  # a run that ended at the switch has f = inf: its value at tau
        value = objective(static, s.x, h) if fun is None else fun(s.x, h.tau)[0]
        return s._replace(f=jnp.where(jnp.isfinite(s.f), s.f, value), opt=None, y=None, fy=None, gy=None)

    return start, body, final


def run(static: Static, h: Hyper, key, lr, tol, init=None) -> PGDState:
    """The compiled solve (:func:`loop_parts`): start, loop until converged or ``static.steps``, final state."""
    start, body, final = loop_parts(static, h, lr, tol)
    return final(jax.lax.while_loop(lambda s: (s.t < static.steps) & ~s.done, body, start(key, init)))


def _start(static, h, key, lr, tol, init=None):
    return loop_parts(static, h, lr, tol)[0](key, init)


def _segment(static, h, lr, tol, state, t_stop):
    """The loop of :func:`run` from ``state`` until step ``t_stop`` (or convergence): the same iterations, so a
    run cut into segments (for a progress bar) ends where one loop would."""
    body = loop_parts(static, h, lr, tol)[1]
    return jax.lax.while_loop(lambda s: (s.t < jnp.minimum(t_stop, static.steps)) & ~s.done, body, state)


def _final(static, h, lr, tol, state):
    return loop_parts(static, h, lr, tol)[2](state)


_start_jit = jax.jit(_start, static_argnums=0)
_segment_jit = jax.jit(_segment, static_argnums=0)
_final_jit = jax.jit(_final, static_argnums=0)
PROGRESS_WORK = 5e6  # N * (d + batch width) from which solve(progress=None) shows a bar (a solve of seconds or more)
PROGRESS_SEGMENTS = 50  # a bar's run is cut into this many segments of steps


def run_with_bar(static, h, key, lr, tol, init, bar, start_index):
    """``run`` in segments, advancing ``bar`` by the steps taken (identical iterations, module-level jits)."""
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


run_jit = jax.jit(run, static_argnums=0)
