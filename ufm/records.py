"""Results in open formats: JSON values, atomic JSON files, and JSON lines that survive a kill at any moment.

``append_record`` writes one whole line with a single ``os.write`` on a file opened with ``O_APPEND`` (under an
exclusive ``flock`` of that file), then ``fsync``s it. A line is a *record* when it is a JSON object holding the
keys a record needs (``required``, by default ``id``).

Reading (``scan``, ``read_records``) never stops at a bad line: every valid record is returned, in order. A last
line without its newline that is not valid JSON is a write cut short by a kill and is ignored. ``repair`` makes
the file clean again before appending: each corrupt line (not UTF-8, not JSON, not an object, or missing a key)
is appended to ``PATH.rejected`` (whole lines) with one warning naming its line number, a cut-short last line
likewise, and the file is rewritten atomically with the valid lines alone, in order. A file with content but no
valid record at all is not a results file: ``repair`` refuses it (``RecordsError``) and leaves it untouched.

``dir_lock`` is an advisory lock (``flock`` on ``DIR/.lock``, non-blocking) that one writer of a folder holds
for its whole run; a second writer gets ``Busy`` naming the holder's command and pid (``ufm.runs`` takes it for
every command that writes a folder).

Every write of a file here (a whole file replaced, a line appended, a repair) holds :data:`WRITE_LOCK`, a process
wide lock: the command line's Ctrl-C watchdog takes it before it ends the process (``os._exit``), so a write is
either done or not started when the process ends.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import threading

import numpy as np

__all__ = ["read_records", "append_record", "repair", "scan", "point_id", "clean", "dumps", "write_json",
           "check", "rewrite", "dir_lock", "RecordsError", "Busy", "REJECTED_SUFFIX", "LOCK_NAME", "SWEEP_KEYS",
           "WRITE_LOCK", "versions"]

REJECTED_SUFFIX = ".rejected"
LOCK_NAME = ".lock"
WRITE_LOCK = threading.RLock()  # held by every write of this module (module doc)
SWEEP_KEYS = ("id", "R", "tau", "loss_type", "nonneg", "batching", "counts", "K")  # every sweep record has them


class RecordsError(ValueError):
    """A results file that cannot be read as records (a folder, not UTF-8, no record in it...): one line that
    names the file and the problem."""


class Busy(RecordsError):
    """Another process holds the folder's lock."""


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


def replace_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    with WRITE_LOCK:
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def write_json(path, obj):
    """Write atomically (temp file + rename) so a killed run never leaves half a file."""
    replace_bytes(path, (json.dumps(clean(obj), indent=2, allow_nan=False) + "\n").encode())


def versions() -> dict:
    """The versions a result records (``versions``): ufm, JAX, NumPy and Python (JAX imported here)."""
    import platform

    import jax

    from . import __version__

    return {"ufm": __version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def point_id(fields: dict) -> str:
    """A canonical id for a grid point: its defining fields as sorted, compact JSON."""
    return json.dumps(clean(fields), sort_keys=True, separators=(",", ":"))


def _read_bytes(path) -> bytes | None:
    """The bytes of ``path``; None when it does not exist; ``RecordsError`` when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RecordsError(f"{path} is a directory, not a results file; move it away") from None
    except OSError as e:
        raise RecordsError(f"{path}: cannot read it ({e.strerror})") from None


def _judge(raw: bytes, required) -> tuple[dict | None, str]:
    """``(record, "")`` for a valid line, ``(None, reason)`` otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not JSON ({e.msg})"
    except RecursionError:
        return None, "not JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return None, f"not a JSON object (a {type(obj).__name__})"
    missing = [k for k in required if k not in obj]
    if missing:
        return None, f"a JSON object without the key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    return obj, ""


def scan(path, required=("id",), data: bytes | None = None):
    """``(good, bad, torn)`` of the file ``path``: ``good`` a list of ``(line number, record, raw line)``, ``bad``
    a list of ``(line number, raw line, reason)``, ``torn`` the bytes of a cut-short last line (no newline, not
    JSON) or ``b""``. A missing file is empty. Raises ``RecordsError`` when ``path`` cannot be read."""
    if data is None:
        data = _read_bytes(path)
    good: list = []
    bad: list = []
    torn = b""
    if not data:
        return good, bad, torn
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        try:
            json.loads(tail.decode("utf-8"))
            lines.append(tail)  # complete JSON that only lacks its newline: judged like any line
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            torn = tail  # a write cut short by a kill
    elif tail:
        lines.append(tail)
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        rec, why = _judge(raw.strip(), required)
        if rec is None:
            bad.append((n, raw, why))
        else:
            good.append((n, rec, raw))
    return good, bad, torn


def read_records(path, required=("id",)) -> list[dict]:
    """Every valid record of ``path``, in order (missing file: empty list); corrupt lines are skipped (``repair``
    moves them aside; ``check`` reports them)."""
    return [rec for _, rec, _ in scan(path, required)[0]]


def check(path, required=("id",)) -> list[dict]:
    """The records of ``path``, strictly: ``RecordsError`` naming the first corrupt line (a cut-short last line
    is ignored) or a file without any record."""
    good, bad, _ = scan(path, required)
    if bad:
        n, _, why = bad[0]
        raise RecordsError(f"{path} line {n}: {why}")
    if not good:
        raise RecordsError(f"{path} holds no complete record")
    return [rec for _, rec, _ in good]


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def repair(path, required=("id",), warn=_warn) -> int:
    """Move every corrupt line of ``path`` (and a cut-short last line) to ``PATH.rejected`` and keep the valid
    ones in order; returns the number of bytes removed from ``path``. Raises ``RecordsError`` (touching nothing)
    when the file has content but no valid record."""
    with WRITE_LOCK:
        return _repair(path, required, warn)


def _repair(path, required, warn) -> int:
    data = _read_bytes(path)
    if not data:
        return 0
    good, bad, torn = scan(path, required, data)
    if not good and bad:
        n, _, why = bad[0]
        raise RecordsError(f"{path} holds no valid record (line {n}: {why}): not a results file; move it away or "
                           f"write to another folder")
    ends = data.endswith(b"\n")
    if not bad and not torn:
        if not ends:  # a valid last record without its newline: give it one before anything is appended
            with open(path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        return 0
    rejected = [raw for _, raw, _ in bad] + ([torn] if torn else [])
    with open(f"{path}{REJECTED_SUFFIX}", "ab") as fh:  # first: a kill between the two writes loses nothing
        fh.write(b"".join(r.rstrip(b"\n") + b"\n" for r in rejected))
        fh.flush()
        os.fsync(fh.fileno())
    keep = b"".join(raw + b"\n" for _, _, raw in good)
    replace_bytes(path, keep)
    for n, _, why in bad:
        warn(f"{path} line {n}: {why}; moved to {path}{REJECTED_SUFFIX}")
    return len(data) - len(keep)


def _line(record) -> bytes:
    return (json.dumps(clean(record), allow_nan=False, separators=(",", ":")) + "\n").encode()


def rewrite(path, recs):
    """Replace ``path`` atomically (temp + rename) by ``recs``, one line each."""
    replace_bytes(path, b"".join(_line(r) for r in recs))


def append_record(path, record: dict):
    """Append ``record`` as one JSON line, atomically with respect to a reader (one write under an exclusive
    ``flock`` of the file, then fsync)."""
    line = _line(record)
    with WRITE_LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the flock


_HELD: dict[str, list] = {}  # realpath -> [fd, shared, depth]


def busy_message(folder, holder: str, hint: str) -> str:
    return f"{folder} is already in use by another ufm process ({holder}); {hint}"


def lock_folder(folder, what="ufm", *, shared=True, hint="wait for it or use another --out"):
    """Take the advisory lock of ``folder`` (``flock`` on ``FOLDER/.lock``, non-blocking; the holder's pid and
    ``what`` written in it); returns a token for :func:`unlock_folder`. Within one process a ``shared`` holder
    admits others (a command, and the ``Tracker`` it drives); a holder that is not ``shared`` (a ``Tracker``)
    admits nobody while it holds the lock, in this process or another. Raises ``Busy`` naming the holder."""
    key = os.path.realpath(folder)
    held = _HELD.get(key)
    if held is not None:
        if not held[1]:
            raise Busy(busy_message(folder, f"{_holder(held[0])}, in this process", hint))
        held[2] += 1
        held[1] = bool(shared)  # a non-shared joiner closes the door until it leaves
        return (key, not shared)
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RecordsError(f"{path}: cannot open the lock file ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = _holder(fd)
        finally:
            os.close(fd)
        raise Busy(busy_message(folder, holder, hint)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
    _HELD[key] = [fd, bool(shared), 1]
    return (key, False)


def _holder(fd) -> str:
    """``"WHAT, pid N"`` from a lock file's content ``"N WHAT"``."""
    try:
        text = os.pread(fd, 256, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    return f"{what or 'ufm'}, pid {pid or 'unknown'}"


def unlock_folder(token):
    """Release one hold of :func:`lock_folder` (``token``: what it returned)."""
    key, reopen = token
    held = _HELD.get(key)
    if held is None:
        return
    if reopen:
        held[1] = True
    held[2] -= 1
    if held[2] > 0:
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        os.ftruncate(held[0], 0)
    with contextlib.suppress(OSError):
        os.close(held[0])


@contextlib.contextmanager
def dir_lock(folder, what="ufm sweep", hint="wait for it or use another --out", shared=True):
    """Hold :func:`lock_folder` for the ``with`` block (re-entrant within a process for ``shared`` holders).
    Raises ``Busy`` when another process (or a non-shared holder here) holds it."""
    token = lock_folder(folder, what, shared=shared, hint=hint)
    try:
        yield
    finally:
        unlock_folder(token)


def to_pandas(path, table: str | None = None):
    """A results file or run folder (``results.jsonl``, ``history.jsonl``, ``phase.json``, ``landscape.json``) as a
    ``pandas.DataFrame``; pandas is imported here (``pip install 'ufm[records]'``; without it, ``ImportError`` saying
    so). Records: one row each, nested objects as dotted columns; ``phase.json``: one row per grid point;
    ``landscape.json``: one row per point.

    Args:
      path: a run folder or one results file.
      table: ``None``, ``"boundaries"`` (``phase.json``) or ``"minima"`` (``landscape.json``).
    Returns:
      the DataFrame, the file's scalar fields in ``df.attrs``.
    """
    from ._frames import to_pandas as load

    return load(path, table, read_records)


def to_xarray(path):
    """A ``ufm phase`` grid (its folder or ``phase.json``) as an ``xarray.Dataset`` over ``(tau, R)`` (CE with weight
    decay: ``(weight_decay, R)``), boundaries as ``<name>_R`` over the axis; ``ds.to_netcdf(...)`` writes netCDF.

    Args:
      path: a run folder of ``ufm phase`` or its ``phase.json``.
    Returns:
      the Dataset.
    """
    from ._frames import to_xarray as load

    return load(path)


__all__ += ["to_pandas", "to_xarray"]
