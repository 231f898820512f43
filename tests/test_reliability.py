"""Crash never, lose nothing (docs/reliability.md): Ctrl-C at any moment, runs that must end, sizes checked before
anything is allocated, one writer per folder, the CLI's last line of defence, values that used to raise."""
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from cli_run import run_cli

from ufm import records, runs
from ufm.cli import interrupt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def data(tmp_path, Z=None, y=None):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((20, 3)) if Z is None else Z
    y = np.arange(20) % 2 if y is None else y
    zp, yp = str(tmp_path / "Z.npy"), str(tmp_path / "y.npy")
    np.save(zp, Z)
    np.save(yp, y)
    return zp, yp


def one_line(code, out, err, expect=2):
    assert code == expect, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --- Ctrl-C -------------------------------------------------------------------------------------------------------

def test_a_swallowed_ctrl_c_still_ends_the_command_after_the_grace():
    ended = []
    with interrupt.Guard("ufm test", grace=0.2, exit=ended.append) as guard:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here
        except KeyboardInterrupt:
            pass  # what a garbage-collector callback does with it: dropped
        assert guard.hit and interrupt.interrupted()
        deadline = time.time() + 5
        while not ended and time.time() < deadline:
            time.sleep(0.01)
    assert ended == [130]
    assert not interrupt.interrupted()


def test_the_second_ctrl_c_ends_at_once_and_a_write_in_progress_finishes_first():
    ended = []
    with interrupt.Guard("ufm test", grace=60, exit=lambda code: ended.append((code, time.time()))) as guard:
        with pytest.raises(KeyboardInterrupt):
            guard._handler(signal.SIGINT, None)
        released = []

        def write():
            with records.WRITE_LOCK:
                time.sleep(0.2)
                released.append(time.time())

        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.05)
        guard._handler(signal.SIGINT, None)  # second: no exception, the process ends (here: recorded)
        t.join()
    assert ended and ended[0][0] == 130 and ended[0][1] >= released[0]  # after the write, not in its middle


def test_a_finished_command_stops_its_watchdog():
    ended = []
    with interrupt.Guard("ufm test", grace=0.1, exit=ended.append) as guard:
        with pytest.raises(KeyboardInterrupt):
            guard._handler(signal.SIGINT, None)
    time.sleep(0.3)
    assert ended == []


COMMANDS = {
    # long enough to be running at 6 s on an idle machine (tol 0: every step; the class-level path, K = 100)
    "solve": ["solve", "--counts", "300,300,30,30", "--steps", "200000", "--tol", "0"],
    "phase": ["phase", "--imbalance", "long-tail", "--classes", "100", "--ratios", "1:100:10", "--taus", "0.1:1:5",
              "--no-figures"],
    "sweep": ["sweep", "--classes", "2", "--n-min", "2", "--ratios", "1,2,3,4,5,6", "--taus", "1.0", "--no-certify"],
}


def _interrupt(tmp_path, argv, delay, twice=False):
    """Run ``ufm *argv`` in its own session (no compilation cache: it compiles), send SIGINT to its process group
    after ``delay`` s (twice: again 0.05 s later); ``(exit code, seconds from the signal to the exit, stderr,
    the --out folder)``."""
    out = tmp_path / "out"
    if argv[0] != "solve":
        argv = argv + ["--out", str(out)]
    env = {k: v for k, v in ENV.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    env["UFM_JAX_CACHE"] = "off"  # it compiles
    proc = subprocess.Popen([sys.executable, "-m", "ufm", *argv], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    sent = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground process group
    if twice:
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, time.time() - sent, err.decode(), out


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 2.5, 6.0], ids=["importing", "compiling", "running"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_exits_130_within_2_seconds_at_any_moment(tmp_path, command, delay):
    """From the moment ufm's code runs (a Ctrl-C inside the interpreter's own start-up, its first ~0.15 s here, gets
    Python's default handling): while the command imports its modules, while XLA compiles, while it runs."""
    code, latency, err, out = _interrupt(tmp_path, COMMANDS[command], delay)
    assert code == 130, err
    assert latency < 2.0, (latency, err)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1].endswith("interrupted"), err
    if out.exists():  # nothing half-written: no temporaries, every JSON file whole
        assert not [p for p in out.iterdir() if ".tmp" in p.name]
        for p in out.glob("*.json"):
            json.loads(p.read_text())
        if (out / "results.jsonl").exists():
            assert not records.scan(out / "results.jsonl")[1]


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    code, latency, err, _ = _interrupt(tmp_path, COMMANDS["solve"], 2.5, twice=True)
    assert code == 130 and latency < 1.0, (latency, err)
    assert "Traceback" not in err


# --- runs that must end ---------------------------------------------------------------------------------------

def test_a_boundary_bisection_ends_at_adjacent_floats(monkeypatch):
    from solvers.workflows import phase

    calls = []

    class Cert:
        certified = True

    class Path:  # min_min jumps from -1 to 1 at R = 3.3: the bracket shrinks to adjacent floats
        def problem(self, R, v):
            return R

        def geometry(self, problems, sols):
            return [{"min_min": 1.0 if R >= 3.3 else -1.0} for R in problems]

    def fake_solve(path, problems, seed, tol, steps, pad=None, **kw):
        calls.append(len(problems))
        assert len(calls) < 1000, "the bisection does not end"
        return list(problems), [Cert() for _ in problems]

    monkeypatch.setattr(phase, "_solve", fake_solve)
    Rs, proved = phase.boundary({}, [0.1], [(1.0, 10.0)], 0.0, rtol=1e-300, path=Path())
    assert proved == [True] and 3.3 <= Rs[0] <= np.nextafter(3.3, 4)
    assert len(calls) < 100


def _finishes(fn, limit=30):
    box = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(limit)
    assert box, f"did not finish within {limit} s"
    return box[0]


def _not_regular(tmp_path, kind, name):
    """A path that is no regular file: a FIFO named ``name`` in ``tmp_path``, ``/dev/zero`` or a folder."""
    path = {"fifo": str(tmp_path / name), "dev_zero": "/dev/zero", "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_measure_refuses_a_batches_file_that_is_not_a_regular_file(tmp_path, capsys, kind):
    zp, yp = data(tmp_path)
    path = _not_regular(tmp_path, kind, "fifo")
    code, out, err = _finishes(lambda: run_cli(capsys, "measure", "--no-ufm", "--embeddings", zp, "--labels", yp,
                                               "--batches", path))
    one_line(code, out, err)
    assert "regular file" in err or "folder" in err


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_measure_refuses_an_array_file_that_is_not_a_regular_file(tmp_path, capsys, kind):
    _, yp = data(tmp_path)
    path = _not_regular(tmp_path, kind, "z.npy")
    code, out, err = _finishes(lambda: run_cli(capsys, "measure", "--no-ufm", "--embeddings", path, "--labels", yp))
    one_line(code, out, err)


# --- sizes before allocation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--ratios", "1:100:30000000"],
    ["--ratios", "1:100:10000000000"],
    ["--classes", "1000000", "--dim", "2", "--ratios", "1,2", "--taus", "1"],
    ["--ratios", "1:2:600", "--taus", "0.1:1:600"],
])
def test_phase_refuses_a_grid_too_large_before_building_it(tmp_path, capsys, argv):
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, "phase", "--out", str(tmp_path / "o"), *argv)
    one_line(code, out, err)
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "o").exists()


def _npy_header(shape, descr="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_a_forged_npy_header_is_refused_from_the_header(tmp_path, capsys):
    _, yp = data(tmp_path)
    p = tmp_path / "huge.npy"
    p.write_bytes(_npy_header((10 ** 6, 10 ** 6)) + b"\0" * 16)  # 144 bytes declaring 7 TiB
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", str(p), "--labels", yp)
    one_line(code, out, err)
    assert "declares shape (1000000, 1000000)" in err


def _bomb(path, rows=2 ** 24):
    """An .npz whose 'embeddings' member is ``rows x 1`` float64 zeros (128 MiB inside, ~130 KiB on disk), and
    a small 'small' member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("embeddings.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((rows, 1)))
            chunk = b"\0" * (1 << 22)
            for _ in range(rows * 8 // len(chunk)):
                f.write(chunk)
        with z.open("small.npy", "w") as f:
            np.save(f, np.random.default_rng(0).standard_normal((20, 3)))


def test_an_npz_member_not_asked_for_is_never_decompressed(tmp_path, capsys):
    import tracemalloc

    _, yp = data(tmp_path)
    p = str(tmp_path / "bomb.npz")
    _bomb(p)
    tracemalloc.start()
    try:
        code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", p, "--key", "small", "--labels", yp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert peak < 32 * 2 ** 20  # the 128 MiB member was not read
    tracemalloc.start()
    try:
        code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", p, "--labels", yp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_line(code, out, err)  # its rows disagree with the labels: found from its header
    assert "20 labels for 16777216 embeddings" in err and peak < 32 * 2 ** 20


def test_an_npz_member_larger_than_the_machine_can_spare_is_refused(tmp_path, monkeypatch):
    from solvers.workflows import measure as M

    p = str(tmp_path / "bomb.npz")
    _bomb(p, rows=2 ** 20)
    monkeypatch.setattr(M, "memory_cap", lambda: 2 ** 20)
    with pytest.raises(M.InputError, match="once decompressed"):
        M.load_array(p)


@pytest.mark.parametrize("value", [10 ** 9, 10 ** 18, 1e20])
def test_labels_are_bounded_by_n_before_anything_is_counted(tmp_path, capsys, value):
    y = (np.arange(20) % 2).astype(np.float64 if isinstance(value, float) else np.int64)
    y[0] = value
    zp, yp = data(tmp_path, y=y)
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", zp, "--labels", yp)
    one_line(code, out, err)
    assert "is not a class index" in err and time.perf_counter() - t0 < 5


def test_a_cifar_batch_cannot_build_an_array_larger_than_its_file(tmp_path):
    import pickle

    from solvers.deepnet import data as D

    class Big:  # unpickles as numpy's _reconstruct(ndarray, (10**11,), uint8): 100 GB allocated, from 200 bytes
        def __reduce__(self):
            return (np._core.multiarray._reconstruct, (np.ndarray, (10 ** 11,), b"B"))

    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": Big(), b"labels": [0]}, protocol=2))
    with pytest.raises(D.DataError, match="larger than the file"):
        D._cifar_batch(str(p))


@pytest.mark.parametrize("argv", [
    ["train", "--width", "1000000000"],
    ["train", "--dim", "100000000"],
    ["sweep", "--dim", "1000000000", "--classes", "2", "--n-min", "2", "--ratios", "1", "--taus", "1"],
])
def test_train_and_sweep_refuse_what_does_not_fit_before_compute(tmp_path, capsys, argv):
    code, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "o"))
    one_line(code, out, err)
    assert "too large" in err and "--allow-large" in err


# --- one writer per folder ---------------------------------------------------------------------------------------

def _hold(folder, what="ufm phase"):
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            f"fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, (str(os.getpid()) + ' {what}').encode()); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("argv", [
    ["phase", "--ratios", "1,2", "--taus", "1", "--no-figures"],
    ["sweep", "--classes", "2", "--n-min", "2", "--ratios", "1", "--taus", "1", "--no-certify"],
    ["solve", "--counts", "3,3", "--steps", "5"],
    ["measure", "--no-ufm"],
])
def test_a_second_writer_of_a_folder_exits_2_before_compute(tmp_path, capsys, argv):
    out = tmp_path / "o"
    if argv[0] == "measure":
        zp, yp = data(tmp_path)
        argv = argv + ["--embeddings", zp, "--labels", yp]
    proc = _hold(out)
    try:
        code, stdout, err = run_cli(capsys, *argv, "--out", str(out))
    finally:
        proc.kill()
        proc.wait()
    one_line(code, stdout, err)
    assert f"already in use by another ufm process (ufm phase, pid {proc.pid})" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


@pytest.mark.parametrize("case", ["proc", "output_is_a_folder", "fsize"])
def test_an_output_folder_that_cannot_take_the_results_is_refused_before_compute(tmp_path, capsys, case):
    argv = ["phase", "--ratios", "1,2", "--taus", "1", "--no-figures"]
    if case == "proc":
        code, out, err = run_cli(capsys, *argv, "--out", "/proc/self")
        one_line(code, out, err)
        assert "cannot write in the folder" in err and "solving" not in err
    elif case == "output_is_a_folder":
        (tmp_path / "o" / "phase.json").mkdir(parents=True)
        code, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "o"))
        one_line(code, out, err)
        assert "phase.json is a directory" in err and "solving" not in err
    else:
        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))

        r = subprocess.run([sys.executable, "-m", "ufm", *argv, "--out", str(tmp_path / "o")], env=ENV, cwd=ROOT,
                           preexec_fn=limit, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "ulimit -f" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_two_trackers_cannot_share_a_folder(tmp_path):
    import ufm

    Z = np.eye(2)[np.arange(6) % 2] + 0.1
    y = np.arange(6) % 2
    with ufm.Tracker(tmp_path, reference=False) as a:
        a.log(0, Z, y)
        with pytest.raises(records.Busy, match="already in use by another ufm process"):
            ufm.Tracker(tmp_path, reference=False)
        a.log(1, Z, y)
    with ufm.Tracker(tmp_path, reference=False) as b:  # free once the first is closed
        b.log(2, Z, y)
    assert [r["epoch"] for r in records.read_records(tmp_path / "history.jsonl", ("epoch",))] == [0, 1, 2]


def test_a_tracker_repairs_a_half_written_last_line_before_appending(tmp_path):
    import ufm

    path = tmp_path / "history.jsonl"
    path.write_bytes(b'{"epoch": 0, "nc1": 1.0}\n{"epoch": 1, "nc')  # a run killed in the middle of a line
    Z = np.eye(2)[np.arange(6) % 2] + 0.1
    with ufm.Tracker(tmp_path, reference=False) as t:
        t.log(2, Z, np.arange(6) % 2)
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole
    assert [r["epoch"] for r in rows] == [0, 2]
    assert (tmp_path / "history.jsonl.rejected").read_bytes() == b'{"epoch": 1, "nc\n'


def test_prepare_checks_every_output_name(tmp_path):
    (tmp_path / "result.json").mkdir()
    with pytest.raises(runs.FolderError, match="result.json is a directory"):
        runs.prepare(tmp_path, ("result.json",))
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(runs.FolderError, match="cannot create the folder"):
        runs.prepare(f / "sub")
    assert runs.prepare(tmp_path / "new" / "deep") == str(tmp_path / "new" / "deep")


# --- the last line of defence ------------------------------------------------------------------------------------

@pytest.mark.parametrize("exc, code, words", [
    (MemoryError(), 2, "out of memory"),
    (OverflowError("math range error"), 2, "out of range"),
    (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
    (OSError(28, "No space left on device", "/x/result.json"), 2, "/x/result.json: No space left on device"),
    (BrokenPipeError(32, "Broken pipe"), 2, "broken pipe"),
    (TypeError("unsupported operand"), 1, "internal error: TypeError: unsupported operand"),
])
def test_the_cli_turns_every_exception_into_one_line(tmp_path, capsys, monkeypatch, exc, code, words):
    from ufm.cli import solve

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if isinstance(exc, BrokenPipeError):
        monkeypatch.setattr("ufm.cli._quiet_stdout", lambda: None)

    def boom(args):
        raise exc

    monkeypatch.setattr(solve, "run", boom)
    got, out, err = run_cli(capsys, "solve")
    one_line(got, out, err, code)
    assert words in err
    if code == 1:
        logs = list((tmp_path / "cache" / "ufm").glob("crash-*.log"))
        assert len(logs) == 1 and str(logs[0]) in err
        assert "Traceback" in logs[0].read_text() and "unsupported operand" in logs[0].read_text()


@pytest.mark.slow
def test_a_closed_pipe_is_one_line(tmp_path):
    r = subprocess.run(f"{sys.executable} -m ufm solve --counts 3,3 --steps 20 --json | head -c 10",
                       shell=True, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr


# --- values that used to raise, input accepted but meaningless ---------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["solve", "--radius", "1e308"], "radius must lie in"),
    (["solve", "--radius", "1e-320"], "radius must lie in"),
    (["solve", "--steps", "100000000000", "--tol", "0"], "steps must be at most"),
    (["solve", "--counts", "30"], "one class"),
    (["phase", "--seed", "-1", "--out", "o"], "seed must be an integer"),
    (["phase", "--seed", "1e23", "--out", "o"], "seed must be an integer"),
    (["sweep", "--seed", "-1", "--out", "o"], "seed must be an integer"),
    (["verify", "--seed", "-1"], "seed must be an integer"),
    (["measure", "--seed", "1e20", "--embeddings", "z.npy", "--labels", "y.npy"], "seed must be an integer"),
    (["measure", "--seed", "-1", "--embeddings", "z.npy", "--labels", "y.npy"], "seed must be an integer"),
])
def test_values_out_of_range_are_one_line(capsys, argv, words):
    code, out, err = run_cli(capsys, *argv)
    one_line(code, out, err)
    assert words in err


def test_measure_refuses_arrays_it_cannot_measure(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    zp, yp = data(tmp_path)
    cases = {}
    torch.save(torch.randn(20, 3).to_sparse(), str(tmp_path / "sparse.pt"))
    cases["sparse.pt"] = "to_dense"
    np.save(tmp_path / "zero.npy", np.zeros((20, 3)))
    cases["zero.npy"] = "all zero"
    np.save(tmp_path / "td.npy", np.arange(60).reshape(20, 3).astype("timedelta64[s]"))
    cases["td.npy"] = "expected real numbers"
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    for name, words in cases.items():
        code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", str(tmp_path / name),
                                 "--labels", yp)
        one_line(code, out, err)
        assert words in err, (name, err)
    np.save(tmp_path / "wc.npy", np.ones((2, 3)) + 1j)
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", zp, "--labels", yp, "--classifier",
                             str(tmp_path / "wc.npy"))
    one_line(code, out, err)
    assert "expected real numbers" in err
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", zp, "--labels", yp, "--batches",
                             str(tmp_path / "deep.json"))
    one_line(code, out, err)
    assert "nested too deeply" in err


def test_zero_rows_are_measured_when_the_rows_are_not_normalised(tmp_path, capsys):
    Z = np.random.default_rng(1).standard_normal((20, 3))
    Z[0] = 0
    zp, yp = data(tmp_path, Z=Z)
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--loss", "ce", "--embeddings", zp, "--labels", yp)
    assert code == 0, err
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", zp, "--labels", yp)
    one_line(code, out, err)
    assert "1 row(s) are all zero (first: row 0)" in err


def _csv(path, Z, bom=False):
    path.write_text("\n".join(",".join(f"{v:.17g}" for v in row) for row in np.atleast_2d(Z.T).T) + "\n",
                    encoding="utf-8-sig" if bom else "utf-8")


def test_csv_keeps_every_row(tmp_path, capsys):
    from solvers.workflows import measure as M

    Z = np.random.default_rng(2).standard_normal((20, 3))
    p = tmp_path / "z.csv"
    _csv(p, Z, bom=True)  # Excel's byte-order mark on the first data row
    np.testing.assert_array_equal(M.load_array(str(p)), Z)
    text = p.read_text(encoding="utf-8-sig").splitlines()
    p.write_text("\n".join(["1.0,2.x,3.0"] + text[1:]) + "\n")  # a typo in the first row: refused, not a header
    with pytest.raises(M.InputError, match="line 1 holds something that is not a number"):
        M.load_array(str(p))
    p.write_text("\n".join(["a,b,c"] + text) + "\n")  # a real header
    assert M.load_array(str(p)).shape == (20, 3)
    p.write_text("\n".join(["1,2,3"] + text) + "\n")  # a numeric header, named by --header
    assert M.load_array(str(p), header=True).shape == (20, 3)
    assert M.load_array(str(p)).shape == (21, 3)
    y = tmp_path / "y.csv"
    y.write_text("0\n" + "\n".join(str(v) for v in np.arange(20) % 2) + "\n", encoding="utf-8-sig")
    code, out, err = run_cli(capsys, "measure", "--no-ufm", "--embeddings", str(p), "--labels", str(y), "--header",
                             "--json")  # --header: the first line of every CSV input is a header
    assert code == 0, err
    assert json.loads(out)["N"] == 20


# --- the memory estimate against the measured peak ---------------------------------------------------------------

PEAK = """
import resource, sys, numpy as np
from solvers.workflows import measure as M
def rss():  # the high-water mark since the reset below (ru_maxrss keeps the parent's across exec)
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) * 1024
np.save(sys.argv[1] + '/w.npy', np.random.default_rng(0).standard_normal((50, 4)))
np.save(sys.argv[1] + '/wy.npy', np.arange(50) % 2)
M.measure_row(M.load_array(sys.argv[1] + '/w.npy'), M.load_array(sys.argv[1] + '/wy.npy'), ufm=False)  # warm
import os
open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark to what is resident now
base = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')  # resident now
Z = M.load_array(sys.argv[1] + '/z.npy'); y = M.load_array(sys.argv[1] + '/y.npy')
M.measure_row(Z, y, ufm=False)
print(base, rss())
"""


@pytest.mark.slow
@pytest.mark.parametrize("rows", [1_000_000, 2_000_000, 4_000_000])
def test_the_measure_estimate_matches_the_measured_peak_within_2x(tmp_path, rows):
    from solvers.workflows import measure as M

    d = 8
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((rows, d)))
    np.save(tmp_path / "y.npy", np.arange(rows) % 4)
    r = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path)], env=ENV, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    base, peak = map(int, r.stdout.split())
    estimate = M.COPIES * 8 * rows * d
    assert 0.5 <= (peak - base) / estimate <= 2.0, (peak - base, estimate)
