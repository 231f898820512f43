"""solvers.local and ``ufm certify --local``: proved strict local minima, saddles refused as minima, points that
are not critical or not isolated refused, and the landscape row that a proved spurious local minimum refutes.

Every proved number is confronted with an independent computation: the loss interval with the plain-loop
reference loss (tests/reference.py) and, at a simplex ETF, with the closed form evaluated in ball arithmetic; the
chart Hessian with finite differences of the reference loss; the curvature bound with the loss along the chart.
"""
import functools
import json
from pathlib import Path

import flint
import numpy as np
import pytest

from reference import bcl_avg_loss_loops, sc_loss_loops
from solvers import local, solve
from solvers.local import certify_local, loss_upper
from solvers.workflows.verify import etf_point
from ufm import Problem
from cli_run import run_cli

CONTRACT = {"proved", "kind", "loss_interval", "radius", "gradient_norm_upper", "hessian_min_eig_lower", "method",
            "why", "spurious"}
SPURIOUS = Problem(counts=(10, 1, 1), tau=0.0637, dim=5)  # seed 8300 stops at a spurious local minimum
ETF = Problem(counts=(3, 3, 3), tau=0.5, dim=3)


POINTS = Path(__file__).parent / "data" / "local_10_1_1.npz"  # float64 PGD (5000 steps) from seeds 8300 and 8293


@functools.lru_cache
def solved(p, seed):
    return solve(p, steps=5000, seed=seed, dtype="float64")


def stored(name):
    """The PGD points of SPURIOUS (``Z_local``: seed 8300, ``Z_global``: seed 8293), stored so the fast tests
    need no solve; :func:`test_stored_points_are_what_pgd_reaches` checks them."""
    return np.load(POINTS)[name]


def reference_loss(p, Z):
    f = sc_loss_loops if p.loss == "sc" else bcl_avg_loss_loops
    Z = p.radius * Z / np.linalg.norm(Z, axis=1, keepdims=True)
    return f(Z, p.label_array, p.tau)


def antipodal(p):
    """Class 0 at +e1, every other class at -e1: a critical point (every Euclidean gradient is along e1, normal
    to the sphere) where separating classes 1 and 2 lowers the loss: a saddle."""
    Z = np.zeros((p.N, p.dim))
    Z[:, 0] = np.where(p.label_array == 0, 1.0, -1.0)
    return Z


def test_spurious_local_minimum_is_proved():
    p = SPURIOUS
    gl = loss_upper(p, stored("Z_global"))
    assert abs(gl - reference_loss(p, stored("Z_global"))) <= 1e-12  # the proved upper bound, up to rounding
    c = certify_local(p, stored("Z_local"), global_loss=gl)
    d = c.to_dict()
    assert CONTRACT <= set(d) and json.loads(json.dumps(d)) == d
    assert c.proved and c.kind == "local minimum" and c.spurious is True and c.critical_point_proved
    lo, hi = c.loss_interval
    assert lo <= hi and lo > gl + 2.0  # far above a certified global solution
    assert lo - 1e-12 <= reference_loss(p, c.Z) <= hi + 1e-12
    assert c.hessian_min_eig_lower > 0.1 and 2 * c.gradient_norm_upper / c.hessian_min_eig_lower < c.radius
    assert (c.rank, c.orbit_dim, c.slice_dim) == (5, 10, 12 * 4 - 10)


def test_etf_is_a_local_minimum_not_spurious_and_contains_the_closed_form():
    p = ETF
    Z = etf_point(p)
    c = certify_local(p, Z, global_loss=loss_upper(p, Z))
    assert c.proved and c.kind == "local minimum" and c.spurious is False
    assert c.rank == 2 and c.orbit_dim == 3  # rank 2 in dim 3: dim SO(3) - dim SO(1)
    old = flint.ctx.prec
    flint.ctx.prec = 200
    try:  # Graf et al.'s minimum log(n - 1 + (N - n) exp(-K/((K-1) tau))), in ball arithmetic
        n, K, tau = 3, 3, flint.arb(0.5)
        closed = (flint.arb(n - 1) + (n * K - n) * (-flint.arb(K) / ((K - 1) * tau)).exp()).log()
        lo, hi = c.loss_interval
        assert closed > flint.arb(lo) and closed < flint.arb(hi)
    finally:
        flint.ctx.prec = old


def test_saddle_is_not_a_local_minimum():
    p = Problem(counts=(2, 2, 2), tau=0.5, dim=3)
    Z = antipodal(p)
    c = certify_local(p, Z)
    assert not c.proved and c.kind == "saddle" and c.critical_point_proved
    assert c.negative_curvature_upper < 0 and "saddle" in c.why
    lo, hi = c.loss_interval
    assert lo <= reference_loss(p, Z) <= hi
    # the loss does go down from it: separate class 1 from class 2 a little
    W = Z.copy()
    W[p.label_array == 1, 1] += 0.05
    W[p.label_array == 2, 1] -= 0.05
    assert reference_loss(p, W) < reference_loss(p, Z)


def test_points_that_are_not_isolated_critical_points_are_refused():
    rng = np.random.default_rng(0)
    c = certify_local(ETF, rng.standard_normal((ETF.N, ETF.dim)))
    assert not c.proved and c.kind is None and c.why.startswith("not stationary")
    # the global minimiser of 10,1,1: the ten class-0 samples' spread costs curvature of order exp(-1/tau),
    # below what float64 resolves: refused as degenerate, never proved
    c = certify_local(SPURIOUS, stored("Z_global"))
    assert not c.proved and c.why.startswith("degenerate Hessian")


def test_a_ball_too_large_is_not_proved():
    """A given radius is tried as given: over a chart ball of radius 0.5 (a quarter of the sphere's diameter)
    nothing is proved."""
    c = certify_local(ETF, etf_point(ETF), radius=0.5)
    assert not c.proved and c.kind is None


def test_midpoint_radius_product_contains_the_exact_product():
    """``_mr_mm`` against the product of balls in arb: every exact product lies inside."""
    rng = np.random.default_rng(3)
    Am, Bm = rng.standard_normal((6, 40)) * 1e3, rng.standard_normal((40, 5))
    Ar, Br = np.abs(rng.standard_normal((6, 40))) * 1e-9, np.zeros((40, 5))
    mid, rad = local._mr_mm(Am, Ar, Bm, Br)
    for _ in range(3):
        A = Am + Ar * rng.uniform(-1, 1, Am.shape)
        exact = flint.arb_mat(A.tolist()) * flint.arb_mat(Bm.tolist())
        for i in range(6):
            for j in range(5):
                x = exact[i, j]
                assert x > flint.arb(mid[i, j]) - flint.arb(rad[i, j]) and x < flint.arb(mid[i, j]) + flint.arb(rad[i, j])
    assert rad.max() < 1e-5  # and the radius is not vacuous
    # exact inputs: only the midpoint product's rounding is left, and it must be covered
    mid, rad = local._mr_mm(Am, np.zeros_like(Am), Bm, Br)
    exact = flint.arb_mat(Am.tolist()) * flint.arb_mat(Bm.tolist())
    assert all(abs(exact[i, j] - flint.arb(mid[i, j])) < flint.arb(rad[i, j]) for i in range(6) for j in range(5))


def test_eigenvalue_bound_accounts_for_the_radius():
    """Every symmetric matrix within ``rad`` of ``mid``: [[1, 2], [2, 1]] is one, with eigenvalue -1."""
    lam = local._lambda_min_lower(np.eye(2), np.full((2, 2), 2.0))
    assert lam <= -1.0


def test_hessian_enclosure_contains_the_hessian_inside_the_ball():
    """The ball-arithmetic Hessian over a ball of radius 1e-2 contains the float64 Hessian at points drawn in it."""
    p = Problem(counts=(3, 2, 2), tau=0.5, dim=3)
    rng = np.random.default_rng(2)
    Z, k = local._canonical(rng.standard_normal((p.N, p.dim)), p.radius)
    B, _, _ = local._slice(Z, k)
    st = local._slots(p)
    shift = local._shift(Z, st)
    r = 1e-2
    old = flint.ctx.prec
    flint.ctx.prec = local.PREC
    try:
        ab = local._Arb()
        U = np.frompyfunc(lambda _: flint.arb(0, r), 1, 1)(np.zeros(Z.shape))
        mid, rad = local._reduced(ab.num(Z), U, B, st, ab, shift, ab.num(st.lw), p.radius)[2]
    finally:
        flint.ctx.prec = old
    assert rad.max() > 1e-6  # the ball is felt
    for _ in range(5):
        c = rng.standard_normal(B.shape[1])
        c *= r * rng.uniform() / np.linalg.norm(c)
        Hc = local._reduced(Z, (B @ c).reshape(Z.shape), B, st, local._Float, shift, st.lw, p.radius)[2]
        assert np.all(np.abs(Hc - mid) <= rad + 1e-12)


def test_bcl_and_the_ball_are_covered_and_an_active_relu_is_refused():
    from ufm.objectives.bcl_avg import etf_loss

    p = Problem(counts=(3, 3, 3), tau=0.4, dim=3, loss="bcl-avg")
    c = certify_local(p, etf_point(p))
    lo, hi = c.loss_interval
    assert c.proved and lo - 1e-12 <= etf_loss(p.counts, p.tau) <= hi + 1e-12
    assert lo - 1e-12 <= reference_loss(p, etf_point(p)) <= hi + 1e-12
    q = ETF.replace(constraint="ball")
    c = certify_local(q, etf_point(q))
    assert c.proved and c.kind == "local minimum"
    c = certify_local(ETF.replace(constraint="ball"), 0.5 * etf_point(ETF))
    assert not c.proved and "inside the ball" in c.why
    r = ETF.replace(nonneg=True)
    assert "nonneg" in certify_local(r, np.eye(3)[r.label_array]).why


def test_unsupported_settings_say_why():
    assert "classifier" in certify_local(Problem(counts=(2, 2), loss="ce", dim=2), np.eye(4, 2) + 1).why
    bcl = Problem(counts=(3, 3, 3), tau=0.4, dim=3, loss="bcl")  # Z and the prototypes C: the chart covers Z only
    c = certify_local(bcl, etf_point(bcl))
    assert not c.proved and "prototypes" in c.why
    p = Problem(counts=(2, 2, 2), tau=0.5, dim=3, batching="shuffled:3")
    assert "epoch" in certify_local(p, antipodal(p)).why
    with pytest.raises(ValueError, match="Z: shape"):
        certify_local(ETF, np.ones((3, 3)))


@pytest.mark.parametrize("p", [Problem(counts=(3, 2, 2), tau=0.5, dim=3),
                               Problem(counts=(3, 2, 2), tau=0.4, dim=3, loss="bcl-avg")])
def test_chart_hessian_and_gradient_match_finite_differences_of_the_reference(p):
    """The explicit gradient and Hessian formulas the proof evaluates, against central differences of the
    plain-loop loss in the same chart."""
    rng = np.random.default_rng(1)
    Z, k = local._canonical(rng.standard_normal((p.N, p.dim)), p.radius)
    B, _, _ = local._slice(Z, k)
    st = local._slots(p)
    f0, g, H, *_ = local._reduced(Z, np.zeros_like(Z), B, st, local._Float, local._shift(Z, st), st.lw, p.radius)
    assert abs(f0 - reference_loss(p, Z)) <= 1e-12

    def f(c):
        return reference_loss(p, Z + (B @ c).reshape(Z.shape))

    h = 1e-4
    for _ in range(3):
        v = rng.standard_normal(B.shape[1])
        v /= np.linalg.norm(v)
        d1 = (f(h * v) - f(-h * v)) / (2 * h)
        d2 = (f(h * v) - 2 * f(0 * v) + f(-h * v)) / h ** 2
        assert abs(d1 - g @ v) <= 1e-6 and abs(d2 - v @ H @ v) <= 1e-4 * max(1, abs(v @ H @ v))


# -- the command line ---------------------------------------------------------------------------------------------
def test_cli_local_bad_files_exit_2(capsys, tmp_path):
    np.save(tmp_path / "z.npy", np.ones((9, 3)))
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3,3", "--dim", "4", "--local", str(tmp_path / "z.npy"))
    assert code == 2 and "--local" in err and "(9, 4)" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3,3", "--local", str(tmp_path / "missing.npz"))
    assert code == 2 and "no such file" in err
    np.savez(tmp_path / "w.npz", W=np.ones((9, 3)))
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3,3", "--local", str(tmp_path / "w.npz"))
    assert code == 2 and "no array named Z" in err
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3,3", "--global", str(tmp_path / "z.npy"))
    assert code == 2 and "--global needs --local" in err


@pytest.mark.slow
def test_cli_local_on_a_solve_directory_and_on_a_bare_npy(capsys, tmp_path):
    args = ["--counts", "3,3,3", "--tau", "0.5", "--dim", "3"]
    code, _, err = run_cli(capsys, "solve", *args, "--out", str(tmp_path / "sol"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "certify", *args, "--local", str(tmp_path / "sol"), "--json")
    assert code == 0, err
    rep = json.loads(out)
    c = rep["local_minimum"]
    assert CONTRACT <= set(c) and c["proved"] is True and c["spurious"] is False and rep["global"]["certified"]
    np.save(tmp_path / "z.npy", antipodal(Problem(counts=(3, 3, 3), dim=3)))
    code, out, err = run_cli(capsys, "certify", *args, "--local", str(tmp_path / "z.npy"),
                             "--global", str(tmp_path / "sol" / "solution.npz"))
    assert code == 3 and "saddle" in out and "not proved" in err


# -- the landscape verdict ----------------------------------------------------------------------------------------
def test_landscape_helper_fails_the_row_on_a_proved_spurious_minimum():
    import types

    import solvers.workflows.verify as V

    p = SPURIOUS
    sols = [types.SimpleNamespace(seed=8293, Z=stored("Z_global")),
            types.SimpleNamespace(seed=8300, Z=stored("Z_local"))]
    case = types.SimpleNamespace(sc=p)
    row = V._row("sc-landscape")
    row.found = {}
    cand = [{"seed": 8300, "loss": reference_loss(p, sols[1].Z)}]
    assert V._landscape_proofs(row, case, sols, cand, sols[0].Z) is True
    assert row.verdict == "fails" and row.local_minimum["proved"] and row.local_minimum["spurious"]
    assert row.counterexample["kind"] == "proved spurious strict local minimum"
    # a saddle is no counterexample
    q = Problem(counts=(2, 2, 2), tau=0.5, dim=3)
    row = V._row("sc-landscape")
    row.found = {}
    sad = types.SimpleNamespace(seed=1, Z=antipodal(q))
    assert V._landscape_proofs(row, types.SimpleNamespace(sc=q), [sad], [{"seed": 1, "loss": 0.8}],
                               etf_point(q)) is False
    assert row.found["saddles_proved"] == 1 and row.verdict != "fails"


@pytest.mark.slow
def test_stored_points_are_what_pgd_reaches():
    for name, seed in (("Z_local", 8300), ("Z_global", 8293)):
        assert np.abs(solved(SPURIOUS, seed).Z - stored(name)).max() <= 1e-6


@pytest.mark.slow
def test_verify_fails_the_landscape_conjecture_on_the_10_1_1_counterexample(capsys):
    """The landscape row is a conjecture (the paper's condition on tau cannot be read): a proved spurious local
    minimum fails it, and a failed conjecture exits 1."""
    code, out, err = run_cli(capsys, "verify", "--counts", "10,1,1", "--tau", "0.0637", "--dim", "5", "--seed",
                             "8293", "--json")
    assert code == 1, err
    rep = json.loads(out)
    rows = {r["key"]: r for r in rep["rows"]}
    land = [r for r in rep["rows"] if r.get("local_minimum")]
    assert land and land[0]["verdict"] == "fails" and land[0]["kind"] == "conjecture"
    lm = land[0]["local_minimum"]
    assert lm["proved"] and lm["spurious"] and lm["loss_interval"][0] > land[0]["minimum"]["loss"]
    assert rows["sc-etf"]["verdict"] == "not applicable"


@pytest.mark.parametrize("radius", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_bad_chart_radius_is_refused(radius):
    with pytest.raises(ValueError, match="radius"):
        certify_local(ETF, etf_point(ETF), radius=radius)
