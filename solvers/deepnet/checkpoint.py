"""Checkpoints in open formats: ``checkpoint.npz`` (every array of the parameters and the optimizer state,
named by its path in the pytree, e.g. ``params/encoder/body/0/w``) and ``checkpoint.json`` (what the run is and
how far it got: config, epoch, step, history). Both are written atomically (temp file + rename); the NPZ also
holds the same JSON text (``meta.json``), and that copy is the one read back, so a run killed between the two
writes never pairs new arrays with old metadata.

A pytree is restored into a *template* of the same structure (a fresh ``init``), so the NPZ holds arrays only.
"""
from __future__ import annotations

import json
import os
import zipfile

import jax
import numpy as np

__all__ = ["save", "load", "exists", "flatten", "unflatten", "NPZ", "JSON"]

NPZ, JSON = "checkpoint.npz", "checkpoint.json"


def _key(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:  # pragma: no cover - another key type
            parts.append(str(k))
    return "/".join(parts)


def flatten(tree, prefix) -> dict:
    """``{prefix/path: array}`` for every leaf of ``tree``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix}/{_key(p)}": np.asarray(v) for p, v in leaves}


def unflatten(template, arrays, prefix):
    """``template`` with its leaves replaced by ``arrays[prefix/path]`` (shapes and dtypes checked)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, v in leaves:
        name = f"{prefix}/{_key(p)}"
        if name not in arrays:
            raise ValueError(f"checkpoint: {name} is missing (a checkpoint of another model?)")
        a = arrays[name]
        if a.shape != np.shape(v):
            raise ValueError(f"checkpoint: {name} has shape {a.shape}, the model needs {np.shape(v)}")
        out.append(a.astype(np.asarray(v).dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def exists(folder) -> bool:
    return os.path.isfile(os.path.join(folder, NPZ)) and os.path.isfile(os.path.join(folder, JSON))


def save(folder, trees: dict, meta: dict):
    """Write ``trees`` (name -> pytree) to ``folder/checkpoint.npz`` and ``meta`` to ``checkpoint.json``."""
    text = json.dumps(meta, indent=1, allow_nan=False)
    arrays = {"meta.json": np.array(text)}
    for name, tree in trees.items():
        arrays.update(flatten(tree, name))
    tmp = os.path.join(folder, f".{NPZ}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # the keys are array names, never allow_pickle
    os.replace(tmp, os.path.join(folder, NPZ))
    tmp = os.path.join(folder, f".{JSON}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(folder, JSON))


def load(folder, templates: dict, required=("epoch",)):
    """``(trees, meta)``: every template pytree filled from ``folder/checkpoint.npz``, and the JSON meta (which
    must hold the keys ``required``; a checkpoint without them is reported as truncated or corrupt)."""
    if not exists(folder):
        raise ValueError(f"resume: no {NPZ} and {JSON} in {folder}")
    path = os.path.join(folder, NPZ)
    try:
        if os.path.getsize(path) == 0:
            raise ValueError("the file is empty")
        with np.load(path, allow_pickle=False) as z:
            arrays = dict(z)
        meta = json.loads(str(arrays.pop("meta.json")))
        missing = [k for k in required if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise ValueError(f"meta.json lacks {', '.join(missing)}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"resume: cannot read {path} ({type(e).__name__}: {e}); the checkpoint is truncated or "
                         "corrupt: delete it and start again, or use another --out") from None
    return {name: unflatten(t, arrays, name) for name, t in templates.items()}, meta
