"""ufm.records.to_pandas / to_xarray: each results format reshaped without losing or inventing a value, and a
clear error when pandas or xarray is missing."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ufm import records

pd = pytest.importorskip("pandas")


def phase_json(tmp_path):
    from solvers.workflows.phase import ARRAYS

    taus, ratios = [0.1, 0.5], [1.0, 3.0, 10.0]
    obj = {"loss_type": "sc", "nonneg": False, "axis": "tau", "ratios": ratios, "taus": taus, "tol": 1e-6,
           "boundaries": {"attraction": [{"tau": 0.1, "R": None, "certified": None},
                                         {"tau": 0.5, "R": 4.2, "certified": True}],
                          "collapse": [{"tau": 0.1, "R": None, "certified": None},
                                       {"tau": 0.5, "R": None, "certified": None}]}}
    for k, key in enumerate(ARRAYS):
        obj[key] = [[(True if key == "certified" else 100 * k + 10 * i + j) for j in range(3)] for i in range(2)]
    (tmp_path / "phase.json").write_text(json.dumps(obj))
    return obj


def test_phase_grid_one_row_per_point(tmp_path):
    obj = phase_json(tmp_path)
    df = records.to_pandas(tmp_path)
    assert len(df) == 6 and {"tau", "R", "loss", "lower_bound", "certified", "min_min"} <= set(df.columns)
    for _, row in df.iterrows():
        i, j = obj["taus"].index(row["tau"]), obj["ratios"].index(row["R"])
        assert row["min_min"] == obj["min_min"][i][j] and row["loss"] == obj["loss"][i][j]
    assert df.attrs["loss_type"] == "sc" and df.attrs["source"].endswith("phase.json")
    b = records.to_pandas(tmp_path / "phase.json", table="boundaries")
    assert len(b) == 4 and b.loc[(b.boundary == "attraction") & (b.tau == 0.5), "R"].item() == 4.2


def test_phase_grid_as_xarray_and_netcdf(tmp_path):
    xr = pytest.importorskip("xarray")
    obj = phase_json(tmp_path)
    ds = records.to_xarray(tmp_path)
    assert ds["min_min"].dims == ("tau", "R") and ds["certified"].dtype == bool
    assert ds["min_min"].sel(tau=0.5, R=10.0).item() == obj["min_min"][1][2]
    assert np.isnan(ds["attraction_R"].sel(tau=0.1).item()) and ds["attraction_R"].sel(tau=0.5).item() == 4.2
    ds.to_netcdf(tmp_path / "phase.nc")
    back = xr.open_dataset(tmp_path / "phase.nc")
    assert back["loss"].values.tolist() == ds["loss"].values.tolist()
    back.close()


def test_sweep_and_tracker_records(tmp_path):
    for i, R in enumerate((1.0, 3.0)):
        records.append_record(tmp_path / "results.jsonl", {"id": str(i), "R": R, "loss": 0.5 + i,
                                                           "mean_cosines": {"min_min": -0.1 * i, "maj_maj": 0.0},
                                                           "counts": [3, 3, 1]})
    df = records.to_pandas(tmp_path)
    assert df["R"].tolist() == [1.0, 3.0] and df["mean_cosines.min_min"].tolist() == [0.0, -0.1]
    assert df["counts"].tolist() == [[3, 3, 1], [3, 3, 1]]
    hist = tmp_path / "t"
    import ufm

    with ufm.Tracker(hist, loss="sc", tau=0.5, reference=False) as t:
        Z = np.eye(3)[[0, 0, 1, 1, 2, 2]] + 0.01
        for epoch in range(3):
            t.log(epoch, Z, np.array([0, 0, 1, 1, 2, 2]), train_loss=1.0 / (epoch + 1))
    h = records.to_pandas(hist)
    assert h["epoch"].tolist() == [0, 1, 2] and h["train_loss"].tolist() == [1.0, 0.5, 1 / 3]
    assert "delta_gm" in h.columns


def landscape_json(tmp_path):
    minima = [[{"loss": 1.0, "count": 6, "certified": True, "spurious": False}],
              [{"loss": 2.0, "count": 4, "certified": True, "spurious": False},
               {"loss": 2.5, "count": 2, "certified": True, "spurious": True}]]
    obj = {"counts": [[5, 5, 1], [10, 10, 1]], "taus": [0.1, 0.1], "starts": [6, 6], "global_loss": [1.0, 2.0],
           "local_minima": minima, "spurious_fraction": [0.0, 2 / 6], "settings": {"dim": 3}, "points": 2}
    (tmp_path / "landscape.json").write_text(json.dumps({**obj, "point_keys": [
        "counts", "taus", "starts", "global_loss", "local_minima", "spurious_fraction"]}))
    return obj


@pytest.mark.parametrize("with_point_keys", [True, False])
def test_landscape_points_and_minima(tmp_path, with_point_keys):
    obj = landscape_json(tmp_path)
    if not with_point_keys:  # the loader finds the per-point lists by their length
        (tmp_path / "landscape.json").write_text(json.dumps(obj))
    df = records.to_pandas(tmp_path)
    assert df["tau"].tolist() == [0.1, 0.1] and df["spurious_fraction"].tolist() == [0.0, 2 / 6]
    assert df["counts"].tolist() == obj["counts"] and df.attrs["settings"] == {"dim": 3}
    m = records.to_pandas(tmp_path, table="minima")
    assert len(m) == 3 and m["spurious"].tolist() == [False, False, True]
    assert m.groupby("point")["count"].sum().tolist() == obj["starts"]


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no ufm results here"):
        records.to_pandas(tmp_path)
    phase_json(tmp_path)
    with pytest.raises(ValueError, match="table='minima'"):
        records.to_pandas(tmp_path, table="minima")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match=r"needs pandas.*pip install"):
        records.to_pandas(tmp_path)
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"needs xarray.*pip install"):
        records.to_xarray(tmp_path)
