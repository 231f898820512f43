"""Results in open formats: JSON values, atomic JSON files, and JSON lines that survive a kill at any moment.

``append_record`` writes one whole line with a single ``os.write`` on a file opened with ``O_APPEND``, then
``fsync``s it. ``read_records`` returns the complete lines; a last line that a kill cut short (no newline, or
not valid JSON) is ignored, and ``repair`` cuts it off before appending again, so the file never holds a
broken or half line, and a rerun that skips the ids already present never duplicates one.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

__all__ = ["read_records", "append_record", "repair", "point_id", "clean", "dumps", "write_json"]


def clean(obj):
    """JSON-ready copy: NumPy scalars/arrays to Python, non-finite floats to None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def dumps(obj) -> str:
    return json.dumps(clean(obj), allow_nan=False)


def write_json(path, obj):
    """Write atomically (temp file + rename) so a killed run never leaves half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(clean(obj), indent=2, allow_nan=False))
        fh.write("\n")
    os.replace(tmp, path)


def point_id(fields: dict) -> str:
    """A canonical id for a grid point: its defining fields as sorted, compact JSON."""
    return json.dumps(clean(fields), sort_keys=True, separators=(",", ":"))


def _complete_prefix(data: bytes) -> int:
    """Length of the longest prefix of ``data`` made of complete, valid JSON lines."""
    end, pos = 0, 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return end
        line = data[pos:nl].strip()
        if line:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return end
        end = pos = nl + 1


def read_records(path) -> list[dict]:
    """All complete records of ``path`` (missing file: empty list)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    good = data[: _complete_prefix(data)]
    return [json.loads(line) for line in good.splitlines() if line.strip()]


def repair(path) -> int:
    """Cut off a trailing partial line left by a killed writer; returns the bytes removed."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return 0
    keep = _complete_prefix(data)
    if keep < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return len(data) - keep


def append_record(path, record: dict):
    """Append ``record`` as one JSON line, atomically with respect to a reader (one write, then fsync)."""
    line = (json.dumps(clean(record), allow_nan=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
