"""Sweeps over imbalance ratio, temperature, loss, ReLU and batching: solve, certify, record one JSON line per
point in ``OUT/results.jsonl`` (resumable; see ``ufm.records``).

A *point* is a dict of the fields that define it (``R``, ``tau``, ``loss_type``, ``nonneg``, ``batching``,
``counts``, ``dim``, ...); its ``id`` is their canonical JSON, so a rerun with the same arguments skips the
points already recorded. CE has no temperature: its points carry ``tau = None`` and are solved once per R.

One writer per folder: ``run_sweep`` holds ``records.dir_lock(out)`` for its run. A point whose solve or
certificate raises is recorded as failed (``status = "failed"``, ``error``, ``certified = False``) and the sweep
goes on. A rerun solves again the points recorded as failed and, when it certifies, the points recorded without
a certificate; their new record replaces the old one in place (appended first, then the file is rewritten
atomically with one record per id, the first of each id kept unless a later one is better: solved over failed,
certified over uncertified).

Where the points are computed is the executor's business (``solvers.workflows.executors``): in this process
(``executor="local"``) or as Dask tasks on a cluster (``"dask"``). Either way this process alone writes the file,
so the lock, the resume and the guarantee that a kill loses at most the points in flight are the same; each record
says which executor computed it (``executor``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from itertools import groupby

from ufm import Problem, geometry, imbalance, objectives, records, theory
from ufm.batching import EPOCH_SCHEMES, parse_scheme
from ufm.defaults import DEFAULT_STEPS
from ufm.progress import Progress
from ufm.specs import MAX_SAMPLES, MAX_SEED, SweepSpec

__all__ = ["sweep", "sweep_points", "point_problem", "point_task", "run_sweep", "unique", "failed", "RESULTS",
           "RECORD_KEYS", "MAX_SAMPLES", "MAX_SEED", "SweepSpec"]

RESULTS = "results.jsonl"
RECORD_KEYS = records.SWEEP_KEYS


def sweep_points(*, losses=("sc",), profile="step", classes=4, n_min=3, ratios=(1, 10), taus=(0.5,),
                 dim=None, nonneg=(False,), batchings=("full",), minority_fraction=0.5, radius=1.0,
                 weight_decay=None, seed=0, steps=DEFAULT_STEPS, epochs=200, dtype="float64") -> list[dict]:
    """The grid as a list of points (dicts): ``SweepSpec(...).points()`` with these fields (``profile`` is the
    record's ``imbalance``). Raises ``ValueError`` naming the bad argument."""
    return SweepSpec(losses=tuple(losses), imbalance=profile, classes=classes, n_min=n_min, ratios=tuple(ratios),
                     taus=tuple(taus), dim=dim, nonneg=tuple(nonneg), batchings=tuple(batchings),
                     minority_fraction=minority_fraction, radius=radius, weight_decay=weight_decay, seed=seed,
                     steps=steps, epochs=epochs, dtype=dtype).points()


def point_problem(point) -> Problem:
    """The ``ufm.Problem`` of a point (``SweepSpec.problem``)."""
    return SweepSpec.problem(point)


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
    from ..certificate import certify

    return certify(problem, solution)


_EMPTY = {"loss": None, "steps_taken": None, "converged": None, "mean_cosines": None, "mean_cosines_matrix": None,
          "delta_gm": None, "etf_distance": None, "nc1": None, "prediction": None}


def _record(point, problem, sol, cert, seconds, error=None, executor="local"):
    """The record of a point: solved (``sol``), certified (``cert``) or not; ``error`` (an exception) makes it a
    failed point, with the geometry of ``sol`` when the solve succeeded; ``executor`` names where it ran."""
    rec = {**point, "id": records.point_id(point), **_EMPTY}
    if sol is not None:
        rep_geo = geometry.report(sol.Z, problem.label_array, K=problem.K, W=sol.W,
                                  normalize=objectives.of(problem).normalize_rows)
        pred = theory.predict(problem)
        majority = imbalance.majority_classes(problem.K, point["minority_fraction"])
        rec.update({"loss": sol.loss, "steps_taken": sol.steps, "converged": sol.converged,
                    "mean_cosines": geometry.cosine_groups(rep_geo["mean_cosines"], majority),
                    "mean_cosines_matrix": rep_geo["mean_cosines"], "delta_gm": rep_geo["delta_gm"],
                    "etf_distance": rep_geo["etf_distance"], "nc1": rep_geo["nc1"],
                    "prediction": {"geometry": pred.geometry, "loss": pred.loss}})
    rec.update({"lower_bound": None, "gap": None, "certified": None, "method": None, "seconds": seconds,
                "executor": executor, "status": "ok", "error": None})
    if cert is not None:
        rec.update(lower_bound=cert.lower_bound, gap=cert.gap, certified=cert.certified, method=cert.method)
    if error is not None:
        rec.update(status="failed", error=f"{type(error).__name__}: {error}".strip(), certified=False)
    return rec


def failed(rec) -> bool:
    """Whether ``rec`` records a point whose solve or certificate failed."""
    return rec.get("status") == "failed"


def _standing(rec) -> int:
    return 0 if failed(rec) else (1 if rec.get("certified") is None else 2)


def unique(recs) -> list[dict]:
    """One record per id, at the place of its first: the first, unless a later one is better (solved over failed,
    certified over uncertified)."""
    chosen: dict = {}
    order: list = []
    for r in recs:
        old = chosen.get(r["id"])
        if old is None:
            order.append(r["id"])
            chosen[r["id"]] = r
        elif _standing(r) > _standing(old):
            chosen[r["id"]] = r
    return [chosen[i] for i in order]


def _compact(path) -> list[dict]:
    """The records of ``path``, one per id; the file rewritten atomically when it held an id twice."""
    recs = records.read_records(path, RECORD_KEYS)
    once = unique(recs)
    if len(once) < len(recs):
        records.rewrite(path, once)
    return once


def _needs_work(rec, certify) -> bool:
    return rec is None or failed(rec) or (certify and rec.get("certified") is None)


@contextlib.contextmanager
def sigint_guard():
    """Note a Ctrl-C (and raise ``KeyboardInterrupt`` as usual), so that an exception a library raises in its place
    (a solver reporting that it was interrupted) is still treated as a Ctrl-C, never as a failed point, and a
    Ctrl-C that a library swallowed (one raised inside a garbage-collector callback) stops the sweep at the next
    point (``stop_if_hit``). The handler in place before (the command line's, with its watchdog) is called too."""
    hit = {"sigint": False}
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return
    before = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        hit["sigint"] = True
        if callable(before):
            return before(signum, frame)  # raises KeyboardInterrupt, or leaves it to its watchdog
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, before)


def stop_if_hit(hit):
    """Raise ``KeyboardInterrupt`` when a Ctrl-C was noted, even if the exception it raised was swallowed."""
    if hit["sigint"]:
        raise KeyboardInterrupt


def _solve_isolated(problems, point0):
    """Solve a group; when the group solve raises, each problem alone, so that one bad point fails alone. Returns a
    list of solutions or exceptions."""
    args = (point0["steps"], point0["dtype"], point0["seed"], point0.get("epochs"))
    try:
        return list(_solve_group(problems, *args))
    except Exception:  # noqa: BLE001 - isolate the point that raises
        if len(problems) == 1:
            raise
    out = []
    for p in problems:
        try:
            out.append(_solve_group([p], *args)[0])
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def _group_records(group, certify, hit, executor):
    """Solve a group of points of one shape (one compiled, vmapped solve), certify each solution, and yield each
    point's record as soon as it exists (a generator: the caller writes a record before the next certificate).

    Args:
        group: points of one shape (``counts``, ``dim``, ``loss_type``, ``batching``, ``dtype``, ``steps``, ``seed``).
        certify: whether to certify.
        hit: the ``sigint_guard`` flag; an exception raised after a Ctrl-C becomes ``KeyboardInterrupt``.
        executor: the executor's name, recorded in each row.
    """
    problems = [point_problem(p) for p in group]
    start = time.perf_counter()
    try:
        sols = _solve_isolated(problems, group[0])
    except Exception as e:  # noqa: BLE001 - recorded as failed below
        if hit["sigint"]:
            raise KeyboardInterrupt from e
        sols = [e] * len(group)
    stop_if_hit(hit)
    per_point = (time.perf_counter() - start) / len(group)
    for point, problem, sol in zip(group, problems, sols):
        stop_if_hit(hit)
        t0 = time.perf_counter()
        cert = error = None
        if isinstance(sol, BaseException):
            sol, error = None, sol
        elif certify:
            try:
                cert = _certify(problem, sol)
            except Exception as e:  # noqa: BLE001 - recorded as failed
                if hit["sigint"]:
                    raise KeyboardInterrupt from e
                error = e
        yield _record(point, problem, sol, cert, per_point + time.perf_counter() - t0, error, executor)


def point_task(points, certify=True, executor="dask") -> list[dict]:
    """The records of ``points`` (points of one shape), solved and certified here: the task a Dask worker runs, a
    pure function of its points that writes nothing (the driver appends what it returns)."""
    return list(_group_records(points, certify, {"sigint": False}, executor))


def run_sweep(points, out, *, certify=True, show_progress=True, log=None, executor="local", scheduler=None,
              workers=None) -> list[dict]:
    """Solve (and certify) every point not yet in ``out/results.jsonl``; append one line per point.

    Points recorded as failed are solved again, and so are, when ``certify``, points recorded without a
    certificate. A point whose solve or certificate raises is recorded as failed and the sweep goes on. Holds the
    folder's lock (``records.Busy`` when another process writes there); a corrupt line of the file is moved to
    ``results.jsonl.rejected`` (``records.repair``). ``log`` (a callable taking a line) gets what is redone.

    ``executor`` says where points are computed; this process alone writes the file, whichever it is.
    ``"local"``: here, points grouped by shape (counts, dim, loss, batching) so that one compiled, vmapped solve
    serves a group. ``"dask"``: one Dask task per point (``executors.DaskExecutor``) on the scheduler at
    ``scheduler`` or on a local cluster of ``workers`` processes, started only when some point needs work; a task
    lost with its worker runs again elsewhere, a task that fails anyway records its point as failed. Every record
    says which (``executor``). ``executors.ExecutorError`` when the executor cannot start (one line, naming the
    flag).

    Returns all records of the file (old and new), one per id.
    """
    from . import executors

    ex = executors.make(executor, scheduler=scheduler, workers=workers)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, RESULTS)
    with records.dir_lock(out), sigint_guard() as hit:
        records.repair(path, RECORD_KEYS)
        known = {r["id"]: r for r in _compact(path)}
        todo, seen = [], set()
        for p in points:
            pid = records.point_id(p)
            if pid not in seen and _needs_work(known.get(pid), certify):
                todo.append(p)
            seen.add(pid)
        redo = [known[records.point_id(p)] for p in todo if records.point_id(p) in known]
        if log is not None:
            n_failed = sum(failed(r) for r in redo)
            if n_failed:
                log(f"solving again {n_failed} point(s) recorded as failed")
            if len(redo) > n_failed:
                log(f"solving and certifying {len(redo) - n_failed} point(s) recorded without a certificate")
        if not todo:
            return _compact(path)
        if ex.name == "local":
            shape = lambda p: (tuple(p["counts"]), p["dim"], p["loss_type"], p["batching"], p["dtype"],  # noqa: E731
                               p["steps"], p["seed"])
            jobs = [list(g) for _, g in groupby(sorted(todo, key=lambda p: str(shape(p))),
                                                key=lambda p: str(shape(p)))]
            task, kwargs = _group_records, dict(certify=certify, hit=hit, executor=ex.name)
        else:
            jobs = [[p] for p in todo]
            # either task is called as task(points, **kwargs); their other parameters differ
            task, kwargs = point_task, dict(certify=certify, executor=ex.name)  # type: ignore[assignment]
        with ex:
            if log is not None and ex.name != "local":
                log(f"{len(todo)} point(s) as Dask tasks on {ex.describe()}")
            bar = Progress(len(todo), "ufm sweep", enabled=show_progress)
            for job, result in ex.map(task, jobs, **kwargs):
                if isinstance(result, BaseException):  # the task itself failed: its points are recorded as failed
                    result = [_record(point, None, None, None, None, result, ex.name) for point in job]
                for rec in result:
                    records.append_record(path, rec)  # a point computed is kept, then a Ctrl-C stops the sweep
                    stop_if_hit(hit)
                    bar.update(1, f"R={rec['R']:g} {rec['loss_type']} tau={rec['tau']}"
                                  + (" failed" if failed(rec) else ""))
        return _compact(path)


def sweep(spec: SweepSpec, out: str, *, certify: bool = True, executor: str = "local", scheduler: str | None = None,
          workers: int | None = None, figures: bool = True, progress: bool = True, log=None) -> list[dict]:
    """Solve (and certify) every point of ``spec`` not yet recorded in ``out/results.jsonl`` and draw the figures
    (``ufm sweep``): :func:`run_sweep`, then ``ufm.plots.plot_all`` of the solved records.

    Args:
      spec: the grid (``ufm.specs.SweepSpec``).
      out: the folder of ``results.jsonl`` and the figures (created; a rerun resumes it).
      certify: certify each solution (``solvers.certify``).
      executor: ``"local"`` (this process) or ``"dask"`` (``solvers.workflows.executors``).
      scheduler: with ``"dask"``: a running scheduler's address (None: a local cluster).
      workers: with ``"dask"`` and no scheduler: the local cluster's worker processes.
      figures: draw ``cosines_vs_R``, ``heatmaps`` and ``gaps`` (PNG, PDF) from the solved records.
      progress: show a progress bar on a terminal.
      log: a callable taking a line (what is solved again); None: quiet.
    Returns:
      every record of the file (old and new), one per id: the lines ``ufm sweep --json`` prints.
    Raises:
      ValueError: ``spec`` is not a ``SweepSpec``, or a record (of another tool's making) the figures cannot use.
      ufm.records.RecordsError: an unreadable results file, or another process writing to ``out``.
      solvers.workflows.executors.ExecutorError: the executor cannot start.
    """
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"spec: must be a ufm.specs.SweepSpec, got {type(spec).__name__}")
    from ufm import runs

    with runs.open_run(out, "ufm sweep", (RESULTS,), flag="out"):
        recs = run_sweep(spec.points(), out, certify=certify, show_progress=progress, log=log, executor=executor,
                         scheduler=scheduler, workers=workers)
        drawn = [r for r in recs if not failed(r)]
        if figures and drawn:
            from ufm.plots import plot_all

            try:
                plot_all(drawn, out)
            except ValueError as e:  # a record of another tool's making that the figures cannot use
                raise ValueError(f"{os.path.join(out, RESULTS)}: {e}") from None
    return recs
