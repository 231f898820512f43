"""Run folders: the one place that prepares, probes and locks every folder ufm writes (``--out`` of ``ufm solve``,
``certify``, ``sweep``, ``phase``, ``train``, ``measure``; a :class:`ufm.Tracker`'s ``out_dir``).

Why: a folder that cannot hold the results (``/proc/self``, a full or read-only disk, a file-size limit, an output
name taken by a folder) used to be found only when the results were written, after the compute; and two writers
of one folder could replace each other's files or interleave rows. :func:`prepare` finds all of these before any
compute, and :func:`open_run` adds the folder's advisory lock (``ufm.records.lock_folder``: ``flock`` on
``FOLDER/.lock``), held for the whole run:

* the folder is created (parents too) and must be a folder;
* a probe file (``.probe.tmpPID``) is written, flushed, ``fsync``'d and removed: a folder that does not take a
  write is refused now, naming the reason;
* a file-size limit (``ulimit -f``, ``RLIMIT_FSIZE``) below :data:`MIN_FILE_SIZE` is refused;
* each output name the run will write (``outputs``) must not be a folder or anything but a regular file;
* temporaries left by killed writers are removed (``ufm.cli.common.clean_stale_tmp``'s rule).

Whole files are replaced atomically (``ufm.records``: temp file, ``fsync``, rename) and JSON lines are appended
as one write after a half-written last line has been moved aside (``ufm.records.repair``), so a reader sees the
old file or the new one, never a mixture.

Errors are :class:`FolderError` (a ``ufm.records.RecordsError``: one line; the command line exits 2) and
``ufm.records.Busy`` when another writer holds the folder.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat

from .records import RecordsError

__all__ = ["FolderError", "prepare", "open_run", "MIN_FILE_SIZE", "PROBE"]

MIN_FILE_SIZE = 1 << 20  # a file-size limit below 1 MiB is refused up front (results and figures need more)
PROBE = b"ufm write probe\n"
_TMP = re.compile(r"\.tmp(\d+)(\.[A-Za-z0-9]+)?$")


class FolderError(RecordsError):
    """An output folder that cannot take the run's results: one line naming the folder and the reason."""


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _check_fsize():
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return
    if soft != resource.RLIM_INFINITY and soft < MIN_FILE_SIZE:
        raise FolderError(f"the file-size limit (ulimit -f) is {soft} bytes, below the {MIN_FILE_SIZE} bytes the "
                          "results may need; raise it (ulimit -f unlimited)")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def clean_stale_tmp(folder) -> list[str]:
    """Remove temporaries (``*.tmpPID`` / ``.NAME.tmpPID.EXT``) left in ``folder`` by writers that were killed
    (their process no longer runs); returns the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP.search(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        full = os.path.join(folder, name)
        if os.path.isfile(full):
            with contextlib.suppress(OSError):
                os.remove(full)
                removed.append(name)
    return removed


def prepare(folder, outputs=(), flag="--out") -> str:
    """Create ``folder`` and check that it takes the run's files (module doc); returns it. ``outputs``: the file
    names (relative to ``folder``) the run will write. ``flag`` names the folder in messages. Raises
    :class:`FolderError`."""
    folder = os.fspath(folder)
    where = f"{flag} {folder}"
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"{where}: exists and is not a folder") from None
    except OSError as e:
        raise FolderError(f"{where}: cannot create the folder ({_why(e)})") from None
    if not os.path.isdir(folder):
        raise FolderError(f"{where}: exists and is not a folder")
    _check_fsize()
    probe = os.path.join(folder, f".probe.tmp{os.getpid()}")
    failed = stuck = None
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if os.write(fd, PROBE) != len(PROBE):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        failed = e
    finally:  # on every way out, a Ctrl-C between creating and removing the probe included: no probe is left
        try:
            os.remove(probe)
        except FileNotFoundError:
            pass
        except OSError as e:
            stuck = e
    if failed is not None:
        raise FolderError(f"{where}: cannot write in the folder ({_why(failed)})") from None
    if stuck is not None:
        raise FolderError(f"{where}: cannot remove a file in the folder ({_why(stuck)})") from None
    for name in outputs:
        path = os.path.join(folder, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise FolderError(f"{where}: cannot inspect {name} ({_why(e)})") from None
        if stat.S_ISDIR(mode):
            raise FolderError(f"{where}: {name} is a directory, where the run writes a file; move it away")
        if not stat.S_ISREG(mode):
            raise FolderError(f"{where}: {name} is not a regular file, where the run writes a file; move it away")
    clean_stale_tmp(folder)
    return folder


@contextlib.contextmanager
def open_run(folder, what, outputs=(), flag="--out", shared=True):
    """:func:`prepare` ``folder`` and hold its lock (``ufm.records.lock_folder``) for the ``with`` block.

    Args:
      folder: the output folder. what: the writer, named to a second writer (``"ufm phase"``).
      outputs: file names the run writes (checked by :func:`prepare`). flag: the flag naming the folder.
      shared: whether a nested holder in this process (a ``Tracker`` the command drives) may take it too.
    Raises:
      :class:`FolderError`; ``ufm.records.Busy`` when another writer holds the folder.
    """
    from .records import dir_lock

    prepare(folder, outputs, flag)
    with dir_lock(folder, what, shared=shared):
        yield os.fspath(folder)
