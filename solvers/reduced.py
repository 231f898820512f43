"""Solve and certify reduced class-level problems (``ufm.reduced``): a point is ``G`` rows of ``G + 1`` numbers
whatever the number of classes ``K`` and samples ``N``.

**Solve** (:func:`solve_groups`): the projected accelerated gradient of ``solvers.classlevel`` on the group
centres ``m (G, G)`` and spreads ``t (G,)``, one ``vmap``-ed, jit-compiled loop for every group of problems with
the same ``G`` and constraint; every number (sizes, classes per group, tau) is traced. Each row ``(m_g, t_g)`` is
projected on the ball of radius 1 (a singleton group of the sphere onto the sphere); ``t_g = 0`` for a group of
one class.
CE on the sphere (``G <= POLISH_MAX_GROUPS``): the first-order loop stops at a loose ``ftol`` (``POLISH_FTOL``) and
a damped Newton polish (:func:`_polish_segment`) goes on, in stacks of ``POLISH_ROWS``: near minority collapse the
loss is flat in the minority spread, which a first-order loop closes sublinearly, so without it ``min_min`` (and
the collapse boundary) depended on the step budget. BCL on the sphere: the polish goes on from the points the
first-order loop left on its step budget (at small ``tau`` its landscape is exponentially flat). BCL's prototype
rows ``(u_g, r_g)`` are projected on the ball (``ufm.reduced``: a row inside reaches the sphere in fresh
dimensions).

**Certify** (:func:`certify_groups`): ``solvers.dual.sc_group_bound`` (CE ``ce_group_bound``, BCL
``bcl_group_bound``), the class-level dual bound at the lifted candidate with its eigenvalues taken group by group,
vectorised over the grid: a proved lower bound on the *class-level* minimum. ``certified``: ``loss - lower_bound <= tol max(1, |loss|)`` and the solution's class means fit
in ``dim`` (``rank <= dim``; a solution that needs more dimensions is no point of the problem).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ufm import constraints, objectives
from ufm.defaults import CLASS_STEPS
from ufm.reduced import GroupProblem, ce_logits, prototype_fill, rank, stack_gram, stack_weights, weights

from .classlevel import ClassCertificate, pga_segment, run_segments

__all__ = ["GroupSolution", "solve_groups", "certify_groups", "loss_of", "start_of"]


class GroupSolution(NamedTuple):
    """A reduced solution: group centres ``m (G, G)`` (CE, BCL: ``(G, 2G)``) and spreads ``t (G,)`` at the
    problem's radius, ``loss`` (float64), ``steps`` and ``reason`` as ``solvers.classlevel.ClassSolution``; CE also
    the classifier's centres ``u (G, 2G)`` and spreads ``r (G,)``, BCL its prototypes' (``ufm.reduced``), else
    None."""

    m: np.ndarray
    t: np.ndarray
    loss: float
    steps: int
    reason: str
    u: np.ndarray | None = None
    r: np.ndarray | None = None


def _project(x, h, *, sphere):
    import jax.numpy as jnp

    rho = jnp.sqrt(h["rho2"])
    t = x["t"] * (h["s"] >= 2)
    norm = jnp.sqrt(jnp.sum(x["m"] * x["m"], axis=1) + t * t)
    scale = jnp.where(norm > rho, rho / jnp.maximum(norm, 1e-300), 1.0)
    if sphere:  # a singleton class has no spread: on the sphere
        scale = jnp.where(h["n"] < 2, rho / jnp.maximum(norm, 1e-300), scale)
    out = {**x, "m": x["m"] * scale[:, None], "t": t * scale}
    if "r" in x:
        out["r"] = x["r"] * (h["s"] >= 2)
    if "px" in h:  # BCL's prototype rows (u_g, r_g): the ball of radius rho, sphere or not (ufm.reduced)
        pn = jnp.sqrt(jnp.sum(x["u"] * x["u"], axis=1) + out["r"] * out["r"])
        ps = jnp.where(pn > rho, rho / jnp.maximum(pn, 1e-300), 1.0)
        out["u"], out["r"] = x["u"] * ps[:, None], out["r"] * ps
    return out


def _value(x, h, sphere, constant=True):
    from ufm.reduced import value

    return value(x, h, sphere=sphere, constant=constant)


def _scaled_value(x, h, sphere, constant=True):
    """The objective in the solver's variables: CE's classifier rows are stored times ``kappa = 1/sqrt(lambda_W)``
    (``h["kappa"]``), which balances their curvature against the features' (several times fewer steps near
    minority collapse)."""
    if "kappa" in h:
        x = {**x, "u": x["u"] / h["kappa"], "r": x["r"] / h["kappa"]}
    return _value(x, h, sphere, constant)


_SEGMENTS: dict = {}


def _segment(sphere):
    if sphere not in _SEGMENTS:
        _SEGMENTS[sphere] = pga_segment(lambda x, h: _scaled_value(x, h, sphere, False),
                                        lambda x, h: _project(x, h, sphere=sphere))
    return _SEGMENTS[sphere]


_HELPERS: dict = {}


def _helpers(sphere):
    """Jitted, vmapped start and final value (one compilation per stack shape, not an op-by-op dispatch)."""
    import jax

    if sphere not in _HELPERS:
        def init(x, h):
            x = _project(x, h, sphere=sphere)
            return x, _scaled_value(x, h, sphere, False)

        _HELPERS[sphere] = (jax.jit(jax.vmap(init)),
                            jax.jit(jax.vmap(lambda a, b: _scaled_value(a, b, sphere, True))))
    return _HELPERS[sphere]


POLISH_ROWS = 16  # the polish's stack length (its cost per row does not fall with longer stacks)
POLISH_MAX_GROUPS = 8  # the polish's Hessian has (2G (2G + 1))^2 entries per row: above this G, no polish
POLISH_FTOL = 1e-6  # CE on the sphere: the first-order loop hands over to the polish at this ftol
NEWTON_CHUNK = 5  # Newton iterations per jitted polish segment
NEWTON_SEGMENTS = 40  # at most this many segments
BCL_NEWTON_CHUNK = 25  # BCL: Newton iterations per segment (fewer round trips over its longer polish)
BCL_NEWTON_SEGMENTS = 80  # BCL's polish (the points its first-order loop left on its budget): at small tau the
# valley is exponentially flat; at K = 10, R = 1, tau = 0.05 the loss fell from 1.9e-8 after 200 Newton iterations to
# 2.0118e-9 after 2,000 (the ETF's 2.0103e-9)
NEWTON_FTOL = 1e-15  # a polish stops when every row moved less than this (relative) over a segment
ON_SPHERE = 1e-9  # a row (m_g, t_g) within this of the unit norm is kept on the sphere by the polish


_POLISH: dict = {}


def _polish_segment(G, proto=False):
    """A jitted, vmapped segment of ``NEWTON_CHUNK`` damped Newton iterations on CE's (``proto``: BCL's) reduced
    problem on the sphere, for ``G`` groups: ``segment(x, lam, on, h) -> (x, f, lam)``.

    Why: near minority collapse the loss is nearly flat in the minority spread (its curvature vanishes at the
    collapse), and the first-order loop closes the spread sublinearly: it stops on its step budget or its
    ``ftol`` with the spread, and so ``min_min``, where they left it (two budgets put the collapse boundary
    apart). The reduced point has ``2 G (2 G + 1)`` numbers, so its Hessian is cheap, and a Newton step takes
    the flat direction at its own curvature. A row ``(m_g, t_g)`` on the unit sphere (``on``) is parametrised by
    ``z_g / |z_g|`` (a retraction onto the sphere), one inside the ball is free (and projected on the ball); the
    classifier's ``(u, r)`` (in the solver's scaled variables) are free; BCL's prototype rows ``(u_g, r_g)`` are
    treated as the means' rows (``on`` then has ``2G`` entries, the means' then the prototypes'). BCL needs it
    for the same reason at small ``tau``: the positives are at their minimum whenever ``a_g = Xo_g``, and only
    the exponentially small negatives pull further. Each iteration takes ``-(H + lam'
    I)^-1 g`` with ``lam' = max(0, -lambda_min(H)) + lam |H|`` (eigendecomposition of the small Hessian; the
    rotations and the radial directions are null directions of it), keeps it only when the objective decreases
    (then ``lam`` falls tenfold, else it rises tenfold): the polish never makes the point worse. Nothing here is
    part of a proof: the certificate bounds whatever point comes out.
    """
    import jax
    import jax.numpy as jnp

    if (G, proto) in _POLISH:
        return _POLISH[(G, proto)]
    c = 2 * G
    cuts = np.cumsum([G * c, G, G * c]).tolist()

    def unpack(v, on, h):
        m, t, u, r = jnp.split(v, cuts)
        m, u = m.reshape(G, c), u.reshape(G, c)
        keep = h["s"] >= 2
        t, r = t * keep, r * keep
        norm = jnp.maximum(jnp.sqrt(jnp.sum(m * m, axis=1) + t * t), 1e-300)
        scale = jnp.where(on[:G], 1.0 / norm, jnp.minimum(1.0, 1.0 / norm))
        if proto:
            pn = jnp.maximum(jnp.sqrt(jnp.sum(u * u, axis=1) + r * r), 1e-300)
            ps = jnp.where(on[G:], 1.0 / pn, jnp.minimum(1.0, 1.0 / pn))
            u, r = u * ps[:, None], r * ps
        return {"m": m * scale[:, None], "t": t * scale, "u": u, "r": r}

    def pack(x):
        return jnp.concatenate([x["m"].ravel(), x["t"], x["u"].ravel(), x["r"]])

    def f(v, on, h):
        return _scaled_value(unpack(v, on, h), h, True, False)

    def grad2(v, on, h):
        g = jax.grad(f)(v, on, h)
        return g, g

    hess = jax.jacfwd(grad2, has_aux=True)  # (H, g) from one trace of the gradient

    def step(state, on, h):
        v, fv, lam = state
        H, g = hess(v, on, h)
        w, V = jnp.linalg.eigh(H)
        scale = jnp.maximum(jnp.max(jnp.abs(w)), 1e-300)
        shift = jnp.maximum(0.0, -w[0]) + lam * scale
        d = -V @ ((V.T @ g) / (w + shift))
        vn = pack(unpack(v + d, on, h))
        fn = f(vn, on, h)
        ok = jnp.isfinite(fn) & (fn < fv)
        v = jnp.where(ok, vn, v)
        fv = jnp.where(ok, fn, fv)
        lam = jnp.where(ok, jnp.maximum(lam / 10.0, 1e-12), jnp.minimum(lam * 10.0, 1e12))
        return (v, fv, lam)

    def segment(x, lam, on, h):
        v = pack(unpack(pack(x), on, h))

        def body(st, _):
            return step(st, on, h), None
        v, fv, lam = jax.lax.scan(body, (v, f(v, on, h), lam), None, length=BCL_NEWTON_CHUNK if proto else
                                  NEWTON_CHUNK)[0]
        return unpack(v, on, h), fv, lam

    _POLISH[(G, proto)] = jax.jit(jax.vmap(segment))
    return _POLISH[(G, proto)]


def _polish(G, x, fx, h, segments=None, ftol=None):
    """Run :func:`_polish_segment` from the stacked solver state ``x`` (objective ``fx``, radius 1) until every
    row moved less than ``ftol max(1, |f|)`` over a segment, at most ``segments`` segments. Returns ``(x, fx,
    still)``, ``still (L,)``: the rows that moved less than that over the last segment."""
    import jax.numpy as jnp

    keep, single = np.asarray(h["s"]) >= 2, np.asarray(h["n"]) < 2

    proto = "px" in h

    def on(centre, spread):  # rows (centre_g, spread_g) on the unit sphere
        t = np.asarray(spread) * keep
        return np.sqrt(np.sum(np.asarray(centre) ** 2, axis=-1) + t * t) >= 1.0 - ON_SPHERE

    def on_sphere(x):  # the rows the next segment keeps on the sphere (a free row that reached it joins them)
        rows = on(x["m"], x["t"]) | single
        return jnp.asarray(np.concatenate([rows, on(x["u"], x["r"])], axis=-1) if proto else rows)

    segments = NEWTON_SEGMENTS if segments is None else segments
    ftol = NEWTON_FTOL if ftol is None else ftol
    seg = _polish_segment(G, proto)
    lam = jnp.full(np.shape(fx), 1e-6)
    last = np.asarray(fx)
    still = np.zeros(len(last), dtype=bool)
    for _ in range(segments):
        x, fx, lam = seg(x, lam, on_sphere(x), h)
        now = np.asarray(fx)
        still = np.abs(last - now) <= ftol * np.maximum(1.0, np.abs(now))
        last = now
        if still.all():
            break
    return x, fx, still


def _polish_rows(G, x, fx, h, todo, segments=None):
    """Polish (:func:`_polish`) the rows ``todo`` of a stacked state, in stacks of ``POLISH_ROWS`` rows (padded with
    the first of them). Returns ``(x, fx, polished (L,))``: the state with those rows replaced, and the rows whose
    polish converged."""
    import jax.numpy as jnp

    x = {k: np.array(v) for k, v in x.items()}
    fx = np.array(fx)
    done = np.zeros(len(fx), dtype=bool)
    for a in range(0, len(todo), POLISH_ROWS):
        sel = todo[a:a + POLISH_ROWS]
        rows = np.concatenate([sel, np.full(POLISH_ROWS - len(sel), sel[0])])
        xq, fq, still = _polish(G, {k: jnp.asarray(v[rows]) for k, v in x.items()}, jnp.asarray(fx[rows]),
                                {k: v[rows] for k, v in h.items()}, segments)
        fq = np.asarray(fq)[:len(sel)]
        better = fq <= fx[sel]  # the polish's start is the solution retracted: keep whichever is lower
        for k in x:
            x[k][sel[better]] = np.asarray(xq[k])[:len(sel)][better]
        fx[sel[better]] = fq[better]
        done[sel] = still[:len(sel)]
    return {k: jnp.asarray(v) for k, v in x.items()}, jnp.asarray(fx), done


SMALL, ROWS = 128, 1024  # the two stack lengths compiled: a stack of <= SMALL rows, else chunks of ROWS


def _chunks(L, pad_to=None):
    """``(start, stop, length)`` of the compiled stacks covering ``L`` rows (padded: the last chunk's spare rows
    repeat its first problem)."""
    size = SMALL if max(L, pad_to or 0) <= SMALL else ROWS
    return [(i, min(i + size, L), size) for i in range(0, L, size)]


def _start(G, rng, level="contrastive"):
    """A random start at radius 1 for an objective's ``class_level`` (``level``): CE adds small classifier rows,
    BCL its prototypes at their class means (its positives then at their largest)."""
    cols = G if level == "contrastive" else 2 * G
    m = rng.standard_normal((G, cols))
    t = rng.standard_normal(G)
    norm = np.sqrt(np.sum(m * m, axis=1) + t * t)
    x = {"m": m / norm[:, None], "t": t / norm}
    if level == "ce":
        x["u"] = 0.1 * rng.standard_normal((G, cols))
        x["r"] = 0.1 * rng.standard_normal(G)
    elif level == "prototypes":
        x["u"], x["r"] = x["m"].copy(), x["t"].copy()
    return x


def _u_scale(problem) -> float:
    """What ``u``, ``r`` at radius 1 are multiplied by at the problem's radius: prototypes scale with it, CE's
    classifier inversely (its logits stay)."""
    rho = problem.radius
    return rho if objectives.of(problem).prototypes else 1.0 / rho


def start_of(problem: GroupProblem, sol: GroupSolution) -> dict:
    """``sol`` as a start for :func:`solve_groups` (at radius 1)."""
    rho = problem.radius
    x = {"m": sol.m / rho, "t": sol.t / rho}
    if sol.u is not None:
        k = _u_scale(problem)
        x.update(u=sol.u / k, r=sol.r / k)  # type: ignore[operator, arg-type]  # u and r come together
    return x


def solve_groups(problems, *, steps: int = CLASS_STEPS, seed=0, ftol: float = 1e-13, pad_to: int | None = None,
                 starts=None, polish: bool = True) -> list[GroupSolution]:
    """Solve reduced problems, grouped by ``(G, constraint)``, in stacks of two fixed lengths (``SMALL``, or
    chunks of ``ROWS``), each one vmapped loop: a grid, its retries and the boundary bisection reuse two compiled
    programs.

    Args:
      problems: ``ufm.reduced.GroupProblem`` s.
      steps: most first-order iterations per problem (``GroupSolution.steps`` counts these; the polish's Newton
        steps are not counted). seed: one int, or one per problem. ftol: as ``solvers.classlevel.solve_classes``
        (a stack stops when all its rows moved less; CE on the sphere: at least ``POLISH_FTOL``, then the polish).
      pad_to: the number of rows later calls may bring (a stack of fewer rows is compiled at the length they
        will need).
      starts: optional start dicts ``{"m", "t"}`` (radius 1), one per problem.
      polish: run the Newton polish (CE on the sphere; module doc); False: the first-order loop alone, to ``ftol``.
    Returns:
      :class:`GroupSolution` s, in order (CE on the sphere: ``reason`` ``"converged"`` when the polish stopped on
      its ``NEWTON_FTOL``).
    """
    import jax
    import jax.numpy as jnp

    problems = list(problems)
    seeds = [seed] * len(problems) if isinstance(seed, (int, np.integer)) else list(seed)
    out: list = [None] * len(problems)
    groups: dict = {}
    for i, p in enumerate(problems):
        groups.setdefault((p.G, p.constraint, objectives.of(p).class_level), []).append(i)
    with jax.enable_x64(True):
        for (G, constraint, level), idx in groups.items():
            sphere = constraints.get(constraint).equality
            init, f_full = _helpers(sphere)
            units = [problems[i].at_unit_radius() for i in idx]
            hall = {k: v for k, v in stack_weights([u for u, _ in units]).items() if k not in ("clw", "lws", "mult")}
            x0 = [starts[i] if starts is not None else _start(G, np.random.default_rng(seeds[i]), level) for i in idx]
            xall = {k: np.stack([s[k] for s in x0]) for k in x0[0]}
            if level == "ce":  # the solver's variables: classifier rows times kappa (_scaled_value)
                hall["kappa"] = 1.0 / np.sqrt(hall["weight_decay"])
                xall["u"] = xall["u"] * hall["kappa"][:, None, None]
                xall["r"] = xall["r"] * hall["kappa"][:, None]
            newton = polish and level in ("ce", "prototypes") and sphere and G <= POLISH_MAX_GROUPS
            for lo, hi, size in _chunks(len(idx), pad_to):
                rows = np.concatenate([np.arange(lo, hi), np.full(size - (hi - lo), lo)])
                h = {k: jnp.asarray(v[rows]) for k, v in hall.items()}
                x, f0 = init({k: jnp.asarray(v[rows]) for k, v in xall.items()}, h)
                state = (x, x, f0, jnp.ones(size), jnp.ones(size))
                state, taken, converged = run_segments(_segment(sphere), state, h, steps,
                                                       max(ftol, POLISH_FTOL) if newton and level == "ce" else ftol)
                # CE: every row goes on with the polish; BCL: the rows the first-order loop left on its budget
                todo = np.arange(hi - lo) if level == "ce" else np.flatnonzero(~converged[:hi - lo])
                if newton and len(todo):
                    x, fx, done = _polish_rows(G, state[0], state[2], h, todo,
                                               None if level == "ce" else BCL_NEWTON_SEGMENTS)
                    converged = done if level == "ce" else converged | done
                    state = (x, x, fx, *state[3:])
                full = np.asarray(f_full(state[0], h))
                xs = {k: np.asarray(v) for k, v in state[0].items()}
                if level == "ce":
                    kap = hall["kappa"][rows]
                    xs["u"], xs["r"] = xs["u"] / kap[:, None, None], xs["r"] / kap[:, None]
                for j in range(hi - lo):
                    rho = units[lo + j][1]
                    k = _u_scale(problems[idx[lo + j]])
                    cls = (xs["u"][j] * k, xs["r"][j] * k) if "u" in xs else (None, None)
                    out[idx[lo + j]] = GroupSolution(xs["m"][j] * rho, xs["t"][j] * rho, float(full[j]),
                                                     int(taken[j]), "converged" if converged[j] else "max_steps",
                                                     *cls)
    return out


def loss_of(problem: GroupProblem, m, t, u=None, r=None) -> float:
    """The reduced objective at ``(m, t)`` (CE, BCL: and ``(u, r)``), at the problem's radius, float64."""
    import jax
    import jax.numpy as jnp

    unit, rho = problem.at_unit_radius()
    with jax.enable_x64(True):
        h = {k: jnp.asarray(v) for k, v in weights(unit).items() if k != "clw"}
        x = {"m": jnp.asarray(np.asarray(m, dtype=np.float64) / rho), "t": jnp.asarray(np.asarray(t) / rho)}
        if u is not None:
            k = _u_scale(problem)
            x["u"] = jnp.asarray(np.asarray(u, dtype=np.float64) / k)
            x["r"] = jnp.asarray(np.asarray(r, dtype=np.float64) / k)
        return float(_value(x, h, constraints.get(problem.constraint).equality))


def certify_groups(problems, solutions, *, tol: float = 1e-6) -> list[ClassCertificate]:
    """Proved lower bounds (``solvers.dual.sc_group_bound``, CE ``ce_group_bound``, BCL ``bcl_group_bound``) for
    reduced solutions, one per problem.

    Args:
      problems: ``GroupProblem`` s. solutions: their :class:`GroupSolution` s.
      tol: relative tolerance of ``certified``.
    Returns:
      ``solvers.classlevel.ClassCertificate`` s (``multipliers``: ``"candidate"``, or ``"optimal"`` where the
      candidate's left the point uncertified).
    """
    from . import dual

    units = [p.at_unit_radius() for p in problems]
    bounds: list = [None] * len(problems)
    how = ["candidate"] * len(problems)
    by: dict = {}
    for i, p in enumerate(problems):
        by.setdefault((p.G, p.constraint, objectives.of(p).class_level), []).append(i)

    def bound(idx, optimal):
        us = [units[i][0] for i in idx]
        rho = np.array([units[i][1] for i in idx])
        m = np.stack([solutions[i].m for i in idx]) / rho[:, None, None]
        t = np.stack([solutions[i].t for i in idx]) / rho[:, None]
        sphere = constraints.get(us[0].constraint).equality
        hs = stack_weights(us)
        grams = stack_gram(m, t, hs, sphere)
        level = objectives.of(us[0]).class_level
        if level == "contrastive":
            return dual.sc_group_bound(us, grams, optimal_multipliers=optimal)
        k = np.array([_u_scale(problems[i]) for i in idx])  # u, r at radius 1
        u = np.stack([solutions[i].u for i in idx]) / k[:, None, None]
        r = np.stack([solutions[i].r for i in idx]) / k[:, None]
        logits = ce_logits(m, t, u, r, hs["s"], np)
        if level == "prototypes":
            return dual.bcl_group_bound(us, grams, logits, optimal_multipliers=optimal)
        return dual.ce_group_bound(us, grams, logits, [solutions[i].loss for i in idx], optimal_multipliers=optimal)

    for idx in by.values():
        for i, b in zip(idx, bound(idx, False)):
            bounds[i] = b
    # a point the candidate's multipliers leave uncertified gets the optimal ones (closed form for G <= 2)
    redo = [i for i, (s, b) in enumerate(zip(solutions, bounds))
            if b.lower_bound is None or s.loss - b.lower_bound > tol * max(1.0, abs(s.loss))]
    for i in redo:
        b, = bound([i], True)
        if b.lower_bound is not None and (bounds[i].lower_bound is None or b.lower_bound > bounds[i].lower_bound):
            bounds[i] = b
            how[i] = "optimal"
    out = []
    for p, s, b, w in zip(problems, solutions, bounds, how):
        if b.lower_bound is None:
            out.append(ClassCertificate(s.loss, None, None, False, w, b.why))
            continue
        gap = s.loss - b.lower_bound
        fill = prototype_fill(s.u, s.r, p) if objectives.of(p).prototypes else None
        need = int(rank(s.m, s.t, p.classes, p.radius, u=s.u, r=s.r, fill=fill))
        if need > p.dim:  # the class means need more dimensions than the problem has: not a point of it
            out.append(ClassCertificate(s.loss, b.lower_bound, gap, False, w,
                                        f"the solution needs {need} dimensions, dim is {p.dim}"))
            continue
        out.append(ClassCertificate(s.loss, b.lower_bound, gap, bool(gap <= tol * max(1.0, abs(s.loss))), w))
    return out
