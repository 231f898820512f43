"""The results store under stress: corrupt lines, unreadable files, a second writer, failed points, Ctrl-C and
SIGKILL (every point recorded exactly once)."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cli_run import run_cli
from solvers.workflows import sweep
from ufm import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["sweep", "--classes", "2", "--n-min", "2", "--ratios", "1,2", "--taus", "1.0"]  # two points, two shapes


def rec(i, **kw):
    return {"id": f"p{i}", "R": 1.0, "tau": 1.0, "loss_type": "sc", "nonneg": False, "batching": "full",
            "counts": [2, 2], "K": 2, **kw}


def line(r):
    return (json.dumps(r) + "\n").encode()


def test_corrupt_lines_in_the_middle_are_moved_aside_and_every_valid_row_kept(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    bad = [b"not json at all", b"[1, 2]", b'{"x": 1}', b'{"id": "p9", "R": \xff\xfe}']
    path.write_bytes(line(rec(1)) + bad[0] + b"\n" + line(rec(2)) + bad[1] + b"\n" + bad[2] + b"\n" + bad[3]
                     + b"\n" + line(rec(3)) + b'{"id": "p4", "R"')  # the last: a write cut short by a kill
    assert [r["id"] for r in records.read_records(path, records.SWEEP_KEYS)] == ["p1", "p2", "p3"]
    records.repair(path, records.SWEEP_KEYS)
    assert path.read_bytes() == line(rec(1)) + line(rec(2)) + line(rec(3))
    rejected = (tmp_path / "results.jsonl.rejected").read_bytes().splitlines()
    assert rejected == bad + [b'{"id": "p4", "R"']
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 4
    for n, why in zip([2, 4, 5, 6], ["not JSON", "not a JSON object", "without the key", "not UTF-8"]):
        assert [w for w in warnings if f"line {n}:" in w and why in w and "rejected" in w]
    assert records.repair(path, records.SWEEP_KEYS) == 0  # clean now: nothing more moved
    records.append_record(path, rec(4))
    assert [r["id"] for r in records.read_records(path)] == ["p1", "p2", "p3", "p4"]


def test_a_valid_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(line(rec(1)) + json.dumps(rec(2)).encode())
    assert records.repair(path, records.SWEEP_KEYS) == 0
    records.append_record(path, rec(3))
    assert [r["id"] for r in records.read_records(path)] == ["p1", "p2", "p3"]


@pytest.mark.parametrize("content,word", [(b'{"x": 1}\n', "without the key"), (b"[1, 2]\n", "not a JSON object"),
                                          (b"\xff\xfe\x00garbage\n", "not UTF-8"), (None, "directory")])
def test_a_file_that_is_not_a_results_file_exits_2(tmp_path, capsys, content, word):
    out = tmp_path / "out"
    out.mkdir()
    path = out / "results.jsonl"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(records.RecordsError, match=word):
        records.repair(path, records.SWEEP_KEYS)
    for argv in [TINY + ["--out", str(out)], ["plot", str(out)]]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and word in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    if content is not None:
        assert path.read_bytes() == content  # refused, never touched


def test_plot_on_records_missing_keys_exits_2(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_bytes(line(rec(1)))  # the point's keys, but no geometry
    code, _, err = run_cli(capsys, "plot", str(tmp_path))
    assert code == 2 and "line 1" in err and "mean_cosines" in err and "Traceback" not in err
    (tmp_path / "results.jsonl").write_bytes(line(rec(1, mean_cosines=[1], delta_gm=0.0)))
    code, _, err = run_cli(capsys, "plot", str(tmp_path))
    assert code == 2 and "mean_cosines" in err and "Traceback" not in err


def test_duplicates_count_once_first_kept_unless_a_later_one_is_better(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(line(rec(1, certified=True, loss=1.0)) + line(rec(2, status="failed", certified=False))
                     + line(rec(1, certified=True, loss=2.0)) + line(rec(2, status="ok", certified=None))
                     + line(rec(3, certified=None)) + line(rec(3, certified=True)))
    got = sweep.run_sweep([], tmp_path, show_progress=False)
    assert [(r["id"], r.get("loss"), r.get("status"), r["certified"]) for r in got] == [
        ("p1", 1.0, None, True), ("p2", None, "ok", None), ("p3", None, None, True)]
    assert records.read_records(path) == got  # the file rewritten, one line per id


def _hold_lock(folder):
    """A second process holding ``folder``'s lock, as a running sweep would."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('held', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_exits_2_and_writes_nothing(tmp_path, capsys):
    proc = _hold_lock(tmp_path)
    try:
        code, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path))
        assert code == 2 and "Traceback" not in err
        assert f"{tmp_path} is already in use by another ufm process (ufm, pid {proc.pid}); wait for it or use " \
               "another --out" in err
        assert not (tmp_path / "results.jsonl").exists()
    finally:
        proc.kill()
        proc.wait()
    with records.dir_lock(tmp_path):  # released with its holder
        with records.dir_lock(tmp_path):  # re-entrant in one process
            pass
        fd = os.open(tmp_path / ".lock", os.O_RDWR)
        with pytest.raises(OSError):  # while held, a flock from another open file fails
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


@pytest.mark.slow
def test_a_failed_point_is_recorded_the_sweep_goes_on_exit_3_and_a_rerun_retries(tmp_path, capsys, monkeypatch):
    from solvers.certificate import SolverFailure

    real = sweep._certify

    def flaky(problem, solution):
        if max(problem.counts) == 4:  # the R = 2 point
            raise SolverFailure("the full relaxation was not solved to optimality (solver_error)", "solver_error", "SCS")
        return real(problem, solution)

    monkeypatch.setattr(sweep, "_certify", flaky)
    code, out, err = run_cli(capsys, *TINY, "--out", str(tmp_path))
    assert code == 3 and "failed: 1 of 2 points" in err and "solver_error" in err and "Traceback" not in err
    recs = {r["R"]: r for r in records.read_records(tmp_path / "results.jsonl")}
    assert recs[2.0]["status"] == "failed" and recs[2.0]["certified"] is False
    assert "SolverFailure" in recs[2.0]["error"] and recs[2.0]["loss"] is not None  # the solve itself was fine
    assert recs[1.0]["status"] == "ok" and recs[1.0]["certified"] is True
    assert (tmp_path / "cosines_vs_R.png").exists()

    monkeypatch.setattr(sweep, "_certify", real)
    code, out, err = run_cli(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0, err
    assert "solving again 1 point(s) recorded as failed" in err
    again = records.read_records(tmp_path / "results.jsonl")
    assert len(again) == 2 and all(r["status"] == "ok" and r["certified"] is True for r in again)
    assert [r["R"] for r in again] == [1.0, 2.0]


@pytest.mark.slow
def test_certificates_over_a_no_certify_run_certify_its_points(tmp_path, capsys):
    code, _, err = run_cli(capsys, *TINY, "--no-certify", "--out", str(tmp_path))
    assert code == 0, err
    assert all(r["certified"] is None for r in records.read_records(tmp_path / "results.jsonl"))
    code, out, err = run_cli(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0, err
    assert "certifying 2 point(s) recorded without a certificate" in err
    recs = records.read_records(tmp_path / "results.jsonl")
    assert len(recs) == 2 and all(r["certified"] is True and r["lower_bound"] is not None for r in recs)
    assert "certified: 2 of 2 points" in out


@pytest.mark.slow
def test_ctrl_c_in_the_figures_exits_130_leaving_no_half_figure(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    real = matplotlib.figure.Figure.savefig

    def interrupted(self, fname, *a, **kw):
        if str(fname).endswith(".pdf"):
            with open(fname, "wb") as fh:
                fh.write(b"%PDF-half")
            raise KeyboardInterrupt
        return real(self, fname, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)
    code, _, err = run_cli(capsys, *TINY, "--no-certify", "--out", str(tmp_path))
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir() if "cosines" in p.name) == ["cosines_vs_R.png"]
    assert len(records.read_records(tmp_path / "results.jsonl")) == 2


def test_ctrl_c_between_points_exits_130_with_rows_intact(tmp_path, capsys, monkeypatch):
    real = sweep._certify
    calls = []

    def once_then_ctrl_c(problem, solution):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(problem, solution)

    monkeypatch.setattr(sweep, "_certify", once_then_ctrl_c)
    code, _, err = run_cli(capsys, *TINY, "--out", str(tmp_path))
    assert code == 130
    recs = records.read_records(tmp_path / "results.jsonl")
    assert len(recs) == 1 and recs[0]["certified"] is True
    assert not list(tmp_path.glob("*.png"))


def _sweep_child(out, grid):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-m", "ufm"] + grid + ["--out", str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_rows(path, proc, n=1, limit=240):
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return True
        time.sleep(0.02)
    return False


GRID4 = ["sweep", "--classes", "2", "--n-min", "2", "--ratios", "1,2,3,4", "--taus", "1.0", "--no-certify"]


@pytest.mark.slow
def test_crash_safety_sigint_and_sigkill_then_every_point_exactly_once(tmp_path):
    out = tmp_path / "run"
    path = out / "results.jsonl"
    proc = _sweep_child(out, GRID4)
    assert _wait_for_rows(path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    first = records.read_records(path)
    assert 1 <= len(first) <= 4
    assert not [p for p in out.iterdir() if ".tmp" in p.name]

    proc = _sweep_child(out, GRID4)  # resumes; killed once it has written one more row
    if _wait_for_rows(path, proc, len(first) + 1):
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=240)
    with open(path, "ab") as fh:  # and a bad sector in the middle, on top
        fh.write(b"\x00\x00garbage\n")
    proc = _sweep_child(out, GRID4)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    final = records.read_records(path)
    assert sorted(r["R"] for r in final) == [1.0, 2.0, 3.0, 4.0]  # every point exactly once
    assert len({r["id"] for r in final}) == 4
    assert [r["id"] for r in final[:len(first)]] == [r["id"] for r in first]  # the old rows kept, in order
    assert b"garbage" in (out / "results.jsonl.rejected").read_bytes()
