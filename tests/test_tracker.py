"""``ufm.Tracker``: one whole history row per ``log`` call, the UFM reference called once per count vector (the
installed ``certified`` entry point, or any callable), arrays of any framework, a figure on close."""
import importlib.util
import json
import os

import numpy as np
import pytest

import ufm
from solvers.workflows.measure import certified_reference, measure_row
from ufm import tracker as tracker_mod
from ufm.tracker import Tracker


def collapsing(counts, noise, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    Z = np.eye(len(counts))[y] + noise * rng.standard_normal((len(y), len(counts)))
    return Z, y


def test_ufm_tracker_is_the_core_name_and_the_old_import_the_same_class():
    from solvers.workflows.tracker import Tracker as Old

    assert ufm.Tracker is Tracker is Old
    ep = tracker_mod.find_reference()
    assert (ep.name, ep.group, ep.load()) == ("certified", "ufm.references", certified_reference)


@pytest.mark.slow
def test_one_row_per_log_and_one_solve_per_count_vector(tmp_path):
    calls = []

    def counting(counts, dim, **kw):
        calls.append((counts, dim))
        return certified_reference(counts, dim, **kw)

    out = tmp_path / "run"
    with ufm.Tracker(out, loss="sc", tau=0.2, nonneg=True, reference=counting) as t:
        for epoch, noise in enumerate([0.5, 0.2, 0.05]):
            Z, y = collapsing([6, 6, 2], noise, seed=epoch)
            row = t.log(epoch, Z, y, train_loss=1.0 / (epoch + 1), lr=np.float32(0.1))
            assert row["epoch"] == epoch
        Z, y = collapsing([5, 5, 5], 0.05)
        t.log(3, Z, y)
        Z, y = collapsing([6, 6, 2], 0.1, seed=9)
        t.log(4, Z, y)
    assert calls == [((6, 6, 2), 3), ((5, 5, 5), 3)] and t.solves == 2
    lines = (out / "history.jsonl").read_text().splitlines()
    assert len(lines) == 5 == len(t.rows)
    rows = [json.loads(line) for line in lines]
    assert rows == t.rows and [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["train_loss"] == 1.0 and rows[0]["lr"] == pytest.approx(0.1)
    assert rows[3]["counts"] == [5, 5, 5] and "train_loss" not in rows[3]
    assert set(rows[0]) == tracker_mod.RESERVED | {"train_loss", "lr"}
    assert rows[2]["delta_gm"] < rows[0]["delta_gm"] and rows[2]["distance_to_ufm"] < 0.1
    assert rows[0]["ufm_certified"] and rows[0]["ufm_delta_gm"] < 1e-3
    assert (out / "geometry_per_epoch.png").read_bytes()[:4] == b"\x89PNG"


def test_any_callable_is_a_reference_and_false_turns_the_ufm_side_off(tmp_path):
    Z, y = collapsing([4, 4, 2], 0.1)
    seen = []

    def etf(counts, dim, *, loss, tau, nonneg, batching, batches, labels, **options):
        seen.append(dict(counts=counts, dim=dim, loss=loss, tau=tau, nonneg=nonneg, batching=batching, options=options,
                         labels=labels.tolist()))
        K = len(counts)
        return {"mean_cosines": (np.eye(K) * (K / (K - 1)) - 1 / (K - 1)).tolist(), "loss": 1.5}

    with ufm.Tracker(None, loss="ce", tau=0.5, nonneg=False, batching="fixed:4", reference=etf,
                     weight_decay=1e-3) as t:
        row = t.log(0, Z, y)
        t.log(1, Z * 2, y)
    assert len(seen) == 1 and t.solves == 1
    assert seen[0] == dict(counts=(4, 4, 2), dim=3, loss="ce", tau=0.5, nonneg=False, batching="fixed:4",
                           options={"weight_decay": 1e-3}, labels=y.tolist())
    K = 3
    G = np.eye(K) * (K / (K - 1)) - 1 / (K - 1)
    net = np.asarray(row["mean_cosines"])
    assert row["ufm_loss"] == 1.5 and row["ufm_certified"] is None and row["ufm_nc1"] is None
    # the distance to the reference (slow, direct formulas); its delta_gm is not made up from its cosines
    assert row["distance_to_ufm"] == pytest.approx(np.linalg.norm(net / np.linalg.norm(net) - G / np.linalg.norm(G)))
    assert row["ufm_delta_gm"] is None
    assert row["normalization"] == "none"  # CE: the raw rows
    with ufm.Tracker(tmp_path, reference=False) as t:
        row = t.log(0, Z, y)
    assert t.solves == 0 and row["distance_to_ufm"] is None
    assert all(row[k] is None for k in tracker_mod.RESERVED if k.startswith("ufm_"))
    with pytest.raises(TypeError, match="mean_cosines"):
        ufm.Tracker(None, reference=lambda counts, dim, **kw: [1.0]).log(0, Z, y)


def test_without_an_installed_reference_the_error_says_what_to_do(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    with pytest.raises(tracker_mod.ReferenceNotFound, match="reference=False") as e:
        ufm.Tracker(None, loss="sc")
    assert "ufm.references" in str(e.value) and "certified" in str(e.value)
    with pytest.raises(tracker_mod.ReferenceNotFound, match="'mine'"):
        ufm.Tracker(None, reference="mine")
    Z, y = collapsing([3, 3], 0.1)
    assert ufm.Tracker(None, reference=False).log(0, Z, y)["distance_to_ufm"] is None


@pytest.mark.slow
def test_the_row_is_the_measure_commands_numbers(tmp_path):
    Z, y = collapsing([4, 4, 2], 0.1)
    W = np.eye(3)
    with Tracker(tmp_path, loss="sc", tau=0.1, nonneg=True) as t:
        row = t.log(0, Z, y, W=W)
    r = measure_row(Z, y, W, loss="sc", tau=0.1, nonneg=True)
    assert row["delta_gm"] == pytest.approx(r["geometry"]["delta_gm"], rel=1e-12)
    assert row["nc3"] == pytest.approx(r["geometry"]["nc3"], rel=1e-12) and row["nc4"] == r["geometry"]["nc4"]
    assert row["distance_to_ufm"] == pytest.approx(r["distance_to_ufm"], abs=1e-6)


def test_rows_append_to_an_existing_history_reset_replaces_it_and_names_are_checked(tmp_path):
    Z, y = collapsing([3, 3], 0.1)
    for _ in range(2):
        with Tracker(tmp_path, reference=False) as t:
            t.log(0, Z, y)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 2
    t = Tracker(tmp_path, reference=False)
    t.reset([{"epoch": 7, "delta_gm": 0.5}])
    t.log(8, Z, y)
    assert [json.loads(x)["epoch"] for x in (tmp_path / "history.jsonl").read_text().splitlines()] == [7, 8]
    with pytest.raises(ValueError, match="delta_gm"):
        t.log(1, Z, y, delta_gm=3)
    t.close()
    with pytest.raises(RuntimeError, match="after close"):
        t.log(2, Z, y)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_tensors_with_gradients(tmp_path):
    import torch

    Z, y = collapsing([3, 3], 0.1)
    Zt = torch.tensor(Z, requires_grad=True)
    with Tracker(tmp_path, reference=False) as t:
        row = t.log(torch.tensor(0).item(), Zt * 2, torch.tensor(y), loss=torch.tensor(0.5))
    assert row["loss"] == 0.5 and row["delta_gm"] == pytest.approx(measure_row(Z, y, ufm=False)["geometry"]["delta_gm"])


def test_jax_arrays(tmp_path):
    import jax.numpy as jnp

    Z, y = collapsing([3, 3], 0.1)
    with Tracker(tmp_path, reference=False) as t:
        row = t.log(0, jnp.asarray(Z), jnp.asarray(y))
    assert row["delta_gm"] == pytest.approx(measure_row(Z, y, ufm=False)["geometry"]["delta_gm"], rel=1e-5)


def test_the_figure_keeps_reference_lines_at_zero_visible(tmp_path):
    rows = [{"epoch": e, "delta_gm": 0.5 / (e + 1), "nc1": 1.0, "etf_distance": 0.3, "distance_to_ufm": 0.4,
             "ufm_delta_gm": 0.0, "ufm_nc1": 0.0, "ufm_etf_distance": 0.0, "nc3": None, "nc4": None}
            for e in range(3)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = {}
    real = plt.Figure.savefig

    def keep(fig, *a, **k):
        saved["fig"] = fig
        return real(fig, *a, **k)

    plt.Figure.savefig = keep
    try:
        tracker_mod.draw(rows, os.path.join(tmp_path, "g.png"))
    finally:
        plt.Figure.savefig = real
    axes = saved["fig"].axes
    assert len(axes) == 4  # nc3 / nc4 without values: no panel
    for ax in axes:
        lo, hi = ax.get_ylim()
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert dashed and all(lo < v < hi for ln in dashed for v in ln.get_ydata())
        assert dashed[0].get_zorder() > ax.get_lines()[0].get_zorder()
