"""A progress bar on stderr, without dependencies: ``for x in progress(items, "sweep"): ...``.

Redraws in place on a terminal; on a pipe or a file (CI, logs) prints a line every 10% instead.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress", "Progress"]


class Progress:
    """Counts ``done`` of ``total`` and shows rate and ETA; ``update(n, note)`` advances by n."""

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True):
        self.total, self.label, self.done = max(int(total), 0), label, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._last_decile = -1

    def update(self, n: int = 1, note: str = ""):
        self.done += n
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        frac = self.done / self.total if self.total else 1.0
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        text = (f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:6.1f}s elapsed, ETA {eta:6.1f}s"
                + (f"  {note}" if note else ""))
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(150))
            if self.done >= self.total:
                self.stream.write("\n")
        elif int(10 * frac) > self._last_decile or self.done >= self.total:
            self._last_decile = int(10 * frac)
            self.stream.write(text + "\n")
        self.stream.flush()


def progress(items, label: str = "", total: int | None = None, enabled: bool = True):
    """Iterate over ``items`` and show progress on stderr."""
    items = list(items) if total is None else items
    bar = Progress(len(items) if total is None else total, label, enabled=enabled)
    for x in items:
        yield x
        bar.update()
