"""ufm's result files as pandas DataFrames and xarray Datasets: the implementation of ``ufm.records.to_pandas``
and ``ufm.records.to_xarray`` (call those; this module takes the records reader as an argument, so that it
imports nothing of ``ufm.records`` and the two form no import cycle).

The files stay the source of truth (open JSON / JSON lines, ``ufm.records``); these loaders only reshape them
for the tools a user already has. pandas and xarray are optional (``pip install 'ufm[records]'``) and imported
when a loader is called; without them the loader raises ``ImportError`` saying what to install.

What is read (a run folder, or the file itself):

* ``results.jsonl`` (``ufm sweep``), ``history.jsonl`` (``ufm.Tracker``, ``ufm train``), ``landscape.jsonl``, and
  any other file of ufm records: one row per record; nested objects become dotted columns
  (``mean_cosines.min_min``), lists stay lists.
* ``phase.json`` (``ufm phase``): one row per grid point (``R``, ``tau`` or ``weight_decay``, and each 2-D array:
  ``loss``, ``lower_bound``, ``certified``, ``min_min``, ...); ``table="boundaries"``: one row per axis value
  and boundary. ``to_xarray`` gives the grid as a Dataset over ``(tau, R)`` (or ``(weight_decay, R)``).
* ``landscape.json`` (``ufm landscape``): columns of per-point lists (the keys named by its ``point_keys``, or
  else every list as long as ``points``): one row per point, ``taus`` as ``tau``; ``table="minima"``: one row per
  local minimum of a point (``loss``, ``count``, ``certified``, ``spurious``, ...) beside the point's ``counts``
  and ``tau``.
"""
from __future__ import annotations

import json
import os

__all__ = ["to_pandas", "to_xarray", "FOLDER_FILES"]

# in a run folder, the first of these that exists is read
FOLDER_FILES = ("phase.json", "landscape.json", "results.jsonl", "history.jsonl", "landscape.jsonl")
PHASE_AXES = {"taus": "tau", "weight_decays": "weight_decay"}


def _need(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module}, which is not installed: pip install {module} "
                          f"(or pip install 'ufm[records]')") from None


def _resolve(path) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in FOLDER_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{path}: no ufm results here (looked for {', '.join(FOLDER_FILES)})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    return path


def _load_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _is_phase(obj: dict) -> bool:
    return "ratios" in obj and any(k in obj for k in PHASE_AXES) and "min_min" in obj


def _phase_axis(obj: dict) -> tuple[str, str]:
    key = next(k for k in PHASE_AXES if k in obj)
    return key, PHASE_AXES[key]


def _phase_arrays(obj: dict) -> list[str]:
    """The keys of ``obj`` that hold a 2-D array ``[axis value][ratio]``."""
    key, _ = _phase_axis(obj)
    n, m = len(obj[key]), len(obj["ratios"])
    return [k for k, v in obj.items() if isinstance(v, list) and len(v) == n and n
            and all(isinstance(row, list) and len(row) == m for row in v)]


def _scalars(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _phase_rows(obj: dict) -> list[dict]:
    key, name = _phase_axis(obj)
    arrays = _phase_arrays(obj)
    return [{name: v, "R": R, **{k: obj[k][i][j] for k in arrays}}
            for i, v in enumerate(obj[key]) for j, R in enumerate(obj["ratios"])]


def _phase_boundaries(obj: dict) -> list[dict]:
    _, name = _phase_axis(obj)
    return [{"boundary": b, name: row.get(name), "R": row.get("R"), "certified": row.get("certified")}
            for b, rows in (obj.get("boundaries") or {}).items() for row in rows]


def _point_keys(obj: dict) -> list[str]:
    """The per-point lists of a columnar file (``landscape.json``): its ``point_keys``, or else every list as
    long as ``points`` (or as ``taus`` / ``counts`` when ``points`` is missing)."""
    if isinstance(obj.get("point_keys"), list):
        return [k for k in obj["point_keys"] if isinstance(obj.get(k), list)]
    n = obj.get("points")
    if not isinstance(n, int):
        n = next((len(obj[k]) for k in ("taus", "counts") if isinstance(obj.get(k), list)), None)
    if n is None:
        raise ValueError("no per-point lists found (no point_keys, points, taus or counts)")
    return [k for k, v in obj.items() if isinstance(v, list) and len(v) == n]


def _point_rows(obj: dict) -> list[dict]:
    keys = _point_keys(obj)
    n = len(obj[keys[0]]) if keys else 0
    if any(len(obj[k]) != n for k in keys):
        raise ValueError("the per-point lists differ in length: " + ", ".join(f"{k} {len(obj[k])}" for k in keys))
    return [{("tau" if k == "taus" else k): obj[k][i] for k in keys} for i in range(n)]


def _minima_rows(points: list[dict]) -> list[dict]:
    out = []
    for i, p in enumerate(points):
        for j, m in enumerate(p.get("local_minima") or []):
            out.append({"point": i, "counts": p.get("counts"), "tau": p.get("tau"), "minimum": j,
                        **(m if isinstance(m, dict) else {"value": m})})
    return out


def to_pandas(path, table: str | None, read_records):
    """A results file or run folder as a ``pandas.DataFrame`` (the module doc says what is read).

    Args:
      path: a run folder (``runs/phase``) or one file (``results.jsonl``, ``history.jsonl``, ``phase.json``,
        ``landscape.json``, ...).
      table: ``None`` (one row per record / grid point / landscape point), ``"boundaries"`` (``phase.json``)
        or ``"minima"`` (``landscape.json``: one row per local minimum).
      read_records: ``ufm.records.read_records`` (valid records of a JSON-lines file, corrupt lines skipped).
    Returns:
      the DataFrame; the file's scalar fields (settings, timings, versions) are in ``df.attrs``, and
      ``df.attrs["source"]`` is the file read.
    """
    pd = _need("pandas", "ufm.records.to_pandas")
    path = _resolve(path)
    attrs = {"source": path}
    if path.endswith(".jsonl"):
        if table is not None:
            raise ValueError(f"table={table!r}: a file of records has one table (leave table out)")
        df = pd.json_normalize(read_records(path, required=()), sep=".")
    else:
        obj = _load_json(path)
        attrs.update(_scalars(obj))
        if _is_phase(obj):
            if table not in (None, "boundaries"):
                raise ValueError(f"table={table!r}: phase.json has the tables None (the grid) and 'boundaries'")
            df = pd.DataFrame(_phase_boundaries(obj) if table == "boundaries" else _phase_rows(obj))
        else:
            if table not in (None, "minima"):
                raise ValueError(f"table={table!r}: {os.path.basename(path)} has the tables None (the points) and "
                                 "'minima'")
            points = _point_rows(obj)
            df = pd.DataFrame(_minima_rows(points) if table == "minima" else points)
            if isinstance(obj.get("settings"), dict):
                attrs["settings"] = obj["settings"]
    df.attrs.update(attrs)
    return df


def to_xarray(path):
    """A ``phase.json`` grid (a run folder of ``ufm phase``, or the file) as an ``xarray.Dataset``.

    The 2-D arrays (``loss``, ``lower_bound``, ``certified``, ``min_min``, ...) become variables over the dims
    ``(tau, R)`` (CE with weight decay: ``(weight_decay, R)``); each boundary becomes ``<name>_R`` and
    ``<name>_certified`` over the axis; the scalar fields are ``attrs``. ``ds.to_netcdf("phase.nc")`` writes
    netCDF (scipy, a dependency of ufm, writes netCDF 3).

    Args:
      path: a run folder of ``ufm phase`` or its ``phase.json``.
    Returns:
      the Dataset.
    """
    xr = _need("xarray", "ufm.records.to_xarray")
    import numpy as np

    path = _resolve(path)
    obj = _load_json(path)
    if not _is_phase(obj):
        raise ValueError(f"{path}: to_xarray reads a phase.json grid; use ufm.records.to_pandas for this file")
    key, name = _phase_axis(obj)
    coords = {name: np.asarray(obj[key], dtype=float), "R": np.asarray(obj["ratios"], dtype=float)}
    data = {}
    for k in _phase_arrays(obj):
        a = np.asarray([[np.nan if x is None else x for x in row] for row in obj[k]])
        data[k] = ((name, "R"), a.astype(bool) if k == "certified" else a.astype(float))
    for b, rows in (obj.get("boundaries") or {}).items():
        data[f"{b}_R"] = ((name,), np.asarray([np.nan if r.get("R") is None else r["R"] for r in rows], float))
        data[f"{b}_certified"] = ((name,), np.asarray([bool(r.get("certified")) for r in rows]))
    attrs = {k: (int(v) if isinstance(v, bool) else v) for k, v in _scalars(obj).items() if v is not None}
    attrs["source"] = path
    return xr.Dataset(data, coords=coords, attrs=attrs)
