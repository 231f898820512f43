"""Progress bars (tqdm): drawn on a terminal only, no time estimate before the rate is measured (so a slow first
step, e.g. compilation, never gives an absurd estimate), none for stages of unequal cost."""
from __future__ import annotations

import io

import pytest

from ufm import progress as P


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_no_estimate_before_the_rate_is_measured():
    # first update at t=10 s (after a long compilation), then two more: the rate is 1 unit/s from t=10
    assert P.eta_text(1, 100, None, None, 10.0, 0) == ""
    assert P.eta_text(2, 100, 1, 10.0, 11.0, 1) == ""  # one update after the first: not yet
    assert P.eta_text(3, 100, 1, 10.0, 10.5, 2) == ""  # under a second of measured rate
    assert P.eta_text(3, 100, 1, 10.0, 12.0, 2) == "ETA 1m37s"  # 97 units left at 1 unit/s
    assert P.eta_text(50, 100, 10, 0.0, 40.0, 5) == "ETA 50s"  # 40 units in 40 s, 50 left
    assert P.eta_text(100, 100, 10, 0.0, 40.0, 5) == ""  # finished


def test_a_slow_first_step_does_not_inflate_the_estimate(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    out = Terminal()
    bar = P.Progress(10, "solve", stream=out)
    for t in (100.0, 101.0, 102.0):  # the first step took 100 s (compilation), then one unit a second
        now[0] = t
        bar.update(1)
    bar.close()
    text = out.getvalue()
    assert "ETA 7s" in text and "ETA" not in text.replace("ETA 7s", "")  # 7 left at 1/s; 0.03/s would say 233 s


def test_quiet_off_a_terminal_and_when_disabled():
    pipe = io.StringIO()
    bar = P.Progress(3, "x", stream=pipe)
    for _ in range(3):
        bar.update(1, "note")
    assert pipe.getvalue() == ""
    term = Terminal()
    bar = P.Progress(3, "x", stream=term, enabled=False)
    bar.update(3)
    assert term.getvalue() == ""


def test_stages_show_one_redrawn_line_without_an_estimate():
    term = Terminal()
    say = P.stages("ufm phase", 3, stream=term)
    say("solving 10 points")
    say("bisecting the attraction boundary")
    say("bisecting the collapse boundary")
    say.close()
    text = term.getvalue()
    assert "ETA" not in text and "3/3" in text and "bisecting the collapse" in text  # the line fits the width
    assert text.count("\n") <= 1  # redrawn in place (carriage returns), one line left


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_iterates_everything(enabled):
    assert list(P.progress(range(5), "x", enabled=enabled)) == [0, 1, 2, 3, 4]
