"""``ufm batches`` and the batching flags of ``ufm solve``: JSON contract, values checked against the library."""
import json
import re

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


def test_an_epoch_scheme_is_judged_over_the_epochs_that_force_the_of(capsys):
    """One epoch of shuffled:8 does not force the OF, the union of a few does: by default the summary judges the
    fewest epochs whose batch graph meets conditions (a) and (b) (and says so), and --epochs judges exactly what it
    is given."""
    args = ("--counts", "10,10,2", "--batching", "shuffled:8")
    rep = batches_json(capsys, *args)
    E = rep["epochs"]
    assert rep["unique_of"] is True and rep["epochs_rule"] == "fewest meeting (a) and (b)" and E > 1
    assert rep["n_batches"] == 3 * E and f"of {E} epochs" in rep["batch_set"]
    fewer = batches_json(capsys, *args, "--epochs", str(E - 1))
    assert fewer["epochs_rule"] == "given" and (fewer["disconnected_classes"] or fewer["unmet_class_pairs"])
    code, out, _ = run_cli(capsys, "batches", *args)
    assert code == 0
    exact_line(out, rf"OF unique: True over {E} epochs \(the fewest epochs whose batch graph meets \(a\) and \(b\); "
                    r"so does every longer run's\): conditions \(a\) and \(b\) hold")
    code, out, _ = run_cli(capsys, "batches", *args, "--epochs", "1")
    exact_line(out, r"OF unique: False over 1 epoch \(the epochs given by --epochs\): witness: .*")


def exact_line(out, pattern):
    found = [m for m in (re.fullmatch(pattern, s) for s in out.splitlines()) if m]
    assert len(found) == 1, (pattern, out)
    return found[0]


def test_batches_human_summary_states_the_verdict(capsys):
    """The summary's lines say what the JSON says: (a) and (b), the verdict and the witness, word for word."""
    code, out, _ = run_cli(capsys, "batches", "--counts", "5,5,2")
    assert code == 0
    exact_line(out, r"\(a\) classes tied together through batches: yes")
    exact_line(out, r"\(b\) every pair of classes meets with a positive anchor: yes")
    exact_line(out, r"OF unique: True \(conditions \(a\) and \(b\) hold\)")
    of = float(exact_line(out, r"SC in the UFM\+: .* in dim 3; OF minimum ([0-9.]+) \(tau 0.1\)").group(1))
    assert of == pytest.approx(theory.sc_of_loss((5, 5, 2), 0.1), abs=1e-9)
    assert "witness" not in out
    rep = batches_json(capsys, "--counts", "2,2,2", "--batches", "0,1,2,3;2,3,4,5")
    code, out, _ = run_cli(capsys, "batches", "--counts", "2,2,2", "--batches", "0,1,2,3;2,3,4,5")
    assert code == 0 and rep["unique_of"] is False
    exact_line(out, r"\(a\) classes tied together through batches: yes")
    exact_line(out, r"\(b\) every pair of classes meets with a positive anchor: no, pairs \[\[0, 2\]\]")
    exact_line(out, r"OF unique: False \(witness: .*\)")
    m = exact_line(out, r"witness moves samples \[(.*)\]: loss ([0-9.e-]+) vs OF minimum ([0-9.]+), Gram changes "
                        r"by ([0-9.]+), verified True")
    assert [int(v) for v in m.group(1).split(",")] == rep["witness"]["moved_samples"]
    assert float(m.group(2)) == pytest.approx(float(m.group(3)), abs=1e-9)
    code, out, _ = run_cli(capsys, "batches", "--counts", "3,3", "--batches", "0,1,3;2,4,5")
    exact_line(out, r"\(a\) classes tied together through batches: no, classes \[0, 1\] fall apart \(parts per "
                    r"class \[2, 2\]\)")
    exact_line(out, r"OF unique: False \(witness: .*\)")


def test_solve_binding_example_reaches_the_of(capsys):
    code, out, err = run_cli(capsys, "solve", "--loss", "sc", "--counts", "12,12,3,3", "--tau", "0.3", "--dim", "6",
                             "--nonneg", "--batching", "binding:6", "--json")
    assert code == 0, err
    rep = json.loads(out)
    b = rep["batching"]
    assert b["scheme"] == "binding:6" and b["unique_of"] is True and b["batches_per_epoch"] == 5
    assert -1e-12 <= b["gap_to_of"] <= 1e-8 and len(b["delta_gm_history"]) == b["epochs"] + 1
    p = Problem(counts=(12, 12, 3, 3), tau=0.3, dim=6, nonneg=True, batching="binding:6")
    assert b["of_loss"] == pytest.approx(theory.sc_of_loss(p.counts, 0.3, batches=batching.union_batches(
        p, b["epochs"]), labels=p.label_array), rel=1e-12)
    assert rep["geometry"]["delta_gm"] <= 1e-6 and rep["prediction"]["unique"] is True
    assert rep["steps"] == 5 * b["epochs"] and rep["problem"]["batch_seed"] == 0 and rep["dtype"] == "float64"


def test_solve_binding_human_summary(capsys):
    code, out, _ = run_cli(capsys, "solve", "--counts", "12,12,3,3", "--tau", "0.3", "--dim", "6", "--nonneg",
                           "--batching", "binding:6")
    assert code == 0
    m = exact_line(out, r"loss +([0-9.]+) +\(float64, (\d+) steps, converged, [0-9.]+ s\)")
    m2 = exact_line(out, r"batching   binding:6: (\d+) epochs of 5 batches; loss is the mean over the anchor slots "
                         r"of the batches of (\d+) epochs of .*")
    assert int(m.group(2)) == 5 * int(m2.group(1)) and m2.group(1) == m2.group(2)
    m3 = exact_line(out, r"OF minimum of these batches ([0-9.]+), gap (-?[0-9.]+e[-+]\d+); OF unique: True")
    assert abs(float(m.group(1)) - float(m3.group(1))) <= 1e-9 and abs(float(m3.group(2))) <= 1e-8
    exact_line(out, r"predicted  of: .*the OF is the unique minimiser")


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
