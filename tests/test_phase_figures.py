"""Phase-diagram figures (``solvers.workflows.phase_figures``) on synthetic ``phase.json`` dicts: every file
written, the CSVs equal to the arrays, uncertified points marked, regions named only where they occur."""
import csv
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from solvers.workflows import phase_figures as pf

ETF = -1 / 3  # K = 4


def synthetic(axis="tau", nonneg=False, p=4, m=6, r_max=300.0, uncertified=(), failed=(), values=None):
    """A phase dict of the ``ufm phase`` shape: min-min rises from the ETF level to 1 along log R, earlier at
    larger axis values; with ``nonneg`` every point is the orthogonal frame."""
    ratios = [float(r) for r in np.geomspace(1.0, r_max, m)]
    if values is None:
        values = [float(v) for v in (np.geomspace(0.05, 1.0, p) if axis == "tau" else np.geomspace(1e-3, 1e-1, p))]
    p = len(values)
    keys = ("loss", "lower_bound", "min_min", "maj_maj", "maj_min", "delta_gm")
    arr = {k: [[None] * m for _ in range(p)] for k in keys}
    cert = [[True] * m for _ in range(p)]
    for i in range(p):
        mid = 2.0 - 1.6 * i / max(1, p - 1)  # log10 R where min-min is halfway up
        for j, R in enumerate(ratios):
            s = 1 / (1 + math.exp(-4.0 * (math.log10(R) - mid)))
            mm = 0.0 if nonneg else ETF + (1 - ETF) * s
            arr["min_min"][i][j] = mm
            arr["maj_maj"][i][j] = 0.0 if nonneg else ETF - 0.5 * s
            arr["maj_min"][i][j] = 0.0 if nonneg else ETF + 0.2 * s
            arr["delta_gm"][i][j] = 1e-7 if nonneg else 0.5 + 0.3 * s
            arr["loss"][i][j] = 1.0 + values[i] + math.log(R)
            arr["lower_bound"][i][j] = arr["loss"][i][j] - 10.0 ** -(8 + (i + j) % 5)
    for i, j in uncertified:
        cert[i][j] = False
        arr["lower_bound"][i][j] = arr["loss"][i][j] - 1e-3
    for i, j in failed:
        for k in keys:
            arr[k][i][j] = None
        cert[i][j] = None
    key = "tau" if axis == "tau" else "weight_decay"

    def crossing(level):
        out = []
        for i, v in enumerate(values):
            row = arr["min_min"][i]
            R = next((ratios[j] for j in range(1, m) if row[j - 1] is not None and row[j] is not None
                      and row[j - 1] < level <= row[j]), None)
            out.append({key: v, "R": R})
        return out

    return {"loss": arr["loss"], "loss_type": "sc" if axis == "tau" else "ce", "nonneg": nonneg, "classes": 4,
            "imbalance": "step", "n_min": 5.0, "minority_fraction": 0.5, "dim": 4, "axis": axis, "ratios": ratios,
            ("taus" if axis == "tau" else "weight_decays"): values, **{k: arr[k] for k in keys[1:]},
            "certified": cert, "tol": 1e-6,
            "boundaries": {"attraction": crossing(0.0), "collapse": crossing(0.99)}}


def region_of(mm, dg):
    """Reference: the region of one point, by the definitions."""
    if dg is not None and dg < 1e-3:
        return "OF"
    if mm is None:
        return None
    return "ETF-like" if mm < 0 else ("minority attraction" if mm < 0.99 else "minority collapse")


def x_count(ax):
    return sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "x")


def region_texts(ax):
    names = {t.get_text().replace("\n", " ") for t in ax.texts}
    return names & set(pf.REGIONS)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def cell(s):
    if s == "":
        return None
    return {"true": True, "false": False}[s] if s in ("true", "false") else float(s)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    phase = synthetic(uncertified=[(1, 2), (3, 4)], failed=[(2, 1)])
    out = tmp_path_factory.mktemp("phase")
    return phase, out, pf.draw_phase(phase, out)


@pytest.mark.slow
def test_every_file_is_written_and_not_empty(drawn):
    _, out, paths = drawn
    figs = ["phase_diagram", "phase_delta_gm", "phase_cosines", "phase_gap"]
    tables = [f"phase_{k}" for k in pf.ARRAYS] + ["phase_relative_gap", "phase_boundaries"]
    expected = {f"{n}.{e}" for n in figs for e in ("png", "pdf")} | {f"{n}.csv" for n in tables}
    assert {p.name for p in paths} == expected == {p.name for p in out.iterdir()}  # no temporary file left
    for p in paths:
        assert p.parent == out and p.stat().st_size > (1000 if p.suffix != ".csv" else 10)
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if p.suffix == ".pdf":
            assert p.read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_csv_round_trip_equals_the_arrays(drawn):
    phase, out, _ = drawn
    for key in pf.ARRAYS:
        rows = read_csv(out / f"phase_{key}.csv")
        assert rows[0][0] == "tau\\R" and [float(x) for x in rows[0][1:]] == phase["ratios"]
        assert [float(r[0]) for r in rows[1:]] == phase["taus"]
        assert [[cell(x) for x in r[1:]] for r in rows[1:]] == phase[key]
    assert read_csv(out / "phase_min_min.csv")[3][2] == ""  # the failed point (2, 1): an empty cell
    rel = read_csv(out / "phase_relative_gap.csv")
    for i, row in enumerate(rel[1:]):
        for j, x in enumerate(row[1:]):
            loss, lb = phase["loss"][i][j], phase["lower_bound"][i][j]
            assert cell(x) == (None if loss is None else (loss - lb) / max(1.0, abs(loss)))
    b = read_csv(out / "phase_boundaries.csv")
    assert b[0] == ["kind", "tau", "R"]
    want = [[kind, d["tau"], d["R"]] for kind in ("attraction", "collapse") for d in phase["boundaries"][kind]]
    assert [[r[0], float(r[1]), cell(r[2])] for r in b[1:]] == want
    assert any(r[2] == "" for r in b[1:])  # a boundary not reached at some tau: an empty cell


@pytest.mark.slow
def test_uncertified_points_are_marked_with_x():
    bad = [(0, 0), (1, 3), (3, 5)]
    phase = synthetic(uncertified=bad, failed=[(2, 2)])
    figs = pf.phase_figures(phase)
    try:
        for name in ("phase_diagram", "phase_delta_gm"):
            assert x_count(figs[name].axes[0]) == len(bad) + 1  # the failed point is not certified either
        gap_ax = figs["phase_gap"].axes[0]
        assert x_count(gap_ax) == len(bad)  # the failed point has no gap to draw
        tol_lines = [ln for ln in gap_ax.get_lines() if ln.get_linestyle() == "--"]
        assert [ln.get_ydata()[0] for ln in tol_lines] == [phase["tol"]]
        drawn_gaps = np.concatenate([ln.get_ydata() for ln in gap_ax.get_lines() if ln.get_marker() == "o"])
        assert len(drawn_gaps) == 4 * 6 - 1  # every point but the failed one
        assert (drawn_gaps > phase["tol"]).sum() == len(bad)  # above the line: exactly the uncertified points
        cos = figs["phase_cosines"].axes  # panels at tau index 0, 1, 2, 3
        assert [x_count(ax) for ax in cos] == [3, 3, 0, 3]  # three cosines per uncertified point of the panel
        clean = pf.phase_figures(synthetic())
        assert all(x_count(ax) == 0 for f in clean.values() for ax in f.axes)
    finally:
        plt.close("all")


@pytest.mark.parametrize("kw,want", [
    ({}, {"ETF-like", "minority attraction", "minority collapse"}),
    ({"nonneg": True}, {"OF"}),
    ({"r_max": 3.0}, {"ETF-like", "minority attraction"}),
    ({"r_max": 1.2, "values": [0.05, 0.1]}, {"ETF-like"}),
])
def test_regions_are_labelled_only_where_they_occur(kw, want):
    phase = synthetic(**kw)
    ref = {region_of(phase["min_min"][i][j], phase["delta_gm"][i][j])
           for i in range(len(phase["taus"])) for j in range(len(phase["ratios"]))} - {None}
    assert ref == want  # the synthetic grid has the regions the case names
    got = pf.classify(np.array(phase["min_min"], float), np.array(phase["delta_gm"], float))
    assert set(got.ravel()) == want
    figs = pf.phase_figures(phase, ["phase_diagram", "phase_delta_gm"])
    try:
        for name in ("phase_diagram", "phase_delta_gm"):
            fig = figs[name]
            ax = fig.axes[0]
            assert region_texts(ax) == want
            r = fig.canvas.get_renderer()
            boxes = [t.get_window_extent(r) for t in ax.texts]
            assert not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
    finally:
        plt.close("all")


def test_axes_are_log_with_the_sampled_values_as_ticks():
    phase = synthetic(m=5)
    fig = pf.phase_figures(phase, ["phase_diagram"])["phase_diagram"]
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # taus span 20x
        assert np.allclose(ax.get_xticks(), phase["ratios"]) and np.allclose(ax.get_yticks(), phase["taus"])
        assert [t.get_text() for t in ax.get_xticklabels()][0] == "1"
        assert ax.get_xticklabels()[-1].get_text() == "300"
        assert "min-min cosine" in fig.axes[1].get_ylabel()  # the colour bar is labelled
        decade = pf.phase_figures(synthetic(values=[0.1, 0.2154, 0.4642, 1.0]), ["phase_diagram"])["phase_diagram"]
        assert decade.axes[0].get_yscale() == "log"  # a factor 10 exactly
        assert fig.axes[0].collections[0].norm(0.0) == pytest.approx(0.5)  # diverging, centred at 0
    finally:
        plt.close("all")


def test_ce_weight_decay_axis():
    phase = synthetic(axis="weight_decay", p=3, uncertified=[(0, 0)], values=[0.01, 0.02, 0.05])
    tables = pf.phase_tables(phase)
    head, rows = tables["phase_delta_gm"]
    assert head[0] == "weight_decay\\R" and [r[0] for r in rows] == phase["weight_decays"]
    assert tables["phase_boundaries"][0] == ["kind", "weight_decay", "R"]
    figs = pf.phase_figures(phase)
    try:
        ax = figs["phase_diagram"].axes[0]
        assert ax.get_ylabel() == "weight decay" and ax.get_yscale() == "linear"  # spans 5x only
        assert x_count(ax) == 1 and ax.get_title().startswith("CE,")
        assert [a.get_title() for a in figs["phase_cosines"].axes[:3]] == [
            "weight decay = 0.01", "weight decay = 0.02", "weight decay = 0.05"]
        assert [x_count(a) for a in figs["phase_cosines"].axes[:3]] == [3, 0, 0]
    finally:
        plt.close("all")


def test_a_malformed_dict_is_refused_naming_the_key(tmp_path):
    good = synthetic()
    for change, key in [({"axis": "R"}, "axis"), ({"taus": [1.0, 0.5, 2.0, 3.0]}, "taus"),
                        ({"min_min": good["min_min"][:-1]}, "min_min"), ({"certified": [[1] * 6] * 4}, "certified"),
                        ({"tol": None}, "tol")]:
        with pytest.raises(ValueError, match=key):
            pf.draw_phase({**good, **change}, tmp_path)
    bad = dict(good)
    del bad["delta_gm"]
    with pytest.raises(ValueError, match="delta_gm"):
        pf.draw_phase(bad, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written for a bad dict
