"""Input guards of the command line: strict lists, seeds, the memory estimate and its refusal, atomic files and
stale temporaries, the announcement of a long solve."""
import argparse
import os
import time

import pytest
from cli_run import run_cli

from ufm.cli import common


@pytest.mark.parametrize("text", ["3,,4", "3,4,", ",3,4", " ", "3, ,4"])
def test_lists_refuse_empty_entries(text):
    with pytest.raises(argparse.ArgumentTypeError, match="counts: empty"):
        common.named_int_list("counts")(text)
    with pytest.raises(argparse.ArgumentTypeError, match="empty"):
        common.float_list(text)
    assert common.named_int_list("counts")(" 3, 4") == [3, 4]


def test_counts_with_an_empty_entry_exit_2(capsys):
    code, out, err = run_cli(capsys, "solve", "--counts", "3,,4", "--steps", "5")
    assert code == 2 and out == "" and "counts: empty entry" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", "4294967296", "1.5", "x"])
@pytest.mark.parametrize("command", [["solve"], ["certify", "--bound-only"], ["batches", "--nonneg"], ["train"]])
def test_bad_seed_exits_2(capsys, command, seed):
    code, out, err = run_cli(capsys, *command, "--seed", seed)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "seed must be an integer in 0..2^32-1" in err


def test_seed_bounds_accepted():
    assert common.seed_int("0") == 0 and common.seed_int(str(2 ** 32 - 1)) == 2 ** 32 - 1


class P:
    def __init__(self, counts, dim=None, loss="sc", batching="full"):
        self.counts, self.dim, self.loss, self.batching = counts, dim, loss, batching


def test_memory_estimate_grows_with_the_problem():
    small = common.memory_estimate(P([30, 30, 3, 3]))
    assert 0 < small < 50 * 2 ** 20
    assert common.memory_estimate(P([10 ** 9, 10 ** 9])) > 10 ** 12
    assert common.memory_estimate(P([3, 4], dim=10 ** 8)) >= 6 * 7 * 10 ** 8 * 8
    n = 1000
    assert common.memory_estimate(P([n]), certificate="full") - common.memory_estimate(P([n])) \
        == common.CERTIFY_COPIES * n * n * 8
    assert common.memory_estimate(P([n, n], batching="fixed:10")) < common.memory_estimate(P([n, n]))
    assert common.available_memory() > 2 ** 20


@pytest.mark.parametrize("argv", [
    ["solve", "--counts", "1000000000,1000000000"],
    ["solve", "--dim", "100000000"],
    ["solve", "--counts", "3,3", "--starts", "1000000000000"],
    ["certify", "--counts", "1000000000,1000000000"],
    ["certify", "--bound-only", "--method", "full", "--counts", "200000,200000"],
    ["batches", "--nonneg", "--counts", "1000000000,1000000000", "--batching", "fixed:4"],
    ["batches", "--nonneg", "--counts", "4,4", "--batching", "shuffled:2", "--epochs", "1000000000000"],
])
def test_too_large_exits_2_at_once(capsys, argv):
    t0 = time.perf_counter()
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert "too large" in err and "needs about" in err and "available" in err and "--allow-large" in err
    assert time.perf_counter() - t0 < 20


def test_allow_large_lets_a_run_through(capsys, monkeypatch):
    monkeypatch.setattr(common, "available_memory", lambda: 1000)  # a tiny machine
    code, _, err = run_cli(capsys, "solve", "--counts", "3,3", "--steps", "20")
    assert code == 2 and "too large" in err
    code, _, err = run_cli(capsys, "solve", "--counts", "3,3", "--steps", "20", "--allow-large")
    assert code == 0, err


def test_long_solve_is_announced(capsys, monkeypatch):
    from ufm.cli import solve

    monkeypatch.setattr(solve, "SLOW_WORK", 10)
    code, _, err = run_cli(capsys, "solve", "--counts", "3,3", "--steps", "20")
    assert code == 0 and "solving N=6" in err and "this may take a while" in err
    assert "ETA" not in err  # stderr is not a terminal here: no bar
    monkeypatch.setattr(solve, "SLOW_WORK", 1e12)
    code, _, err = run_cli(capsys, "solve", "--counts", "3,3", "--steps", "20")
    assert code == 0 and "this may take a while" not in err


def test_atomic_write_and_stale_temporaries(tmp_path):
    target = tmp_path / "solution.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with common.atomic(target) as tmp:
            assert tmp.endswith(".npz") and os.path.dirname(tmp) == str(tmp_path)
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["solution.npz"]
    with common.atomic(target) as tmp:
        open(tmp, "w").write("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["solution.npz"]
    dead = 2 ** 22 + 12345  # above any pid_max: no such process
    stale = [f".solution.npz.tmp{dead}.npz", f"history.jsonl.tmp{dead}", f".gram.png.tmp{dead}.png"]
    live = f".result.json.tmp{os.getpid()}"
    for name in [*stale, live, "keep.tmpl"]:
        (tmp_path / name).write_text("x")
    assert sorted(common.clean_stale_tmp(tmp_path)) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted([live, "keep.tmpl", "solution.npz"])


def test_solve_out_cleans_stale_and_leaves_no_temporaries(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / f".solution.npz.tmp{2 ** 22 + 7}.npz").write_text("x")
    code, _, err = run_cli(capsys, "solve", "--counts", "3,3", "--steps", "20", "--out", str(out))
    assert code == 0, err
    assert sorted(os.listdir(out)) == [".lock", "result.json", "solution.npz"]  # .lock: the folder's lock (ufm.runs)


@pytest.mark.parametrize("where", ["write", "fsync", "close"])
def test_a_ctrl_c_inside_the_folder_probe_leaves_no_probe(tmp_path, monkeypatch, where):
    """A KeyboardInterrupt while the write probe exists (``ufm.runs.prepare``) still removes it: the run folder
    holds no temporary after an interrupted start."""
    from ufm import runs

    real = getattr(os, where)

    def interrupted(*args):
        real(*args)  # the probe exists (and, for close, its descriptor is closed)
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.os, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.prepare(tmp_path / "out")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "out") == []
    assert runs.prepare(tmp_path / "out") == str(tmp_path / "out")  # and the folder still takes a run
