"""``ufm landscape`` and ``solvers.workflows.landscape``: flags, grouping of stationary points, the local
certificate's plumbing (through a stand-in with its contract), the resume, and landscape.json."""
import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
from cli_run import run_cli

from solvers.workflows import landscape as ls
from ufm import Problem, theory

# --- flags -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, flag", [
    (["--starts", "0"], "--starts"),
    (["--taus", "-1"], "--taus"),
    (["--taus", "0.5,0.1"], "--taus"),
    (["--counts", "1,1"], "--counts"),
    (["--counts", "3,,2"], "--counts"),
    (["--counts", "4,2,2", "--ratios", "1,2"], "--ratios"),
    (["--n-min", "0"], "--n-min"),
    (["--classes", "1"], "--classes"),
    (["--gram-tol", "0"], "--gram-tol"),
    (["--tol", "nan"], "--tol"),
    (["--dim", "0"], "--dim"),
    (["--steps", "0"], "--steps"),
    (["--ratios", "0.5,2"], "--ratios"),
    (["--minority-fraction", "1"], "--minority-fraction"),
    (["--seed", "-3"], "seed"),
    (["--counts", "300,200"], "counts"),
])
def test_bad_flags_are_one_line_and_exit_2(capsys, tmp_path, argv, flag):
    code, out, err = run_cli(capsys, "landscape", *argv, "--out", str(tmp_path / "o"))
    assert code == 2
    assert flag in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / ls.RESULTS).exists()


def test_family_sizes_are_integers_and_deduplicated():
    pts = ls.grid_points(classes=3, n_min=2, ratios=[1.0, 1.1, 2.6], taus=[0.1, 0.2])
    # R = 1.1 rounds to the balanced counts again: kept once; R = 2.6 gives round(5.2) = 5
    assert [p["counts"] for p in pts] == [[2, 2, 2], [2, 2, 2], [5, 2, 2], [5, 2, 2]]
    assert [p["tau"] for p in pts] == [0.1, 0.2, 0.1, 0.2]
    assert all(p["dim"] == 4 for p in pts)  # d = K + 1 by default
    assert all(isinstance(v, int) for p in pts for v in p["counts"])
    lt = ls.grid_points(classes=3, n_min=2, ratios=[4.0], imbalance_profile="long-tail", taus=[0.1])
    assert lt[0]["counts"] == [8, 4, 2]


# --- grouping ------------------------------------------------------------------------------------------------------


def _random_rotation(d, rng):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _unit_rows(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_rotated_copies_are_one_group_and_another_point_is_not():
    rng = np.random.default_rng(0)
    counts, d = [3, 2, 2], 4
    labels = np.repeat(np.arange(3), counts)
    Z = _unit_rows(rng.standard_normal((7, d)))
    Zrot = Z @ _random_rotation(d, rng)
    # the same point with samples permuted within class 0 and classes 1 and 2 (of equal size) swapped
    perm = np.array([2, 0, 1, 5, 6, 3, 4])
    Zperm = Zrot[perm]
    other = _unit_rows(Z + 0.3 * rng.standard_normal(Z.shape))
    sigs = [ls.gram_signature(X, labels, 3) for X in (Z, Zrot, Zperm, other)]
    perms = ls.class_permutations(counts)
    assert ls.signature_distance(sigs[0], sigs[1]) < 1e-12
    assert ls.signature_distance(sigs[0], sigs[2]) > 1e-3  # classes swapped: the identity does not match ...
    assert ls.signature_distance(sigs[0], sigs[2], perms) < 1e-12  # ... a relabelling of equal classes does
    assert ls.signature_distance(sigs[0], sigs[3], perms) > 1e-2
    loss = 1.234
    groups = ls.group_points([loss, loss + 1e-9, loss, loss], sigs, tol=1e-6, gram_tol=1e-6, perms=perms)
    assert groups[0] == groups[1] == groups[2] != groups[3]
    # equal Grams, losses apart: two groups, numbered by increasing loss
    assert ls.group_points([2.0, 1.0], sigs[:2], tol=1e-6, gram_tol=1e-6) == [1, 0]


def test_class_permutations_map_equal_sizes_only():
    perms = ls.class_permutations([3, 1, 1])
    assert perms[0] == (0, 1, 2) and set(perms) == {(0, 1, 2), (0, 2, 1)}
    assert ls.class_permutations([4, 3, 2]) == [(0, 1, 2)]
    assert len(ls.class_permutations([2] * 5)) == 120


# --- the local certificate's plumbing, through a stand-in -----------------------------------------------------------


@dataclass
class _Sol:
    Z: np.ndarray
    seed: int
    converged: bool = True
    gradient_mapping: float = 1e-9


@dataclass
class _Cert:
    d: dict

    def to_dict(self):
        return dict(self.d)


def _etf_point(counts, d):
    K = len(counts)
    E = np.eye(K) - 1.0 / K
    V = np.zeros((K, d))
    V[:, :K] = E / np.linalg.norm(E, axis=1, keepdims=True)
    return V[np.repeat(np.arange(K), counts)]


POINT = {"counts": [2, 2, 2], "tau": 0.5, "dim": 4, "starts": 8, "seed": 0, "steps": 100, "tol": 1e-6,
         "gram_tol": 1e-2}


def _fake_starts(rng):
    """8 ends: 5 rotated copies of the simplex-ETF collapse (the global minimum, Graf et al.), 2 rotated copies of
    a point with classes 0 and 1 collapsed together, one start that did not converge."""
    counts, d = POINT["counts"], POINT["dim"]
    etf = _etf_point(counts, d)
    bad = np.zeros((6, d))
    bad[:4, 0], bad[4:, 0] = 1.0, -1.0
    out = []
    for i in range(8):
        X = (etf if i < 5 else bad) @ _random_rotation(d, rng)
        out.append(_Sol(X, seed=i, converged=i != 7))
    return out


def _standin(calls):
    """A stand-in with ``certify_local``'s contract: every point a proved strict local minimum, with a loss interval
    of +-1e-9 around its float64 loss; ``spurious`` from ``global_loss``."""
    from solvers.first_order import solution_loss

    def certify_local(problem, Z, *, global_loss=None):
        calls.append(global_loss)
        v = float(solution_loss(problem, Z))
        return _Cert({"proved": True, "kind": "local minimum", "loss_interval": [v - 1e-9, v + 1e-9],
                      "radius": 1e-3, "gradient_norm_upper": 1e-8, "hessian_min_eig_lower": 1e-2,
                      "method": "stand-in", "why": None,
                      "spurious": None if global_loss is None else bool(v - 1e-9 > global_loss)})
    return certify_local


@pytest.fixture
def fake_solver(monkeypatch):
    rng = np.random.default_rng(1)
    P = Problem(counts=POINT["counts"], tau=POINT["tau"], dim=POINT["dim"])
    bound = theory.sc_etf_loss(2, 3, 0.5, 1.0)  # the proved minimum of balanced SC (Graf et al.)
    monkeypatch.setattr(ls, "_solve_starts", lambda problem, point: _fake_starts(rng))
    monkeypatch.setattr(ls, "_global_bound", lambda problem, sol, tol: (bound - 1e-12, "closed form", None))
    monkeypatch.setattr(ls, "_perturbed_loss", lambda problem, Z, point, salt: -1.0)
    monkeypatch.setattr(ls, "_hessian", lambda problem, Z: {"min_eig": 0.5})
    return P, bound


def test_standin_certificate_reaches_spurious_fraction(fake_solver):
    P, bound = fake_solver
    calls = []
    rec = ls.run_point(POINT, _standin(calls))
    assert rec["global_certified"] and rec["global_loss"] == pytest.approx(bound, abs=1e-9)
    assert rec["converged_starts"] == 7 and rec["start_group"][7] is None
    assert [g["count"] for g in rec["groups"]] == [5, 2]  # rotated copies grouped
    assert len(calls) == 2 and all(c == rec["global_upper"] for c in calls)
    # an upper bound on the global minimum: proved by solvers.local.loss_upper where it exists, else float64 + 1e-12
    assert rec["global_loss"] <= rec["global_upper"] <= rec["global_loss"] + 2e-12
    try:
        import solvers.local  # noqa: F401
        assert rec["global_upper_proved"]
    except ImportError:
        assert not rec["global_upper_proved"] and rec["global_upper"] > rec["global_loss"]
    top = rec["groups"][1]
    assert top["certified"] and top["spurious"] is True and top["loss"] > rec["global_loss"] + 0.1
    assert rec["groups"][0]["spurious"] is False and rec["groups"][0]["at_global"]
    assert rec["spurious_fraction"] == 2 / 8  # the non-converged start counts in the denominator
    assert rec["above_global_fraction"] == 2 / 8
    assert rec["local_certificate"] == "available"
    assert not rec["certified"]  # one start did not converge: where it would have ended is not known
    assert [m["spurious"] for m in rec["local_minima"]] == [False, True]
    assert all(g["perturbed_loss"] is None for g in rec["groups"])  # no escape test when proofs are available


def test_a_saddle_or_an_unproved_point_is_never_spurious(fake_solver):
    from solvers.first_order import solution_loss

    def saddle(problem, Z, *, global_loss=None):  # a saddle above the global minimum, a local minimum at it
        v = float(solution_loss(problem, Z))
        if v > global_loss + 1e-6:  # as solvers.local says it: proved means a minimum; a saddle's critical point
            return _Cert({"proved": False, "kind": "saddle", "critical_point_proved": True,
                          "loss_interval": [v - 1e-9, v + 1e-9], "spurious": None})
        return _Cert({"proved": True, "kind": "local minimum", "loss_interval": [v - 1e-9, v + 1e-9]})

    rec = ls.run_point(POINT, saddle)
    assert rec["spurious_fraction"] == 0 and rec["saddles"] == [{"loss": rec["groups"][1]["loss"], "count": 2}]
    assert [m["count"] for m in rec["local_minima"]] == [5]

    def negative_curvature_only(problem, Z, *, global_loss=None):  # no critical point proved: no saddle
        return _Cert({"proved": False, "kind": "saddle", "critical_point_proved": False})

    rec = ls.run_point(POINT, negative_curvature_only)
    assert rec["saddles"] == [] and not rec["certified"] and rec["groups"][1]["spurious"] is None

    def unproved(problem, Z, *, global_loss=None):
        return _Cert({"proved": False, "kind": None, "why": "Hessian not definite", "spurious": True})

    rec = ls.run_point(POINT, unproved)
    assert rec["spurious_fraction"] == 0 and not rec["certified"]
    assert rec["groups"][1]["spurious"] is None  # the certificate's own "spurious" is not taken without a proof

    def raises(problem, Z, *, global_loss=None):
        raise RuntimeError("boom")

    rec = ls.run_point(POINT, raises)
    assert rec["groups"][1]["certificate"]["why"] == "RuntimeError: boom" and not rec["certified"]


def test_missing_certificate_records_the_evidence_only(fake_solver):
    rec = ls.run_point(POINT, None)
    assert rec["local_certificate"] == "missing" and rec["spurious_fraction"] is None
    assert rec["above_global_fraction"] == 2 / 8 and not rec["certified"]
    assert rec["groups"][0]["perturbed_loss"] is None and rec["groups"][1]["perturbed_loss"] == -1.0
    assert rec["groups"][0]["hessian_estimate"] is None and rec["groups"][1]["hessian_estimate"] == {"min_eig": 0.5}


def test_hessian_estimate_tells_the_etf_minimum_from_the_collapsed_saddle():
    """Balanced SC, d > K: the simplex-ETF collapse is the global minimum (Graf et al.) and, off the rotation orbit,
    its Riemannian Hessian has no negative eigenvalue; every sample on one point is a critical point (the gradient
    of each row is radial, by symmetry) with a negative one."""
    P = Problem(counts=[2, 2, 2], tau=0.5, dim=4)
    etf = ls.hessian_estimate(P, _etf_point([2, 2, 2], 4))
    assert etf["gradient_norm"] < 1e-10 and etf["min_eig"] > -1e-8
    assert etf["tangent_dim"] == 6 * 3 and etf["orbit_dim"] == 5  # spans 2 of 4 dims: so(4) less the so(2) fixing it
    one = ls.hessian_estimate(P, np.tile(np.eye(4)[:1], (6, 1)))
    assert one["gradient_norm"] < 1e-10 and one["min_eig"] < -1e-3


# --- resume and landscape.json --------------------------------------------------------------------------------------


@pytest.fixture
def proved_upper(monkeypatch):
    """The stand-in records have no problem to prove an upper bound on: their float64 global loss stands for it."""
    monkeypatch.setattr(ls, "_global_upper", lambda problem, rec: (rec["global_loss"], True))


def test_an_unproved_global_upper_bound_calls_nothing_spurious():
    point = {"counts": [3, 2, 2], "tau": 0.1, "dim": 4, "starts": 4, "seed": 0, "tol": 1e-6}

    def cert(problem, Z, *, global_loss=None):
        loss = 1.0 if Z[0][0] == 1.0 else 2.0
        return _Cert({"proved": True, "kind": "local minimum", "loss_interval": [loss, loss], "spurious": None})

    rec = _quick_record(point, cert)  # no problem: the upper bound is float64, not proved
    assert rec["global_upper_proved"] is False
    assert [g["spurious"] for g in rec["groups"]] == [False, None] and rec["groups"][1]["certified"]


def _quick_record(point, certify_local=None):
    rec = {**point, "id": ls.records.point_id(point), "R": max(point["counts"]) / min(point["counts"]),
           "K": len(point["counts"]), "N": sum(point["counts"]), "status": "ok", "error": None,
           "converged_starts": point["starts"], "not_converged": 0, "global_loss": 1.0, "lower_bound": 1.0,
           "global_certified": True, "seconds": 0.0,
           "groups": [{"loss": 1.0, "count": point["starts"] - 1, "Z": [[1.0]]},
                      {"loss": 2.0, "count": 1, "Z": [[0.0]]}]}
    return ls._certify_groups(rec, None, certify_local)


def test_resume_skips_done_points_and_recertifies_without_solving(tmp_path, monkeypatch, proved_upper):
    solved = []
    monkeypatch.setattr(ls, "run_point", lambda p, c: solved.append(p["tau"]) or _quick_record(p, c))
    pts = ls.grid_points(counts=[[3, 2, 2]], taus=[0.1, 0.2], starts=4)
    ls.run_landscape(pts, str(tmp_path), certify_local=None)
    assert solved == [0.1, 0.2]
    more = ls.grid_points(counts=[[3, 2, 2]], taus=[0.1, 0.2, 0.4], starts=4)
    recs = ls.run_landscape(more, str(tmp_path), certify_local=None)
    assert solved == [0.1, 0.2, 0.4] and [r["tau"] for r in recs] == [0.1, 0.2, 0.4]
    assert all(r["local_certificate"] == "missing" for r in recs)
    # the certificate now available: the stored representatives are certified, nothing is solved again
    seen = []

    def cert(problem, Z, *, global_loss=None):
        seen.append(Z)
        loss = 1.0 if Z[0][0] == 1.0 else 2.0
        return _Cert({"proved": True, "kind": "local minimum", "loss_interval": [loss, loss], "spurious": None})

    recs = ls.run_landscape(more, str(tmp_path), certify_local=cert)
    assert solved == [0.1, 0.2, 0.4] and len(seen) == 6
    assert [r["spurious_fraction"] for r in recs] == [0.25] * 3
    lines = [json.loads(x) for x in open(tmp_path / ls.RESULTS)]
    assert len(lines) == 3  # one record per point after the rewrite
    # a different --starts is a different point
    ls.run_landscape(ls.grid_points(counts=[[3, 2, 2]], taus=[0.1], starts=5), str(tmp_path), certify_local=cert)
    assert solved[-1] == 0.1 and len(solved) == 4


def test_landscape_json_has_the_contract_keys_and_loads_into_pandas(tmp_path, monkeypatch, capsys, proved_upper):
    pd = pytest.importorskip("pandas")
    monkeypatch.setattr(ls, "run_point", lambda p, c: _quick_record(p, c))

    def cert(problem, Z, *, global_loss=None):
        loss = 1.0 if Z[0][0] == 1.0 else 2.0
        return _Cert({"proved": True, "kind": "local minimum", "loss_interval": [loss, loss], "spurious": None})

    monkeypatch.setattr(ls, "local_certifier", lambda: cert)
    out = tmp_path / "o"
    code, stdout, err = run_cli(capsys, "landscape", "--counts", "3,2,2;5,2,2", "--taus", "0.1,0.3", "--starts",
                                "4", "--seed", "7", "--out", str(out), "--json")
    assert code == 0, err
    data = json.loads((out / "landscape.json").read_text())
    assert data == json.loads(stdout)
    for key in ("counts", "taus", "starts", "global_loss", "local_minima", "spurious_fraction", "settings",
                "versions", "seed"):
        assert key in data, key
    assert data["seed"] == 7 and data["settings"]["starts"] == 4 and "jax" in data["versions"]
    assert data["counts"] == [[3, 2, 2], [3, 2, 2], [5, 2, 2], [5, 2, 2]] and data["taus"] == [0.1, 0.3, 0.1, 0.3]
    assert {"loss", "count", "certified", "spurious"} <= set(data["local_minima"][0][0])
    df = pd.DataFrame({k: data[k] for k in data["point_keys"]})
    assert len(df) == 4 and list(df["spurious_fraction"]) == [0.25] * 4
    for name in ("landscape.png", "landscape.pdf", "landscape.csv"):
        assert os.path.getsize(out / name) > 0
    # the certificate missing: the same run says so in one line and exits 3
    monkeypatch.setattr(ls, "local_certifier", lambda: (_ for _ in ()).throw(ls.LocalCertificateMissing("gone")))
    code, _, err = run_cli(capsys, "landscape", "--counts", "3,2,2", "--taus", "0.2", "--starts", "4",
                           "--out", str(tmp_path / "p"), "--no-figures")
    assert code == 3 and "gone" in err.strip().splitlines()[-1]
    assert json.loads((tmp_path / "p" / "landscape.json").read_text())["spurious_fraction"] == [None]


# --- real solves ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_point_groups_and_certifies_the_global_minimum():
    """A real point outside the theorem (two one-sample classes): every converged start in one group, the global
    group's loss at the proved bound, no loss below the bound."""
    pt = ls.grid_points(counts=[[10, 1, 1]], taus=[0.0637], dim=5, starts=8)[0]
    calls = []
    rec = ls.run_point(pt, _standin(calls))
    lb = rec["lower_bound"]
    assert rec["global_certified"] and lb is not None
    assert all(v >= lb - 1e-9 for v in rec["start_losses"])
    assert sum(g["count"] for g in rec["groups"]) == rec["converged_starts"]
    assert rec["groups"][0]["at_global"] and rec["groups"][0]["loss"] == rec["global_loss"]
    assert len(calls) == len(rec["groups"])


@pytest.mark.slow
def test_real_local_certificate_on_a_small_grid(tmp_path, capsys):
    pytest.importorskip("solvers.local")
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, "landscape", "--counts", "10,1,1;2,2,2", "--taus", "0.0637,0.5", "--dim", "5",
                           "--starts", "8", "--out", str(out), "--no-figures")
    assert code in (0, 3), err
    data = json.loads((out / "landscape.json").read_text())
    assert data["local_certificate"] == "available"
    recs = {(tuple(r["counts"]), r["tau"]): r for r in map(json.loads, open(out / ls.RESULTS))}
    for r in recs.values():
        for g in r["groups"]:
            c = g["certificate"]
            if g["spurious"]:  # proved: a strict local minimum whose proved loss lies above a feasible point's
                assert c["proved"] and c["kind"] == "local minimum" and c["loss_interval"][0] > r["global_loss"]
            if c["proved"]:  # the interval holds the loss at the critical point proved near the start's end
                lo, hi = c["loss_interval"]
                assert lo <= hi and lo - 1e-6 <= g["loss"] <= hi + 1e-6
    # the spurious strict local minimum found before at counts 10,1,1, tau 0.0637, d 5 (start seed 4 of 8)
    assert recs[((10, 1, 1), 0.0637)]["spurious_fraction"] >= 1 / 8
    # balanced, d > K: the theorem's setting, every start at the certified global minimum
    benign = recs[((2, 2, 2), 0.5)]
    assert benign["global_certified"] and benign["spurious_fraction"] == 0
    # every class of two samples and d = K + 1: the spurious minimum that start 7 reaches at tau = 0.03
    code, _, err = run_cli(capsys, "landscape", "--counts", "10,2,2", "--taus", "0.03", "--starts", "8", "--out",
                           str(tmp_path / "p"), "--no-figures")
    assert code == 0, err
    rec = json.loads(open(tmp_path / "p" / ls.RESULTS).readline())
    assert rec["dim"] == 4 and rec["global_certified"] and rec["global_upper_proved"]
    assert rec["spurious_fraction"] == 1 / 8 and rec["start_group"][7] == 1
    assert rec["groups"][1]["loss"] > rec["global_upper"] + 8


@pytest.mark.slow
def test_recorded_spurious_minimum_is_what_it_claims():
    """The spurious minimum recorded in benchmarks/results (counts 10,2,2, every class of two samples, d = 4 > K,
    tau = 0.03), checked without ``solvers.local``: its loss by the plain-loop reference, far above the proved lower
    bound of the problem; in float64, a Riemannian gradient near 0 and, off the rotation orbit, a Hessian whose
    smallest eigenvalue agrees with the certificate's proved lower bound."""
    from reference import sc_loss_loops

    from solvers.certificate import certify

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results", "landscape_spurious_points.json")
    points = json.load(open(path))["points"]
    rec = next(p for p in points if p["counts"] == [10, 2, 2] and p["tau"] == 0.03 and p["dim"] == 4)
    P = Problem(counts=rec["counts"], tau=rec["tau"], dim=rec["dim"])
    Z = np.array(rec["Z"])
    assert np.allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-12)
    loss = sc_loss_loops(Z, P.label_array, P.tau)
    assert loss == pytest.approx(rec["loss"], rel=1e-12)
    lb = certify(P).lower_bound  # a proved lower bound on the global minimum, no solution needed
    assert lb is not None and lb <= rec["global_loss"] and loss > lb + 8
    lo, hi = rec["certificate"]["loss_interval"]
    assert lo <= hi and abs(loss - lo) < 1e-9
    est = ls.hessian_estimate(P, Z)
    assert est["gradient_norm"] < 1e-4
    assert est["min_eig"] == pytest.approx(rec["certificate"]["hessian_min_eig_lower"], rel=1e-3)


def test_a_failing_point_is_recorded_failed_and_solved_again(tmp_path, monkeypatch):
    calls = []

    def flaky(p, c):
        calls.append(p["tau"])
        if len(calls) == 1:
            raise RuntimeError("solver blew up")
        return _quick_record(p, c)

    monkeypatch.setattr(ls, "run_point", flaky)
    pts = ls.grid_points(counts=[[3, 2, 2]], taus=[0.1, 0.2], starts=4)
    recs = ls.run_landscape(pts, str(tmp_path), certify_local=None)
    assert [r["status"] for r in recs] == ["failed", "ok"] and "solver blew up" in recs[0]["error"]
    data = ls.assemble(recs, {})
    assert data["failed_points"] == 1 and data["spurious_fraction"] == [None, None]
    from solvers.workflows.landscape_figures import draw_landscape, landscape_table

    assert np.isnan(landscape_table(data)[2][0, 0])  # the failed point: a grey cell, no value
    assert all(os.path.getsize(f) > 0 for f in draw_landscape(data, str(tmp_path)))
    recs = ls.run_landscape(pts, str(tmp_path), certify_local=None)
    assert calls == [0.1, 0.2, 0.1] and [r["status"] for r in recs] == ["ok", "ok"]
    assert len(open(tmp_path / ls.RESULTS).read().splitlines()) == 2
