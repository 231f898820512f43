import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from solvers.workflows import sweep
from ufm import geometry, imbalance, records, theory
from cli_run import run_cli
from ufm.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = ["sweep", "--loss", "sc", "--imbalance", "step", "--classes", "3", "--n-min", "2", "--ratios", "1,3",
        "--taus", "0.5,1.0", "--dim", "4", "--nonneg", "both"]  # float64: the default


def test_imbalance_profiles():
    assert imbalance.step_counts(4, 3, 10) == (30, 30, 3, 3)
    assert imbalance.step_counts(5, 2, 3, minority_fraction=0.4) == (6, 6, 6, 2, 2)
    lt = imbalance.long_tail_counts(5, 2, 16)
    assert lt[0] == 32 and lt[-1] == 2 and list(lt) == sorted(lt, reverse=True)
    assert lt == tuple(round(32 * 16 ** (-c / 4)) for c in range(5))
    assert imbalance.majority_classes(4) == [True, True, False, False]
    for bad in [dict(K=1, n_min=2, R=2), dict(K=3, n_min=0, R=2), dict(K=3, n_min=2, R=0.5)]:
        with pytest.raises(ValueError):
            imbalance.step_counts(**bad)


def test_records_survive_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    records.append_record(path, {"id": "a", "x": 1.0})
    records.append_record(path, {"id": "b", "x": float("nan")})  # NaN becomes null, never invalid JSON
    with open(path, "ab") as fh:
        fh.write(b'{"id": "c", "x": 3')  # a writer killed mid-line
    assert [r["id"] for r in records.read_records(path)] == ["a", "b"]
    assert records.repair(path) == len(b'{"id": "c", "x": 3')
    records.append_record(path, {"id": "c", "x": 3.0})
    assert [r["id"] for r in records.read_records(path)] == ["a", "b", "c"]
    assert records.read_records(path)[1]["x"] is None
    assert records.read_records(tmp_path / "missing.jsonl") == []


def test_cosine_groups():
    C = np.array([[1, 0.1, 0.2, 0.3], [0.1, 1, 0.4, 0.5], [0.2, 0.4, 1, 0.9], [0.3, 0.5, 0.9, 1]])
    s = geometry.cosine_groups(C, [True, True, False, False])
    assert s == pytest.approx({"maj_maj": 0.1, "min_min": 0.9, "maj_min": (0.2 + 0.3 + 0.4 + 0.5) / 4})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(GRID + ["--out", str(out)])
    assert code == 0
    (out / "stdout.txt").write_text(text.getvalue())
    return out, records.read_records(out / "results.jsonl")


@pytest.mark.slow
def test_sweep_is_float64_by_default_and_its_summary_counts_certificates(swept):
    out, recs = swept
    assert all(r["dtype"] == "float64" for r in recs)
    lines = (out / "stdout.txt").read_text().splitlines()
    n = sum(r["certified"] is True for r in recs)
    assert n == len(recs) == 8
    assert [s for s in lines if s.startswith("certified:")] == [f"certified: {n} of {len(recs)} points"]
    assert re.fullmatch(rf"{len(recs)} points in .*results\.jsonl; figures .*", lines[0])


@pytest.mark.slow
def test_sweep_float32_opt_in(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sweep", "--classes", "2", "--n-min", "2", "--ratios", "1", "--taus", "1.0",
                             "--no-certify", "--float32", "--json", "--out", str(tmp_path))
    assert code == 0, err
    recs = [json.loads(s) for s in out.splitlines()]
    assert len(recs) == 1 and recs[0]["dtype"] == "float32"
    code, out, err = run_cli(capsys, "sweep", "--classes", "2", "--n-min", "2", "--ratios", "1", "--taus", "1.0",
                             "--no-certify", "--x64", "--json", "--out", str(tmp_path / "x64"))
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["dtype"] == "float64"


@pytest.mark.slow
def test_sweep_points_match_the_theorems(swept):
    out, recs = swept
    assert len(recs) == 2 * 2 * 2 and len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        for key in ["R", "tau", "loss", "lower_bound", "gap", "counts", "nonneg", "loss_type", "batching",
                    "mean_cosines", "delta_gm", "etf_distance", "seconds"]:
            assert key in r
        assert set(r["mean_cosines"]) == {"maj_maj", "min_min", "maj_min"}
        if r["nonneg"]:
            assert abs(r["loss"] - theory.sc_of_loss(r["counts"], r["tau"])) <= 1e-6 and r["delta_gm"] < 1e-6
        elif r["R"] == 1:
            assert abs(r["loss"] - theory.sc_etf_loss(2, 3, r["tau"])) <= 1e-6
            assert r["mean_cosines"]["maj_min"] == pytest.approx(-0.5, abs=1e-6)
    imb = [r for r in recs if r["R"] == 3 and not r["nonneg"]]
    assert imb and all(r["mean_cosines"]["min_min"] > -0.5 + 1e-3 for r in imb)  # minorities attract


@pytest.mark.slow
def test_figures_and_plot_redraws_them(swept, capsys, tmp_path):
    out, _ = swept
    names = ["cosines_vs_R", "heatmaps", "gaps"]
    for n in names:
        for ext in ("png", "pdf"):
            assert (out / f"{n}.{ext}").stat().st_size > 1000
    code, stdout, err = run_cli(capsys, "plot", str(out), "--to", str(tmp_path))
    assert code == 0, err
    for n in names:
        assert (tmp_path / f"{n}.png").read_bytes() == (out / f"{n}.png").read_bytes()
    code, _, err = run_cli(capsys, "plot", str(tmp_path / "nowhere"))
    assert code == 2 and "results.jsonl" in err


@pytest.mark.slow
def test_rerun_skips_points_already_done(swept, capsys):
    out, recs = swept
    code, _, err = run_cli(capsys, *GRID, "--out", str(out))
    assert code == 0
    again = records.read_records(out / "results.jsonl")
    assert [r["id"] for r in again] == [r["id"] for r in recs]


@pytest.mark.slow
def test_killed_sweep_resumes_without_duplicates(tmp_path, swept):
    """SIGKILL a sweep once its first point is written, rerun it: same points as an uninterrupted run."""
    _, full = swept
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "ufm"] + GRID + ["--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (path.exists() and path.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = records.read_records(path)
    assert 1 <= len(partial) < len(full)
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
    resumed = records.read_records(path)
    assert len(resumed) == len({r["id"] for r in resumed}) == len(full)
    by_id = {r["id"]: r for r in full}
    for r in resumed:
        assert r["loss"] == pytest.approx(by_id[r["id"]]["loss"], abs=1e-6)
        assert r["delta_gm"] == pytest.approx(by_id[r["id"]]["delta_gm"], abs=1e-6)
    assert all(line.strip() for line in path.read_text().splitlines())
    json.loads(path.read_text().splitlines()[-1])


@pytest.mark.parametrize("argv,word", [(["--ratios", "0.5,2"], "R must be >= 1"), (["--ratios", ""], "empty"),
                                        (["--taus", ""], "empty"), (["--n-min", "0"], "n_min"),
                                        (["--classes", "1"], "classes"), (["--loss", "mse"], "loss"),
                                        (["--taus", "-1"], "tau"), (["--steps", "0"], "steps"),
                                        (["--epochs", "0", "--batchings", "shuffled:2"], "epochs"),
                                        (["--batchings", "fixed:2", "--seed", "-1"], "seed"),
                                        (["--ratios", "1e12"], "samples; at most 1e+06 (10^6)"),
                                        (["--ratios", "1e308"], "samples; at most"),
                                        (["--seed", "99999999999999999999"], "seed")])
def test_bad_grids_exit_2(capsys, tmp_path, argv, word):
    code, out, err = run_cli(capsys, "sweep", "--out", str(tmp_path / "x"), *argv)
    assert code == 2 and word in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sweep.MAX_SAMPLES == 10**6
