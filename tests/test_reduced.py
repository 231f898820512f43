"""The reduced class-level path (classes of equal size are exchangeable): its value against the class-level value
at the lifted means, its optimum and proved bound against the class-level path, the full solve and the closed
forms, the invariance of its optimum, the vectorised eigenvalue proof, and ufm phase's choice of path."""
import math

import numpy as np
import pytest

from solvers import dual
from solvers.classlevel import certify_classes, loss_of, solve_classes
from solvers.reduced import certify_groups, solve_groups
from solvers.reduced import loss_of as reduced_loss
from ufm import closed_forms, geometry
from ufm.classlevel import block_gram, embedding
from ufm.reduced import (GroupProblem, class_means, cosine_groups, delta_gm, gram, groups_of, rank, stack_gram,
                         stack_weights)


def _random(rng, G):
    m = rng.standard_normal((G, G))
    t = rng.standard_normal(G)
    norm = np.sqrt(np.sum(m * m, axis=1) + t * t) / rng.uniform(0.5, 1.0, G)
    return m / norm[:, None], t / norm


@pytest.mark.parametrize("loss", ["sc", "bcl-avg"])
@pytest.mark.parametrize("constraint", ["sphere", "ball"])
def test_value_is_the_class_level_value_at_the_lifted_means(loss, constraint):
    rng = np.random.default_rng(0)
    gp = GroupProblem(sizes=(7.5, 3.0, 2.0), classes=(3, 2, 4), loss=loss, tau=0.4, constraint=constraint)
    m, t = _random(rng, 3)
    mu = class_means(m, t, gp)
    assert mu.shape[0] == 9
    cp = gp.class_problem()
    assert reduced_loss(gp, m, t) == pytest.approx(loss_of(cp, {"mu": mu}), rel=1e-13)
    # the reduced Gram is the lifted Gram's
    M = mu @ mu.T
    gr = gram(m, t, gp)
    assert M[0, 0] == pytest.approx(gr["p"][0]) and M[0, 1] == pytest.approx(gr["b"][0])
    assert M[0, 3] == pytest.approx(gr["B"][0, 1]) and M[3, 5] == pytest.approx(gr["B"][1, 2]) and M[5, 8] == pytest.approx(gr["b"][2])


def test_value_is_the_loss_of_an_embedding_with_spread():
    """Integer sizes: the lifted means, embedded with within-class spread, have the reduced value as their SC loss
    (summed sample by sample)."""
    from reference import sc_loss_loops

    rng = np.random.default_rng(1)
    gp = GroupProblem(sizes=(3.0, 2.0), classes=(2, 3), tau=0.5, dim=20)
    m, t = _random(rng, 2)
    mu = class_means(m, t, gp)
    cp = gp.class_problem()
    Z = embedding(mu, cp)
    labels = np.repeat(np.arange(5), [3, 3, 2, 2, 2])
    assert reduced_loss(gp, m, t) == pytest.approx(sc_loss_loops(Z, labels, 0.5), rel=1e-12)


@pytest.mark.parametrize("loss, constraint", [("sc", "sphere"), pytest.param("sc", "ball", marks=pytest.mark.slow),
                                              pytest.param("bcl-avg", "sphere", marks=pytest.mark.slow)])
def test_optimum_equals_the_class_level_optimum(loss, constraint):
    """The reduced and the class-level paths reach the same minimum (1e-9 relative), both proved; the bounds lie
    below both losses."""
    _both_paths([GroupProblem(sizes=(R * 5.0, 5.0), classes=(3, 3), loss=loss, tau=tau, constraint=constraint)
                 for R, tau in [(1.0, 0.3), (4.0, 0.2), (20.0, 0.5), (60.0, 0.1)]])


def _both_paths(gps):
    """Solve and certify ``gps`` on the reduced and the class-level paths: both certified, the same minimum (1e-9
    relative), each bound below both losses. Returns the reduced solutions and certificates."""
    rs = solve_groups(gps)
    rc = certify_groups(gps, rs)
    cps = [g.class_problem() for g in gps]
    cs = solve_classes(cps)
    cc = certify_classes(cps, cs)
    for r, a, s, b in zip(rs, rc, cs, cc):
        assert a.certified and b.certified
        assert r.loss == pytest.approx(s.loss, rel=1e-9)
        assert a.lower_bound <= min(r.loss, s.loss) and b.lower_bound <= min(r.loss, s.loss)
    return rs, rc


def test_cosines_equal_the_class_level_cosines():
    """Geometry read from the reduced Gram equals that of the lifted class means (ufm.geometry)."""
    rng = np.random.default_rng(2)
    gp = GroupProblem(sizes=(9.0, 4.0), classes=(3, 4), tau=0.3)
    m, t = _random(rng, 2)
    mu = class_means(m, t, gp)
    cos = geometry.mean_cosines(mu, np.arange(7))
    maj = [True] * 3 + [False] * 4
    want = geometry.cosine_groups(cos, maj)
    gr = stack_gram(m[None], t[None], stack_weights([gp]), True)
    got = cosine_groups(gr, gp.classes, [True, False])
    for k in want:
        assert got[k][0] == pytest.approx(want[k], rel=1e-12)
    assert delta_gm(gr, gp.classes)[0] == pytest.approx(geometry.gram_distance(cos, np.eye(7)), rel=1e-10)
    assert rank(m, t, gp.classes) == np.linalg.matrix_rank(mu, tol=1e-9) == 2 + 2 + 3


def test_reduced_optimum_is_invariant_and_optimal_among_all_class_means():
    """The class-level solver from a random (non-symmetric) start reaches the reduced minimum; its Gram is, up to
    the solver's accuracy, invariant under permuting classes of equal size (the group average of a minimiser is
    a minimiser; at a strictly convex minimum it is the minimiser itself)."""
    gp = GroupProblem(sizes=(20.0, 4.0), classes=(2, 3), tau=0.25)
    r, = solve_groups([gp])
    cp = gp.class_problem()
    s, = solve_classes([cp], seed=5)
    assert s.loss == pytest.approx(r.loss, rel=1e-10)
    M = s.mu @ s.mu.T
    perm = [1, 0, 4, 2, 3]
    np.testing.assert_allclose(M[np.ix_(perm, perm)], M, atol=1e-5)


def test_balanced_reaches_the_etf_closed_form_and_the_bound_stays_below():
    for K, n, tau in [(4, 5.0, 0.3), (100, 8.0, 0.1), (10_000, 3.0, 0.5)]:
        gp = GroupProblem(sizes=(n,), classes=(K,), tau=tau)
        r, = solve_groups([gp])
        c, = certify_groups([gp], [r])
        etf = closed_forms.sc_etf_loss(int(n), K, tau)
        assert r.loss == pytest.approx(etf, rel=1e-10)
        assert c.certified and c.lower_bound <= etf


def test_radius_is_a_change_of_variables():
    gp = GroupProblem(sizes=(12.0, 3.0), classes=(2, 2), tau=0.4, radius=2.0)
    unit = GroupProblem(sizes=(12.0, 3.0), classes=(2, 2), tau=0.1)
    a, b = solve_groups([gp, unit])
    assert a.loss == pytest.approx(b.loss, rel=1e-10)
    c, = certify_groups([gp], [a])
    assert c.certified and c.lower_bound <= a.loss


def test_many_small_eigenvalue_proofs_match_one_by_one():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((50, 4, 4))
    A = A + np.swapaxes(A, 1, 2)
    got = dual.lambda_min_lower_many(A)
    for j in range(50):
        true = np.linalg.eigvalsh(A[j])[0]
        assert got[j] <= true and got[j] >= true - 1e-12 * max(1.0, abs(true))
    bad = A.copy()
    bad[0, 0, 1] += 1.0  # not symmetric: no bound
    assert math.isnan(dual.lambda_min_lower_many(bad)[0])


def test_bound_is_a_bound_at_any_candidate():
    """A poor candidate still gives a valid (lower) bound: below the proved minimum of the class-level path."""
    rng = np.random.default_rng(6)
    gp = GroupProblem(sizes=(10.0, 3.0), classes=(2, 2), tau=0.3)
    cp = gp.class_problem()
    s, = solve_classes([cp])
    for _ in range(5):
        m, t = _random(rng, 2)
        b, = dual.sc_group_bound([gp], [gram(m, t, gp)])
        assert b.lower_bound <= s.loss
        b2, = dual.sc_group_bound([gp], [gram(m, t, gp)], optimal_multipliers=True)
        assert b2.lower_bound <= s.loss


def test_groups_and_validation():
    assert groups_of((5, 5, 2, 2, 2)) == ((5.0, 2.0), (2, 3))
    assert groups_of((5, 2, 5)) is None
    with pytest.raises(ValueError, match="nonneg"):
        GroupProblem(sizes=(5.0, 2.0), classes=(2, 2), nonneg=True)
    with pytest.raises(ValueError, match="sizes"):
        GroupProblem(sizes=(1.5, 2.0), classes=(2, 2))
    assert GroupProblem(sizes=(5.0, 2.0), classes=(2, 2), loss="bcl").K == 4  # prototypes: the reduced path has them
    with pytest.raises(ValueError, match="classes"):
        GroupProblem(sizes=(5.0, 2.0), classes=(0, 2))


@pytest.mark.parametrize("constraint", ["sphere", "ball"])
def test_ce_value_is_the_class_level_value_at_the_lifted_point(constraint):
    """CE: features and classifier lifted on the same simplices give the class-level value."""
    from solvers.classlevel import loss_of as class_loss

    rng = np.random.default_rng(7)
    gp = GroupProblem(sizes=(6.0, 2.5), classes=(3, 2), loss="ce", weight_decay=0.03, feature_decay=0.1,
                      constraint=constraint)
    m, t = _random(rng, 2)
    m = np.concatenate([m, np.zeros((2, 2))], axis=1)
    u, r = rng.standard_normal((2, 4)), rng.standard_normal(2)
    mu = class_means(m, t, gp)
    W = class_means(u, r, gp)
    if W.shape[1] != mu.shape[1]:  # both have spread in both groups here: the same columns
        pytest.fail("lifted shapes differ")
    cp = gp.class_problem()
    assert reduced_loss(gp, m, t, u, r) == pytest.approx(class_loss(cp, {"mu": mu, "W": W}), rel=1e-13)


def test_ce_optimum_and_bound_against_the_class_level_path_and_the_etf():
    """CE: the reduced minimum equals the class-level one (both certified) where the class-level path certifies;
    balanced, it is the ETF closed form, and the proved bound lies below it."""
    rs, rc = _both_paths([GroupProblem(sizes=(R * 5.0, 5.0), classes=(3, 3), loss="ce", weight_decay=wd)
                          for R, wd in [(1.0, 0.01), (10.0, 0.001), (100.0, 0.01)]])
    etf = closed_forms.ce_etf_loss(6, 0.01, constraint="sphere")[0]
    assert rs[0].loss == pytest.approx(etf, rel=1e-9) and rc[0].lower_bound <= etf


def test_a_solution_that_needs_more_dimensions_than_dim_is_not_certified():
    """The reduced problem ignores dim while solving; a solution whose class means need more dimensions than the
    problem has is no point of it, so its (valid) bound does not certify it."""
    from solvers.reduced import certify_groups, solve_groups
    from ufm.reduced import GroupProblem

    low, high = (GroupProblem(sizes=(2,), classes=(4,), loss="sc", tau=0.3, dim=d) for d in (2, 4))
    c_low, = certify_groups([low], solve_groups([low]))
    c_high, = certify_groups([high], solve_groups([high]))
    assert c_high.certified and not c_low.certified and "needs 3 dimensions" in c_low.why
    assert c_low.lower_bound <= c_low.loss


def test_ce_polish_goes_on_where_the_first_order_loop_stalls_near_collapse():
    """CE near minority collapse (strong weight decay, R = 100): the first-order loop alone stops on its budget
    with the minority spread open; the Newton polish goes on to a lower loss (recomputed from the returned
    point), the proved gap shrinks by orders of magnitude, and the minorities collapse."""
    from solvers.workflows.phase import _ReducedPath

    gp = GroupProblem(sizes=(500.0, 5.0), classes=(5, 5), loss="ce", weight_decay=0.1)
    plain, = solve_groups([gp], polish=False)
    done, = solve_groups([gp])
    c_plain, c_done = certify_groups([gp, gp], [plain, done])
    assert done.loss <= plain.loss
    assert reduced_loss(gp, done.m, done.t, done.u, done.r) == pytest.approx(done.loss, rel=1e-13)
    assert c_done.certified and c_done.lower_bound <= done.loss
    assert c_done.gap < 1e-3 * c_plain.gap
    spec = {"classes": 10, "imbalance": "step", "n_min": 5.0, "minority_fraction": 0.5}
    geo_plain, geo_done = _ReducedPath(spec).geometry([gp, gp], [plain, done])
    assert geo_plain["min_min"] < 0.99 < 1 - 1e-6 < geo_done["min_min"]


@pytest.mark.parametrize("loss", ["ce", "bcl"])
def test_polish_from_a_row_inside_the_ball_stays_feasible_and_never_raises_the_loss(loss):
    """The polish retracts only the rows on the unit sphere (a row inside the ball is a free variable of it,
    projected on the ball): from a start with a row inside, every row stays in the ball, the loss returned is
    the loss at the returned point, and it is no higher than at the start. BCL: its prototype rows likewise."""
    import jax
    import jax.numpy as jnp

    from solvers import reduced as sr

    if loss == "ce":
        gps = [GroupProblem(sizes=(20.0, 5.0), classes=(2, 3), loss="ce", weight_decay=wd) for wd in (0.003, 0.03)]
    else:
        gps = [GroupProblem(sizes=(20.0, 5.0), classes=(2, 3), loss="bcl", tau=tau) for tau in (0.1, 0.5)]
    h = {k: v for k, v in stack_weights(gps).items() if k not in ("clw", "lws", "mult")}
    if loss == "ce":
        h["kappa"] = 1.0 / np.sqrt(h["weight_decay"])
    rng = np.random.default_rng(3)
    xs = [sr._start(2, rng, "ce" if loss == "ce" else "prototypes") for _ in gps]
    x = {k: np.stack([s[k] for s in xs]) for k in xs[0]}
    x["m"][0, 1] *= 0.5  # inside the ball
    x["t"][0, 1] *= 0.5
    if loss == "bcl":
        x["u"][1, 0] *= 0.5
        x["r"][1, 0] *= 0.5
    with jax.enable_x64(True):
        hj = {k: jnp.asarray(v) for k, v in h.items()}
        xj = {k: jnp.asarray(v) for k, v in x.items()}
        f0 = jax.vmap(lambda a, b: sr._scaled_value(a, b, True, False))(xj, hj)
        y, f, _ = sr._polish_rows(2, xj, f0, hj, np.arange(2))
        again = jax.vmap(lambda a, b: sr._scaled_value(a, b, True, False))(y, hj)
    assert np.all(np.asarray(f) <= np.asarray(f0))
    assert np.asarray(again) == pytest.approx(np.asarray(f), rel=1e-13)
    norms = np.sqrt(np.sum(np.asarray(y["m"]) ** 2, axis=-1) + np.asarray(y["t"]) ** 2)
    assert np.all(norms <= 1 + 1e-12)
    if loss == "bcl":
        norms = np.sqrt(np.sum(np.asarray(y["u"]) ** 2, axis=-1) + np.asarray(y["r"]) ** 2)
        assert np.all(norms <= 1 + 1e-12)


def test_ce_polish_settles_a_flat_corner_whatever_the_start():
    """K = 1,000, strong weight decay: the minority classifier rows nearly vanish and the minority features barely
    move the loss (the Hessian's condition number is about 1e9). Three starts end at the same minority geometry,
    each with a proved gap below 1e-10 (a row reaching the sphere mid-polish is kept on it; left free, the
    projection's kink stalled seed 0 at min_min 0.63 with a gap of 1e-8)."""
    from solvers.workflows.phase import _ReducedPath

    gp = GroupProblem(sizes=(5.0 * 100 ** (4 / 7), 5.0), classes=(500, 500), loss="ce", weight_decay=0.1)
    sols = solve_groups([gp] * 3, seed=[0, 1, 2])
    certs = certify_groups([gp] * 3, sols)
    assert all(c.certified and c.gap < 1e-10 for c in certs)
    spec = {"classes": 1000, "imbalance": "step", "n_min": 5.0, "minority_fraction": 0.5}
    mm = [g["min_min"] for g in _ReducedPath(spec).geometry([gp] * 3, sols)]
    assert max(mm) - min(mm) < 1e-3
    assert max(s.loss for s in sols) - min(s.loss for s in sols) < 1e-13


def _bcl_point(rng, G, shrink=1.0):
    """Random group rows ``(m, t)`` in the ball and prototype rows ``(u, r)`` ``shrink`` times inside it."""
    m, t = _random(rng, G)
    m = np.concatenate([m, np.zeros((G, G))], axis=1)
    u, r = rng.standard_normal((G, 2 * G)), rng.standard_normal(G)
    norm = np.sqrt(np.sum(u * u, axis=1) + r * r) / shrink
    return m, t, u / norm[:, None], r / norm


@pytest.mark.parametrize("constraint", ["sphere", "ball"])
def test_bcl_value_is_the_class_level_value_at_the_lifted_point(constraint):
    """BCL: means and prototypes lifted on the same simplices (prototypes inside the sphere filled out in fresh
    dimensions) give the class-level value; on the sphere every lifted prototype is on it."""
    from solvers.classlevel import loss_of as class_loss
    from ufm.reduced import lift, prototype_fill

    rng = np.random.default_rng(8)
    gp = GroupProblem(sizes=(6.0, 1.0, 2.5), classes=(3, 2, 2), loss="bcl", tau=0.3, constraint=constraint)
    m, t, u, r = _bcl_point(rng, 3, shrink=0.7)
    t[1] = 0.0  # a group of singletons: on the sphere its means are on it
    if constraint == "sphere":
        m[1] /= np.linalg.norm(m[1])
    mu, C = lift(m, t, gp, u, r)
    fill = prototype_fill(u, r, gp)
    assert fill.tolist() == ([True] * 3 if constraint == "sphere" else [False] * 3)
    assert mu.shape == C.shape == (7, 6 + 2 + 1 + 1 + (7 if constraint == "sphere" else 0))
    assert rank(m, t, gp.classes, u=u, r=r, fill=fill) == np.linalg.matrix_rank(np.vstack([mu, C]), tol=1e-9)
    if constraint == "sphere":
        np.testing.assert_allclose(np.sum(C * C, axis=1), 1.0, rtol=1e-13)
    cp = gp.class_problem()
    assert reduced_loss(gp, m, t, u, r) == pytest.approx(class_loss(cp, {"mu": mu, "C": C}), rel=1e-13)


def test_bcl_value_keeps_its_relative_accuracy_at_small_tau():
    """At the simplex ETF with prototypes at their vertices BCL is ``log1p((K - 1) exp(-K/((K - 1) tau)))``: at
    tau = 0.02 about 4e-26, far below the rounding of the logits (1/tau); the reduced value keeps it to 1e-12 (the
    direct difference of the two log-sum-exp parts gives rounding, about 1e-15)."""
    from solvers.classlevel import loss_of as class_loss
    from ufm.objectives.bcl import etf_loss

    K, tau = 6, 0.02
    gp = GroupProblem(sizes=(4.0,), classes=(K,), loss="bcl", tau=tau)
    m, t = np.zeros((1, 2)), np.ones(1)
    want = etf_loss([4.0] * K, tau)
    assert 0 < want < 1e-20
    assert reduced_loss(gp, m, t, m, t) == pytest.approx(want, rel=1e-12, abs=0)
    mu = class_means(m, t, gp)
    # the lifted means are the ETF to rounding only (norms 1 - 5e-16), which moves a loss of 4e-26 by about 1e-30
    assert class_loss(gp.class_problem(), {"mu": mu, "C": mu}) == pytest.approx(want, rel=1e-3, abs=0)


def test_bcl_optimum_and_bound_against_the_class_level_path_and_the_etf():
    """BCL: the reduced minimum equals the class-level one (1e-9 relative), both proved; balanced, it is the ETF
    closed form; the reduced bound at the lifted candidate is the class-level bound's value to rounding."""
    from ufm.objectives.bcl import etf_loss
    from ufm.reduced import lift

    gps = [GroupProblem(sizes=(R * 5.0, 5.0), classes=(3, 3), loss="bcl", tau=tau, dim=12)
           for R, tau in [(1.0, 0.3), (4.0, 0.5), (20.0, 1.0), (60.0, 0.2)]]
    rs, rc = _both_paths(gps)
    for g, r in zip(gps, rs):
        mu, C = lift(r.m, r.t, g, r.u, r.r)
        one, = dual.bcl_group_bound([g], stack_gram(r.m[None], r.t[None], stack_weights([g]), True),
                                    _cross(r))
        d, a_, M = block_gram(mu, g.class_problem())
        ref = dual.bcl_class_bound(g.class_problem(), d, a_, M, mu @ C.T, C @ C.T, optimal_multipliers=False)
        assert one.value == pytest.approx(ref.value, abs=1e-9)
    assert rs[0].loss == pytest.approx(etf_loss([5.0] * 6, 0.3), rel=1e-9) and rc[0].lower_bound <= rs[0].loss


def _cross(sol):
    from ufm.reduced import ce_logits

    X, Xo = ce_logits(sol.m, sol.t, sol.u, sol.r, np.array([3.0, 3.0]), np)
    return X[None], Xo[None]


def test_bcl_bound_is_a_bound_at_any_candidate():
    """A poor BCL candidate (prototypes anywhere in the ball) still gives a valid bound, with either multipliers:
    below the class-level path's proved minimum."""
    from ufm.reduced import ce_logits

    rng = np.random.default_rng(9)
    gp = GroupProblem(sizes=(10.0, 3.0), classes=(3, 3), loss="bcl", tau=0.4, dim=12)
    s, = solve_classes([gp.class_problem()])
    c, = certify_classes([gp.class_problem()], [s])
    assert c.certified
    for _ in range(4):
        m, t, u, r = _bcl_point(rng, 2, shrink=rng.uniform(0.3, 1.0))
        gr = stack_gram(m[None], t[None], stack_weights([gp]), True)
        X, Xo = ce_logits(m, t, u, r, np.array([3.0, 3.0]), np)
        for optimal in (False, True):
            b, = dual.bcl_group_bound([gp], gr, (X[None], Xo[None]), optimal_multipliers=optimal)
            assert b.lower_bound is not None and b.lower_bound <= s.loss


def test_bcl_class_level_optimum_is_invariant_and_the_reduced_one():
    """BCL: the class-level solver from a random start reaches the reduced minimum, and its cross block ``X = mu
    Cᵀ`` (means against prototypes) is invariant under permuting classes of equal size, rows and columns alike."""
    gp = GroupProblem(sizes=(20.0, 4.0), classes=(2, 3), loss="bcl", tau=0.5, dim=10)
    r, = solve_groups([gp])
    s, = solve_classes([gp.class_problem()], seed=5)
    assert s.loss == pytest.approx(r.loss, rel=1e-10)
    X = s.mu @ s.C.T
    perm = [1, 0, 4, 2, 3]
    np.testing.assert_allclose(X[np.ix_(perm, perm)], X, atol=1e-5)
    np.testing.assert_allclose((s.mu @ s.mu.T)[np.ix_(perm, perm)], s.mu @ s.mu.T, atol=1e-5)


def test_prototype_anchor_loss_keeps_its_relative_accuracy_for_any_class_size():
    """``ufm.classlevel.prototype_anchor_loss`` against 40-digit decimal arithmetic, on both sides of its switch
    at ``|delta| = 1`` and for class sizes up to 1e12 (where the positives' part is about ``1/n``)."""
    import decimal

    import jax
    import jax.numpy as jnp

    from ufm.classlevel import prototype_anchor_loss

    decimal.getcontext().prec = 40
    D = decimal.Decimal
    for n in (2.0, 10.0, 1e4, 3.3e7 + 0.5, 1e12):
        for delta in (1e-7, 0.3, -0.99, 1.5, -3.0, 20.0):
            neg = [-60.0, -45.5]  # far below the positives part, about 1/n
            pa, px = D(n - 1) / D(n), 1 / D(n)
            want = (pa * (px * D(delta)).exp() + px * (-pa * D(delta)).exp() + sum(D(v).exp() for v in neg)).ln()
            with jax.enable_x64(True):
                got = float(prototype_anchor_loss(jnp.asarray(neg), jnp.asarray(delta), jnp.asarray((n - 1) / n),
                                                  jnp.asarray(1 / n)))
            assert got == pytest.approx(float(want), rel=1e-13, abs=0), (n, delta)
