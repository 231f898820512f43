"""``ufm phase`` and ``solvers.workflows.phase``: the grid, its certificates, and the boundaries checked against a
bisection with full solves on integer counts."""
import json
import math

import numpy as np
import pytest

from cli_run import run_cli
from solvers.workflows.phase import ARRAYS, phase
from ufm import Problem, geometry, imbalance

SPEC = {"loss": "sc", "nonneg": False, "classes": 4, "imbalance": "step", "n_min": 4.0, "minority_fraction": 0.5,
        "dim": 4, "axis": "tau"}


def _full_min_min(m, tau, seed=0):
    """min_min of a full PGD solve with majorities of m samples and minorities of 4."""
    from solvers.pgd import solve

    P = Problem(counts=imbalance.step_counts(4, 4, m / 4), tau=tau)
    sol = solve(P, seed=seed)
    cos = geometry.mean_cosines(geometry.normalize_rows(sol.Z), P.label_array)
    return geometry.cosine_groups(cos, imbalance.majority_classes(4))["min_min"]


@pytest.fixture(scope="module")
def grid():
    return phase(SPEC, [1.0, 2.0, 4.0, 8.0, 16.0], [0.5, 1.0], rtol=1e-4)


@pytest.mark.slow
def test_grid_is_certified_and_shaped(grid):
    assert grid["ratios"] == [1.0, 2.0, 4.0, 8.0, 16.0] and grid["taus"] == [0.5, 1.0]
    for key in ARRAYS:
        assert np.shape(grid[key]) == (2, 5), key
    assert all(all(row) for row in grid["certified"])
    lb, loss = np.array(grid["lower_bound"]), np.array(grid["loss"])
    assert np.all(lb <= loss) and np.all(loss - lb <= 1e-6 * np.maximum(1, np.abs(loss)))
    # balanced: the simplex ETF, -1/(K-1) between every pair
    assert grid["min_min"][0][0] == pytest.approx(-1 / 3, abs=1e-6)
    assert grid["maj_min"][1][0] == pytest.approx(-1 / 3, abs=1e-6)


@pytest.mark.parametrize("row", [0, 1])
@pytest.mark.slow
def test_attraction_boundary_matches_a_bisection_of_full_solves(grid, row):
    """The class-level boundary R* against the integer majority size m* found by bisecting full PGD solves: the
    full problem's min_min changes sign between m* - 1 and m*, so (m* - 1)/4 < R* <= m*/4."""
    tau = grid["taus"][row]
    R = grid["boundaries"]["attraction"][row]["R"]
    assert grid["boundaries"]["attraction"][row]["tau"] == tau
    assert R is not None and 1.0 < R < 16.0
    lo, hi = 4, 32  # majority sizes: min_min = -1/3 < 0 at lo (balanced: the simplex ETF), >= 0 at hi
    assert _full_min_min(hi, tau) >= 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _full_min_min(mid, tau) >= 0:
            hi = mid
        else:
            lo = mid
    assert (hi - 1) / 4 * (1 - 1e-4) < R <= hi / 4 * (1 + 1e-4)


@pytest.mark.slow
def test_collapse_is_null_when_not_reached(grid):
    assert [b["R"] for b in grid["boundaries"]["collapse"]] == [None, None]
    assert max(max(r) for r in grid["min_min"]) < 0.99


@pytest.mark.slow
def test_cli_writes_phase_json(tmp_path, capsys):
    out = tmp_path / "p"
    code, _, err = run_cli(capsys, "phase", "--ratios", "1:10:3", "--taus", "0.3,1", "--classes", "3", "--n-min",
                           "2.5", "--out", str(out), "--no-figures")
    assert code == 0, err
    d = json.loads((out / "phase.json").read_text())
    assert d["ratios"] == pytest.approx([1.0, math.sqrt(10), 10.0]) and d["taus"] == [0.3, 1.0]
    assert d["certified_points"] == d["points"] == 6
    assert set(d["boundaries"]) == {"attraction", "collapse"}
    assert [b["tau"] for b in d["boundaries"]["attraction"]] == [0.3, 1.0]


def test_cli_bcl_runs_certified_on_the_reduced_path(tmp_path, capsys, monkeypatch):
    """BCL with its class prototypes: every point proved by the group-level bound with prototype rows; balanced
    (R = 1) it is the simplex ETF with BCL's closed-form value, and the bound lies below that value. Forced onto
    the class-level path (the prototypes as K more rows) the same grid has the same losses and cosines."""
    import solvers.workflows.phase as ph
    from ufm.objectives.bcl import etf_loss

    out = tmp_path / "bcl"
    code, _, err = run_cli(capsys, "phase", "--loss", "bcl", "--classes", "3", "--ratios", "1,4", "--taus", "0.5",
                           "--out", str(out), "--no-figures")
    assert code == 0, err
    d = json.loads((out / "phase.json").read_text())
    assert d["loss_type"] == "bcl" and d["certified_points"] == d["points"] == 2
    assert d["method"] == "reduced"
    monkeypatch.setattr(ph, "choose_path", lambda spec: "class-level")
    other = phase({**SPEC, "loss": "bcl", "classes": 3, "dim": 3, "n_min": 5.0}, [1.0, 4.0], [0.5])
    assert other["method"] == "class-level" and other["certified_points"] == 2
    np.testing.assert_allclose(d["loss"], other["loss"], rtol=1e-9)
    np.testing.assert_allclose(d["min_min"], other["min_min"], atol=1e-5)
    etf = etf_loss((5.0, 5.0, 5.0), 0.5)
    assert d["lower_bound"][0][0] <= etf and d["loss"][0][0] == pytest.approx(etf, rel=1e-8)
    assert d["min_min"][0][0] == pytest.approx(-0.5, abs=1e-6)
    assert all(lb <= v for lb, v in zip(d["lower_bound"][0], d["loss"][0]))


@pytest.mark.slow
def test_cli_ce_axis_is_the_weight_decay(tmp_path, capsys):
    out = tmp_path / "ce"
    code, _, err = run_cli(capsys, "phase", "--loss", "ce", "--ratios", "1,30", "--weight-decays", "0.01,0.1",
                           "--out", str(out), "--no-figures")
    assert code == 0, err
    d = json.loads((out / "phase.json").read_text())
    assert d["axis"] == "weight_decay" and d["weight_decays"] == [0.01, 0.1] and "taus" not in d
    assert set(d["boundaries"]["collapse"][0]) == {"weight_decay", "R", "certified"}
    # CE at a large weight decay: the minority classes collapse (Fang et al.); the certificate says it is optimal
    assert d["min_min"][1][1] > 0.99 and d["certified"][1][1]


@pytest.mark.parametrize("argv, match", [
    (["--loss", "ce", "--taus", "0.1"], "--taus"),
    (["--weight-decays", "0.1"], "--weight-decays"),
    (["--ratios", "0.5:10:3"], "--ratios"),
    (["--ratios", "1:10"], "--ratios"),
    (["--taus", "0.1,0.05"], "increasing"),
    (["--taus", "-1"], "--taus"),
    (["--taus", "0.1,,0.5"], "empty entry"),
    (["--ratios", "a:b:3"], "--ratios"),
    (["--minority-fraction", "1.5"], "--minority-fraction"),
    (["--tol", "-1"], "--tol"),
    (["--dim", "0"], "--dim"),
    (["--n-min", "1.5"], "--n-min"),
    (["--loss", "hinge"], "--loss"),
    (["--classes", "1"], "--classes"),
    (["--loss", "bcl", "--nonneg"], "--nonneg"),
    (["--ratios", "1:10:1000", "--taus", "0.1:1:1000"], "limits"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, argv, match):
    code, _, err = run_cli(capsys, "phase", *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and match in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_figures_and_uncertified_exit_3(tmp_path, capsys):
    """With --tol 0 no proved bound can reach the loss (its rounding margin is subtracted): every point is reported
    uncertified, the command exits 3, and the figures and CSVs are still written."""
    out = tmp_path / "f"
    code, _, err = run_cli(capsys, "phase", "--ratios", "1,5", "--taus", "0.5", "--classes", "3", "--tol", "0",
                           "--out", str(out))
    assert code == 3, err
    d = json.loads((out / "phase.json").read_text())
    assert d["certified"] == [[False, False]] and d["certified_points"] == 0
    lb, loss = np.array(d["lower_bound"]), np.array(d["loss"])
    assert np.all(lb < loss) and np.all(loss - lb < 1e-9)
    for name in ("phase_diagram.png", "phase_diagram.pdf", "phase_min_min.csv", "phase_boundaries.csv"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_orthogonal_frame_has_no_attraction_boundary():
    """UFM+: min_min is 0 (to rounding) at every R; neither boundary exists, whatever the rounding's sign."""
    d = phase({**SPEC, "nonneg": True}, [1.0, 3.0, 30.0], [0.2])
    assert max(abs(v) for v in d["min_min"][0]) < 1e-6
    assert d["boundaries"]["attraction"] == [{"tau": 0.2, "R": None, "certified": None}]
    assert d["boundaries"]["collapse"][0]["R"] is None


def test_brackets_ignore_rounding_around_zero_and_uncertified_points():
    from solvers.workflows.phase import _brackets

    R = [1.0, 2.0, 4.0, 8.0]
    ok = [True] * 4
    assert _brackets(R, [-1e-9, 2e-9, -3e-10, 1e-12], 0.0, ok) is None  # an orthogonal frame, to rounding
    assert _brackets(R, [-0.3, -1e-9, 0.2, 0.5], 0.0, ok) == (1.0, 4.0)  # through a point at 0 to rounding
    assert _brackets(R, [0.1, -0.3, 0.2, 0.5], 0.0, ok) == (2.0, 4.0)  # the first crossing from below
    assert _brackets(R, [-0.3, -0.1, 0.2, 0.5], 0.0, [True, False, True, True]) is None
    assert _brackets(R, [-0.3, 0.5, 0.98, 0.995], 0.99, ok) == (4.0, 8.0)
    assert _brackets(R, [None, 0.5, 0.6, 0.7], 0.99, ok) is None


def test_reduced_and_class_level_paths_agree(grid, monkeypatch):
    """STEP runs on the reduced path; forced onto the class-level path the same grid has the same losses (1e-9),
    cosines and boundaries (1e-4), and both are certified."""
    import solvers.workflows.phase as ph

    assert grid["method"] == "reduced"
    monkeypatch.setattr(ph, "choose_path", lambda spec: "class-level")
    other = phase(SPEC, [1.0, 2.0, 4.0, 8.0, 16.0], [0.5, 1.0], rtol=1e-4)
    assert other["method"] == "class-level" and other["certified_points"] == other["points"]
    np.testing.assert_allclose(grid["loss"], other["loss"], rtol=1e-9)
    for key in ("min_min", "maj_maj", "maj_min"):
        np.testing.assert_allclose(grid[key], other[key], atol=1e-5)
    for kind in ("attraction", "collapse"):
        for a, b in zip(grid["boundaries"][kind], other["boundaries"][kind]):
            assert (a["R"] is None) == (b["R"] is None)
            if a["R"] is not None:
                assert a["R"] == pytest.approx(b["R"], rel=1e-4)


def test_path_choice():
    from solvers.workflows.phase import choose_path

    assert choose_path(SPEC) == "reduced"
    assert choose_path({**SPEC, "nonneg": True}) == "class-level"
    assert choose_path({**SPEC, "imbalance": "long-tail"}) == "class-level"
    assert choose_path({**SPEC, "dim": 3}) == "class-level"
    assert choose_path({**SPEC, "loss": "ce", "axis": "weight_decay"}) == "reduced"


def test_cli_large_step_grid_runs_on_the_reduced_path(tmp_path, capsys):
    """K = 1000 classes: the work cap counts the reduced size, and every point is certified."""
    out = tmp_path / "big"
    code, _, err = run_cli(capsys, "phase", "--classes", "1000", "--ratios", "1:100:4", "--taus", "0.1,0.5",
                           "--out", str(out), "--no-figures")
    assert code == 0, err
    d = json.loads((out / "phase.json").read_text())
    assert d["method"] == "reduced" and d["certified_points"] == 8
    assert all(1 <= r <= 1000 for row in d["rank"] for r in row)


@pytest.mark.slow
def test_warm_started_long_tail_grid_equals_the_cold_one():
    """The class-level path's chains (each point started from the previous temperature's solution) reach the same
    certified minima as independent starts."""
    spec = {**SPEC, "classes": 6, "dim": 6, "imbalance": "long-tail"}
    ratios, taus = [1.0, 5.0, 30.0], [0.1, 0.3, 1.0]
    warm = phase(spec, ratios, taus, warm=True)
    cold = phase(spec, ratios, taus, warm=False)
    assert warm["method"] == "class-level" and warm["warm"] and not cold["warm"]  # cold: chains without warm starts
    assert warm["certified_points"] == cold["certified_points"] == 9
    np.testing.assert_allclose(np.array(warm["loss"]), np.array(cold["loss"]), rtol=0, atol=1e-9)
    lb = np.array(warm["lower_bound"])
    assert np.all(lb <= np.array(warm["loss"]) + 1e-12) and np.all(np.array(warm["loss"]) - lb <= 1e-6 * np.maximum(1, np.abs(lb)))


@pytest.mark.slow
def test_solve_chains_matches_solve_classes_and_rejects_bad_chains():
    from solvers.classlevel import solve_chains, solve_classes
    from solvers.workflows.phase import grid_problem

    spec = {**SPEC, "classes": 5, "dim": 5, "imbalance": "long-tail"}
    probs = [grid_problem(spec, R, t) for t in (0.2, 0.5) for R in (2.0, 10.0)]
    chained = solve_chains(probs, [[0, 2], [1, 3]], warm=True)
    alone = solve_classes(probs)
    assert [s.reason for s in chained] == ["converged"] * 4
    np.testing.assert_allclose([s.loss for s in chained], [s.loss for s in alone], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="chains"):
        solve_chains(probs, [[0, 1], [1, 3]])


@pytest.mark.slow
def test_cold_chains_equal_one_vmapped_loop():
    """Without warm starts a chain's points start as in solve_classes and reach the same minima."""
    from solvers.classlevel import certify_classes, solve_chains, solve_classes
    from solvers.workflows.phase import grid_problem

    spec = {**SPEC, "classes": 7, "dim": 7, "imbalance": "long-tail"}
    probs = [grid_problem(spec, R, t) for t in (0.1, 0.4, 1.0) for R in (3.0, 40.0)]
    chained = solve_chains(probs, [[0, 2, 4], [1, 3, 5]])
    alone = solve_classes(probs)
    np.testing.assert_allclose([s.loss for s in chained], [s.loss for s in alone], rtol=0, atol=1e-9)
    assert all(c.certified for c in certify_classes(probs, chained))


@pytest.mark.slow
def test_ce_collapse_boundary_does_not_depend_on_where_the_first_order_loop_hands_over(monkeypatch):
    """CE's collapse boundary (K = 10, the reduced path, the strongest weight decay of the default axis) bisected
    twice, the first-order loop handing over to the Newton polish at ftol 1e-4 and at 1e-10: every bisection
    point certified, and the same boundary to the bisection's accuracy."""
    from solvers import reduced
    from solvers.workflows.phase import COLLAPSE, boundary

    spec = {"loss": "ce", "nonneg": False, "classes": 10, "imbalance": "step", "n_min": 5.0,
            "minority_fraction": 0.5, "dim": 10, "axis": "weight_decay"}
    Rs = []
    for handover in (1e-4, 1e-10):
        monkeypatch.setattr(reduced, "POLISH_FTOL", handover)
        (R,), (proved,) = boundary(spec, [0.1], [(7.2, 13.9)], COLLAPSE, rtol=1e-3)
        assert proved and 7.2 < R <= 13.9
        Rs.append(R)
    assert Rs[0] == pytest.approx(Rs[1], rel=2e-3)


@pytest.mark.slow
def test_chains_of_unequal_length_compact_and_take_starts():
    """Five chains, one long: the live slots are compacted (5 -> 2 -> 1) as chains end, and every point still
    reaches the minimum it reaches alone; a start given per point (a neighbour's solution) is taken and gives the
    same minimum, certified."""
    from solvers.classlevel import certify_classes, solve_chains, solve_classes
    from solvers.workflows.phase import grid_problem

    spec = {**SPEC, "classes": 6, "dim": 6, "imbalance": "long-tail"}
    probs = [grid_problem(spec, R, t) for t, R in ((0.2, 2.0), (0.2, 5.0), (0.2, 9.0), (0.2, 20.0), (0.2, 50.0),
                                                   (0.5, 50.0), (1.0, 50.0))]
    chained = solve_chains(probs, [[0], [1], [2], [3], [4, 5, 6]])
    alone = solve_classes(probs)
    np.testing.assert_allclose([s.loss for s in chained], [s.loss for s in alone], rtol=0, atol=1e-9)
    starts = [None] + [{"mu": chained[i - 1].mu} for i in range(1, 5)] + [None, None]  # radius 1
    warm = solve_chains(probs, [[i] for i in range(7)], starts=starts)
    np.testing.assert_allclose([s.loss for s in warm], [s.loss for s in alone], rtol=0, atol=1e-9)
    assert all(c.certified for c in certify_classes(probs, warm))


def test_small_change_is_the_loss_half_of_small_step():
    import jax.numpy as jnp

    from solvers.pgd.step import small_change, small_step

    f = np.array([1.0, 1.0, np.nan, 3.0])
    fn = np.array([1.0 + 1e-14, 1.0 + 1e-12, 1.0, 3.0 + 5e-13])  # the last: 5e-13 > 1e-13 (1 + 3)
    np.testing.assert_array_equal(small_change(fn, f, 1e-13), [True, False, False, False])
    np.testing.assert_array_equal(small_step(jnp.zeros(4), fn, f, 1e-13, 1.0), small_change(fn, f, 1e-13))


@pytest.mark.slow
def test_optimal_multipliers_are_not_tried_beyond_their_size_limit(monkeypatch):
    """Above OPTIMAL_MAX_K the K-variable program (whose interior-point system grows like K^4) is not built: a
    candidate bound that does not certify stays uncertified, and nothing else is proved."""
    from solvers import classlevel
    from solvers.classlevel import ClassSolution, certify_classes
    from ufm.classlevel import ClassProblem

    p = ClassProblem(counts=(20.0, 9.0, 5.0), tau=0.3)
    mu = np.eye(3)  # far from the minimum: the candidate multipliers do not certify it
    sol = ClassSolution(mu, None, classlevel.loss_of(p, {"mu": mu}), 0, "max_steps")
    optimal = certify_classes([p], [sol])[0]
    monkeypatch.setattr(classlevel, "OPTIMAL_MAX_K", 2)
    capped = certify_classes([p], [sol])[0]
    assert not capped.certified and capped.multipliers == "candidate"
    assert capped.lower_bound <= optimal.lower_bound <= sol.loss


def test_class_level_chains_start_from_the_simplex(monkeypatch):
    """``phase`` starts the class-level chains from the regular simplex (solvers.workflows.phase.START)."""
    from solvers import classlevel

    seen = []
    real = classlevel.simplex_start
    monkeypatch.setattr(classlevel, "simplex_start", lambda p: seen.append(p.K) or real(p))
    d = phase({**SPEC, "classes": 5, "dim": 5, "imbalance": "long-tail"}, [2.0, 10.0], [0.5, 1.0])
    assert seen and set(seen) == {5} and d["certified_points"] == 4 and d["method"] == "class-level"


@pytest.mark.slow
def test_bcl_prototypes_survive_the_chains_and_the_boundary_bisection():
    """A loss with class prototypes (BCL): solve_chains' solutions carry the prototypes (the bisection and the
    retries go through it), so a grid whose attraction boundary is bisected certifies."""
    from solvers.classlevel import certify_classes, solve_chains
    from solvers.workflows.phase import grid_problem

    spec = {**SPEC, "loss": "bcl", "classes": 6, "dim": 6, "imbalance": "long-tail", "n_min": 5.0}
    probs = [grid_problem(spec, R, 0.5) for R in (2.0, 10.0)]
    sols = solve_chains(probs, [[0, 1]], warm=True)
    assert all(s.C is not None and s.C.shape == (6, 6) for s in sols)
    assert all(c.certified for c in certify_classes(probs, sols))
    d = phase(spec, [1.0, 5.0, 20.0], [0.2, 1.0])
    assert d["certified_points"] == 6 and any(b["R"] is not None for b in d["boundaries"]["attraction"])
