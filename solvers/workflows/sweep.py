"""Sweeps over imbalance ratio, temperature, loss, ReLU and batching: solve, certify, record one JSON line per
point in ``OUT/results.jsonl`` (resumable; see ``ufm.records``).

A *point* is a dict of the fields that define it (``R``, ``tau``, ``loss_type``, ``nonneg``, ``batching``,
``counts``, ``dim``, ...); its ``id`` is their canonical JSON, so a rerun with the same arguments skips the
points already recorded. CE has no temperature: its points carry ``tau = None`` and are solved once per R.
"""
from __future__ import annotations

import math
import os
import time
from itertools import groupby

from ufm import Problem, geometry, imbalance, objectives, records, theory
from ufm.batching import EPOCH_SCHEMES, parse_scheme
from ufm.progress import Progress

__all__ = ["sweep_points", "point_problem", "run_sweep", "RESULTS"]

RESULTS = "results.jsonl"


def _nonempty(name, values):
    values = list(values)
    if not values:
        raise ValueError(f"{name}: the list is empty")
    return values


def sweep_points(*, losses=("sc",), profile="step", classes=4, n_min=3, ratios=(1, 10), taus=(0.5,),
                 dim=None, nonneg=(False,), batchings=("full",), minority_fraction=0.5, radius=1.0,
                 weight_decay=None, seed=0, steps=5000, epochs=200, dtype="float32") -> list[dict]:
    """The grid as a list of points (dicts). Raises ``ValueError`` naming the bad argument."""
    losses, ratios, taus = _nonempty("loss", losses), _nonempty("ratios", ratios), _nonempty("taus", taus)
    nonneg, batchings = _nonempty("nonneg", nonneg), _nonempty("batchings", batchings)
    for R in ratios:
        if not (math.isfinite(R) and R >= 1):
            raise ValueError(f"ratios: every R must be >= 1, got {R}")
    for t in taus:
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"taus: every tau must be > 0, got {t}")
    for loss in losses:
        if loss not in objectives.NAMES:
            raise ValueError(f"loss: must be one of {', '.join(objectives.NAMES)}, got {loss!r}")
    points = []
    for loss in losses:
        for R in ratios:
            counts = imbalance.counts_for(profile, classes, n_min, R, minority_fraction)
            for b in batchings:
                parse_scheme(b, sum(counts))
                for nn in nonneg:
                    for tau in (taus if objectives.get(loss).contrastive else [None]):
                        points.append({
                            "R": float(R), "tau": None if tau is None else float(tau), "loss_type": loss,
                            "nonneg": bool(nn), "batching": b, "counts": list(counts), "K": classes,
                            "dim": classes if dim is None else dim, "imbalance": profile, "n_min": n_min,
                            "minority_fraction": minority_fraction, "radius": radius,
                            "weight_decay": None if objectives.get(loss).contrastive else weight_decay,
                            "seed": seed,
                            "steps": steps, "dtype": dtype,
                            **({"epochs": epochs} if parse_scheme(b).name in EPOCH_SCHEMES else {})})
    for p in points:
        point_problem(p)  # validate every point before any work
    return points


def point_problem(point) -> Problem:
    """The ``ufm.Problem`` of a point."""
    kw = dict(counts=point["counts"], loss=point["loss_type"], dim=point["dim"], nonneg=point["nonneg"],
              radius=point["radius"], batching=point["batching"], batch_seed=point["seed"])
    if point["tau"] is not None:
        kw["tau"] = point["tau"]
    if not objectives.get(point["loss_type"]).contrastive:  # a classifier: weight decay, features on the ball
        kw["weight_decay"] = point["weight_decay"]
        kw["constraint"] = "ball"
    return Problem(**kw)


def _solve_group(problems, steps, dtype, seed, epochs):
    """Solve problems of one shape: ``solve_many`` (which gives what ``solve`` gives one by one); epoch schemes
    by the epoch solver."""
    from .. import epochs as epoch_solver
    from .. import pgd

    if parse_scheme(problems[0].batching).name in EPOCH_SCHEMES:
        return [epoch_solver.solve(p, epochs=epochs, dtype=dtype, seed=seed) for p in problems]
    return pgd.solve_many(problems, steps=steps, dtype=dtype, seed=seed)


def _certify(problem, solution):
    """The certificate of the solution (epoch runs: of the batch set of all their epochs)."""
    from ..certify import certify

    return certify(problem, solution)


def _record(point, problem, sol, cert, seconds):
    rep_geo = geometry.report(sol.Z, problem.label_array, K=problem.K, W=sol.W,
                              normalize=objectives.of(problem).normalize_rows)
    pred = theory.predict(problem)
    majority = imbalance.majority_classes(problem.K, point["minority_fraction"])
    rec = {**point, "id": records.point_id(point), "loss": sol.loss, "steps_taken": sol.steps,
           "converged": sol.converged, "mean_cosines": geometry.cosine_groups(rep_geo["mean_cosines"], majority),
           "mean_cosines_matrix": rep_geo["mean_cosines"], "delta_gm": rep_geo["delta_gm"],
           "etf_distance": rep_geo["etf_distance"], "nc1": rep_geo["nc1"],
           "prediction": {"geometry": pred.geometry, "loss": pred.loss},
           "lower_bound": None, "gap": None, "certified": None, "method": None, "seconds": seconds}
    if cert is not None:
        rec.update(lower_bound=cert.lower_bound, gap=cert.gap, certified=cert.certified, method=cert.method)
    return rec


def run_sweep(points, out, *, certify=True, show_progress=True) -> list[dict]:
    """Solve (and certify) every point not yet in ``out/results.jsonl``; append one line per point.

    Returns all records of the file (old and new). Points are grouped by shape (counts, dim, loss, batching)
    so that one compiled, vmapped solve serves a group.
    """
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, RESULTS)
    records.repair(path)
    done = {r["id"] for r in records.read_records(path)}
    todo = [p for p in points if records.point_id(p) not in done]
    bar = Progress(len(todo), "ufm sweep", enabled=show_progress)
    shape = lambda p: (tuple(p["counts"]), p["dim"], p["loss_type"], p["batching"], p["dtype"],  # noqa: E731
                       p["steps"], p["seed"])
    for _, group in groupby(sorted(todo, key=lambda p: str(shape(p))), key=lambda p: str(shape(p))):
        group = list(group)
        problems = [point_problem(p) for p in group]
        start = time.perf_counter()
        sols = _solve_group(problems, group[0]["steps"], group[0]["dtype"], group[0]["seed"],
                            group[0].get("epochs"))
        per_point = (time.perf_counter() - start) / len(group)
        for point, problem, sol in zip(group, problems, sols):
            t0 = time.perf_counter()
            cert = _certify(problem, sol) if certify else None
            rec = _record(point, problem, sol, cert, per_point + time.perf_counter() - t0)
            records.append_record(path, rec)
            bar.update(1, f"R={point['R']:g} {point['loss_type']} tau={point['tau']}")
    return records.read_records(path)
