"""solvers.certify and ``ufm certify``: certificates of PGD solutions, poor solutions, methods, errors, CLI."""
import functools
import json

import cvxpy as cp
import numpy as np
import pytest

from ufm import Problem, theory
from solvers import certify, pgd
from solvers.certificate import choose_method
from cli_run import run_cli

IMBALANCED = Problem(counts=(20, 20, 2, 2), tau=0.5, dim=6)  # no closed form


@functools.lru_cache
def solved(p, steps=5000, tol=None):
    return pgd.solve(p, dtype="float64", steps=steps, tol=tol)


@pytest.mark.parametrize("method", ["auto", "first-order"])
def test_imbalanced_pgd_solution_is_certified(method):
    sol = solved(IMBALANCED)
    c = certify(IMBALANCED, sol, method=method)
    assert c.method == ("reduced" if method == "auto" else "first-order")
    assert c.certified and abs(c.gap) <= 1e-6 and c.status == "optimal"
    assert abs(c.loss - sol.loss) <= 1e-12  # float64 solution: the same objective
    assert c.prediction["geometry"] == "unknown"
    if method == "auto":
        assert c.rank <= IMBALANCED.dim and c.details["tight_rank"]
        # no closed form, but the relaxation's geometry is the optimum's: the solution's matches it
        assert c.prediction["solution_vs_relaxation"]["max_abs_diff"] <= 1e-3


@pytest.mark.slow
def test_imbalanced_ce_and_ball_solutions_are_certified():
    for p in (Problem(counts=(8, 4, 2), loss="ce", constraint="ball"),
              Problem(counts=(8, 4, 2), tau=0.4, constraint="ball", dim=3)):
        c = certify(p, solved(p, 20000, 1e-14))
        assert c.method == "reduced" and c.certified and abs(c.gap) <= 1e-6, p


def test_poor_solution_is_not_certified():
    poor = pgd.solve(IMBALANCED, dtype="float64", steps=5, tol=0)
    for method in ("reduced", "first-order"):
        c = certify(IMBALANCED, poor, method=method)
        assert not c.certified and c.gap > 1e-3


@pytest.mark.parametrize("p,target", [
    (Problem(counts=(6, 6, 6), tau=0.5, dim=3), "etf"),
    (Problem(counts=(10, 5, 2, 1), tau=0.3, nonneg=True), "of"),
])
@pytest.mark.slow
def test_prediction_check_against_the_theorem(p, target):
    c = certify(p, solved(p))
    chk = c.prediction
    assert chk["geometry"] == target and c.certified
    assert abs(chk["bound_minus_predicted"]) <= 1e-6
    assert chk["solution"]["matches"] and chk["solution"]["max_abs_diff"] <= 1e-6
    assert chk["relaxation"]["matches"] and chk["relaxation"]["max_abs_diff"] <= 1e-3


def test_auto_method_and_misuse():
    assert choose_method(IMBALANCED) == "reduced"
    assert choose_method(Problem(counts=(30, 30), loss="ce", batching="fixed:8")) == "reduced"  # CE: full mean
    assert choose_method(Problem(counts=(50, 50, 50), batching="fixed:10")) == "full"
    assert choose_method(Problem(counts=(51, 50, 50), batching="fixed:10")) == "first-order"
    assert choose_method(Problem(counts=(51, 50, 50), batching="fixed:10"), has_solution=False) == "full"
    with pytest.raises(ValueError, match="reduced"):
        choose_method(Problem(counts=(4, 4), batching="fixed:3"), "reduced")
    with pytest.raises(ValueError, match="first-order"):
        certify(IMBALANCED, None, method="first-order")
    with pytest.raises(ValueError, match="method"):
        choose_method(IMBALANCED, "exact")
    with pytest.raises(ValueError, match="every epoch"):
        certify(Problem(counts=(4, 4), batching="shuffled:3"))
    with pytest.raises(ValueError, match="solution"):
        certify(IMBALANCED, pgd.Solution(np.ones((3, 6)), None, None, 0.0, np.zeros(1), 0, True, 0.0, "float64", 0))


def test_bound_only_has_no_gap():
    c = certify(Problem(counts=(10 ** 7,) * 4, tau=0.2))
    assert c.gap is None and c.certified is None and c.loss is None
    assert abs(c.lower_bound - theory.sc_etf_loss(10 ** 7, 4, 0.2)) <= 1e-6 and c.rank == 3
    assert c.prediction["relaxation"]["matches"]


def test_unproved_bound_is_reported_as_none_never_as_a_number(monkeypatch):
    from solvers import dual

    monkeypatch.setattr(dual, "lambda_min_lower", lambda *a, **kw: None)  # every eigenvalue bound fails
    for method in ("auto", "first-order"):
        c = certify(IMBALANCED, solved(IMBALANCED), method=method)
        assert c.lower_bound is None and c.certified is False and c.gap is None
        assert "Cholesky" in c.details["why"]
    rep = c.to_dict()
    assert rep["lower_bound"] is None and rep["certified"] is False


# -- command line ------------------------------------------------------------------------------------------------
def test_certify_json_contract(capsys, tmp_path):
    code, out, err = run_cli(capsys, "certify", "--loss", "sc", "--counts", "20,20,2,2", "--tau", "0.5", "--dim",
                             "6", "--json", "--out", str(tmp_path))
    assert code == 0, err
    rep = json.loads(out)
    for key in ("problem", "loss", "steps", "converged", "seconds", "dtype", "seed", "geometry", "prediction",
                "lower_bound", "gap", "certified", "method", "solver", "status", "relaxation", "versions"):
        assert key in rep, key
    assert rep["dtype"] == "float64" and rep["method"] == "reduced" and rep["solver"] == "CLARABEL"
    assert rep["certified"] is True and abs(rep["gap"]) <= 1e-6
    assert abs(rep["lower_bound"] - certify(IMBALANCED).lower_bound) <= 1e-9
    rel = rep["relaxation"]
    assert np.array(rel["mean_cosines"]).shape == (4, 4) and rel["rank"] == 3
    assert json.loads((tmp_path / "result.json").read_text())["gap"] == rep["gap"]
    assert np.load(tmp_path / "solution.npz")["Z"].shape == (44, 6)


def test_bound_only_for_a_hundred_million_samples(capsys):
    code, out, err = run_cli(capsys, "certify", "--counts", ",".join(["25000000"] * 4), "--tau", "0.1",
                             "--bound-only", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert "steps" not in rep and rep["gap"] is None and rep["method"] == "reduced"
    assert abs(rep["lower_bound"] - theory.sc_etf_loss(25_000_000, 4, 0.1)) <= 1e-6
    assert rep["prediction"]["geometry"] == "etf" and rep["prediction_check"]["relaxation"]["matches"]
    code, out, _ = run_cli(capsys, "certify", "--counts", "5,5,5", "--tau", "0.5", "--bound-only")
    assert code == 0 and "lower bound" in out and "rank 2" in out


def test_solver_failure_exits_3_with_status_and_advice(capsys, monkeypatch):
    def inaccurate(self, solver=None, **kw):
        self._status = "infeasible_inaccurate"
        return 0.0

    monkeypatch.setattr(cp.Problem, "solve", inaccurate)
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3", "--bound-only", "--solver", "scs")
    assert code == 3 and out == ""
    assert "infeasible_inaccurate" in err and "SCS" in err and "try" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,word", [(["--method", "first-order", "--bound-only"], "first-order"),
                                       (["--method", "exact"], "method"), (["--tol", "-1"], "tol"),
                                       (["--solver", "gurobi"], "solver"), (["--counts", "3,0"], "counts")])
def test_certify_bad_input_exits_2(capsys, argv, word):
    code, out, err = run_cli(capsys, "certify", "--bound-only", *argv)
    assert code == 2 and word in err and "Traceback" not in err and out == ""


@pytest.mark.slow
def test_solution_averaged_over_the_classes_certifies_where_the_relaxation_point_is_loose():
    """CE at imbalance 100 (counts 300,300,3,3): the relaxation's own point can prove a bound ~2e-6 below the
    converged solution (not certified at 1e-6; how loose depends on the interior-point solver's arithmetic, on
    some machines it certifies); the solution averaged over the class symmetry, with the best class-level
    multipliers, proves it optimal by itself, and ``certify`` keeps the best proof."""
    from solvers.certificate import _class_solution_proof

    p = Problem(counts=(300, 300, 3, 3), loss="ce", dim=6, constraint="ball")
    sol = pgd.solve(p, dtype="float64")
    c = certify(p, sol)
    assert c.certified and 0 <= c.gap <= 1e-6
    assert c.details["bound_from"] in ("relaxation", "solution (class-level)")
    own = _class_solution_proof(p, sol, sol.loss)
    assert own.lower_bound is not None and 0 <= sol.loss - own.lower_bound <= 1e-6 * max(1.0, abs(sol.loss))
