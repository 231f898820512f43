import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ufm import theory
from cli_run import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_solve_json_contract(capsys, tmp_path):
    code, out, err = run_cli(capsys, "solve", "--loss", "sc", "--counts", "20,20,3,3", "--tau", "0.2", "--dim",
                             "6", "--nonneg", "--json", "--out", str(tmp_path / "run"))
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
    assert rep["dtype"] == "float64" and geo["delta_gm"] < 1e-6  # float64 without any flag
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["loss"] == rep["loss"]
    arrays = np.load(tmp_path / "run" / "solution.npz")
    assert arrays["Z"].shape == (46, 6) and arrays["labels"].tolist() == [0] * 20 + [1] * 20 + [2] * 3 + [3] * 3


def test_solve_ce_json_has_classifier_norms(capsys):
    code, out, err = run_cli(capsys, "solve", "--loss", "ce", "--counts", "6,6,6,6", "--constraint", "ball",
                             "--tol", "1e-14", "--json")
    assert code == 0, err
    rep = json.loads(out)
    r_w = theory.ce_classifier_radius(4, 5e-3)
    assert np.allclose(rep["geometry"]["classifier_norms"], r_w, atol=1e-6)
    assert rep["prediction"]["geometry"] == "etf" and abs(rep["gap_to_prediction"]) <= 1e-6


def line(out, pattern):
    """The one line of ``out`` matching ``pattern`` from its start to its end (``re.fullmatch``)."""
    found = [m for m in map(lambda s: re.fullmatch(pattern, s), out.splitlines()) if m]
    assert len(found) == 1, (pattern, out)
    return found[0]


NUM = r"(-?[0-9.]+(?:e[-+][0-9]+)?)"


def test_solve_human_summary(capsys):
    code, out, _ = run_cli(capsys, "solve", "--counts", "6,6,6,6", "--tau", "0.5", "--dim", "4")
    assert code == 0
    m = line(out, rf"loss +{NUM} +\(float64, (\d+) steps, converged, [0-9.]+ s\)")
    loss = float(m.group(1))
    best = theory.sc_etf_loss(6, 4, 0.5)
    m = line(out, rf"predicted +{NUM} +\(etf: .*\)")
    assert float(m.group(1)) == pytest.approx(best, abs=1e-10) and loss == pytest.approx(best, abs=1e-9)
    assert abs(float(line(out, rf"difference {NUM}").group(1))) <= 1e-9
    rows = out.splitlines()
    k = rows.index("cosines between class means:")
    cos = np.array([[float(v) for v in r.split()] for r in rows[k + 1:k + 5]])
    assert np.allclose(cos, theory.etf_gram(4), atol=1e-3)
    m = line(out, rf"delta_gm {NUM} \(0 at OF\) +etf_distance {NUM} +nc1 {NUM}")
    assert float(m.group(1)) == pytest.approx(theory.etf_delta_gm(4), abs=1e-3)
    assert float(m.group(2)) <= 1e-6 and float(m.group(3)) <= 1e-9
    assert "float32" not in out and "NOT" not in out


@pytest.mark.slow
def test_solve_human_summary_float32_not_converged(capsys):
    code, out, _ = run_cli(capsys, "solve", "--counts", "6,6,6,6", "--tau", "0.5", "--dim", "4", "--float32",
                           "--steps", "3")
    assert code == 0
    line(out, r"loss +[0-9.]+ +\(float32, 3 steps, NOT converged \(raise --steps\), [0-9.]+ s\)")
    assert not any(re.search(r"\bconverged\b", s) and "NOT" not in s for s in out.splitlines())
    assert line(out, r"note: float32 resolves .*drop --float32.*")


@pytest.mark.slow
def test_float64_by_default_float32_opt_in_x64_a_no_op(capsys):
    argv = ["solve", "--counts", "5,5,2", "--tau", "0.5", "--dim", "3", "--json"]
    reps = {}
    for flag in ([], ["--x64"], ["--float32"]):
        code, out, err = run_cli(capsys, *argv, *flag)
        assert code == 0, err
        reps[" ".join(flag)] = json.loads(out)
    assert reps[""]["dtype"] == reps["--x64"]["dtype"] == "float64" and reps["--float32"]["dtype"] == "float32"
    assert reps["--x64"]["loss"] == reps[""]["loss"] and reps["--x64"]["steps"] == reps[""]["steps"]
    assert reps["--float32"]["loss"] != reps[""]["loss"]
    for flag, dtype in [([], "float64"), (["--x64"], "float64"), (["--float32"], "float32")]:
        code, out, err = run_cli(capsys, "certify", *argv[1:], *flag)
        assert code == 0, err
        assert json.loads(out)["dtype"] == dtype


def test_certify_human_summary(capsys):
    code, out, _ = run_cli(capsys, "certify", "--counts", "6,6,3", "--tau", "0.5", "--dim", "3")
    assert code == 0
    line(out, r"loss +[0-9.]+ +\(float64, \d+ steps, converged, [0-9.]+ s\)")
    line(out, r"certificate \(reduced, CLARABEL, [a-z_]+, [0-9.]+ s\): CERTIFIED")
    bound = float(line(out, rf"lower bound {NUM}(?: .*)?").group(1))
    m = line(out, rf"loss \(f64\) +{NUM} +gap {NUM} \(tol 1e-06 relative\)")
    assert abs(float(m.group(1)) - bound) <= 1e-6 and abs(float(m.group(2))) <= 1e-6
    line(out, r"relaxed Gram: rank 2 \(dim 3: tight\)")
    assert "NOT" not in out and "hint" not in out


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
