"""Sweep figures (``ufm.plots``) on synthetic records: CE (no temperature) drawn once, variants told apart,
uncertified points marked, gaps signed and relative against the verdict's tolerance, CSVs beside the figures."""
import csv
import inspect
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest

from ufm import plots

TAUS = (0.5, 1.0)
RS = (1.0, 3.0, 10.0)


def record(loss, nonneg, R, tau, certified=True, gap=1e-9, status="ok"):
    zero = nonneg  # the ReLU variants sit at the orthogonal frame
    mm = 0.0 if zero else -1 / 3 + 0.1 * np.log10(R) * (tau or 0.7)
    loss_value = 1.0 + R
    return {"R": R, "tau": tau, "loss_type": loss, "nonneg": nonneg, "batching": "full", "K": 4,
            "mean_cosines": {"maj_maj": 0.0 if zero else -1 / 3 - 0.05 * np.log10(R),
                             "min_min": mm, "maj_min": 0.0 if zero else -1 / 3},
            "delta_gm": 0.0 if zero else 0.5, "loss": loss_value, "lower_bound": loss_value - gap,
            "gap": gap, "certified": certified, "status": status}


@pytest.fixture(scope="module")
def records():
    recs = []
    for nonneg, R in itertools.product((False, True), RS):
        for tau in TAUS:
            recs.append(record("sc", nonneg, R, tau))
        recs.append(record("ce", nonneg, R, None))
    recs[0].update(certified=False, gap=2e-3, lower_bound=recs[0]["loss"] - 2e-3)  # SC, R = 1, tau = 0.5
    recs[2].update(certified=None, gap=None, lower_bound=None)  # CE, R = 1: never certified
    recs[5].update(gap=-3e-8, lower_bound=recs[5]["loss"] + 3e-8)  # a bound a hair above the loss, certified
    recs.append({**record("sc", False, 10.0, 0.5), "status": "failed"})
    return recs


def x_count(ax):
    return sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "x")


def colour_of(v):
    return plots._styles([v])[v]["color"]


def test_default_tolerance_is_the_certificates():
    from solvers.certificate import certify

    assert inspect.signature(certify).parameters["tol"].default == plots.DEFAULT_TOL


def test_ce_is_drawn_once_in_its_own_column(records):
    solved = plots.drawable(records)
    fig, header, rows = plots.cosines_figure(solved)
    try:
        axes = np.array(fig.axes).reshape(3, len(TAUS) + 1)
        titles = [ax.get_title() for ax in axes[0]]
        assert titles == ["tau = 0.5", "tau = 1", "CE, CE+ReLU (no tau)"]
        ce = {colour_of("CE"), colour_of("CE+ReLU")}
        for row in axes:
            for ax in row[:-1]:  # no CE line under any tau
                assert not [ln for ln in ax.get_lines() if ln.get_color() in ce]
            ce_lines = [ln for ln in row[-1].get_lines() if ln.get_color() in ce]
            assert len(ce_lines) == 2 and all(len(ln.get_xdata()) == len(RS) for ln in ce_lines)
        assert len(rows) == len(solved) == 2 * len(RS) * (len(TAUS) + 1)  # the failed record left out
        assert sum(r[0] == "CE" for r in rows) == len(RS)  # CE once per R in the CSV too
    finally:
        plt.close(fig)
    fig, _, _ = plots.heatmaps_figure(solved)
    try:
        ce_images = [ax.images[0].get_array() for ax in fig.axes if ax.get_title().startswith("CE (no tau)")]
        assert len(ce_images) == 2 and all(a.shape == (1, len(RS)) for a in ce_images)
        sc_images = [ax.images[0].get_array() for ax in fig.axes if ax.get_title().startswith("SC:")]
        assert all(a.shape == (len(TAUS), len(RS)) for a in sc_images)
    finally:
        plt.close(fig)


def test_variants_are_distinguishable(records):
    names = ["SC", "SC+ReLU", "CE", "CE+ReLU", "BCL", "SC [random:2]", "SC+ReLU [random:2]", "XYZ"]
    styles = plots._styles(names)
    assert len({tuple(s.values()) for s in styles.values()}) == len(names)
    for s in styles.values():
        assert s["color"] not in ("black", "k", "grey", "gray")  # black is the uncertified mark
    fig, _, _ = plots.cosines_figure(plots.drawable(records))
    try:
        for ax in fig.axes:  # SC and SC+ReLU never share a panel with CE and CE+ReLU
            colours = {ln.get_color() for ln in ax.get_lines()}
            assert not (colours & {colour_of("SC+ReLU")} and colours & {colour_of("CE+ReLU")})
            data = [ln for ln in ax.get_lines() if ln.get_marker() not in ("None", "x", "") and len(ln.get_xdata())]
            xs = [tuple(ln.get_xdata()) for ln in data]
            assert len(xs) == 2 and len(set(xs)) == len(xs)  # lines in one panel are nudged apart along R
    finally:
        plt.close(fig)


def test_uncertified_points_carry_an_x(records):
    solved = plots.drawable(records)
    for make, per_point in ((plots.cosines_figure, 3), (plots.heatmaps_figure, 2)):
        fig, _, _ = make(solved)
        try:
            assert sum(x_count(ax) for ax in fig.axes) == 2 * per_point  # 2 uncertified records
        finally:
            plt.close(fig)


def test_gaps_are_signed_relative_and_against_the_verdicts_tolerance(records, tmp_path):
    solved = plots.drawable(records)
    fig, header, rows = plots.gaps_figure(solved)
    try:
        ax = fig.axes[0]
        assert ax.get_yscale() == "symlog" and ax.get_xscale() == "log"
        tol = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert tol == [plots.DEFAULT_TOL]
        ys = sorted(y for ln in ax.get_lines() if ln.get_marker() not in ("x", "None") for y in ln.get_ydata())
        want = sorted((r["loss"] - r["lower_bound"]) / max(1.0, abs(r["loss"])) for r in solved
                      if r["lower_bound"] is not None)
        assert ys == pytest.approx(want, rel=1e-12, abs=0) and min(ys) < 0  # the sign is kept
        assert x_count(ax) == 1  # the certificate that failed; the point without one has no gap to draw
        assert "1 point without a bound" in ax.get_title()
        assert np.allclose(ax.get_xticks(), RS) and [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "10"]
    finally:
        plt.close(fig)
    for row in rows:  # the CSV's verdict column agrees with the rule it is drawn against
        rel, certified = row[header.index("relative_gap")], row[header.index("certified")]
        if rel is not None:
            assert certified is (rel <= plots.DEFAULT_TOL)


@pytest.mark.slow
def test_plot_all_writes_png_pdf_and_csv(records, tmp_path):
    paths = plots.plot_all(records, str(tmp_path))
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == sorted(f"{n}.{e}" for n in ("cosines_vs_R", "heatmaps", "gaps") for e in ("png", "pdf", "csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left behind
    with open(tmp_path / "cosines_vs_R.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    solved = plots.drawable(records)
    assert len(table) == len(solved)
    got = {(r["variant"], r["tau"], float(r["R"])): float(r["min_min"]) for r in table}
    for r in solved:
        key = (plots.variant(r), "" if r["tau"] is None else repr(r["tau"]), r["R"])
        assert got[key] == r["mean_cosines"]["min_min"]
