"""Progress on stderr, drawn by tqdm: ``for x in progress(items, "sweep"): ...`` or ``Progress(total, label)``.

A bar is drawn only on a terminal: on a pipe or a file (CI, logs, ``--json`` runs captured by a script) it stays
quiet, and commands that print JSON pass ``enabled=False``. The estimated time left is shown only once the rate
has been measured: the clock for the rate starts at the first update (so the compilation of a jitted loop, which
comes before it, is not taken as the speed of the loop) and an estimate needs two updates and one second after
that. Stages of unequal cost (``Progress(..., eta=False)``, :func:`stages`) never show one.

tqdm is imported when a bar is first drawn, so importing this module costs nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["progress", "Progress", "stages", "eta_text"]

ETA_MIN_UPDATES = 2  # updates after the first before an estimate is shown
ETA_MIN_SECONDS = 1.0  # seconds of measured rate before an estimate is shown


def eta_text(done: int, total: int, first_done: int | None, first_time: float | None, now: float,
             updates: int) -> str:
    """The estimated time left as text, or ``""`` while the rate is not measured yet.

    Args:
      done: units done. total: units in all.
      first_done: units done at the first update (the start of the rate's clock); None before it.
      first_time: ``time.perf_counter()`` at the first update; None before it.
      now: ``time.perf_counter()`` now. updates: updates since the first.
    Returns:
      ``"ETA 12s"`` (or ``"ETA 3m05s"``), or ``""`` when fewer than ``ETA_MIN_UPDATES`` updates or
      ``ETA_MIN_SECONDS`` have passed since the first, or nothing was done since it.
    """
    if first_time is None or first_done is None or updates < ETA_MIN_UPDATES or now - first_time < ETA_MIN_SECONDS:
        return ""
    rate = (done - first_done) / (now - first_time)
    if rate <= 0 or done >= total:
        return ""
    left = (total - done) / rate
    left = max(1, round(left))
    return f"ETA {left}s" if left < 60 else f"ETA {left // 60}m{left % 60:02d}s"


class Progress:
    """Counts ``done`` of ``total``; ``update(n, note)`` advances by ``n`` and shows ``note`` beside the bar.

    Args:
      total: units of work. label: shown before the bar. stream: default ``sys.stderr``.
      enabled: False draws nothing; True draws only when ``stream`` is a terminal. The attribute may be set
        later (a solver that turns its bar on after a few seconds).
      eta: whether to show the estimated time left (False for stages of unequal cost).
    """

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True, eta: bool = True):
        self.total, self.label, self.done = max(int(total), 0), label, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.eta = eta
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self._bar: Any = None  # a tqdm bar, made at the first draw
        self._finished = False  # the bar reached its total and was closed: later updates draw nothing
        self._first: tuple[int, float] | None = None
        self._updates = 0

    @property
    def drawing(self) -> bool:
        return bool(self.enabled) and self.tty

    def _draw(self, note: str):
        if self._finished:
            return
        if self._bar is None:
            from tqdm import tqdm

            import shutil

            # a terminal that reports 0 columns or rows (a bare pseudo-terminal) gets the fallback size: tqdm
            # would hide the bar there
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(total=self.total, initial=self.done, desc=self.label, file=self.stream, leave=True,
                             delay=1e-9,  # no draw before the elapsed time is set below
                             ncols=max(40, min(size.columns, 160)), nrows=max(size.lines, 2),
                             bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}{postfix}]")
            self._bar.n = self.done
            self._bar.start_t -= time.perf_counter() - self.start  # elapsed counts from the start, not the first draw
        first_done, first_time = self._first if self._first else (None, None)
        eta = eta_text(self.done, self.total, first_done, first_time, time.perf_counter(),
                       self._updates) if self.eta else ""
        self._bar.n = self.done
        self._bar.set_postfix_str(", ".join(x for x in (eta, note) if x), refresh=False)
        self._bar.refresh()
        if self.done >= self.total:
            self._finished = True
            self.close()

    def update(self, n: int = 1, note: str = ""):
        """Advance by ``n`` units (0: redraw) and show ``note``."""
        self.done += n
        if self._first is None:
            self._first = (self.done, time.perf_counter())
        else:
            self._updates += 1
        if self.drawing:
            self._draw(note)

    def write(self, text: str, file=None):
        """Print ``text`` (default on stdout) without breaking the bar."""
        file = file or sys.stdout
        if self._bar is not None:
            self._bar.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(items, label: str = "", total: int | None = None, enabled: bool = True):
    """Iterate over ``items`` and show progress on stderr (a terminal only)."""
    items = list(items) if total is None else items
    bar = Progress(len(items) if total is None else total, label, enabled=enabled)
    try:
        for x in items:
            yield x
            bar.update()
    finally:
        bar.close()


def stages(label: str, total: int, enabled: bool = True, stream=None):
    """A callable ``say(message)`` for a run of ``total`` stages of unequal cost (``ufm phase``): each call but the
    first marks the previous stage done; the message names the stage now running. One line, redrawn in place,
    no time estimate; quiet off a terminal. ``say.close()`` marks the last stage done; ``say.abort()`` stops
    drawing without."""
    bar = Progress(total, label, stream=stream, enabled=enabled, eta=False)
    state = {"started": False}

    def say(message: str):
        if state["started"]:
            bar.done += 1
        state["started"] = True
        if bar.drawing:
            bar._draw(message)

    def close():
        if state["started"]:
            bar.done = max(bar.done + 1, bar.total)
            if bar.drawing:
                bar._draw("done")
        bar.close()

    say.close = close  # type: ignore[attr-defined]  # the callable carries its close and abort
    say.abort = bar.close  # type: ignore[attr-defined]  # stop drawing, the stage unfinished
    return say
