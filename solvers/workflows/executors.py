"""Where the points of a sweep run: in this process (``local``) or as tasks on a Dask cluster (``dask``).

An executor maps a task over jobs and hands back ``(job, result)`` pairs as they finish; the caller alone writes
the results. This is why a cluster changes nothing about the results file: one process appends to it, holds its
lock and decides what a rerun redoes, whatever the number of machines that compute.

- ``LocalExecutor``: calls the task in this process, job after job, in order; the task's result is handed back
  unevaluated, so a task that is a generator does its work while the caller reads it (the caller writes each
  record as soon as it exists).
- ``DaskExecutor``: one Dask task per job (``Client.map``, results in completion order by ``as_completed``) on
  the scheduler at an address (a cluster started elsewhere, e.g. by dask-jobqueue on SLURM), or on a
  ``LocalCluster`` of worker processes that it starts and stops. Tasks must be module-level functions that the
  workers can import, pure functions of their job. A worker that dies takes its running tasks with it and the
  scheduler runs them again on another worker (Dask's own bookkeeping); a task that fails anyway (it raised, or it
  killed ``distributed.scheduler.allowed-failures`` workers) comes back as its exception, never silently dropped.

Dask is optional (``pip install 'ufm[cluster]'``): nothing here imports it before ``DaskExecutor`` starts.
"""
from __future__ import annotations

import logging
import os

__all__ = ["NAMES", "CONNECT_TIMEOUT", "INSTALL_HINT", "ExecutorError", "LocalExecutor", "DaskExecutor", "make",
           "require_dask", "default_workers"]

NAMES = ("local", "dask")
CONNECT_TIMEOUT = 5  # seconds to reach a scheduler before giving up (a live scheduler answers in milliseconds)
INSTALL_HINT = "pip install 'ufm[cluster]'"


class ExecutorError(ValueError):
    """An executor that cannot be used as asked (Dask missing, no scheduler at the address, a bad worker count):
    one line that names the flag."""


def require_dask():
    """The ``distributed`` module; ``ExecutorError`` naming the extra to install when it is missing."""
    try:
        import distributed
    except ImportError as e:
        raise ExecutorError(f"--executor dask needs Dask's distributed scheduler, which is not installed ({e}): "
                            f"{INSTALL_HINT}") from None
    return distributed


def default_workers() -> int:
    """Worker processes of a local cluster when none are asked for: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def dask_setup(worker):  # noqa: ARG001 - Dask's preload hook, run by each worker of a local cluster as it starts
    """Ignore SIGINT in a worker process of the local cluster: a Ctrl-C in a terminal reaches the whole process
    group, and the driver alone should answer it (exit 130, closing the cluster), not every worker with a
    traceback."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """Every job in this process, in order (the task's result handed back as it is, a generator unevaluated)."""

    name = "local"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, task, jobs, **kwargs):
        """Yields ``(job, task(job, **kwargs))`` for each job, in order."""
        for job in jobs:
            yield job, task(job, **kwargs)


class DaskExecutor:
    """Jobs as Dask tasks: on the scheduler at ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``) or, with
    no address, on a ``LocalCluster`` of ``workers`` processes of one thread each (default: the usable cores).

    Nothing is started before ``with``; leaving the block closes the client (cancelling what is still queued) and
    the local cluster it started, never a cluster it only connected to.

    Args:
        scheduler: the scheduler's address, or None for a local cluster.
        workers: worker processes of the local cluster (an integer >= 1); only without ``scheduler``.
        timeout: seconds to reach the scheduler before ``ExecutorError`` (default ``CONNECT_TIMEOUT``).
    """

    name = "dask"

    def __init__(self, scheduler=None, workers=None, timeout=None):
        if workers is not None:
            if scheduler is not None:
                raise ExecutorError("--workers: only without --scheduler (a running cluster has its own workers)")
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ExecutorError(f"--workers: must be an integer >= 1, got {workers!r}")
        if scheduler is not None and not str(scheduler).strip():
            raise ExecutorError("--scheduler: the address is empty (e.g. tcp://10.0.0.5:8786)")
        self.scheduler, self.workers = scheduler, workers
        self.timeout = CONNECT_TIMEOUT if timeout is None else timeout
        self.client = self.cluster = None
        self._client_log_level = None

    def __enter__(self):
        distributed = require_dask()
        # a lost scheduler makes the client log each failed reconnection with a traceback; what it means for the
        # sweep (the points in flight recorded as failed, a rerun tries them again) is said by the caller instead
        client_log = logging.getLogger("distributed.client")
        self._client_log_level = client_log.level
        client_log.setLevel(logging.CRITICAL)
        try:
            return self._start(distributed)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _start(self, distributed):
        if self.scheduler is None:
            # no dashboard; the scheduler's HTTP endpoints (health, metrics) on a free local port, not on 8787,
            # which another cluster may hold; dask_setup (below) runs in each worker as it starts
            self.cluster = distributed.LocalCluster(
                n_workers=self.workers or default_workers(), threads_per_worker=1, processes=True,
                dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, preload=[__name__])
            self.client = distributed.Client(self.cluster)
            return self
        why = None
        try:
            self.client = distributed.Client(self.scheduler, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a malformed address...
            why = " ".join(f"{type(e).__name__}: {e}".split())
        if why is None:
            return self
        # the half-built Client is garbage now; finalise it here: its __del__ closes its event loop, and run later
        # by the garbage collector inside another Client's start it deadlocks on the loop runner's lock
        import gc

        gc.collect()
        raise ExecutorError(f"--scheduler {self.scheduler}: no Dask scheduler reached there in {self.timeout:g} s "
                            f"({why}); give the address the scheduler prints, e.g. tcp://10.0.0.5:8786")

    def __exit__(self, *exc):
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.client = None
            try:
                if self.cluster is not None:
                    self.cluster.close()
            finally:
                self.cluster = None
                if self._client_log_level is not None:
                    logging.getLogger("distributed.client").setLevel(self._client_log_level)
                    self._client_log_level = None
        return False

    def describe(self) -> str:
        """Where the tasks run, for a log line."""
        n = len(self.client.scheduler_info().get("workers", {})) if self.client is not None else 0
        where = "a local cluster" if self.cluster is not None else f"the Dask scheduler at {self.scheduler}"
        return f"{where} ({n} worker{'s' if n != 1 else ''} now)"

    def map(self, task, jobs, **kwargs):
        """Submits every job at once and yields ``(job, result)`` as tasks finish; ``result`` is the exception when
        the task failed. ``kwargs`` go to every call of ``task``."""
        from distributed import as_completed

        jobs = list(jobs)
        futures = self.client.map(task, jobs, pure=False, **kwargs)
        job_of = {f.key: job for f, job in zip(futures, jobs)}
        del jobs
        try:
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - handed back: the caller records the job as failed
                    result = e
                job = job_of.pop(fut.key)
                fut.release()
                yield job, result
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()


def make(name="local", *, scheduler=None, workers=None):
    """The executor called ``name`` (one of ``NAMES``); ``ExecutorError`` naming the flag for a bad combination."""
    if name not in NAMES:
        raise ExecutorError(f"--executor: must be one of {', '.join(NAMES)}, got {name!r}")
    if name == "local":
        for flag, value in (("--scheduler", scheduler), ("--workers", workers)):
            if value is not None:
                raise ExecutorError(f"{flag}: only with --executor dask")
        return LocalExecutor()
    return DaskExecutor(scheduler=scheduler, workers=workers)
