"""``ufm batches`` and the batching flags of ``ufm solve``: JSON contract, values checked against the library."""
import json

import numpy as np
import pytest
from reference import sc_loss_loops
from cli_run import run_cli

from ufm import Problem, batching, interaction, theory


def batches_json(capsys, *argv):
    code, out, err = run_cli(capsys, "batches", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_batches_fixed_scheme_json_contract(capsys, tmp_path):
    rep = batches_json(capsys, "--counts", "10,10,2", "--batching", "fixed:4", "--seed", "5", "--out", str(tmp_path))
    p = Problem(counts=(10, 10, 2), batching="fixed:4", batch_seed=5)
    assert rep["batches"] == batching.batch_list(p) and rep["problem"]["batch_seed"] == 5
    assert rep["n_batches"] == 6 and rep["batch_sizes"] == [4, 4, 4, 4, 4, 2]
    v = interaction.check_problem(p)
    assert rep["unique_of"] is v.unique_of is False
    assert rep["disconnected_classes"] == v.disconnected_classes and rep["disconnected_classes"]
    assert rep["unmet_class_pairs"] == [list(q) for q in v.unmet_class_pairs]
    w = rep["witness"]
    assert w["verified"] is True and abs(w["loss"] - rep["of_loss"]) <= 1e-9 and w["gram_change"] >= 0.5
    assert rep["of_loss"] == pytest.approx(theory.sc_of_loss(p.counts, 0.1, batches=rep["batches"]), rel=1e-12)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["witness"] == w
    arrays = np.load(tmp_path / "witness.npz")
    y = arrays["labels"]
    assert abs(sc_loss_loops(arrays["Z"], y, 0.1, rep["batches"]) - rep["of_loss"]) <= 1e-9


def test_batches_explicit_text_and_file(capsys, tmp_path):
    rep = batches_json(capsys, "--counts", "3,3", "--batches", "0,1,3;2,4,5")
    assert rep["n_batches"] == 2 and rep["batch_sizes"] == [3, 3] and rep["unique_of"] is False
    assert rep["disconnected_classes"] == [0, 1] and rep["unmet_class_pairs"] == []
    assert rep["witness"]["kind"] == "colouring" and rep["problem"]["batching"] == "explicit"
    (tmp_path / "b.txt").write_text("0,1,3\n2,4,5\n")
    again = batches_json(capsys, "--counts", "3,3", "--batches", str(tmp_path / "b.txt"), "--dim", "3")
    assert again["batches"] == rep["batches"] and again["witness"]["kind"] == "spare_direction"


def test_batches_full_binding_and_epochs(capsys):
    rep = batches_json(capsys, "--counts", "5,5,2")
    assert rep["unique_of"] is True and rep["witness"] is None and rep["n_batches"] == 1
    rep = batches_json(capsys, "--counts", "10,10,2", "--batching", "binding:4", "--epochs", "3")
    assert rep["unique_of"] is True and rep["n_batches"] == 3 * 5 and max(rep["batch_sizes"]) == 4 + 3
    code, out, _ = run_cli(capsys, "batches", "--counts", "10,10,2", "--batching", "shuffled:4")
    assert code == 0 and "OF unique" in out and "(b)" in out


def test_solve_binding_example_reaches_the_of(capsys):
    code, out, err = run_cli(capsys, "solve", "--loss", "sc", "--counts", "12,12,3,3", "--tau", "0.3", "--dim", "6",
                             "--nonneg", "--batching", "binding:6", "--x64", "--json")
    assert code == 0, err
    rep = json.loads(out)
    b = rep["batching"]
    assert b["scheme"] == "binding:6" and b["unique_of"] is True and b["batches_per_epoch"] == 5
    assert -1e-12 <= b["gap_to_of"] <= 1e-8 and len(b["delta_gm_history"]) == b["epochs"] + 1
    p = Problem(counts=(12, 12, 3, 3), tau=0.3, dim=6, nonneg=True, batching="binding:6")
    assert b["of_loss"] == pytest.approx(theory.sc_of_loss(p.counts, 0.3, batches=batching.union_batches(
        p, b["epochs"]), labels=p.label_array), rel=1e-12)
    assert rep["geometry"]["delta_gm"] <= 1e-6 and rep["prediction"]["unique"] is True
    assert rep["steps"] == 5 * b["epochs"] and rep["problem"]["batch_seed"] == 0


BAD = [
    (["batches", "--batching", "fixed:0"], "batch size"), (["batches", "--batching", "fixed:99"], "larger"),
    (["batches", "--batching", "chunks:3"], "unknown"), (["batches", "--batches", "0,1;;2"], "empty"),
    (["batches", "--batches", "0,99"], "outside"), (["batches", "--batches", "no-such-file"], "neither"),
    (["batches", "--batches", "0,1", "--batching", "fixed:2"], "not both"), (["batches", "--epochs", "0"], "epochs"),
    (["solve", "--batching", "shuffled:4", "--epochs", "0"], "epochs"),
    (["solve", "--loss", "ce", "--batching", "shuffled:4"], "loss"),
]


@pytest.mark.parametrize("argv,word", BAD)
def test_bad_batching_input_exits_2(capsys, argv, word):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and word in err and "Traceback" not in err and out == ""
