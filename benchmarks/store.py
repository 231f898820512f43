"""Benchmark points that survive a kill: one JSON line per finished point in ``<results folder>/NAME.jsonl``
(``ufm.records``; the folder is :func:`benchmarks.common.results_dir`); a rerun skips the points already there."""
import os

from ufm.records import append_record, point_id, read_records, repair

from .common import RESULTS, ROOT, results_dir  # noqa: F401  (re-exported for the deep-net benchmarks)


def open_store(name, fresh=False):
    """``(path, done)``: the store's path and its finished points by id (``fresh``: forget them first)."""
    folder = results_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.jsonl")
    if fresh and os.path.exists(path):
        os.remove(path)
    repair(path)
    return path, {r["id"]: r for r in read_records(path)}


def run_once(path, done, key, compute):
    """The record of the point ``key`` (a dict of its defining fields): from ``done``, or ``compute()`` appended
    to the store."""
    pid = point_id(key)
    if pid not in done:
        done[pid] = {"id": pid, **key, **compute()}
        append_record(path, done[pid])
    return done[pid]
