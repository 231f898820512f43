"""Certified phase diagrams over the imbalance ratio ``R`` and the temperature (or, for CE, the weight decay), on
the class-level problem (``ufm.classlevel``): class sizes are real, so ``R`` varies continuously and a point costs
the same for any number of samples.

:func:`phase` solves and certifies a whole grid (one vmapped loop per structure; ``solvers.classlevel``), reads the
geometry of every point from its class means (mean cosines between minority classes ``min_min``, majority classes
``maj_maj``, and across ``maj_min``; ``delta_gm``), and finds two boundaries per axis value by bisection on
continuous ``R`` (all axis values at once):

* ``attraction``: the ``R`` at which ``min_min`` crosses 0 (from below: minority classes start to attract);
* ``collapse``: the ``R`` at which ``min_min`` reaches ``COLLAPSE`` (the minority classes merge).

Each is bracketed by the first grid point at which it has happened and the last point before it still below the
level, both certified (None when it does not happen in the range), and bisected in ``log R`` to ``rtol``
relative; ``certified`` says whether every point the bisection solved was certified too. Attraction needs
``min_min`` to go from below ``-ZERO`` to above ``ZERO``, so an orthogonal frame (``min_min = 0`` at every
``R``) has no attraction boundary.

Two paths compute a point (``method`` in the result): ``"reduced"`` (``ufm.reduced``, ``solvers.reduced``: classes of
equal size are exchangeable, so a point is ``G`` rows of ``G + 1`` numbers whatever ``K``; taken when the profile
has fewer groups of equal size than classes, without ``nonneg`` and with ``dim >= K``; SC, ``bcl-avg``, CE and BCL
with its class prototypes) and ``"class-level"`` (``K`` class means; every other case). Both prove the same
class-level minimum. The geometry is read from the class means only; on the reduced path ``rank`` counts CE's
classifier rows and BCL's prototypes too (the dimension the point needs).

On the class-level path the grid is solved in chains, one vmapped slot per ratio taking the next axis value as
soon as its point has converged (no point waits for the slowest of the grid); with ``warm`` (the default) each
point after the first of its chain starts from the previous axis value's solution, a neighbouring problem (a
fraction of a cold start's steps); a warm start can stop at a symmetric stationary point (classes merged), which
the certificate rejects and the retries below solve again from cold starts. Points that do not certify
with the first start are solved again: first by going on from the solution (on the reduced path with its small
spreads set to 0, then from the solution itself for ``CONTINUE`` times the steps; on the class-level path with a
stricter stop test, its certificate trying the optimal multipliers only up to ``OPTIMAL_MAX_K`` classes), then
from other starts, ``RETRIES`` tries in all, keeping the lowest
loss; a point that still does not certify is reported with ``certified = False``.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ufm import geometry, imbalance
from ufm.classlevel import ClassProblem
from ufm.defaults import CLASS_STEPS
from ufm.specs import PhaseSpec

__all__ = ["phase", "grid_problem", "grid_group_problem", "choose_path", "check_points", "boundary", "COLLAPSE",
           "ZERO", "RETRIES", "OPTIMAL_MAX_K", "ARRAYS", "MAX_GROUPS", "memory_bytes", "PhaseSpec", "OUTPUTS",
           "BLAS_THREADS"]

# the files a run with ``out`` writes: phase.json and, with figures, each figure as PNG and PDF
OUTPUTS = ("phase.json",) + tuple(f"phase_{name}.{ext}" for name in ("diagram", "delta_gm", "cosines", "gap")
                                  for ext in ("png", "pdf"))

COLLAPSE = 0.99
ZERO = 1e-6
RETRIES = 3
ARRAYS = ("loss", "lower_bound", "certified", "min_min", "maj_maj", "maj_min", "delta_gm", "rank")
MAX_GROUPS = 64  # the reduced path's G x G blocks stay small
CONTINUE = 25  # the reduced path's first retry goes on from the solution for this many times the steps
# the class-level path tries the optimal multipliers (solvers.classlevel.certify_classes) only up to this K: their
# program's memory (about 460 MiB at K = 64, 1.5 GiB at K = 100) would be no part of memory_bytes; a point
# the candidate multipliers do not certify goes on from its solution instead (_ClassPath.resume)
OPTIMAL_MAX_K = 48
# the class-level path's chains start cold from the regular simplex where it applies (solvers.classlevel.
# simplex_start; the seed draws the retries' starts): on the long-tail point K = 1,000, R = 30, tau = 0.1 the
# candidate multipliers certified it after 250 steps from the simplex against 450 from a random start
START = "simplex"
SNAP = 0.5  # ... after trying the solution with the spreads below this (radius 1) set to 0
# BLAS threads while a diagram runs: JAX's own thread pool runs the solver beside NumPy/SciPy's BLAS, and with
# OpenBLAS's default (one thread per core) the two pools contend: on a 2-core machine the certificate's K = 100
# eigenvalue work and the rank's SVD ran about 6 and 10 times slower than with one BLAS thread (docs/phase.md)
BLAS_THREADS = 1
RANK_TOL = 1e-6  # relative to the radius: the rank reported (the solver's accuracy, not the rounding)
MAX_BISECTIONS = 200  # rounds of a boundary's bisection; 64 already reach adjacent float64s from any bracket


def _family(spec: PhaseSpec | dict) -> dict:
    """The family dict of a ``PhaseSpec`` (``PhaseSpec.family``), or the dict itself."""
    return spec.family() if isinstance(spec, PhaseSpec) else spec


def grid_problem(spec: PhaseSpec | dict, R: float, value: float) -> ClassProblem:
    """The class-level problem of one point: ``spec`` is a ``PhaseSpec`` or its family dict
    (``PhaseSpec.family``: ``loss``, ``nonneg``, ``classes``, ``imbalance``, ``n_min``, ``minority_fraction``,
    ``dim``, ``radius`` and ``axis``, ``"tau"`` or ``"weight_decay"``, whose value is ``value``)."""
    spec = _family(spec)
    counts = imbalance.class_sizes(spec["imbalance"], spec["classes"], spec["n_min"], R, spec["minority_fraction"])
    extra: dict[str, Any] = {"tau": value} if spec["axis"] == "tau" else {"weight_decay": value}
    return ClassProblem(counts=counts, loss=spec["loss"], dim=spec["dim"], nonneg=spec["nonneg"],
                        constraint=spec.get("constraint", "sphere"), radius=spec.get("radius", 1.0), **extra)


def grid_group_problem(spec: PhaseSpec | dict, R: float, value: float):
    """The reduced problem (``ufm.reduced.GroupProblem``) of one point, built without forming ``K`` sizes."""
    from ufm.reduced import GroupProblem

    spec = _family(spec)
    sizes, classes = imbalance.group_sizes(spec["imbalance"], spec["classes"], spec["n_min"], R,
                                           spec["minority_fraction"])
    extra: dict[str, Any] = {"tau": value} if spec["axis"] == "tau" else {"weight_decay": value}
    return GroupProblem(sizes=sizes, classes=classes, loss=spec["loss"], dim=spec["dim"],
                        constraint=spec.get("constraint", "sphere"), radius=spec.get("radius", 1.0), **extra)


def choose_path(spec: PhaseSpec | dict) -> str:
    """``"reduced"`` or ``"class-level"`` (module doc)."""
    from ufm.reduced import supported

    spec = _family(spec)
    _, classes = imbalance.group_sizes(spec["imbalance"], spec["classes"], spec["n_min"], 1.0,
                                       spec["minority_fraction"])
    if (supported(spec["loss"], spec["nonneg"]) and len(classes) < spec["classes"] and len(classes) <= MAX_GROUPS
            and spec["dim"] >= spec["classes"]):
        return "reduced"
    return "class-level"


BASE_BYTES = 400 * 2 ** 20  # the process before the first point: Python, NumPy, JAX, SciPy, cvxpy


def memory_bytes(spec: PhaseSpec | dict, n_ratios: int, n_values: int) -> int:
    """An estimate of the peak resident memory of :func:`phase` on the class-level path, in bytes: the process
    (``BASE_BYTES``), the class means kept for every point (``points x K x dim`` floats, twice: the solutions and
    the arrays built from them), and the vmapped loop's working set, one slot per ratio (the chains) or per point
    (a cold grid, the retries), each holding about 24 ``K x K`` and 12 ``K x dim`` float64 arrays (weights, Gram,
    softmax, gradients, iterates and their momentum, the jitted program's temporaries)."""
    spec = _family(spec)
    K, d = spec["classes"], spec["dim"]
    points = n_ratios * n_values
    slots = n_ratios
    return int(BASE_BYTES + 8 * (2 * points * K * d + slots * (24 * K * K + 12 * K * d)))


def _geometry(mu, majority):
    cos = geometry.mean_cosines(mu, np.arange(len(mu)))
    groups = geometry.cosine_groups(cos, majority)
    # Kini et al.'s delta_gm of the collapsed rows z_i = mu_{y_i}, normalised (as their network's outputs)
    return {**groups, "delta_gm": geometry.delta_gm(geometry.normalize_rows(mu), np.arange(len(mu)))}


class _ClassPath:
    """The class-level path: ``K`` class means per point."""

    name = "class-level"

    def __init__(self, spec):
        self.spec = spec
        self.majority = imbalance.majority_classes(spec["classes"], spec["minority_fraction"])

    def problem(self, R, v):
        return grid_problem(self.spec, R, v)

    def solve(self, problems, seed, steps, pad=None, chains=None, warm=False, starts=None):
        from solvers.classlevel import solve_chains, solve_classes

        if starts is not None:  # one point per slot, each from its own start (the boundary bisection), the
            # slots padded to `pad` (the number of axis values, as many as the grid's chains): the rounds share
            # the grid's programs
            return solve_chains(problems, [[i] for i in range(len(problems))], seed=seed, steps=steps,
                                starts=starts, slots=pad)
        if chains is not None:
            return solve_chains(problems, chains, seed=seed, steps=steps, warm=warm, start=START)
        return solve_classes(problems, seed=seed, steps=steps)

    def start_of(self, problem, sol):
        """The solution ``sol`` as a start (radius 1) for a neighbouring point ``problem``."""
        rho = problem.radius
        x = {"mu": sol.mu / rho}
        if sol.W is not None:
            x["W"] = sol.W * rho
        if sol.C is not None:
            x["C"] = sol.C / rho
        return x

    def resume(self, problems, sols, steps, pad=None, tol=1e-6):
        """Go on from ``sols`` with a stricter stop test (``ftol = 1e-15``) for ``steps``, one slot a point: a
        point stopped short (a slow stretch read as convergence) gets closer to its minimum."""
        from solvers.classlevel import CHUNK, padded, solve_chains

        out = solve_chains(problems, [[i] for i in range(len(problems))], steps=steps, ftol=1e-15, chunk=CHUNK,
                           starts=[self.start_of(p, s) for p, s in zip(problems, sols)], slots=padded(len(problems)))
        return [o if o.loss <= s.loss else s for o, s in zip(out, sols)]

    def certify(self, problems, sols, tol):
        from solvers.classlevel import certify_classes

        return certify_classes(problems, sols, tol=tol, optimal_max_k=OPTIMAL_MAX_K)

    def geometry(self, problems, sols):
        out = []
        for p, s in zip(problems, sols):
            rank = int(np.linalg.matrix_rank(s.mu, tol=RANK_TOL * p.radius))
            out.append({**_geometry(s.mu, self.majority), "rank": rank})
        return out


class _ReducedPath:
    """The reduced path: ``G`` group rows per point (``ufm.reduced``)."""

    name = "reduced"

    def __init__(self, spec):
        self.spec = spec
        maj = imbalance.majority_classes(spec["classes"], spec["minority_fraction"])
        _, classes = imbalance.group_sizes(spec["imbalance"], spec["classes"], spec["n_min"], 1.0,
                                           spec["minority_fraction"])
        first = np.concatenate([[0], np.cumsum(classes)[:-1]]).astype(int)
        self.majority = []
        for f, s in zip(first, classes):
            flags = set(maj[f:f + s])
            if len(flags) != 1:
                raise ValueError("minority_fraction: a group of equal-size classes mixes majorities and minorities")
            self.majority.append(flags.pop())

    def problem(self, R, v):
        return grid_group_problem(self.spec, R, v)

    def solve(self, problems, seed, steps, pad=None, chains=None):
        from solvers.reduced import solve_groups

        return solve_groups(problems, seed=seed, steps=steps, pad_to=pad)

    def resume(self, problems, sols, steps, pad=None, tol=1e-6):
        """Go on from ``sols``: first with the spreads of nearly collapsed groups (``|t_g| < SNAP``) set to 0 (a
        slow descent near minority collapse, where the spread closes sublinearly, often ends there), for
        ``steps``; the points that still do not certify go on from where they were for ``CONTINUE * steps``."""
        from solvers.reduced import solve_groups, start_of

        starts = [start_of(p, s) for p, s in zip(problems, sols)]
        snapped = []
        for x in starts:
            near = np.abs(x["t"]) < SNAP
            y = {**x, "t": np.where(near, 0.0, x["t"])}
            if "r" in x:
                y["r"] = np.where(near, 0.0, x["r"])
            snapped.append(y)
        out = solve_groups(problems, steps=steps, pad_to=pad, starts=snapped)
        certs = self.certify(problems, out, tol)
        todo = [i for i, c in enumerate(certs) if not c.certified]
        if todo:
            more = solve_groups([problems[i] for i in todo], steps=CONTINUE * steps, pad_to=pad, ftol=1e-14,
                                starts=[starts[i] for i in todo])
            for j, i in enumerate(todo):
                if more[j].loss < out[i].loss:
                    out[i] = more[j]
        return out

    def certify(self, problems, sols, tol):
        from solvers.reduced import certify_groups

        return certify_groups(problems, sols, tol=tol)

    def geometry(self, problems, sols):
        from ufm import constraints, objectives, reduced

        if not problems:
            return []
        p0 = problems[0]
        m = np.stack([s.m for s in sols])
        t = np.stack([s.t for s in sols])
        gr = reduced.stack_gram(m, t, reduced.stack_weights(problems), constraints.get(p0.constraint).equality)
        rows = sols[0].u is not None  # CE's classifier or BCL's prototypes: the rank counts them too
        u = np.stack([s.u for s in sols]) if rows else None
        r = np.stack([s.r for s in sols]) if rows else None
        fill = reduced.prototype_fill(u, r, p0, RANK_TOL) if rows and objectives.of(p0).prototypes else None
        geo = {**reduced.cosine_groups(gr, p0.classes, self.majority), "delta_gm": reduced.delta_gm(gr, p0.classes),
               "rank": reduced.rank(m, t, p0.classes, p0.radius, RANK_TOL, u, r, fill)}
        return [{k: (None if isinstance(v[i], float) and math.isnan(v[i]) else v[i].item()) for k, v in geo.items()}
                for i in range(len(problems))]


def _path(spec):
    spec = _family(spec)
    return _ReducedPath(spec) if choose_path(spec) == "reduced" else _ClassPath(spec)


def _solve(path, problems, seed, tol, steps, pad=None, chains=None, warm=False, starts=None):
    if starts is not None:
        sols = path.solve(problems, seed, steps, pad, starts=starts)
    else:
        sols = path.solve(problems, seed, steps, pad, chains, warm) if chains is not None else \
            path.solve(problems, seed, steps, pad)
    certs = path.certify(problems, sols, tol)
    for retry in range(1, RETRIES + 1):
        todo = [i for i, c in enumerate(certs) if not c.certified]
        if not todo:
            break
        sub = [problems[i] for i in todo]
        if retry == 1 and hasattr(path, "resume"):  # first go on from where the solver stopped
            more = path.resume(sub, [sols[i] for i in todo], steps, pad, tol)
        else:
            more = path.solve(sub, [seed + 7919 * retry + i for i in todo], steps, pad)
        more_c = path.certify(sub, more, tol)
        for j, i in enumerate(todo):
            if more[j].loss < sols[i].loss or (more_c[j].certified and not certs[i].certified):
                sols[i], certs[i] = more[j], more_c[j]
    return sols, certs


def boundary(spec, values, brackets, level, *, seed=0, tol=1e-6, rtol=1e-3, steps=CLASS_STEPS, path=None,
             starts=None):
    """Bisect ``min_min(R) = level`` in ``log R`` inside each bracket ``(lo, hi)`` (None: no boundary), all axis
    values at once. Returns ``(Rs, proved)``: one ``R`` (or None) per value, the end of the final bracket at which
    the level is reached (:func:`_reached`), within ``rtol`` relative of the other end (or the next float64 to
    it, when ``rtol`` is finer than float64 resolves; at most ``MAX_BISECTIONS`` rounds); and whether every point
    the bisection solved was certified. Every round's stack is padded to the number of axis values, so the
    rounds reuse one compiled program. ``starts`` (the class-level path): one solution per axis value at an end of
    its bracket (or None); each midpoint starts from the latest solution at its axis value (the previous round's
    midpoint, first that end), always an end of its bracket: a nearby problem, so fewer steps than a cold start
    (a midpoint that does not certify is solved again from cold starts)."""
    path = path or _path(spec)
    lo = [b[0] if b else None for b in brackets]
    hi = [b[1] if b else None for b in brackets]
    proved = [True] * len(values)
    active = [i for i, b in enumerate(brackets) if b]
    for _ in range(MAX_BISECTIONS):
        mids = {i: math.sqrt(lo[i] * hi[i]) for i in active}
        # done: within rtol, or no float64 left strictly between the ends (an rtol below the spacing of floats)
        active = [i for i in active if hi[i] / lo[i] - 1 > rtol and lo[i] < mids[i] < hi[i]]
        if not active:
            break
        probs = [path.problem(mids[i], values[i]) for i in active]
        warm = starts is not None and hasattr(path, "start_of") and all(starts[i] is not None for i in active)
        sols, certs = _solve(path, probs, seed, tol, steps, pad=len(values),
                             starts=[path.start_of(p, starts[i]) for p, i in zip(probs, active)] if warm else None)
        if starts is not None:
            for i, sol in zip(active, sols):
                starts[i] = sol
        for i, geo, c in zip(active, path.geometry(probs, sols), certs):
            proved[i] = proved[i] and bool(c.certified)
            if _reached(geo["min_min"], level):
                hi[i] = mids[i]
            else:
                lo[i] = mids[i]
    return [hi[i] if brackets[i] else None for i in range(len(values))], proved


def _reached(x, level):
    """Whether ``min_min = x`` has reached ``level``: ``x >= level``; for the level 0 (attraction), ``x > ZERO``
    (an orthogonal pair, cosine 0 to rounding, does not attract)."""
    if x is None:
        return False
    return x > ZERO if level == 0 else x >= level


def _below(x, level):
    """Whether ``x`` lies strictly below ``level`` (for 0: ``x < -ZERO``)."""
    return x is not None and (x < -ZERO if level == 0 else x < level)


def _brackets(ratios, row, level, certified):
    """``(R_i, R_j)``: the first grid ratio ``R_j`` at which ``min_min`` has reached ``level`` after lying
    strictly below it, and the last ratio before it that lies strictly below (points between, within ``ZERO``
    of the level 0, are neither), both certified; None when there is no such pair."""
    last_below = None
    for j, x in enumerate(row):
        if _reached(x, level) and last_below is not None:
            return (ratios[last_below], ratios[j]) if certified[last_below] and certified[j] else None
        if _below(x, level):
            last_below = j
    return None


def check_points(spec: PhaseSpec) -> None:
    """Build the grid's corner points (first and last ratio x first and last axis value) on the path the run
    takes, so that a family no point of which is a valid problem (a class size below 2, a temperature too small
    for the float64 loss) raises its ``ValueError`` before any work."""
    make = grid_group_problem if choose_path(spec) == "reduced" else grid_problem
    for R in (spec.ratios[0], spec.ratios[-1]):
        for v in (spec.values[0], spec.values[-1]):
            make(spec, R, v)


def _check_options(seed, tol, rtol, steps):
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"seed: must be an integer in 0..2^32-1, got {seed!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol: must lie in (0, 1), got {rtol!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: must be an integer >= 1, got {steps!r}")


def phase(spec: PhaseSpec | dict, ratios=None, values=None, *, seed: int = 0, tol: float = 1e-6, rtol: float = 1e-3,
          steps: int = CLASS_STEPS, progress=None, warm: bool = True, out: str | None = None,
          figures: bool = True) -> dict:
    """Solve, certify and measure the grid ``values x ratios``; find the boundaries (``ufm phase``).

    Args:
      spec: the problem family and its grid (a ``ufm.specs.PhaseSpec``; the family dict of older calls, with
        ``ratios`` and ``values``, is converted and validated).
      ratios: with a dict ``spec`` only: increasing imbalance ratios ``R >= 1``.
      values: with a dict ``spec`` only: the axis values (temperatures or weight decays).
      seed: the starts.
      tol: relative tolerance of ``certified``.
      rtol: relative accuracy of the boundaries, in (0, 1).
      steps: most iterations per point.
      progress: an optional callable ``(message)``.
      warm: on the class-level path, start each point of a chain from the previous axis value's solution
        (``solvers.classlevel.solve_chains``; module doc; False: every point from its own cold start); the
        certificates decide either way.
      out: a folder to write ``phase.json`` (and, with ``figures``, the figures and their CSVs) into; None: write
        nothing.
      figures: with ``out``, draw the figures (``solvers.workflows.phase_figures.draw_phase``).
    Returns:
      the ``phase.json`` dict: ``ratios``, ``taus`` (or ``weight_decays``), the 2-D arrays ``ARRAYS`` indexed
      ``[value][ratio]`` (``loss`` is the array of values; the loss's name is ``loss_type``), ``boundaries``, how
      it was made (``seconds``, ``points``, ``tol``, ``method``) and ``versions``.
    Raises:
      ValueError: a bad field of ``spec`` or a bad option, naming it (before any work).
    """
    if isinstance(spec, PhaseSpec):
        if ratios is not None or values is not None:
            raise ValueError("ratios: a PhaseSpec carries its grid; give ratios and values inside it")
        record = spec
    else:
        record = PhaseSpec.from_dict(spec, ratios, values)
    _check_options(seed, tol, rtol, steps)
    check_points(record)
    if out is not None:
        from ufm import runs

        with runs.open_run(out, "ufm phase", OUTPUTS, flag="out"):
            result = _phase(record, seed=seed, tol=tol, rtol=rtol, steps=steps, progress=progress, warm=warm)
            _write(result, out, figures)
        return result
    return _phase(record, seed=seed, tol=tol, rtol=rtol, steps=steps, progress=progress, warm=warm)


def _write(result: dict, out: str, figures: bool) -> None:
    import os

    from ufm.records import write_json

    write_json(os.path.join(out, "phase.json"), result)
    if figures:
        from .phase_figures import draw_phase

        draw_phase(result, out)


def _phase(record: PhaseSpec, *, seed, tol, rtol, steps, progress, warm) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        return _run(record, seed=seed, tol=tol, rtol=rtol, steps=steps, progress=progress, warm=warm)


def _run(record: PhaseSpec, *, seed, tol, rtol, steps, progress, warm) -> dict:
    from ufm.records import versions

    spec = record.family()
    ratios, values = list(record.ratios), list(record.values)
    start = time.perf_counter()
    ratios, values = [float(r) for r in ratios], [float(v) for v in values]
    say = progress or (lambda message: None)
    path = _path(spec)
    problems = [path.problem(R, v) for v in values for R in ratios]
    say(f"solving {len(problems)} points ({path.name} path)")
    m = len(ratios)
    chains = [[i * m + j for i in range(len(values))] for j in range(m)] if path.name == "class-level" else None
    sols, certs = _solve(path, problems, seed, tol, steps, chains=chains, warm=warm)
    arrays: dict[str, list[list[Any]]] = {k: [[None] * m for _ in values] for k in ARRAYS}
    for idx, (s, c, geo) in enumerate(zip(sols, certs, path.geometry(problems, sols))):
        i, j = divmod(idx, m)
        arrays["loss"][i][j] = s.loss
        arrays["lower_bound"][i][j] = c.lower_bound
        # a loss the class means cannot reach in `dim` dimensions is not this problem's minimum
        arrays["certified"][i][j] = bool(c.certified) and geo["rank"] <= spec["dim"]
        for k in ("min_min", "maj_maj", "maj_min", "delta_gm", "rank"):
            arrays[k][i][j] = geo[k]
    solved = time.perf_counter() - start
    key = "tau" if spec["axis"] == "tau" else "weight_decay"
    bounds = {}
    for name, level in (("attraction", 0.0), ("collapse", COLLAPSE)):
        say(f"bisecting the {name} boundary")
        brackets = [_brackets(ratios, arrays["min_min"][i], level, arrays["certified"][i])
                    for i in range(len(values))]
        ends = [sols[i * m + ratios.index(b[0])] if b else None for i, b in enumerate(brackets)]
        Rs, proved = boundary(spec, values, brackets, level, seed=seed, tol=tol, rtol=rtol, steps=steps, path=path,
                              starts=ends if hasattr(path, "start_of") else None)
        bounds[name] = [{key: v, "R": R, "certified": bool(ok) if R is not None else None}
                        for v, R, ok in zip(values, Rs, proved)]
    axis_name = "taus" if spec["axis"] == "tau" else "weight_decays"
    return {"loss_type": spec["loss"],
            **{k: spec[k] for k in ("nonneg", "classes", "imbalance", "n_min", "minority_fraction", "dim")},
            "axis": spec["axis"], "ratios": ratios, axis_name: values, **arrays, "boundaries": bounds, "tol": tol,
            "boundary_rtol": rtol, "collapse_level": COLLAPSE, "points": len(problems),
            "certified_points": int(sum(x for row in arrays["certified"] for x in row)), "solve_seconds": solved,
            "rank_above_dim": int(sum(r > spec["dim"] for row in arrays["rank"] for r in row)),
            "seconds": time.perf_counter() - start, "seed": seed, "method": path.name, "warm": chains is not None and warm,
            "exact": "class-level (N-independent)", "versions": versions()}
