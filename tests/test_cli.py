import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ufm import theory
from cli_run import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_solve_json_contract(capsys, tmp_path):
    code, out, err = run_cli(capsys, "solve", "--loss", "sc", "--counts", "20,20,3,3", "--tau", "0.2", "--dim",
                             "6", "--nonneg", "--x64", "--json", "--out", str(tmp_path / "run"))
    assert code == 0, err
    rep = json.loads(out)  # exactly one JSON object
    for key, typ in [("problem", dict), ("loss", float), ("steps", int), ("converged", bool), ("seconds", float),
                     ("dtype", str), ("seed", int), ("geometry", dict), ("prediction", dict)]:
        assert isinstance(rep[key], typ), key
    assert set(rep["problem"]) >= {"counts", "loss", "tau", "dim", "constraint", "radius", "nonneg",
                                   "weight_decay", "feature_decay", "bias", "batching"}
    geo = rep["geometry"]
    assert set(geo) >= {"mean_cosines", "nc1", "delta_gm", "etf_distance", "classifier_norms"}
    assert np.array(geo["mean_cosines"]).shape == (4, 4) and geo["classifier_norms"] is None
    assert rep["prediction"]["geometry"] == "of"
    assert abs(rep["loss"] - theory.sc_of_loss([20, 20, 3, 3], 0.2)) <= 1e-6
    assert abs(rep["prediction"]["loss"] - theory.sc_of_loss([20, 20, 3, 3], 0.2)) <= 1e-15
    assert rep["dtype"] == "float64" and geo["delta_gm"] < 1e-6
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["loss"] == rep["loss"]
    arrays = np.load(tmp_path / "run" / "solution.npz")
    assert arrays["Z"].shape == (46, 6) and arrays["labels"].tolist() == [0] * 20 + [1] * 20 + [2] * 3 + [3] * 3


def test_solve_ce_json_has_classifier_norms(capsys):
    code, out, err = run_cli(capsys, "solve", "--loss", "ce", "--counts", "6,6,6,6", "--constraint", "ball",
                             "--x64", "--tol", "1e-14", "--json")
    assert code == 0, err
    rep = json.loads(out)
    r_w = theory.ce_classifier_radius(4, 5e-3)
    assert np.allclose(rep["geometry"]["classifier_norms"], r_w, atol=1e-6)
    assert rep["prediction"]["geometry"] == "etf" and abs(rep["gap_to_prediction"]) <= 1e-6


def test_solve_human_summary(capsys):
    code, out, _ = run_cli(capsys, "solve", "--counts", "6,6,6,6", "--tau", "0.5", "--dim", "4")
    assert code == 0
    assert "predicted" in out and "etf" in out and "converged" in out and "cosines" in out


BAD = [
    (["--tau", "0"], "tau"), (["--tau", "nan"], "tau"), (["--counts", "3,0"], "counts"),
    (["--counts", "3,x"], "counts"), (["--counts", ""], "counts"), (["--dim", "0"], "dim"),
    (["--radius", "-1"], "radius"), (["--loss", "mse"], "loss"), (["--constraint", "cube"], "constraint"),
    (["--loss", "ce", "--weight-decay", "0"], "weight_decay"), (["--loss", "ce", "--feature-decay", "-1"],
                                                                "feature_decay"),
    (["--steps", "0"], "steps"), (["--lr", "-2"], "lr"), (["--tol", "-1"], "tol"),
    (["--optimizer", "bfgs"], "optimizer"), (["--constraint", "none"], "constraint"),
]


@pytest.mark.parametrize("argv,word", BAD)
def test_bad_input_exits_2_with_message(capsys, argv, word):
    code, out, err = run_cli(capsys, "solve", *argv)
    assert code == 2
    assert word in err and "Traceback" not in err and out == ""


def test_entry_point_exit_code_and_no_traceback():
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-m", "ufm", "solve", "--counts", "3,-1"], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == 2 and "counts" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ufm"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and "solve" in r.stdout
