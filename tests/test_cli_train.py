"""``ufm train``: the JSON contract, the files of --out, resume, and exit code 2 on bad input."""
import json
import os

import numpy as np
import pytest
from cli_run import run_cli

from ufm import Tracker, geometry
from ufm.tracker import GEOMETRY, RESERVED

pytest.importorskip("sklearn")  # the digits dataset

SMALL = ["--dataset", "digits", "--arch", "mlp", "--width", "32", "--dim", "10", "--imbalance", "step:10",
         "--batching", "binding:128", "--epochs", "2", "--ufm-steps", "300", "--ufm-max-n", "200", "--quiet",
         "--no-probe"]  # the probe is tested in test_train.py; its compilation is slow on a busy CPU


@pytest.mark.slow
def test_train_json_contract_and_out_files(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", *SMALL, "--relu", "--json", "--out", str(out),
                                "--checkpoint-every", "1")
    assert code == 0, err
    rep = json.loads(stdout)
    for key, typ in [("train_accuracy", float), ("test_accuracy", float), ("geometry", dict),
                     ("ufm_prediction", dict), ("distance_to_ufm", float), ("epochs", int), ("seconds", float)]:
        assert isinstance(rep[key], typ), key
    geo, ufm = rep["geometry"], rep["ufm_prediction"]
    assert set(geo) >= {"mean_cosines", "nc1", "delta_gm", "etf_distance", "classifier_norms"}
    assert np.array(geo["mean_cosines"]).shape == (10, 10) and rep["epochs"] == 2
    assert np.array(ufm["mean_cosines"]).shape == (10, 10) and ufm["delta_gm"] < 1e-6  # UFM+: the OF
    assert ufm["counts_scaled"] and sum(ufm["problem"]["counts"]) <= 200 and ufm["prediction"]["geometry"] == "of"
    assert rep["distance_to_ufm"] == pytest.approx(geometry.gram_distance(geo["mean_cosines"], ufm["mean_cosines"]))
    assert rep["data"]["counts"][:5] == [rep["data"]["counts"][0]] * 5 and rep["config"]["batching"] == "binding:128"
    rows = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((out / "result.json").read_text())["test_accuracy"] == rep["test_accuracy"]
    z = np.load(out / "embeddings.npz")
    assert z["Z_train"].shape == (sum(rep["data"]["counts"]), 10)
    for name in ("geometry.png", "gram.png", "checkpoint.npz", "checkpoint.json", "geometry_per_epoch.png"):
        assert (out / name).stat().st_size > 0, name
    # every epoch is a ufm.Tracker row (normalised rows, the UFM of ufm_prediction) plus the run's own keys
    assert set(rows[-1]) == RESERVED | {"step", "lr", "train_loss", "train_accuracy", "test_accuracy",
                                        "ncc_train_accuracy", "ncc_test_accuracy", "geometry", "seconds"}
    again = Tracker(None, reference=False, normalize=True).row(2, z["Z_train"], z["y_train"])
    assert {k: rows[-1][k] for k in GEOMETRY} == {k: again[k] for k in GEOMETRY}
    assert rows[-1]["geometry"]["mean_cosines"] == rows[-1]["mean_cosines"] == geo["mean_cosines"]
    assert [r["ufm_delta_gm"] for r in rows] == [ufm["delta_gm"]] * 2 and rows[-1]["counts_scaled"]
    assert rows[-1]["distance_to_ufm"] == pytest.approx(rep["distance_to_ufm"], abs=1e-12)
    # resuming a finished run trains nothing more and reports the same numbers
    code, again, err = run_cli(capsys, "train", *SMALL, "--relu", "--json", "--out", str(out), "--resume")
    assert code == 0, err
    assert json.loads(again)["test_accuracy"] == rep["test_accuracy"]
    assert [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()] == rows
    assert not [n for n in os.listdir(out) if ".tmp" in n]  # every file written atomically, nothing left over


@pytest.mark.slow
def test_train_out_guards(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--no-ufm", "--out", str(out),
                           "--checkpoint-every", "1")
    assert code == 0, err
    before = (out / "checkpoint.npz").read_bytes()
    # without --resume, a folder holding a checkpoint is refused, not overwritten
    code, stdout, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--no-ufm", "--out", str(out))
    assert code == 2 and stdout == "" and "Traceback" not in err
    assert f"{out} holds a checkpoint of another run; use --resume or another --out" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    # a killed writer's temporaries are cleaned at the next start
    stale = out / f".embeddings.npz.tmp{2 ** 22 + 99}.npz"
    stale.write_bytes(b"half")
    code, _, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--no-ufm", "--out", str(out), "--resume")
    assert code == 0, err
    assert not stale.exists() and not [n for n in os.listdir(out) if ".tmp" in n]
    # a truncated or empty checkpoint: exit 2 with a message, no traceback
    for broken in (before[: len(before) // 2], b""):
        (out / "checkpoint.npz").write_bytes(broken)
        code, stdout, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--no-ufm", "--out", str(out),
                                    "--resume")
        assert code == 2 and stdout == "" and "Traceback" not in err
        assert "checkpoint.npz" in err and "truncated or corrupt" in err


@pytest.mark.slow
def test_train_ce_with_bias_and_human_summary(capsys):
    ce = [*SMALL, "--loss", "ce", "--bias", "--no-relu", "--no-ufm"]  # the CE UFM: test_train.py
    code, stdout, err = run_cli(capsys, "train", *ce, "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    assert len(rep["geometry"]["classifier_norms"]) == 10 and rep["ufm_prediction"] is None
    assert rep["config"]["loss"] == "ce" and rep["config"]["bias"] and not rep["config"]["relu"]
    code, stdout, _ = run_cli(capsys, "train", *ce)
    assert code == 0 and "test accuracy" in stdout and "delta_gm" in stdout


BAD = [
    (["--dataset", "mnist"], "never downloads"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "no such folder"),
    (["--imbalance", "step:x"], "imbalance"),
    (["--batching", "bogus:3"], "batching"),
    (["--label-noise", "2"], "label_noise"),
    (["--resume"], "--out"),
    (["--arch", "resnet18", "--dim", "7"], "dim"),
    (["--batching", "binding:64", "--batch-size", "32"], "disagree"),
    (["--epochs", "0"], "epochs"),
    (["--tau", "0"], "tau"),
    (["--optimizer", "lbfgs"], "optimizer"),
    (["--loss", "ce", "--weight-decay", "0"], "weight_decay"),
    (["--batching", "fixed:100000"], "exceeds"),
    (["--batching", "shuffled", "--batch-size", "5000"], "exceeds"),
    (["--seed", "99999999999999999999"], "seed must be an integer in 0..2^32-1"),
    (["--seed", "-5"], "seed must be an integer in 0..2^32-1"),
]


@pytest.mark.parametrize("argv,word", BAD, ids=[w for _, w in BAD])
def test_bad_train_input_exits_2(capsys, argv, word):
    code, out, err = run_cli(capsys, "train", "--epochs", "1", "--quiet", *argv)
    assert code == 2, err
    assert word in err and "Traceback" not in err and out == ""
