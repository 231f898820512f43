import json

import pytest

from solvers.verify import found_geometry, verify
from ufm import theory
from cli_run import run_cli


def test_default_example_runs_and_holds(capsys):
    code, out, err = run_cli(capsys, "verify", "--json")
    assert code == 0, err
    rep = json.loads(out)
    rows = {r["theorem"].split(":")[0]: r for r in rep["rows"]}
    assert rep["holds"] and len(rep["rows"]) == 5
    assert rows["SC, sphere"]["verdict"] == "not applicable" and "imbalanced" in rows["SC, sphere"]["reason"]
    relu = rows["SC + ReLU"]
    assert relu["verdict"] == "holds" and relu["found"].startswith("of")
    assert abs(relu["loss"] - theory.sc_of_loss([20, 20, 2, 2], 0.5)) <= 1e-6 and relu["certified"]
    land = rows["SC landscape"]
    assert land["verdict"] == "holds" and abs(land["gap"]) <= 1e-6 and land["found"].startswith("other")


def test_balanced_counts_check_etf_theorems():
    rows = verify((4, 4, 4), tau=0.5, dim=4)
    by = {r.theorem.split(":")[0]: r for r in rows}
    etf = by["SC, sphere"]
    assert etf.verdict == "holds" and abs(etf.loss - theory.sc_etf_loss(4, 3, 0.5)) <= 1e-6
    ce = by["L2-regularised CE"]
    assert ce.verdict == "holds" and ce.found.startswith("etf")
    assert by["SC landscape"].verdict == "holds"


def test_batching_without_uniqueness_gives_a_verified_witness():
    # classes 0 and 2 never meet: the OF is not the unique minimiser
    batches = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 0, 4]]
    rows = verify((4, 4, 2), tau=0.5, dim=4, batches=batches, batching="explicit")
    graph = [r for r in rows if r.theorem.startswith("Batch graph")][0]
    assert graph.verdict == "holds" and "not unique" in graph.prediction
    assert abs(graph.loss_difference) <= 1e-9


def test_too_few_steps_fails_with_a_reason(capsys):
    rows = verify((20, 20, 2, 2), tau=0.5, dim=6, steps=2)
    land = [r for r in rows if r.theorem.startswith("SC landscape")][0]
    assert land.verdict == "fails" and "gap" in land.reason and not land.certified
    code, out, err = run_cli(capsys, "verify", "--steps", "2", "--json")  # the same problems: exit code 1
    assert code == 1 and json.loads(out)["holds"] is False


def test_found_geometry():
    assert found_geometry(theory.etf_gram(4))[0] == "etf"
    assert found_geometry(theory.of_gram(4))[0] == "of"
    assert found_geometry(0.5 * theory.of_gram(3) + 0.5)[0] == "other"


@pytest.mark.parametrize("argv,word", [(["--counts", "3,0"], "counts"), (["--tau", "-1"], "tau"),
                                        (["--batching", "fixed:0"], "batch")])
def test_bad_input_exits_2(capsys, argv, word):
    code, out, err = run_cli(capsys, "verify", *argv)
    assert code == 2 and word in err
