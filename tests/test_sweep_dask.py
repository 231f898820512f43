"""``ufm sweep --executor dask``: the points as Dask tasks, the driver alone writing ``results.jsonl``.

One local cluster (2 worker processes of one thread) serves the module. The reference is the same grid swept by the
local executor in this process: a point's row must not depend on where it was computed.
"""
import io
import os
import signal
import sys
import time

import pytest

distributed = pytest.importorskip("distributed")

from cli_run import run_cli  # noqa: E402
from solvers.workflows import executors, sweep  # noqa: E402
from ufm import records  # noqa: E402
from ufm.cli import main  # noqa: E402

# 6 SC full-batch points of one shape (R = 3, six temperatures), float64, certified. One shape without ReLU: each
# worker compiles one solve (a cold worker's imports and compilation are most of this module's time; with ReLU,
# imbalanced SC solves several starts, another compiled shape)
TAUS = [0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
GRID = ["sweep", "--loss", "sc", "--classes", "3", "--n-min", "2", "--ratios", "3", "--taus",
        ",".join(map(str, TAUS)), "--dim", "4"]
POINTS = sweep.sweep_points(losses=["sc"], classes=3, n_min=2, ratios=[3], taus=TAUS, dim=4, dtype="float64")


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 worker processes (each restarted by its nanny when killed) and a client to watch it;
    each worker has solved and certified a point of the grid (imports and compilation done, side by side)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        client.wait_for_workers(2, timeout=60)
        warm = [client.submit(sweep.point_task, [p], workers=[w], pure=False)
                for w in client.scheduler_info()["workers"] for p in POINTS[:1]]
        assert [r[0]["status"] for r in client.gather(warm)] == ["ok"] * 2
        del warm
        yield lc.scheduler_address, client


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    """The grid swept in this process by the local executor."""
    out = tmp_path_factory.mktemp("local")
    return out, sweep.run_sweep(POINTS, out, show_progress=False)


class KillOnce(distributed.WorkerPlugin):
    """SIGKILLs the first worker process that starts its second sweep task (one point already done there), once for
    the whole cluster (``marker``, created exclusively, holds the victim's pid): a worker lost mid-point."""

    name = "ufm-kill-once"

    def __init__(self, marker):
        self.marker, self.started = str(marker), 0

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "point_task" not in str(key):
            return
        self.started += 1
        if self.started < 2:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def _same_rows(got, want):
    by_id = {r["id"]: r for r in want}
    assert sorted(r["id"] for r in got) == sorted(by_id)
    for r in got:
        w = by_id[r["id"]]
        assert r["status"] == w["status"] == "ok"
        assert r["loss"] == pytest.approx(w["loss"], abs=1e-9)
        assert r["certified"] is w["certified"] is True
        assert r["delta_gm"] == pytest.approx(w["delta_gm"], abs=1e-6)


@pytest.mark.slow
def test_dask_finishes_a_local_sweep(local_rows, cluster, tmp_path):
    """Resume across executors: the points a local run left are computed by Dask, the others kept as they were."""
    src, want = local_rows
    lines = (src / sweep.RESULTS).read_text().splitlines(keepends=True)
    (tmp_path / sweep.RESULTS).write_text("".join(lines[:-2]))
    got = sweep.run_sweep(POINTS, tmp_path, show_progress=False, executor="dask", scheduler=cluster[0])
    assert [r["executor"] for r in got] == ["local"] * (len(lines) - 2) + ["dask"] * 2
    assert (tmp_path / sweep.RESULTS).read_text().splitlines(keepends=True)[:-2] == lines[:-2]
    _same_rows(got, want)


@pytest.mark.slow
def test_a_task_that_raises_records_its_point_as_failed(cluster, tmp_path):
    bad = {**POINTS[0], "dim": 0}  # Problem refuses it on the worker, outside the solver's own error handling
    got = sweep.run_sweep([bad, POINTS[1]], tmp_path, show_progress=False, certify=False, executor="dask",
                          scheduler=cluster[0])
    by_id = {r["id"]: r for r in got}
    assert sweep.failed(by_id[records.point_id(bad)]) and "ValueError" in by_id[records.point_id(bad)]["error"]
    assert by_id[records.point_id(bad)]["executor"] == "dask"
    assert by_id[records.point_id(POINTS[1])]["status"] == "ok"


@pytest.mark.slow
def test_dask_executor_hands_back_exceptions(cluster):
    import math

    with executors.DaskExecutor(scheduler=cluster[0]) as ex:
        got = dict(ex.map(math.sqrt, [4.0, -1.0]))
    assert got[4.0] == 2.0 and isinstance(got[-1.0], ValueError)


@pytest.fixture(scope="module")
def dask_run(cluster, tmp_path_factory):
    """``ufm sweep --executor dask`` on the cluster, a worker SIGKILLed as it starts its second point."""
    address, client = cluster
    out = tmp_path_factory.mktemp("dask")
    marker = out.parent / "killed.pid"
    pids = set(client.run(os.getpid).values())
    client.register_plugin(KillOnce(marker))
    try:
        with pytest.MonkeyPatch.context() as mp:  # a module fixture has no capsys: redirect by hand
            err = io.StringIO()
            mp.setattr(sys, "stderr", err)
            mp.setattr(sys, "stdout", io.StringIO())
            code = main(GRID + ["--executor", "dask", "--scheduler", address, "--out", str(out)])
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed one
    victim = int(marker.read_text()) if marker.exists() else None
    return out, code, err.getvalue(), victim, pids, set(client.run(os.getpid).values())


@pytest.mark.slow
def test_a_killed_worker_loses_no_point(dask_run, local_rows):
    out, code, err, victim, pids_before, pids_after = dask_run
    assert victim in pids_before and victim not in pids_after  # a worker died mid-point and was replaced
    assert code == 0, err
    lines = (out / sweep.RESULTS).read_text().splitlines()
    rows = records.read_records(out / sweep.RESULTS)
    assert len(lines) == len(rows) == len({r["id"] for r in rows}) == len(POINTS)  # each point once
    assert {r["executor"] for r in rows} == {"dask"}
    _same_rows(rows, local_rows[1])
    assert {r["executor"] for r in local_rows[1]} == {"local"}


@pytest.mark.slow
def test_rerun_on_a_finished_output_does_no_work(dask_run, cluster, capsys, monkeypatch):
    out, *_ = dask_run
    before = (out / sweep.RESULTS).read_bytes()

    def no_cluster(self):
        raise AssertionError("a cluster was started for nothing")

    monkeypatch.setattr(executors.DaskExecutor, "__enter__", no_cluster)
    code, _, err = run_cli(capsys, *GRID, "--executor", "dask", "--scheduler", cluster[0], "--out", str(out))
    assert code == 0, err
    assert (out / sweep.RESULTS).read_bytes() == before


SMALL = ["sweep", "--classes", "2", "--n-min", "2", "--ratios", "1", "--taus", "1.0", "--no-certify"]


@pytest.mark.parametrize("argv,words", [
    (["--scheduler", "tcp://127.0.0.1:8786"], ["--scheduler", "--executor dask"]),
    (["--workers", "2"], ["--workers", "--executor dask"]),
    (["--executor", "dask", "--workers", "0"], ["--workers", ">= 1"]),
    (["--executor", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], ["--workers", "--scheduler"]),
    (["--executor", "dask", "--scheduler", "no-port"], ["--scheduler no-port", "no Dask scheduler"]),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], ["--scheduler tcp://127.0.0.1:9", "in 1 s"]),
])
@pytest.mark.slow
def test_bad_executor_flags_exit_2(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 1)
    start = time.perf_counter()
    code, out, err = run_cli(capsys, *SMALL, *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "x" / sweep.RESULTS).exists()


@pytest.mark.slow
def test_dask_missing_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    code, _, err = run_cli(capsys, *SMALL, "--executor", "dask", "--out", str(tmp_path / "x"))
    assert code == 2 and "pip install 'ufm[cluster]'" in err and "Traceback" not in err
