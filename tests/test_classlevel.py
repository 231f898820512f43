"""The class-level path: its loss against the slow references at an embedding, its optimum against closed forms
(real class sizes included) and against the full solve and certificate on integer counts."""
import math

import numpy as np
import pytest

from reference import bcl_avg_loss_loops, ce_loss_loops, sc_loss_loops
from solvers.classlevel import certify_classes, loss_of, solve_classes
from ufm import Problem, closed_forms, imbalance
from ufm.classlevel import ClassProblem, embedding


def _random_mu(rng, K, r, nonneg=False, shrink=None):
    mu = rng.standard_normal((K, r))
    if nonneg:
        mu = np.abs(mu)
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    if shrink is not None:
        mu *= np.asarray(shrink)[:, None]
    return mu


@pytest.mark.parametrize("loss", ["sc", "bcl-avg"])
@pytest.mark.parametrize("spread", [False, True])
def test_contrastive_value_is_the_loss_of_the_embedding(loss, spread):
    """Collapsed rows, and rows inside the ball (within-class spread in fresh dimensions): the class-level value
    equals the loss of the embedding, summed term by term."""
    rng = np.random.default_rng(3)
    counts = (4, 3, 2, 1)
    shrink = [0.8, 0.9, 0.7, 1.0] if spread else None
    dim = 3 + (3 + 2 + 1 if spread else 0)
    cp = ClassProblem(counts=counts, loss=loss, tau=0.3, dim=dim)
    mu = np.zeros((4, dim))
    mu[:, :3] = _random_mu(rng, 4, 3, shrink=shrink)
    Z = embedding(mu, cp)
    assert Z.shape == (10, dim)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-12)
    labels = np.repeat(np.arange(4), counts)
    ref = (sc_loss_loops if loss == "sc" else bcl_avg_loss_loops)(Z, labels, 0.3)
    assert loss_of(cp, {"mu": mu}) == pytest.approx(ref, rel=1e-12)


def test_ce_value_is_the_loss_of_the_embedding():
    rng = np.random.default_rng(4)
    counts = (5, 2, 3)
    cp = ClassProblem(counts=counts, loss="ce", weight_decay=0.02, dim=3, constraint="ball", radius=1.5)
    mu = _random_mu(rng, 3, 3, shrink=[1.2, 0.5, 1.5])
    W = rng.standard_normal((3, 3))
    Z = embedding(mu, cp)
    labels = np.repeat(np.arange(3), counts)
    ref = ce_loss_loops(Z, W, labels) + 0.02 * float(np.sum(W * W))
    assert loss_of(cp, {"mu": mu, "W": W}) == pytest.approx(ref, rel=1e-12)


def test_embedding_refuses_when_the_spread_has_no_room():
    cp = ClassProblem(counts=(3, 3), tau=0.5, dim=2)
    mu = np.array([[0.5, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="dim 2"):
        embedding(mu, cp)


@pytest.mark.parametrize("n", [2.0, 3.7, 1000.5])
@pytest.mark.slow
def test_balanced_real_sizes_reach_the_etf_closed_form(n):
    """Graf et al.'s ETF value holds for any real class size: certified, and equal to the closed form."""
    K, tau = 4, 0.2
    cp = ClassProblem(counts=(n,) * K, tau=tau, dim=K)
    sol = solve_classes([cp])[0]
    cert = certify_classes([cp], [sol])[0]
    ref = closed_forms.sc_etf_loss(n, K, tau)
    assert cert.certified
    assert cert.lower_bound <= ref + 1e-12
    assert sol.loss == pytest.approx(ref, rel=1e-9)


@pytest.mark.slow
def test_nonneg_real_sizes_reach_the_of_closed_form():
    counts = (40.3, 40.3, 2.5, 2.5, 2.7)
    cp = ClassProblem(counts=counts, tau=0.15, nonneg=True)
    sol = solve_classes([cp])[0]
    cert = certify_classes([cp], [sol])[0]
    ref = closed_forms.sc_of_loss(np.asarray(counts), 0.15)
    assert cert.certified and cert.lower_bound <= ref + 1e-12
    assert sol.loss == pytest.approx(ref, rel=1e-9)
    cos = (sol.mu / np.linalg.norm(sol.mu, axis=1, keepdims=True)) @ (sol.mu / np.linalg.norm(sol.mu, axis=1,
                                                                                                keepdims=True)).T
    np.testing.assert_allclose(cos, np.eye(5), atol=1e-6)


def _class_and_full(P):
    """The class-level solve and certificate of ``P`` beside a full PGD solve and its certificate: the class-level
    point is certified, no worse than the full solve, and above the full certificate's proved bound."""
    from solvers.certificate import certify
    from solvers.pgd import solve

    cp = ClassProblem.from_problem(P)
    sol = solve_classes([cp])[0]
    cert = certify_classes([cp], [sol])[0]
    assert cert.certified and cert.lower_bound <= sol.loss
    full = solve(P, seed=1)
    full_cert = certify(P, full)
    assert sol.loss <= full.loss + 1e-9 * max(1.0, abs(full.loss))
    assert full_cert.lower_bound is not None and full_cert.lower_bound <= sol.loss + 1e-12
    return cp, sol, cert, full, full_cert


@pytest.mark.parametrize("kw", [dict(counts=(12, 12, 3, 3), tau=0.2),
                                dict(counts=(9, 9, 2, 2), loss="ce", weight_decay=0.02),
                                dict(counts=(6, 6, 6, 2, 2, 2), tau=0.5, loss="bcl-avg")])
@pytest.mark.slow
def test_agrees_with_full_pgd_and_certificate(kw):
    """Integer counts: the class-level optimum is certified, its embedding has the same full loss, it is no worse
    than the full solve, and it lies above the full certificate's proved bound."""
    P = Problem(**kw)
    cp, sol, cert, full, full_cert = _class_and_full(P)
    assert sol.loss - full_cert.lower_bound <= 1e-5 * max(1.0, abs(sol.loss))
    Z, labels = embedding(sol.mu, cp), P.label_array
    if P.loss == "ce":
        ref = ce_loss_loops(Z, sol.W, labels) + P.weight_decay * float(np.sum(sol.W ** 2))
    else:
        ref = (sc_loss_loops if P.loss == "sc" else bcl_avg_loss_loops)(Z, labels, P.tau)
    assert ref == pytest.approx(sol.loss, rel=1e-10)


@pytest.mark.slow
def test_many_at_once_equals_one_by_one():
    cps = [ClassProblem(counts=imbalance.class_sizes("step", 4, 3.0, R), tau=t) for R in (1.0, 4.5, 30.0)
           for t in (0.1, 1.0)]
    together = solve_classes(cps, seed=5)
    for cp, s in zip(cps, together):
        alone = solve_classes([cp], seed=5)[0]
        assert s.loss == pytest.approx(alone.loss, rel=1e-12, abs=1e-14)


@pytest.mark.slow
def test_radius_is_an_exact_change_of_variables():
    a = ClassProblem(counts=(10.5, 3.0, 3.0), tau=0.4)
    b = ClassProblem(counts=(10.5, 3.0, 3.0), tau=1.6, radius=2.0)
    sa, sb = solve_classes([a, b])
    assert sa.loss == pytest.approx(sb.loss, rel=1e-10)
    np.testing.assert_allclose(np.linalg.norm(sb.mu, axis=1), 2.0, rtol=1e-9)
    assert all(c.certified for c in certify_classes([a, b], [sa, sb]))


@pytest.mark.parametrize("bad, match", [(dict(counts=(1.5, 3)), "class 0"), (dict(counts=(3,)), "2 classes"),
                                        (dict(counts=(3, 3), constraint="none", loss="ce", feature_decay=1.0),
                                         "constraint"),
                                        (dict(counts=(3, 3), loss="ce", bias=True), "bias"),
                                        (dict(counts=(3, 3), tau=-1.0), "tau"),
                                        (dict(counts=(3, 3), dim=0), "dim"),
                                        (dict(counts=(3, float("nan"))), "class 1")])
def test_bad_class_problems_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ClassProblem(**bad)


@pytest.mark.slow
def test_sizes_are_continuous_in_R():
    """Real sizes interpolate the integer ones: the loss at R between two integer majorities lies between theirs
    (more same-class negatives, monotone here), and R -> class sizes is exact."""
    sizes = imbalance.class_sizes("step", 4, 2.0, 2.25)
    assert sizes == (4.5, 4.5, 2.0, 2.0)
    lt = imbalance.class_sizes("long-tail", 3, 2.0, 4.0)
    assert lt == pytest.approx((8.0, 4.0, 2.0))
    losses = [s.loss for s in solve_classes([ClassProblem(counts=imbalance.class_sizes("step", 4, 2.0, R), tau=0.5)
                                             for R in (2.0, 2.25, 2.5)])]
    assert losses[0] < losses[1] < losses[2] or losses[0] > losses[1] > losses[2]
    assert not math.isnan(losses[1])


@pytest.mark.slow
def test_orbit_batch_sets_reach_the_subsets_closed_form():
    """A batch set made of whole orbits (every subset of size b): the class-level problem over its compositions
    reaches the UFM+ closed form over all C(N, b) subsets, certified, and no full solve does better."""
    from solvers.pgd import solve
    from solvers.relaxation import class_orbits

    P = Problem(counts=(4, 3, 2), tau=0.3, nonneg=True, batching="subsets:3")
    cp = ClassProblem.from_problem(P, orbits=class_orbits(P))
    assert cp.orbits is not None and len(cp.orbits) > 1
    sol = solve_classes([cp])[0]
    cert = certify_classes([cp], [sol])[0]
    ref = closed_forms.sc_of_loss_subsets(P.counts, 3, 0.3)
    assert cert.certified and cert.lower_bound <= ref + 1e-12
    assert sol.loss == pytest.approx(ref, rel=1e-9)
    assert solve(P, seed=0).loss >= cert.lower_bound


@pytest.mark.slow
def test_nonneg_singleton_rows_stay_on_the_sphere():
    """A singleton's row clipped to 0 by the orthant goes to the nearest point of sphere and orthant, so every
    point is feasible: in one dimension the only feasible point is both rows at 1."""
    cp = ClassProblem(counts=(5, 1), tau=0.5, nonneg=True, dim=1)
    sol = solve_classes([cp], starts=[{"mu": np.array([[1.0], [-1.0]])}])[0]
    np.testing.assert_allclose(sol.mu, [[1.0], [1.0]], atol=1e-12)
    assert sol.loss == pytest.approx(loss_of(cp, {"mu": np.ones((2, 1))}), rel=1e-12)
    for s in solve_classes([ClassProblem(counts=(R, R, 1, 1), tau=0.3, nonneg=True, dim=2) for R in (2, 5, 9)]):
        np.testing.assert_allclose(np.linalg.norm(s.mu[2:], axis=1), 1.0, atol=1e-12)


def test_ce_embedding_with_rank_deficient_means_keeps_the_logits():
    """CE with minority collapse: the means span fewer than dim dimensions; the embedding and the classifier in
    the same coordinates give the class-level loss."""
    cp = ClassProblem(counts=(200, 200, 2, 2), loss="ce", weight_decay=0.05, dim=4)
    sol = solve_classes([cp])[0]
    assert np.linalg.matrix_rank(sol.mu, tol=1e-6) < 4
    Z, W = embedding(sol.mu, cp, W=sol.W)
    ref = ce_loss_loops(Z, W, np.repeat(np.arange(4), [200, 200, 2, 2]))
    ref += 0.05 * float(np.sum(W ** 2))
    assert ref == pytest.approx(sol.loss, rel=1e-9)


# -- BCL: the class prototypes as K extra rows of the class-level point ---------------------------------------------
@pytest.mark.parametrize("constraint, spread", [("sphere", False), ("sphere", True), ("ball", True)])
def test_bcl_value_is_the_loss_of_the_embedding(constraint, spread):
    """Means and prototypes (inside the ball or on the sphere, a singleton class included): the class-level value
    equals Zhu et al.'s BalSCL (transcribed) at the embedding and its prototypes."""
    from reference import bcl_loss_loops

    rng = np.random.default_rng(7)
    counts = (4, 3, 2, 1)
    shrink = [0.8, 0.9, 0.7, 1.0 if constraint == "sphere" else 0.6] if spread else None
    dim = 3 + (3 + 2 + 1 if spread and constraint == "sphere" else 0)
    cp = ClassProblem(counts=counts, loss="bcl", tau=0.3, dim=dim, constraint=constraint, radius=1.2)
    mu = np.zeros((4, dim))
    mu[:, :3] = 1.2 * _random_mu(rng, 4, 3, shrink=shrink)
    C = np.zeros((4, dim))
    C[:, :3] = 1.2 * _random_mu(rng, 4, 3, shrink=[1.0, 0.5, 0.9, 0.7] if constraint == "ball" else None)
    Z, Ce = embedding(mu, cp, C=C)
    assert Z.shape == (10, dim)
    labels = np.repeat(np.arange(4), counts)
    ref = bcl_loss_loops(Z, labels, 0.3, Ce)
    assert loss_of(cp, {"mu": mu, "C": C}) == pytest.approx(ref, rel=1e-12)
    G = np.vstack([Z, Ce]) @ np.vstack([Z, Ce]).T  # the embedding's joint Gram is the class-level point's
    np.testing.assert_allclose(G[:10, 10:], (mu @ C.T)[labels], atol=1e-12)


@pytest.mark.parametrize("kw", [dict(counts=(3, 3, 3), tau=0.3), dict(counts=(3.0, 3.0), tau=2.0, constraint="ball"),
                                dict(counts=(4, 4, 4, 4), tau=0.5, dim=4, radius=1.5)])
def test_bcl_class_bound_certifies_the_etf_and_stays_below_it(kw):
    """Balanced counts: the simplex ETF with the prototypes at their vertices is BCL's minimum (Zhu et al. 2022,
    ``ufm.objectives.bcl.etf_loss``); the class-level solve reaches it and the proved bound lies below it."""
    from ufm.objectives.bcl import etf_loss

    cp = ClassProblem(loss="bcl", **kw)
    sol = solve_classes([cp])[0]
    cert = certify_classes([cp], [sol])[0]
    ref = etf_loss(cp.counts, cp.tau, cp.radius)
    assert cert.certified
    assert cert.lower_bound <= ref
    assert sol.loss == pytest.approx(ref, rel=1e-8, abs=1e-12)


def test_bcl_class_bound_at_a_poor_candidate_is_still_below_the_minimum():
    """A random (far from optimal) point: the bound proved from it is weak but never above the certified
    minimum; with imbalance the minimum lies below the ETF's value."""
    from solvers.dual import bcl_class_bound
    from ufm.classlevel import block_gram

    cp = ClassProblem(counts=(10, 3, 1), loss="bcl", tau=0.5, dim=4)
    sol = solve_classes([cp])[0]
    best = certify_classes([cp], [sol])[0]
    assert best.certified
    rng = np.random.default_rng(2)
    mu, C = _random_mu(rng, 3, 4, shrink=[0.6, 0.9, 1.0]), _random_mu(rng, 3, 4)
    d, a, M = block_gram(mu, cp)
    for optimal in (False, True):
        b = bcl_class_bound(cp, d, a, M, mu @ C.T, C @ C.T, optimal_multipliers=optimal)
        assert b.lower_bound is not None and b.lower_bound <= best.lower_bound
    assert loss_of(cp, {"mu": mu, "C": C}) >= best.lower_bound


@pytest.mark.parametrize("optimal", [False, True])
def test_class_bounds_give_no_bound_for_a_nan_candidate(optimal):
    """A NaN (a diverged solve) proves nothing: no bound and the reason, never an error from the multiplier
    program."""
    from solvers.dual import bcl_class_bound, ce_class_bound, sc_class_bound
    from ufm.classlevel import block_gram

    rng = np.random.default_rng(3)
    mu = _random_mu(rng, 3, 4)
    mu[1, 2] = np.nan
    sc = ClassProblem(counts=(5, 3, 2), tau=0.5, dim=4)
    d, a, M = block_gram(mu, sc)
    got = [sc_class_bound(sc, [((5, 3, 2), 1)], d, a, M, optimal_multipliers=optimal),
           bcl_class_bound(sc.replace(loss="bcl"), d, a, M, mu @ mu.T, mu @ mu.T, optimal_multipliers=optimal),
           ce_class_bound(ClassProblem(counts=(5, 3, 2), loss="ce", dim=4, constraint="ball"), d, a, M, mu @ mu.T,
                          1.0, optimal_multipliers=optimal)]
    for b in got:
        assert b.lower_bound is None and "NaN" in b.why


def test_bcl_refuses_what_it_has_no_bound_for():
    with pytest.raises(ValueError, match="nonneg"):
        ClassProblem(counts=(3, 3), loss="bcl", nonneg=True)
    with pytest.raises(ValueError, match="orbits"):
        ClassProblem(counts=(3, 3), loss="bcl", orbits=(((2, 2), 1.0),))


@pytest.mark.parametrize("kw", [dict(counts=(4, 2, 1), tau=0.5), dict(counts=(3, 3, 2), tau=0.3, constraint="ball")])
@pytest.mark.slow
def test_bcl_agrees_with_full_pgd_and_certificate(kw):
    """Integer counts: the class-level BCL optimum is certified, its embedding with its prototypes has the same
    full loss (the transcribed BalSCL), it is no worse than the full solve, and it lies above the full
    certificate's proved bound (on the Gram of [Z; C]), within the certificate's tolerance."""
    from reference import bcl_loss_loops
    P = Problem(loss="bcl", **kw)
    cp, sol, cert, full, full_cert = _class_and_full(P)
    assert cert.lower_bound <= full.loss
    assert sol.loss - full_cert.lower_bound <= 1e-5 * max(1.0, abs(sol.loss))
    Z, Ce = embedding(sol.mu, cp, C=sol.C)
    assert bcl_loss_loops(Z, P.label_array, P.tau, Ce) == pytest.approx(sol.loss, rel=1e-10)


@pytest.mark.parametrize("sphere", [True, False])
@pytest.mark.parametrize("kw", [dict(counts=(20.0, 9.0, 5.0, 1.0), tau=0.3),
                                dict(counts=(20.0, 9.0, 5.0), tau=0.5, loss="bcl-avg"),
                                dict(counts=(6.0, 4.0, 2.0, 3.0), tau=0.2,
                                     orbits=(((2.0, 2.0, 0.0, 1.0), 3.0), ((1.0, 0.0, 2.0, 1.0), 2.0),
                                             ((3.0, 1.0, 1.0, 0.0), 1.0)))])
def test_hand_written_gradient_equals_automatic_differentiation(kw, sphere):
    """The solver's gradient of the contrastive class-level objective (one softmax for value and gradient) against
    JAX's automatic differentiation of ``ufm.classlevel.value``: singletons, class weights, batch orbits whose
    compositions leave classes out (``-inf`` log-multiplicities)."""
    import jax
    import jax.numpy as jnp

    from solvers.classlevel import contrastive_value_and_grad
    from ufm.classlevel import value, weights

    p = ClassProblem(**kw)
    with jax.enable_x64(True):
        h = {k: jnp.asarray(v) for k, v in weights(p.at_unit_radius()[0]).items()}
        mu = jnp.asarray(np.random.default_rng(p.K).standard_normal((p.K, p.K + 1)) * 0.4)
        f0, g0 = jax.value_and_grad(lambda z: value(z, h, contrastive=True, sphere=sphere, constant=False))({"mu": mu})
        f1, g1 = contrastive_value_and_grad({"mu": mu}, h, sphere)
        assert abs(float(f1 - f0)) <= 1e-14 * abs(float(f0))
        np.testing.assert_allclose(np.asarray(g1["mu"]), np.asarray(g0["mu"]), rtol=0,
                                   atol=1e-13 * float(jnp.max(jnp.abs(g0["mu"]))))


@pytest.mark.parametrize("K, dim", [(4, 3), (6, 6), (5, 9)])
def test_simplex_start_is_the_regular_simplex(K, dim):
    """Unit rows with the simplex's Gram (1 on the diagonal, -1/(K-1) off it), in ``dim`` coordinates."""
    from solvers.classlevel import simplex_start

    p = ClassProblem(counts=list(range(3, 3 + K)), loss="sc", dim=dim, tau=0.2)
    mu = simplex_start(p)["mu"]
    assert mu.shape == (K, dim)
    np.testing.assert_allclose(mu @ mu.T, (K * np.eye(K) - 1) / (K - 1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kw", [dict(loss="sc", dim=2), dict(loss="sc", dim=4, nonneg=True),
                                dict(loss="ce", dim=4, weight_decay=1e-2)])
def test_simplex_start_refuses_where_it_does_not_apply(kw):
    from solvers.classlevel import simplex_start

    extra = {} if kw["loss"] == "ce" else {"tau": 0.2}
    assert simplex_start(ClassProblem(counts=[3, 4, 5, 6], **kw, **extra)) is None


def test_simplex_and_random_starts_reach_one_certified_minimum():
    """The simplex start (where it applies) and a random start reach the same certified minimum; a loss the
    simplex does not apply to falls back to the random start."""
    from solvers.classlevel import certify_classes, solve_chains

    probs = [ClassProblem(counts=[3, 5, 9, 20, 40], loss="sc", dim=5, tau=t) for t in (0.1, 0.5)]
    out = {s: solve_chains(probs, [[0], [1]], start=s) for s in ("random", "simplex")}
    np.testing.assert_allclose([s.loss for s in out["simplex"]], [s.loss for s in out["random"]], rtol=0, atol=1e-9)
    assert all(c.certified for c in certify_classes(probs, out["simplex"]))
    # balanced, the simplex is the minimum: started there, one segment leaves it in place (a random start is not
    # there yet), so the start was the simplex
    from solvers.classlevel import CHUNK

    K = 20
    bal = [ClassProblem(counts=[6] * K, loss="sc", dim=K, tau=0.2)]
    off = {s: solve_chains(bal, [[0]], start=s, steps=CHUNK)[0].mu for s in ("simplex", "random")}
    off = {s: np.abs(mu @ mu.T - (K * np.eye(K) - 1) / (K - 1)).max() for s, mu in off.items()}
    assert off["simplex"] <= 1e-13 < 1e-11 < off["random"], off
    nn = [ClassProblem(counts=[3, 5, 9], loss="sc", dim=3, tau=0.3, nonneg=True)]
    np.testing.assert_array_equal(solve_chains(nn, [[0]], start="simplex")[0].mu, solve_chains(nn, [[0]])[0].mu)
    with pytest.raises(ValueError, match="start"):
        solve_chains(probs, [[0], [1]], start="etf")
