"""Solve and certify many class-level problems at once (``ufm.classlevel``): a point costs the same for any N.

**Solve** (:func:`solve_classes`): projected accelerated gradient on the class means ``mu (K, dim)`` (and ``W``
for CE), one ``vmap``-ed, jit-compiled loop for every group of problems with the same structure (loss, K, dim,
constraint, ReLU, number of batch compositions); every number (counts, tau, decays) is traced, so a 100 x 100 grid
is one compilation. Step sizes adapt per problem (the engine's projected Armijo trial on the quadratic upper
model, ``solvers.pgd.step.armijo_trial``, one per iteration, and its step rule ``next_eta``: growth by
``CLASS_GROW`` after a pass, halving after a failure) and momentum restarts
when the objective goes up (``solvers.pgd.step.extrapolate``, O'Donoghue & Candes 2015); a problem stops when its
objective moved less than ``ftol`` relative over a segment (``solvers.pgd.step.small_change``). Rows are projected on the ball (and the
non-negative orthant), singletons of the sphere onto the sphere (``ufm.constraints``).

**Certify** (:func:`certify_classes`): the proved class-level bounds of ``solvers.dual`` at each solution's
class-constant Gram. The multipliers first come from the candidate itself (complementary slackness: ``mu_i =
(Q Ĝ)_ii / rho^2``, no program to solve); a point they do not certify gets the optimal class-level multipliers
(a K-variable program, still proved by the same arithmetic). ``certified``: ``loss - lower_bound <= tol
max(1, |loss|)`` as in ``solvers.certify``.

References:
  O'Donoghue & Candes, "Adaptive restart for accelerated gradient schemes", Found. Comput. Math. 15 (2015).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ufm import constraints, objectives
from ufm.classlevel import ClassProblem, block_gram, weights
from ufm.defaults import CLASS_STEPS

__all__ = ["ClassSolution", "ClassCertificate", "solve_classes", "solve_chains", "certify_classes", "simplex_start",
           "CHUNK"]

CHUNK = 50  # iterations per jitted segment; the stop rule is read between segments
# a warm-started point (a neighbour's solution, solve_chains) is read every WARM_CHUNK iterations: it has no
# plateau to cross, and one small change over WARM_CHUNK steps ends it (a cold start in the same loop needs a small
# change over two segments, as over CHUNK steps); on a K = 100 long-tail grid this took about 80 steps a point
# against 120 at CHUNK
WARM_CHUNK = 25
# the optimal multipliers (a K-variable SDP with a K x K PSD constraint) are tried only up to this K: the interior
# point solver's KKT system grows like (K^2 / 2)^2 (K = 1,000: 2 TB, an abort), ~0.5 GiB at 128
OPTIMAL_MAX_K = 128
# the class-level loops' step growth after an accepted trial (solvers.pgd.step.next_eta; the engine's GROW is
# 1.25): with one trial per iteration, 1.25 (with the momentum kept through a rejected trial) took about 10% fewer
# steps on a K = 100 long-tail grid but stopped the K = 1,000 long-tail point (R = 30, tau = 0.1) short of its
# minimum (the loss moved less than ftol over a segment at a gap of 2e-4: not certified), where 2 certifies it
CLASS_GROW = 2.0


class ClassSolution(NamedTuple):
    """A class-level solution: ``mu (K, dim)``, ``W (K, dim)`` or None, ``loss`` (float64, at the problem's radius),
    ``steps`` taken, ``reason`` it stopped (``"converged"``: the objective solved (the loss less its constant part,
    ``ufm.classlevel.value``) moved less than ``ftol`` relative over a segment; ``"max_steps"``), and ``C (K, dim)``
    the class prototypes of a loss that has them (BCL), else None."""

    mu: np.ndarray
    W: np.ndarray | None
    loss: float
    steps: int
    reason: str
    C: np.ndarray | None = None


class ClassCertificate(NamedTuple):
    """``lower_bound`` (proved, or None with ``why``), ``gap = loss - lower_bound``, ``certified``, and how the
    multipliers were found (``"candidate"`` or ``"optimal"``)."""

    loss: float
    lower_bound: float | None
    gap: float | None
    certified: bool
    multipliers: str
    why: str = ""


def _structure(p: ClassProblem):
    return (p.loss, p.K, p.dim, p.constraint, p.nonneg, len(p.compositions))


def _project(x, h, *, sphere, nonneg):
    import jax
    import jax.numpy as jnp

    out = {}
    for key, v in x.items():
        if key == "C":  # prototypes: every row on the features' set (no nonneg: refused by ClassProblem)
            rho = jnp.sqrt(h["rho2"])
            norm = jnp.linalg.norm(v, axis=1, keepdims=True)
            scale = rho / jnp.maximum(norm, 1e-300)
            out[key] = v * (scale if sphere else jnp.minimum(scale, 1.0))
            continue
        if key != "mu":
            out[key] = v
            continue
        rho = jnp.sqrt(h["rho2"])
        if nonneg:
            clipped = jnp.maximum(v, 0.0)
            if sphere:  # a singleton row clipped to 0: the nearest point of sphere and orthant is rho e_argmax
                top = jax.nn.one_hot(jnp.argmax(v, axis=1), v.shape[1], dtype=v.dtype)
                dead = (jnp.max(clipped, axis=1, keepdims=True) <= 0) & (h["n"] < 2)[:, None]
                clipped = jnp.where(dead, top, clipped)
            v = clipped
        norm = jnp.linalg.norm(v, axis=1, keepdims=True)
        scale = jnp.where(norm > rho, rho / jnp.maximum(norm, 1e-300), 1.0)
        if sphere:  # a singleton class has no spread: on the sphere
            scale = jnp.where((h["n"] < 2)[:, None], rho / jnp.maximum(norm, 1e-300), scale)
        out[key] = v * scale
    return out


def _segment_fn(contrastive, sphere, nonneg, chunk=CHUNK):
    """One jitted segment of ``chunk`` iterations for a stack of problems (``vmap`` over the leading axis)."""
    from ufm.classlevel import value

    f = lambda x, h: value(x, h, contrastive=contrastive, sphere=sphere, constant=False)  # noqa: E731
    proj = lambda x, h: _project(x, h, sphere=sphere, nonneg=nonneg)  # noqa: E731
    fg = (lambda x, h: contrastive_value_and_grad(x, h, sphere)) if contrastive else None  # noqa: E731
    return pga_segment(f, proj, chunk=chunk, fg=fg)


def contrastive_value_and_grad(x, h, sphere):
    """``ufm.classlevel.value`` of a contrastive loss without prototypes (``constant=False``) and its gradient in
    ``mu``, by hand: one softmax serves both (automatic differentiation of the log-sum-exp takes about three times
    the value's time, this about 1.5 times). With prototypes (``"C"`` in ``x``) automatic differentiation.

    With ``G`` the class-constant Gram (``G_cc' = <mu_c, mu_c'>``, ``G_cc = a_c``), ``X_o = G / tau + logb_o``,
    ``L_oc = logsumexp_{c' != c} (X_occ' - X_occ)`` and ``f = sum w_oc softplus(L_oc)``: with ``g_oc = w_oc
    sigmoid(L_oc)`` and ``P_oc`` the softmax of ``L_oc``'s terms, ``df/dG_cc' = sum_o g_oc P_occ' / tau`` and
    ``df/dG_cc = -sum_o g_oc / tau`` (``S``), so ``grad = (S_off + S_offᵀ) mu + 2 diag(S_cc da_c/d||mu_c||^2) mu``.

    Args:
      x: ``{"mu": (K, r)}`` (radius 1). h: ``ufm.classlevel.weights`` as arrays. sphere: the sphere's ``a_c``.
    Returns:
      ``(value, {"mu": grad})``.
    """
    import jax
    import jax.numpy as jnp

    from ufm.classlevel import excess_logits, value, within

    if set(x) != {"mu"}:
        return jax.value_and_grad(lambda z: value(z, h, contrastive=True, sphere=sphere, constant=False))(x)
    mu = x["mu"]
    K = mu.shape[0]
    M = mu @ mu.T
    rest = excess_logits(M, within(jnp.diagonal(M), h["n"], h["rho2"], sphere), h)  # -inf off the negatives
    top = jnp.max(rest, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(rest - top)
    tot = jnp.sum(e, axis=-1)
    L = jnp.log(jnp.where(tot > 0, tot, 1.0)) + top[..., 0]
    use = (h["w"] > 0) & (tot > 0)  # an anchor with no negative contributes 0 (softplus(-inf))
    f = jnp.sum(jnp.where(use, h["w"] * jax.nn.softplus(L), 0.0))
    g = jnp.where(use, h["w"] * jax.nn.sigmoid(L), 0.0)  # (O, K)
    P = e / jnp.where(tot > 0, tot, 1.0)[..., None]
    S = jnp.sum(g[..., None] * P, axis=0) / h["tau"]  # off-diagonal: sum_o g_oc P_occ' / tau
    Sd = -jnp.sum(g, axis=0) / h["tau"]  # diagonal (a_c)
    n = h["n"]
    dadm2 = jnp.where(n >= 2, n / (n - 1 + (n < 2)), 1.0) if sphere else jnp.ones_like(n)
    S_off = jnp.where(jnp.eye(K, dtype=bool), 0.0, S)
    grad = (S_off + S_off.T) @ mu + (2 * Sd * dadm2)[:, None] * mu
    return f, {"mu": grad}


def pga_segment(f, proj, grow=CLASS_GROW, chunk=CHUNK, fg=None):
    """A jitted, vmapped segment of ``chunk`` projected accelerated gradient steps (module doc) for the objective
    ``f(x, h)`` and the projection ``proj(x, h)``. The state is ``(x, y, f(x), eta, t)``, one row per problem.

    Args:
      f: the objective ``(x, h) -> scalar``. proj: the projection ``(x, h) -> x``.
      grow: the step's growth after an accepted trial (``solvers.pgd.step.next_eta``).
      chunk: iterations per segment.
      fg: ``(x, h) -> (f, grad)`` (default: ``jax.value_and_grad(f)``).
    Returns:
      ``segment(state, h) -> state``, jitted and vmapped over the leading axis.
    """
    import jax
    import jax.numpy as jnp

    from .pgd.step import SHRINK, armijo_trial, extrapolate, next_eta

    fg = fg or jax.value_and_grad(f)
    tree = jax.tree_util

    def step(state, h):
        # the engine's projected Armijo trial (plain metric: every variable moves by its gradient) from the
        # extrapolated point y; one trial per iteration, the step from next_eta (no cap: the objective without its
        # constant part is exponentially small at small tau, and so are its curvature and its steps' lengths)
        x, y, fx, eta, t = state
        fy, g = fg(y, h)
        w = {k: 1.0 for k in y}
        xn, fn, _, ok = armijo_trial(lambda z: (f(z, h), None), lambda z: proj(z, h), y, fy, g, eta, w)
        ok = jnp.isfinite(fn) & ok
        better = ok & (fn <= fx)
        x_new = tree.tree_map(lambda a, b: jnp.where(better, a, b), xn, x)
        f_new = jnp.where(better, fn, fx)
        y_new, t_new = extrapolate(x_new, x, t, better)  # restart when not better
        y_new = proj(y_new, h)
        eta_new = next_eta(ok, eta, jnp.inf, eta * SHRINK, grow)
        return (x_new, y_new, f_new, eta_new, t_new)

    def segment(state, h):
        def body(s, _):
            return step(s, h), None
        return jax.lax.scan(body, state, None, length=chunk)[0]

    return jax.jit(jax.vmap(segment))


def run_segments(segment, state, h, steps, ftol, chunk=CHUNK):
    """Run ``segment`` (:func:`pga_segment`, ``chunk`` iterations a call) until every problem's objective moved
    less than ``ftol (1 + |f|)`` over a segment (``solvers.pgd.step.small_change``), or ``steps`` iterations.
    Returns ``(state, taken (L,), converged (L,))``."""
    last = np.asarray(state[2])
    L = len(last)
    done, taken = 0, np.zeros(L, dtype=int)
    converged = np.zeros(L, dtype=bool)
    while done < steps:
        state = segment(state, h)
        done += chunk
        fnow = np.asarray(state[2])
        moved = _small_change(fnow, last, ftol)
        taken[moved & ~converged] = done
        converged |= moved
        last = fnow
        if converged.all():
            break
    taken[~converged] = done
    return state, taken, converged


_SEGMENTS: dict = {}


def padded(n: int) -> int:
    """The number of slots for ``n`` live points: the next power of two (a few stack shapes, so few programs)."""
    return 1 << int(n - 1).bit_length()


def _small_change(fn, f, tol):
    from .pgd.step import small_change

    return small_change(fn, f, tol)


def _stack(problems):
    hs = [weights(p) for p in problems]
    return {k: np.stack([np.asarray(h[k], dtype=np.float64) for h in hs]) for k in hs[0]}


def simplex_start(p: ClassProblem) -> dict | None:
    """The vertices of a regular simplex centred at 0 as unit class means ``{"mu": (K, dim)}``, or None where
    that start does not apply: a loss without the contrastive form, the ReLU (``nonneg``: the simplex has negative
    entries), or ``dim < K - 1`` (no room).

    Why: the simplex is the balanced minimum (Graf et al., 2021), and an imbalanced minimum without collapse is a
    deformation of it. A random start in ``dim ~ K`` is close to orthogonal, but its ``O(1 / sqrt(dim))``
    between-class noise is removed only slowly where classes are small (their rows' gradients carry their small
    weights). The coordinates are Helmert's: column ``j`` has ``1 / sqrt(j (j + 1))`` on its first ``j`` rows and
    ``-j / sqrt(j (j + 1))`` on row ``j``, orthonormal columns orthogonal to the ones vector, zero-padded to
    ``dim``.

    Args:
      p: a class-level problem.
    Returns:
      ``{"mu": (K, dim)}`` at radius 1 (with ``"C"``, the prototypes at their class's mean, for a loss that has
      them), or None.
    """
    K, r = p.K, p.dim
    if not objectives.of(p).contrastive or p.nonneg or r < K - 1 or K < 2:
        return None
    j = np.arange(1, K, dtype=np.float64)
    rows = np.arange(K)[:, None]
    H = np.where(rows < j[None, :], 1.0, np.where(rows == j[None, :], -j[None, :], 0.0)) / np.sqrt(j * (j + 1))
    mu = np.zeros((K, r))
    mu[:, :K - 1] = H / np.linalg.norm(H, axis=1, keepdims=True)
    x = {"mu": mu}
    if objectives.of(p).prototypes:  # as in _start
        x["C"] = mu.copy()
    return x


def _solution(xs, j, rho, loss, taken, converged) -> ClassSolution:
    """Row ``j`` of a loop's variables (radius 1) as a :class:`ClassSolution` at radius ``rho``: the means and the
    prototypes scale with ``rho``, the classifier inversely (its logits stay)."""
    def at(key, scale):
        return xs[key][j].astype(np.float64) * scale if key in xs else None

    return ClassSolution(at("mu", rho), at("W", 1 / rho), float(loss), int(taken),
                         "converged" if converged else "max_steps", at("C", rho))


def _start(p: ClassProblem, rng):
    K, r = p.K, p.dim
    mu = rng.standard_normal((K, r))
    if p.nonneg:
        mu = np.abs(mu)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    x = {"mu": mu}
    if objectives.of(p).prototypes:
        # each prototype at its class's mean: BCL's positives are then at their minimum (a_c = X_cc = rho^2 on
        # the sphere), and only the negatives move the point; from apart, the exponentially weak pull of the
        # negatives at small tau must close a flat valley of spread (a_c = X_cc < rho^2) first
        x["C"] = mu.copy()
    if not objectives.of(p).contrastive:
        x["W"] = 0.1 * rng.standard_normal((K, r))
    return x


def solve_classes(problems: Sequence[ClassProblem], *, steps: int = CLASS_STEPS, seed: int | Sequence[int] = 0,
                  ftol: float = 1e-13, starts: Sequence[dict] | None = None) -> list[ClassSolution]:
    """Solve class-level problems (``ufm.ClassProblem`` s), grouped by structure, each group one vmapped loop.

    Args:
      problems: class-level problems.
      steps: most iterations per problem.
      seed: one int, or one per problem (the start: rows of ``mu`` uniform on the sphere, ``W`` small).
      ftol: stop a group when every problem's objective moved less than ``ftol (1 + |f|)`` over a segment
        (``solvers.pgd.step.small_change``).
      starts: optional list of start dicts (``{"mu": ..., "W": ...}`` at radius 1) replacing the random ones.
    Returns:
      :class:`ClassSolution` s, in order.
    """
    import jax
    import jax.numpy as jnp

    problems = list(problems)
    seeds = [seed] * len(problems) if isinstance(seed, (int, np.integer)) else list(seed)
    out: list = [None] * len(problems)
    groups: dict = {}
    for i, p in enumerate(problems):
        groups.setdefault(_structure(p), []).append(i)
    with jax.enable_x64(True):
        for key, idx in groups.items():
            p0 = problems[idx[0]]
            contrastive = objectives.of(p0).contrastive
            sphere = constraints.get(p0.constraint).equality
            fn_key = (contrastive, sphere, p0.nonneg)
            if fn_key not in _SEGMENTS:
                _SEGMENTS[fn_key] = _segment_fn(*fn_key)
            segment = _SEGMENTS[fn_key]
            units = [problems[i].at_unit_radius() for i in idx]
            h = {k: jnp.asarray(v) for k, v in _stack([u for u, _ in units]).items()}
            x0 = [starts[i] if starts is not None else _start(problems[i], np.random.default_rng(seeds[i]))
                  for i in idx]
            x = {k: jnp.asarray(np.stack([s[k] for s in x0])) for k in x0[0]}
            x = jax.vmap(lambda a, b: _project(a, b, sphere=sphere, nonneg=p0.nonneg))(x, h)
            f0 = jax.vmap(lambda a, b: _value(a, b, contrastive, sphere, False))(x, h)
            L = len(idx)
            state = (x, x, f0, jnp.full(L, 1.0), jnp.ones(L))
            state, taken, converged = run_segments(segment, state, h, steps, ftol)
            full = np.asarray(jax.vmap(lambda a, b: _value(a, b, contrastive, sphere))(state[0], h))
            xs = {k: np.asarray(v) for k, v in state[0].items()}
            for j, i in enumerate(idx):
                out[i] = _solution(xs, j, units[j][1], full[j], taken[j], converged[j])
    return out


def solve_chains(problems, chains, *, steps: int = CLASS_STEPS, seed=0, ftol: float = 1e-13,
                 warm: bool = False, starts=None, dtype=np.float64, chunk: int | None = None,
                 slots: int | None = None, start: str = "random") -> list[ClassSolution]:
    """Solve class-level problems along chains, one vmapped slot per chain, a slot taking the next point of its
    chain as soon as its point has converged; with ``warm`` each point starts from the previous point's solution.

    Without ``warm`` every point starts as in :func:`solve_classes` (``seed``) and takes the same steps; what
    changes is that no point waits for the slowest of the batch. ``warm`` saves steps between neighbours (about
    80 a point against 300 on a K = 100 long-tail grid of 100 axis values), each point with the step size and
    momentum of a fresh start; a symmetric optimum (classes merged) is a stationary point of the next problem too,
    so a warm start can stop there, which the certificates would reject (the caller solves such a point again
    from cold starts).

    One vmapped loop holds one *slot* per chain; after every segment a slot whose point has converged (the
    stop rule of :func:`solve_classes`, per point) hands its solution to the next point of its chain and goes on
    from it, with the momentum restarted. No slot waits for the slowest point of the batch, and the memory is
    that of ``len(chains)`` points whatever the number of points. The first point of a chain starts as in
    :func:`solve_classes` (``seed``). As chains end, the loop is compacted to its live slots, padded to a power
    of two (few programs). Every problem must have the same structure (loss, K, dim, constraint,
    nonneg, compositions) and radius.

    Args:
      problems: class-level problems.
      chains: lists of indices into ``problems``, together each index once; a chain is solved in its order.
      steps: most iterations per point. seed: the starts (one int). ftol: as in :func:`solve_classes`.
      warm: start each point after the first of a chain from the previous point's solution.
      starts: optional, one start dict (``{"mu": ...}`` at radius 1, as :func:`solve_classes`) or None per
        problem, replacing the random start of a point that starts cold (the bisection: a neighbour's solution).
      dtype: the loop's floating type (the solutions' values are float64 whatever it is).
      chunk: iterations between two reads of the stop rule (default ``WARM_CHUNK`` with ``warm`` or ``starts``,
        where a cold-started point's test spans two segments, else ``CHUNK``).
      slots: the loop's slots, at least one per chain (more: idle, so that calls with different numbers of chains
        share one compiled program).
      start: how a point without a start of its own starts cold: ``"random"`` (``seed``, as :func:`solve_classes`)
        or ``"simplex"`` (:func:`simplex_start` where it applies, else random).
    Returns:
      :class:`ClassSolution` s, in the order of ``problems``.
    """
    import jax

    if start not in ("random", "simplex"):
        raise ValueError(f"start: 'random' or 'simplex', not {start!r}")
    problems = list(problems)
    chains = [list(c) for c in chains if len(c)]
    if sorted(i for c in chains for i in c) != list(range(len(problems))):
        raise ValueError("chains: every problem index exactly once")
    p0 = problems[chains[0][0]]
    if any(_structure(p) != _structure(p0) or p.radius != p0.radius for p in problems):
        raise ValueError("problems: solve_chains needs one structure and one radius")
    contrastive = objectives.of(p0).contrastive
    sphere = constraints.get(p0.constraint).equality
    n_chains = len(chains)
    near = warm or starts is not None
    chunk = chunk or (WARM_CHUNK if near else CHUNK)
    fn_key = (contrastive, sphere, p0.nonneg, chunk)
    out: list = [None] * len(problems)
    with jax.enable_x64(True):
        if fn_key not in _SEGMENTS:
            _SEGMENTS[fn_key] = _segment_fn(*fn_key)
        segment = _SEGMENTS[fn_key]
        proj, val, full = _helpers(contrastive, sphere, p0.nonneg)
        rho = p0.at_unit_radius()[1]
        hs = [weights(p.at_unit_radius()[0]) for p in problems]
        if slots is not None and slots > len(chains):  # idle slots (copies of the first chain, never live)
            chains = chains + [chains[0]] * (slots - len(chains))
        L = len(chains)
        pos = [0] * L  # the position of each slot in its chain
        H = {k: np.stack([np.asarray(hs[c[0]][k], dtype=np.float64) for c in chains]) for k in hs[0]}
        simplex = simplex_start(p0) if start == "simplex" else None  # one structure: one simplex for every point

        def first(i):
            if starts is not None and starts[i] is not None:
                return starts[i]
            if simplex is not None:  # read only (stacked or copied into the slots)
                return simplex
            return _start(problems[i], np.random.default_rng(seed))

        x0 = [first(c[0]) for c in chains]
        x = {k: np.stack([s[k] for s in x0]).astype(dtype) for k in x0[0]}
        taken = np.zeros(L, dtype=int)
        last = np.full(L, np.nan)
        live = np.arange(L) < n_chains
        # the segments a slot's point's stop test spans: a cold start two at the short chunk (the objective's
        # change over about CHUNK steps: a plateau to cross), a neighbour's solution one
        def needs(i, follows):
            return 1 if follows or (starts is not None and starts[i] is not None) or not near else 2

        need = np.array([needs(c[0], False) for c in chains])
        before = np.full(L, np.nan)  # the objective two segments ago
        # the loop's state lives in NumPy between segments (every change below is NumPy's: a JAX operation
        # outside a jitted program would be compiled again for every new stack shape)
        host = lambda tree: jax.tree_util.tree_map(np.asarray, tree)  # noqa: E731
        h = {k: v.astype(dtype) for k, v in H.items()}
        xp = host(proj(x, h))
        state = (xp, xp, host(val(xp, h)), np.full(L, 1.0, dtype), np.ones(L, dtype))
        while live.any():
            if live.sum() <= len(live) // 2:  # compact: the live slots, padded to a power of two (few programs)
                keep = np.flatnonzero(live)
                size = padded(len(keep))
                idx = np.concatenate([keep, np.full(size - len(keep), keep[0])])
                chains, pos = [chains[i] for i in idx], [pos[i] for i in idx]
                H = {k: v[idx] for k, v in H.items()}
                taken, last, need, before = taken[idx], last[idx], need[idx], before[idx]
                live = np.arange(size) < len(keep)
                state = jax.tree_util.tree_map(lambda a: a[idx], state)
                h = {k: v.astype(dtype) for k, v in H.items()}
                L = size
            state = host(segment(state, h))
            taken[live] += chunk
            fnow = state[2]
            moved = _small_change(fnow, np.where(need == 2, before, last), ftol)  # over the last `need` segments
            before, last = last, fnow.copy()
            finished = live & (moved | (taken >= steps))
            if not finished.any():
                continue
            xs = {k: np.array(v) for k, v in state[0].items()}
            fv = np.asarray(full({k: v.astype(np.float64) for k, v in xs.items()}, H))
            t, eta = np.array(state[4]), np.array(state[3])
            fresh = np.zeros(L, dtype=bool)
            for s in np.flatnonzero(finished):
                i = chains[s][pos[s]]
                out[i] = _solution(xs, s, rho, fv[s], taken[s], moved[s])
                pos[s] += 1
                if pos[s] == len(chains[s]):
                    live[s] = False  # the slot idles (its rows stay, unchanged) until every chain is done
                    continue
                nxt = chains[s][pos[s]]
                for k in H:
                    H[k][s] = hs[nxt][k]
                # a fresh start's step and momentum: a step carried over from the previous point can sit where
                # every trial fails, and the point then stops where it starts
                taken[s], last[s], before[s], t[s], eta[s], fresh[s] = 0, np.nan, np.nan, 1.0, 1.0, True
                need[s] = needs(nxt, warm)
                if not warm:  # the point's own start, as solve_classes would give it
                    x0 = first(nxt)
                    for k in xs:
                        xs[k][s] = x0[k]
            if not fresh.any():
                continue
            # the refilled slots start at their chain's last solution; the others go on unchanged
            h = {k: v.astype(dtype) for k, v in H.items()}
            xs = {k: v.astype(dtype) for k, v in xs.items()}
            xp = host(proj(xs, h))
            fp = host(val(xp, h))
            pick = lambda a, b: np.where(fresh.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)  # noqa: E731
            state = ({k: pick(xp[k], state[0][k]) for k in xp}, {k: pick(xp[k], state[1][k]) for k in xp},
                     pick(fp, state[2]), eta.astype(dtype), t.astype(dtype))
    return out


_HELPERS: dict = {}


def _helpers(contrastive, sphere, nonneg):
    """Jitted, vmapped projection, objective and full value (one program per stack shape, made once per
    process: a new jitted function per call would be traced and compiled again each time)."""
    import jax

    key = (contrastive, sphere, nonneg)
    if key not in _HELPERS:
        _HELPERS[key] = (jax.jit(jax.vmap(lambda a, b: _project(a, b, sphere=sphere, nonneg=nonneg))),
                         jax.jit(jax.vmap(lambda a, b: _value(a, b, contrastive, sphere, False))),
                         jax.jit(jax.vmap(lambda a, b: _value(a, b, contrastive, sphere))))
    return _HELPERS[key]


def _value(x, h, contrastive, sphere, constant=True):
    from ufm.classlevel import value

    return value(x, h, contrastive=contrastive, sphere=sphere, constant=constant)


def loss_of(problem: ClassProblem, x) -> float:
    """The class-level objective at ``x`` (``{"mu": ..., "W": ...}`` at the problem's radius), float64."""
    import jax
    import jax.numpy as jnp

    unit, rho = problem.at_unit_radius()
    with jax.enable_x64(True):
        xu = {"mu": jnp.asarray(np.asarray(x["mu"]) / rho)}
        if x.get("W") is not None:
            xu["W"] = jnp.asarray(np.asarray(x["W"]) * rho)
        if x.get("C") is not None:
            xu["C"] = jnp.asarray(np.asarray(x["C"]) / rho)
        h = {k: jnp.asarray(v) for k, v in weights(unit).items()}
        return float(_value(xu, h, objectives.of(problem).contrastive, constraints.get(problem.constraint).equality))


def _bound(unit: ClassProblem, sol: ClassSolution, rho: float, optimal: bool):
    from . import dual

    d, a, M = block_gram(sol.mu / rho, unit)
    if objectives.of(unit).prototypes:
        assert sol.C is not None  # a solution of a loss with prototypes carries them
        C = sol.C / rho
        return dual.bcl_class_bound(unit, d, a, M, (sol.mu / rho) @ C.T, C @ C.T, optimal_multipliers=optimal)
    if objectives.of(unit).contrastive:
        return dual.sc_class_bound(unit, unit.compositions, d, a, M, optimal_multipliers=optimal)
    assert sol.W is not None  # a CE solution carries its classifier
    C = (sol.mu / rho) @ (sol.W * rho).T
    return dual.ce_class_bound(unit, d, a, M, C, sol.loss, optimal_multipliers=optimal)


def certify_classes(problems: Sequence[ClassProblem], solutions: Sequence[ClassSolution], *,
                    tol: float = 1e-6, optimal_max_k: int | None = None) -> list[ClassCertificate]:
    """Proved lower bounds for class-level solutions (module doc), one per problem.

    Args:
      problems: class-level problems. solutions: their :class:`ClassSolution` s.
      tol: relative tolerance of ``certified``.
      optimal_max_k: try the optimal multipliers (module doc) only up to this many classes (their program's
        time and memory grow about like ``K^4``: 3 s and 250 MiB at K = 32, 30 s and 1.5 GiB at K = 100; None:
        ``OPTIMAL_MAX_K``).
    Returns:
      :class:`ClassCertificate` s, in order.
    """
    out = []
    for p, s in zip(problems, solutions):
        unit, rho = p.at_unit_radius()
        best, how = None, "candidate"
        for optimal in (False, True):
            if optimal and p.K > (OPTIMAL_MAX_K if optimal_max_k is None else optimal_max_k):
                break
            b = _bound(unit, s, rho, optimal)
            if b.lower_bound is not None and (best is None or b.lower_bound > best.lower_bound):
                best, how = b, "optimal" if optimal else "candidate"
            if best is not None and s.loss - best.lower_bound <= tol * max(1.0, abs(s.loss)):
                break
        if best is None:
            out.append(ClassCertificate(s.loss, None, None, False, how, b.why))
            continue
        gap = s.loss - best.lower_bound
        out.append(ClassCertificate(s.loss, best.lower_bound, gap, bool(gap <= tol * max(1.0, abs(s.loss))), how))
    return out
