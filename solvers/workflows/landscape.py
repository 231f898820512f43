"""Where is the landscape of the full-batch SC loss benign? Many random starts per point of a grid of integer class
counts x temperatures, the stationary points they reach grouped, the global minimum certified, and each group
certified as a strict local minimum or a saddle.

One *point* is a real N-sample problem: ``ufm.Problem(counts, loss="sc", tau, dim)`` on the unit sphere, full
batch, no ReLU, float64. Per point (:func:`run_point`):

1. ``starts`` projected-gradient runs (``solvers.pgd.solve_many``; start ``i`` from seed ``seed + i``, as
   ``ufm verify``'s landscape row). A run that hits its step limit is continued once for ``POLISH * steps``; one
   that still has not converged is no stationary point and joins no group (``not_converged``).
2. The converged ends are grouped (:func:`group_points`): two ends are one stationary point when their losses
   agree to ``tol * max(1, |loss|)`` and their Gram invariants (:func:`gram_signature`) agree to ``gram_tol``,
   up to a relabelling of classes of equal size. ``G = Z Zᵀ`` does not change under a rotation of ``Z``; sorting
   the entries of each class block makes it blind to permutations of samples within a class as well.
3. The global minimum is certified by ``solvers.certify`` (the class-reduced convex relaxation and its proved dual
   bound): ``lower_bound`` is proved, ``global_loss`` is the lowest loss found (an upper bound: a feasible point),
   ``global_certified`` says whether they agree to ``tol``.
4. Each group's representative (its lowest-loss member) goes to the local certificate
   ``solvers.local.certify_local(problem, Z, global_loss=global_upper)``, whose ``to_dict()`` gives ``proved``,
   ``kind`` (``"local minimum"``, ``"saddle"`` or None), ``loss_interval`` ``[lo, hi]``, ``radius``,
   ``gradient_norm_upper``, ``hessian_min_eig_lower``, ``method``, ``why`` and ``spurious`` (and, from
   ``solvers.local``, ``critical_point_proved``: a saddle comes with ``proved`` False, since ``proved`` there
   means a proved minimum, and ``kind`` "saddle" with the critical point proved). It is imported when first
   needed (:func:`local_certifier`); without it the point is recorded with ``local_certificate = "missing"`` and
   every local verdict None.

**What "spurious" means here, and why it is proved.** ``global_upper`` is an upper bound on the global minimum:
the loss at the best start, proved in ball arithmetic by ``solvers.local.loss_upper`` (``global_upper_proved``),
or, where that is unavailable, its float64 value raised by ``ROUNDING`` relative. A group is a *certified
spurious local minimum* when its local certificate proves a strict local minimum (``proved`` True, ``kind``
``"local minimum"``) and the lower end of its proved ``loss_interval`` exceeds ``global_upper``: a point of lower
loss exists, so the local minimum is not global. This needs no lower bound on the global minimum. The
certificate's own ``spurious`` is recorded, not relied on. ``spurious_fraction`` is the fraction of *all*
starts (converged or not) that ended in such a group: a proved lower bound on how often a random start gets
stuck, for these starts. ``above_global_fraction`` is the fraction of starts that converged above the certified
global minimum (loss minus ``lower_bound`` above the tolerance): stationary points that are *not yet proved*
local minima (saddles and flat shelves end there too).

As long as no local certificate is available, each group above the global minimum also gets two pieces of
evidence, never counted as proof: ``perturbed_loss`` (the point plus ``ESCAPE_SCALE * rho`` Gaussian noise,
seeded, run again for ``POLISH * steps``: a run that goes down shows the point was no strict local minimum at
that scale) and ``hessian_estimate`` (:func:`hessian_estimate`, float64).

**Resumable and lossless.** :func:`run_landscape` appends one JSON line per point to ``OUT/landscape.jsonl`` (the
``ufm.records`` rules: one whole line per write, a torn last line set aside, one writer per folder) and skips the
points already there; a point recorded without a local certificate while one is now available is certified
again from the representatives it stored (``Z`` of each group), without solving again. :func:`assemble` builds the
``landscape.json`` dict from the records (:data:`POINT_KEYS`: one list entry per point, so
``pandas.DataFrame({k: data[k] for k in data["point_keys"]})`` is one row per point).
"""
from __future__ import annotations

import itertools
import math
import os
import time

import numpy as np

from ufm import Problem, records
from ufm.defaults import DEFAULT_STEPS
from ufm.specs import LANDSCAPE_MAX_N, LandscapeSpec

__all__ = ["landscape", "LandscapeSpec", "OUTPUTS", "grid_points", "point_problem", "gram_signature",
           "signature_distance", "class_permutations", "group_points", "hessian_estimate", "run_point",
           "run_landscape", "assemble", "local_certifier",
           "LocalCertificateMissing", "RESULTS", "POINT_KEYS", "MAX_N", "ROUNDING", "ESCAPE_SCALE"]

RESULTS = "landscape.jsonl"
RECORD_KEYS = ("id", "counts", "tau")
# the per-point lists of landscape.json (one entry per point, in grid order)
POINT_KEYS = ("counts", "taus", "R", "K", "N", "dim", "starts", "converged_starts", "global_loss", "lower_bound",
              "global_certified", "local_minima", "saddles", "spurious_fraction", "above_global_fraction",
              "certified", "local_certificate", "status", "error", "seconds")
MAX_N = LANDSCAPE_MAX_N  # most samples of one point (the local certificate works with (N d) x (N d) Hessians)
OUTPUTS = ("landscape.jsonl", "landscape.json", "landscape.png", "landscape.pdf")  # what a run with out= writes
MAX_PERMUTATIONS = 5040  # relabellings of equal-size classes tried when grouping; above it, only the identity
ROUNDING = 1e-12  # relative float64 rounding allowed on the loss of the best start when judging "spurious"
ESCAPE_SCALE = 1e-2  # the perturbation (relative to rho) of the escape test
POLISH = 10  # a start that hits the step limit is continued once for POLISH x steps


class LocalCertificateMissing(RuntimeError):
    """``solvers.local.certify_local`` is not installed: local minima cannot be proved."""


# --- the grid ------------------------------------------------------------------------------------------------------

def grid_points(*, counts=None, classes=3, n_min=2, ratios=(1.0,), imbalance_profile="step", minority_fraction=0.5,
                taus=(0.1,), dim=None, starts=8, seed=0, steps=DEFAULT_STEPS, tol=1e-6, gram_tol=1e-2) -> list[dict]:
    """The points of a grid, in order (count vectors outer, temperatures inner): ``LandscapeSpec(...).points()``
    with these fields (``imbalance_profile`` is the record's ``imbalance``; with ``counts`` the family arguments
    are ignored). Class sizes are integers: from ``counts`` (a list of count vectors) or from the family
    ``imbalance.counts_for(imbalance_profile, classes, n_min, R, minority_fraction)`` for each ``R`` in ``ratios``
    (rounded sizes; a count vector that rounds to one already in the grid is kept once). ``dim`` None: ``K + 1``
    (the theorem's ``d > K``). Raises ``ValueError`` naming the argument."""
    family: dict = {} if counts is not None else dict(
        classes=classes, n_min=n_min, ratios=tuple(ratios), imbalance=imbalance_profile,
        minority_fraction=minority_fraction)
    spec = LandscapeSpec(counts=None if counts is None else tuple(tuple(c) for c in counts), taus=tuple(taus),
                         dim=dim, starts=starts, seed=seed, steps=steps, tol=tol, gram_tol=gram_tol, **family)
    return spec.points()


def point_problem(point) -> Problem:
    """The ``ufm.Problem`` of a point: full-batch SC on the unit sphere, no ReLU."""
    return Problem(counts=point["counts"], loss="sc", tau=point["tau"], dim=point["dim"])


# --- grouping stationary points ------------------------------------------------------------------------------------

def gram_signature(Z, labels, K) -> list[np.ndarray]:
    """Invariants of ``Z (N, d)`` under rotations (``G = Z Zᵀ``) and under permutations of samples within a class:
    for every pair of classes ``a <= b`` (in the order ``(0,0), (0,1), ..., (K-1,K-1)``) the sorted entries of the
    block ``G[labels == a][:, labels == b]`` (for ``a == b`` its strict upper triangle). Returns a list of 1-D
    arrays."""
    Z = np.asarray(Z, np.float64)
    G = Z @ Z.T
    labels = np.asarray(labels)
    idx = [np.flatnonzero(labels == c) for c in range(K)]
    sig = []
    for a in range(K):
        for b in range(a, K):
            block = G[np.ix_(idx[a], idx[b])]
            vals = block[np.triu_indices(len(idx[a]), 1)] if a == b else block.ravel()
            sig.append(np.sort(vals))
    return sig


def class_permutations(counts) -> list[tuple[int, ...]]:
    """The relabellings of classes that map each class to one of the same size (``perm[c]`` is the new label of
    class ``c``), the identity first; only the identity when there are more than ``MAX_PERMUTATIONS``."""
    counts = list(counts)
    by_size: dict[int, list[int]] = {}
    for c, n in enumerate(counts):
        by_size.setdefault(n, []).append(c)
    sets = list(by_size.values())
    total = math.prod(math.factorial(len(s)) for s in sets)
    identity = tuple(range(len(counts)))
    if total > MAX_PERMUTATIONS:
        return [identity]
    perms = []
    for choice in itertools.product(*(itertools.permutations(s) for s in sets)):
        perm = list(identity)
        for s, image in zip(sets, choice):
            for c, to in zip(s, image):
                perm[c] = to
        perms.append(tuple(perm))
    perms.sort(key=lambda p: p != identity)
    return perms


def _pair_index(K):
    return {(a, b): k for k, (a, b) in enumerate((a, b) for a in range(K) for b in range(a, K))}


def signature_distance(s1, s2, perms=None) -> float:
    """The smallest, over the relabellings ``perms`` (default: the identity), of the largest absolute difference
    between the entries of two :func:`gram_signature` s (``inf`` when their block sizes differ)."""
    n = len(s1)
    K = int(round((math.sqrt(8 * n + 1) - 1) / 2))
    pairs = _pair_index(K)
    best = math.inf
    for perm in perms or [tuple(range(K))]:
        worst = 0.0
        for (a, b), k in pairs.items():
            pa, pb = perm[a], perm[b]
            other = s2[pairs[(min(pa, pb), max(pa, pb))]]
            if other.shape != s1[k].shape:
                worst = math.inf
                break
            if other.size:
                worst = max(worst, float(np.abs(s1[k] - other).max()))
            if worst >= best:
                break
        best = min(best, worst)
    return best


def group_points(losses, signatures, *, tol=1e-6, gram_tol=1e-2, perms=None) -> list[int]:
    """The group of each point: points are taken in increasing loss, and a point joins the first group whose
    representative (its lowest-loss member) has a loss within ``tol * max(1, |loss|)`` and a signature within
    ``gram_tol`` (:func:`signature_distance` under ``perms``); else it starts a new group. Groups are numbered by
    increasing loss. Returns one group index per point."""
    order = sorted(range(len(losses)), key=lambda i: losses[i])
    reps: list[int] = []
    out: list = [None] * len(losses)
    for i in order:
        for g, r in enumerate(reps):
            if (abs(losses[i] - losses[r]) <= tol * max(1.0, abs(losses[r]))
                    and signature_distance(signatures[i], signatures[r], perms) <= gram_tol):
                out[i] = g
                break
        else:
            out[i] = len(reps)
            reps.append(i)
    return out


# --- the certificates ----------------------------------------------------------------------------------------------

def local_certifier():
    """``solvers.local.certify_local``; ``LocalCertificateMissing`` (one line) when it is not installed."""
    try:
        from ..local import certify_local
    except ImportError as e:
        raise LocalCertificateMissing(f"the local certificate solvers.local.certify_local is not available ({e})") \
            from None
    return certify_local


def _global_bound(problem, sol, tol):
    """``(lower_bound or None, method, why)`` from ``solvers.certify`` at the best start; a certificate that raises
    proves nothing (its message is the why)."""
    from ..certificate import certify

    try:
        cert = certify(problem, sol, tol=tol)
    except Exception as e:  # noqa: BLE001 - any failure of a certificate means "not proved"
        return None, "auto", f"{type(e).__name__}: {e}"
    lb = cert.lower_bound
    if lb is None or not math.isfinite(float(lb)):
        return None, cert.method, (cert.details or {}).get("why") or f"no bound proved (status {cert.status!r})"
    return float(lb), cert.method, None


LOCAL_KEYS = ("proved", "kind", "loss_interval", "radius", "gradient_norm_upper", "hessian_min_eig_lower", "method",
              "why", "spurious")


def _local(certify_local, problem, Z, global_loss) -> dict:
    """The local certificate of ``Z`` as a dict of :data:`LOCAL_KEYS`; one that raises proves nothing."""
    try:
        d = dict(certify_local(problem, np.asarray(Z, np.float64), global_loss=global_loss).to_dict())
    except Exception as e:  # noqa: BLE001 - a certificate that fails proves nothing; the reason is kept
        d = {"proved": False, "kind": None, "why": f"{type(e).__name__}: {e}"}
    return {**{k: d.get(k) for k in LOCAL_KEYS}, **{k: v for k, v in d.items() if k != "Z"}}


def _verdicts(group, global_upper, lower_bound, tol, upper_proved=True):
    """Fill ``group``'s ``at_global`` (its loss within ``tol`` of the proved ``lower_bound``), ``certified`` (a
    proved strict local minimum), ``saddle`` (a proved saddle: ``kind`` "saddle" with the critical point proved,
    ``critical_point_proved`` or ``proved``) and ``spurious`` (True: a proved local minimum whose proved loss
    interval lies above ``global_upper``, a proved upper bound on the global minimum (``upper_proved``); False
    at the certified global minimum or at a proved saddle; None when not proved either way)."""
    loss = group["loss"]
    group["at_global"] = bool(lower_bound is not None and loss - lower_bound <= tol * max(1.0, abs(loss)))
    cert = group.get("certificate") or {}
    group["certified"] = bool(cert.get("proved") is True and cert.get("kind") == "local minimum")
    group["saddle"] = bool(cert.get("kind") == "saddle"
                           and (cert.get("proved") is True or cert.get("critical_point_proved") is True))
    lo = None
    if group["certified"]:
        interval = cert.get("loss_interval") or [None]
        lo = interval[0] if isinstance(interval[0], (int, float)) and math.isfinite(interval[0]) else None
    if lo is not None and global_upper is not None and upper_proved and lo > global_upper:
        group["spurious"] = True
    elif group["at_global"] or group["saddle"]:
        group["spurious"] = False
    else:
        group["spurious"] = None
    return group


def _summaries(rec):
    """``local_minima``, ``saddles``, ``spurious_fraction``, ``above_global_fraction`` and ``certified`` (the
    global minimum certified, every start converged, and every group at the global minimum or proved a strict
    local minimum or a saddle) of a record from its groups."""
    groups, S = rec["groups"], rec["starts"]
    rec["local_minima"] = [{"loss": g["loss"], "count": g["count"], "certified": g["certified"] or g["at_global"],
                            "spurious": g["spurious"], "at_global": g["at_global"]}
                           for g in groups if not g["saddle"]]
    rec["saddles"] = [{"loss": g["loss"], "count": g["count"]} for g in groups if g["saddle"]]
    if rec["local_certificate"] == "missing":
        rec["spurious_fraction"] = None
    else:
        rec["spurious_fraction"] = sum(g["count"] for g in groups if g["spurious"] is True) / S
    rec["above_global_fraction"] = (None if not rec["global_certified"] else
                                    sum(g["count"] for g in groups if not g["at_global"]) / S)
    rec["certified"] = bool(rec["global_certified"] and rec["local_certificate"] == "available"
                            and rec.get("converged_starts") == S
                            and all(g["certified"] or g["saddle"] or g["at_global"] for g in groups))
    return rec


def _global_upper(problem, rec):
    """``(upper, proved)``: an upper bound on the global minimum, the loss at the best start. Proved in ball
    arithmetic by ``solvers.local.loss_upper`` at the stored ``best_Z`` (or at the stored representative of
    that loss) when both exist; otherwise the float64 ``global_loss`` raised by ``ROUNDING`` relative, not proved
    (no group is then called spurious: a strict local minimum above it stays undecided)."""
    g = rec.get("global_loss")
    if g is None:
        return None, False
    Z = rec.get("best_Z")
    if Z is None:  # a record without it: the best start is the representative of its group when it converged
        Z = next((grp["Z"] for grp in rec.get("groups", []) if grp.get("loss") == g and grp.get("Z")), None)
    if Z is not None and problem is not None:
        try:
            from ..local import loss_upper

            return float(loss_upper(problem, np.asarray(Z, np.float64))), True
        except Exception:  # noqa: BLE001 - not installed, or it refuses this point: the float64 value, widened
            pass
    return g + ROUNDING * max(1.0, abs(g)), False


def _certify_groups(rec, problem, certify_local):
    """Run the local certificate on every group's stored representative (``global_loss=`` the upper bound of
    :func:`_global_upper`); recompute the verdicts."""
    upper, proved = _global_upper(problem, rec) if certify_local is not None else (None, False)
    rec["global_upper"], rec["global_upper_proved"] = upper, proved
    for g in rec["groups"]:
        g["certificate"] = None if certify_local is None else _local(certify_local, problem, g["Z"], upper)
        _verdicts(g, upper, rec["lower_bound"], rec["tol"], proved)
    rec["local_certificate"] = "missing" if certify_local is None else "available"
    return _summaries(rec)


# --- one point -----------------------------------------------------------------------------------------------------

def _solve_starts(problem, point):
    """``starts`` float64 solutions, start ``i`` from ``seed + i``; a start that hit its step limit is continued
    once from where it stopped for ``POLISH * steps`` (small problems at a low temperature converge slowly), the
    continuation kept when its loss is not higher."""
    from .. import pgd

    S, seed, steps = point["starts"], point["seed"], point["steps"]
    sols = pgd.solve_many([problem] * S, seed=[seed + i for i in range(S)], steps=steps, dtype="float64")
    for i, s in enumerate(sols):
        if not s.converged:
            more = pgd.solve(problem, steps=POLISH * steps, seed=s.seed, dtype="float64", init=s.Z)
            more.steps += s.steps
            if more.loss <= s.loss:
                sols[i] = more
    return sols


def _hessian(problem, Z):
    """:func:`hessian_estimate`, None when it fails (it is evidence, never a verdict)."""
    try:
        return hessian_estimate(problem, Z)
    except Exception:  # noqa: BLE001
        return None


def _perturbed_loss(problem, Z, point, salt):
    """The escape test (module doc): the loss reached from ``Z`` plus seeded noise."""
    from .. import pgd
    from ..first_order import solution_loss

    rng = np.random.default_rng([point["seed"], salt])
    Zp = np.asarray(Z) + ESCAPE_SCALE * problem.radius * rng.standard_normal(np.shape(Z))
    sol = pgd.solve(problem, steps=POLISH * point["steps"], seed=point["seed"] + salt, dtype="float64", init=Zp)
    return float(solution_loss(problem, sol.Z))


HESSIAN_MAX = 1200  # the floating-point Hessian estimate for N * d up to this (an (N d) x (N d) matrix)


def hessian_estimate(problem: Problem, Z) -> dict | None:
    """A floating-point estimate (float64 autodiff, **no proof**) of the second-order picture at ``Z (N, d)``:
    the norm of the Riemannian gradient on the product of spheres, and the smallest eigenvalue of the Riemannian
    Hessian on the tangent directions orthogonal to the rotation orbit ``{Z A : A skew}`` (the loss is
    rotation-invariant, so those directions are flat at every point). ``min_eig > 0`` says "looks like a strict
    local minimum up to rotation"; ``min_eig < 0`` "looks like a saddle"; only the local certificate proves
    either. Returns ``gradient_norm``, ``min_eig``, ``tangent_dim``, ``orbit_dim``; None above ``HESSIAN_MAX``.

    On the sphere of radius ``rho`` (rows ``|z_i| = rho``) the Riemannian Hessian is ``P (∇²f) P - diag(<z_i,
    ∇_i f> / rho^2)`` on the tangent space ``P`` (each row's component along ``z_i`` removed)."""
    import jax
    import jax.numpy as jnp

    from ufm.losses import sc_loss_dense

    Z = np.asarray(Z, np.float64)
    N, d = Z.shape
    if N * d > HESSIAN_MAX:
        return None
    rho = float(problem.radius)
    Z = rho * Z / np.linalg.norm(Z, axis=1, keepdims=True)
    labels = jnp.asarray(problem.label_array)
    with jax.enable_x64(True):
        f = lambda x: sc_loss_dense(x.reshape(N, d), labels, problem.tau)  # noqa: E731
        x = jnp.asarray(Z.ravel())
        g = np.asarray(jax.grad(f)(x)).reshape(N, d)
        H = np.asarray(jax.hessian(f)(x))
    U = Z / rho
    bases = []  # an orthonormal basis of each row's tangent space z_i^perp
    for i in range(N):
        q, _ = np.linalg.qr(np.column_stack([U[i], np.eye(d)]))
        bases.append(q[:, 1:d])
    B = np.zeros((N * d, N * (d - 1)))
    for i, q in enumerate(bases):
        B[i * d:(i + 1) * d, i * (d - 1):(i + 1) * (d - 1)] = q
    radial = np.repeat(np.sum(U * g, axis=1) / rho, d)
    Hr = B.T @ (H - np.diag(radial)) @ B
    Hr = (Hr + Hr.T) / 2
    grad = np.concatenate([bases[i].T @ g[i] for i in range(N)])
    orbit = []
    for a in range(d):
        for b in range(a + 1, d):
            A = np.zeros((d, d))
            A[a, b], A[b, a] = 1.0, -1.0
            orbit.append(B.T @ (Z @ A).ravel())
    u, sv, _ = (np.linalg.svd(np.column_stack(orbit), full_matrices=True) if orbit else
                (np.eye(len(Hr)), np.zeros(0), None))
    r = int(np.sum(np.asarray(sv) > 1e-8 * max(1.0, float(np.max(sv, initial=0.0)))))
    Q = u[:, r:]
    eig = np.linalg.eigvalsh(Q.T @ Hr @ Q) if Q.shape[1] else np.array([np.nan])
    return {"gradient_norm": float(np.linalg.norm(grad)), "min_eig": float(eig[0]), "tangent_dim": int(Hr.shape[0]),
            "orbit_dim": r}


def run_point(point, certify_local=None) -> dict:
    """Solve, group and certify one point (module doc); returns its record (``id``, the point's fields, ``R``,
    ``K``, ``N``, per start ``start_losses``, ``start_converged``, ``start_group``; ``groups`` with each
    representative's ``Z``; the summaries of :data:`POINT_KEYS`). ``certify_local`` None: recorded as
    ``local_certificate = "missing"``."""
    from ..first_order import solution_loss

    start = time.perf_counter()
    problem = point_problem(point)
    counts, K = point["counts"], len(point["counts"])
    rec = {**point, "id": records.point_id(point), "R": max(counts) / min(counts), "K": K, "N": sum(counts),
           "status": "ok", "error": None}
    sols = _solve_starts(problem, point)
    losses = [float(solution_loss(problem, s.Z)) for s in sols]
    conv = [bool(s.converged) for s in sols]
    best = int(np.argmin(losses))
    lb, method, why = _global_bound(problem, sols[best], point["tol"])
    global_loss = losses[best]
    done = [i for i in range(len(sols)) if conv[i]]
    labels = problem.label_array
    sigs = {i: gram_signature(sols[i].Z, labels, K) for i in done}
    tol = point["tol"]
    certified = bool(lb is not None and global_loss - lb <= tol * max(1.0, abs(global_loss)))
    at_global = [i for i in done if certified and losses[i] - lb <= tol * max(1.0, abs(losses[i]))]
    rest = [i for i in done if i not in at_global]
    perms = class_permutations(counts)
    gidx = group_points([losses[i] for i in rest], [sigs[i] for i in rest], tol=tol, gram_tol=point["gram_tol"],
                        perms=perms)
    start_group: list = [None] * len(sols)
    shift = 1 if at_global else 0
    for i in at_global:
        start_group[i] = 0
    for i, g in zip(rest, gidx):
        start_group[i] = g + shift
    groups = []
    for g in range(shift + (max(gidx) + 1 if gidx else 0)):
        members = [i for i in done if start_group[i] == g]
        r = min(members, key=lambda i: losses[i])
        Zr = np.asarray(sols[r].Z, np.float64)
        spread = max(signature_distance(sigs[i], sigs[r], perms) for i in members)
        groups.append({"loss": losses[r], "count": len(members), "seeds": [sols[i].seed for i in members],
                       "representative_seed": sols[r].seed, "loss_spread": max(losses[i] for i in members) - losses[r],
                       "gram_spread": spread, "gradient_mapping": float(sols[r].gradient_mapping),
                       "class_gram": _class_gram(Zr, labels, K).tolist(), "Z": Zr.tolist(),
                       "perturbed_loss": None, "hessian_estimate": None})
    rec.update({"start_losses": losses, "start_converged": conv, "start_group": start_group,
                "converged_starts": len(done), "not_converged": len(sols) - len(done), "global_loss": global_loss,
                "lower_bound": lb, "global_method": method, "global_why": why,
                "best_Z": np.asarray(sols[best].Z, np.float64).tolist(),
                "global_certified": certified,
                "groups": groups})
    _certify_groups(rec, problem, certify_local)
    if certify_local is None:  # evidence only, while the proof is missing (module doc)
        for k, g in enumerate(rec["groups"]):
            if not g["at_global"]:
                g["perturbed_loss"] = _perturbed_loss(problem, g["Z"], point, 1000 + k)
                g["hessian_estimate"] = _hessian(problem, g["Z"])
    rec["seconds"] = time.perf_counter() - start
    return rec


def _class_gram(Z, labels, K):
    """The class-mean Gram ``M_ab`` = mean of ``<z_i, z_j>`` over ``i`` in class ``a``, ``j`` in class ``b``
    (rotation- and permutation-invariant; for people reading the records)."""
    G = Z @ Z.T
    M = np.empty((K, K))
    for a in range(K):
        for b in range(K):
            M[a, b] = G[np.ix_(labels == a, labels == b)].mean()
    return M


def _failed(point, error, seconds) -> dict:
    rec = {**point, "id": records.point_id(point), "R": max(point["counts"]) / min(point["counts"]),
           "K": len(point["counts"]), "N": sum(point["counts"]), "status": "failed",
           "error": f"{type(error).__name__}: {error}".strip(), "seconds": seconds, "starts": point["starts"],
           "groups": [], "converged_starts": None, "global_loss": None, "lower_bound": None,
           "global_certified": False, "local_certificate": None, "local_minima": None, "saddles": None,
           "spurious_fraction": None, "above_global_fraction": None, "certified": False}
    return rec


# --- the grid, resumable -------------------------------------------------------------------------------------------

def _needs_work(rec, have_local) -> str | None:
    """``"solve"`` (not recorded, or failed), ``"certify"`` (recorded without the local certificate, which is now
    available), or None (done)."""
    if rec is None or rec.get("status") == "failed":
        return "solve"
    if have_local and rec.get("local_certificate") == "missing":
        return "certify"
    return None


def _standing(rec) -> int:
    return 0 if rec.get("status") == "failed" else 1 if rec.get("local_certificate") == "missing" else 2


def _unique(recs):
    """One record per id at the place of its first, the best of them (solved over failed, with the local
    certificate over without)."""
    chosen, order = {}, []
    for r in recs:
        old = chosen.get(r["id"])
        if old is None:
            order.append(r["id"])
            chosen[r["id"]] = r
        elif _standing(r) >= _standing(old):
            chosen[r["id"]] = r
    return [chosen[i] for i in order]


def _compact(path):
    recs = records.read_records(path, RECORD_KEYS)
    once = _unique(recs)
    if len(once) < len(recs):
        records.rewrite(path, once)
    return once


def run_landscape(points, out, *, certify_local="auto", progress=None, log=None) -> list[dict]:
    """Run every point of ``points`` not yet done in ``OUT/landscape.jsonl`` and append its record; returns the
    records of ``points``, in their order.

    Args:
      points: from :func:`grid_points`.
      out: the folder (created); one writer at a time (``records.dir_lock``; ``records.Busy`` otherwise).
      certify_local: the local certificate (a callable with ``certify_local``'s contract); ``"auto"``: import it
        (:func:`local_certifier`), None when it is missing.
      progress: a ``ufm.progress.Progress``-like object with ``update(n, note)``, or None.
      log: a callable taking a line (what is redone), or None.
    """
    if certify_local == "auto":
        try:
            certify_local = local_certifier()
        except LocalCertificateMissing:
            certify_local = None
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, RESULTS)
    from .sweep import sigint_guard, stop_if_hit

    with records.dir_lock(out, what="ufm landscape"), sigint_guard() as hit:
        records.repair(path, RECORD_KEYS)
        known = {r["id"]: r for r in _compact(path)}
        work = [(p, _needs_work(known.get(records.point_id(p)), certify_local is not None)) for p in points]
        todo = [(p, w) for p, w in work if w]
        if log is not None:
            redo = sum(w == "certify" for _, w in todo)
            if redo:
                log(f"certifying {redo} recorded point(s) with the local certificate (no new solve)")
            skipped = len(points) - len(todo)
            if skipped:
                log(f"{skipped} point(s) already in {path}: skipped")
        for p, what in todo:
            t0 = time.perf_counter()
            try:
                if what == "certify":
                    rec = _certify_groups(dict(known[records.point_id(p)]), point_problem(p), certify_local)
                    rec["seconds"] = rec.get("seconds", 0.0) + time.perf_counter() - t0
                else:
                    rec = run_point(p, certify_local)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as e:  # noqa: BLE001 - recorded as failed; the grid goes on
                if hit["sigint"]:  # a library that reported a Ctrl-C as its own error: still a Ctrl-C
                    raise KeyboardInterrupt from e
                rec = _failed(p, e, time.perf_counter() - t0)
            records.append_record(path, rec)
            known[rec["id"]] = rec
            stop_if_hit(hit)  # a Ctrl-C a library swallowed: the point is kept, the grid stops here
            if progress is not None:
                sf = rec.get("spurious_fraction")
                note = (f"counts={','.join(map(str, p['counts']))} tau={p['tau']:g} "
                        + ("failed" if rec["status"] == "failed" else
                           f"spurious {sf:.2f}" if sf is not None else
                           f"above global {rec['above_global_fraction']}"))
                progress.update(1, note)
        recs = {r["id"]: r for r in _compact(path)}
    return [recs[records.point_id(p)] for p in points]


def assemble(recs, settings: dict) -> dict:
    """The ``landscape.json`` dict from the records of a grid (in grid order): :data:`POINT_KEYS` as lists, one
    entry per point (``taus`` from each record's ``tau``; the summaries recomputed from each record's groups),
    ``point_keys``, ``settings``, ``points``, ``certified_points``, ``local_certificate`` (``"available"``,
    ``"missing"`` or ``"mixed"``)."""
    out: dict[str, list] = {k: [] for k in POINT_KEYS}
    recs = [_summaries(dict(r)) if r.get("status") == "ok" and "groups" in r else r for r in recs]
    for r in recs:
        for k in POINT_KEYS:
            out[k].append(r.get("tau") if k == "taus" else r.get(k))
    kinds = {r.get("local_certificate") for r in recs if r.get("status") != "failed"}
    return {**out, "point_keys": list(POINT_KEYS), "settings": settings, "points": len(recs),
            "certified_points": sum(bool(r.get("certified")) for r in recs),
            "failed_points": sum(r.get("status") == "failed" for r in recs),
            "local_certificate": kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)}


def landscape(spec: LandscapeSpec, out: str, *, figures: bool = True, certify_local="auto", progress=None,
              log=None) -> dict:
    """Run every point of ``spec`` not yet in ``out/landscape.jsonl``, then write ``out/landscape.json`` and the
    heat map (``ufm landscape``): :func:`run_landscape`, :func:`assemble`, ``landscape_figures.draw_landscape``.

    Args:
      spec: the grid (``ufm.specs.LandscapeSpec``).
      out: the folder (created; a rerun skips the points done).
      figures: draw ``landscape.png`` / ``.pdf``.
      certify_local: as :func:`run_landscape` (``"auto"``: ``solvers.local.certify_local`` when installed).
      progress: a ``ufm.progress.Progress``-like object with ``update(n, note)``, or None.
      log: a callable taking a line (what is redone), or None.
    Returns:
      the ``landscape.json`` dict (:func:`assemble`, with ``seed`` and ``versions``); ``local_certificate`` says
      whether the local minima were proved.
    Raises:
      TypeError: ``spec`` is not a ``LandscapeSpec``.
      ufm.records.RecordsError: an unreadable records file, or another process writing to ``out``.
    """
    if not isinstance(spec, LandscapeSpec):
        raise TypeError(f"spec: must be a ufm.specs.LandscapeSpec, got {type(spec).__name__}")
    from ufm import runs
    from ufm.records import versions, write_json

    with runs.open_run(out, "ufm landscape", OUTPUTS, flag="out"):
        recs = run_landscape(spec.points(), out, certify_local=certify_local, progress=progress, log=log)
        result = assemble(recs, spec.settings())
        result.update(seed=spec.seed, versions=versions())
        write_json(os.path.join(out, "landscape.json"), result)
        if figures:
            from .landscape_figures import draw_landscape

            draw_landscape(result, out)
    return result
