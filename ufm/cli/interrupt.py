"""Ctrl-C for every ``ufm`` command: stop within :data:`GRACE` seconds, exit 130, nothing half-written; a second
Ctrl-C ends the process at once.

Why a handler of our own: Python runs a signal handler only between bytecodes of the main thread. While XLA
compiles (native code) nothing runs until it returns, and the ``KeyboardInterrupt`` that Python's default handler
raises may then fire inside a garbage-collector callback (JAX installs one), where Python prints "Exception
ignored" and drops it: the command ran on. So :class:`Guard`'s handler

* sets :attr:`Guard.hit` (loops that can stop cleanly read it through :func:`interrupted` or
  :func:`check`) and raises ``KeyboardInterrupt`` as usual, so Python code unwinds (``finally`` blocks run, a
  temporary file is removed, the command prints one line and returns 130);
* starts a watchdog thread: if the process still runs :data:`GRACE` seconds later (the main thread is in native
  code, or the interrupt was swallowed), the watchdog takes ``ufm.records.WRITE_LOCK`` (every whole-file replace
  and line append holds it, so a write is either done or not started), prints the same line and ends the process
  with ``os._exit(130)``;
* on a second Ctrl-C does the same at once.

While a module is being imported the handler only sets the flag (an exception raised inside a C extension's
initialisation can abort Python): the watchdog ends the process.

Files are never half-written either way: whole files go through a temporary and a rename, JSON lines are one
``write`` each, and a temporary left by an ended process is removed when the folder is next used.

Standard library only: the parser stays light.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["Guard", "interrupted", "check", "GRACE", "EXIT"]

GRACE = 1.0  # seconds from a Ctrl-C to the watchdog's exit
LOCK_WAIT = 0.5  # at most this long for a write in progress to finish
FLUSH_WAIT = 0.2  # at most this long to flush stdout and stderr (a full pipe must not hold the exit up)
EXIT = 130

_current: "Guard | None" = None


def interrupted() -> bool:
    """Whether a Ctrl-C reached the running command (False outside a command)."""
    return _current is not None and _current.hit


def check():
    """Raise ``KeyboardInterrupt`` when a Ctrl-C reached the running command (a safe point of a loop: a Ctrl-C
    swallowed inside a library still stops it here)."""
    if interrupted():
        raise KeyboardInterrupt


class Guard:
    """The Ctrl-C handler of one command (module doc); a context manager that installs it (main thread only) and
    restores the previous handler.

    Args:
      name: the command, for the message (``"ufm solve"``).
      grace: seconds before the watchdog ends the process.
      exit: the function that ends the process (``os._exit``; tests replace it).
    """

    def __init__(self, name: str, grace: float = GRACE, exit=os._exit):
        self.name, self.grace, self._exit = name, float(grace), exit
        self.hit = False
        self.hits = 0
        self.finished = threading.Event()
        self._previous = None
        self._installed = False

    def __enter__(self):
        global _current
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        self._outer, _current = _current, self
        return self

    def __exit__(self, *exc):
        global _current
        self.finished.set()
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
        sys.unraisablehook = self._hook
        _current = self._outer
        return False

    def _unraisable(self, info):
        """A ``KeyboardInterrupt`` Python had to drop (raised in a garbage-collector callback) is ours: the watchdog
        acts on it, so no "Exception ignored" traceback is printed; anything else goes to the previous hook."""
        if isinstance(info.exc_value, KeyboardInterrupt) and self.hit:
            return
        self._hook(info)

    def _handler(self, signum, frame):
        self.hits += 1
        self.hit = True
        if self.hits > 1:
            self.end("interrupted twice")
            return
        threading.Thread(target=self._watch, name="ufm-ctrl-c", daemon=True).start()
        if _importing(frame):  # an exception inside a module's import (a C extension's init) can abort Python
            return             # outright: the watchdog ends the process instead
        raise KeyboardInterrupt

    def _watch(self):
        if self.finished.wait(self.grace):
            return
        self.end("interrupted")

    def end(self, why="interrupted"):
        """Wait (at most ``LOCK_WAIT``) for a write in progress, then print one line and end the process, 130.
        From the main thread itself (a second Ctrl-C) the lock is re-entrant: the handler runs between two
        bytecodes, so a line appended is one ``write`` done, and a whole file is still its temporary."""
        records = sys.modules.get("ufm.records")
        lock = getattr(records, "WRITE_LOCK", None)
        got = lock.acquire(timeout=LOCK_WAIT) if lock is not None else False
        try:
            flusher = threading.Thread(target=_flush, daemon=True)  # a full pipe must not hold the exit up
            flusher.start()
            flusher.join(FLUSH_WAIT)
            try:
                os.write(2, f"{self.name}: {why}\n".encode())
            except OSError:
                pass
            self._exit(EXIT)
        finally:
            if got:
                lock.release()


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
