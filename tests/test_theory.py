import math

import numpy as np
import pytest
from reference import ce_loss_loops, sc_loss_loops
from test_geometry import collapse, etf_means

from ufm import Problem, predict, theory


@pytest.mark.parametrize("n,K,tau,rho", [(3, 4, 0.2, 1.0), (5, 3, 1.0, 2.0), (2, 2, 0.05, 1.0)])
def test_etf_formula_equals_loss_at_etf(n, K, tau, rho):
    Z, y = collapse(rho * etf_means(K, K, np.random.default_rng(0)), [n] * K)
    assert theory.sc_etf_loss(n, K, tau, rho) == pytest.approx(sc_loss_loops(Z, y, tau), rel=1e-12)


@pytest.mark.parametrize("counts,tau,rho", [([30, 30, 3, 3], 0.2, 1.0), ([5, 1, 2], 1.0, 1.5)])
def test_of_formula_equals_loss_at_of(counts, tau, rho):
    Z, y = collapse(rho * np.eye(len(counts) + 1)[: len(counts)], counts)
    assert theory.sc_of_loss(counts, tau, rho) == pytest.approx(sc_loss_loops(Z, y, tau), rel=1e-12)


def test_minibatch_of_formula_equals_loss_at_of():
    counts = [4, 3, 2]
    Z, y = collapse(np.eye(3), counts)
    batches = [[0, 1, 4, 7], [2, 3, 5, 6, 8], [0, 5, 6]]
    assert theory.sc_of_loss(counts, 0.3, batches=batches) == pytest.approx(
        sc_loss_loops(Z, y, 0.3, batches), rel=1e-12)


@pytest.mark.parametrize("K,lam,rho", [(4, 5e-3, 1.0), (3, 0.1, 2.0), (10, 1e-3, 1.0)])
def test_ce_radius_solves_its_equation_and_loss_at_etf(K, lam, rho):
    r = theory.ce_classifier_radius(K, lam, rho)
    assert 2 * lam * r * (math.exp(K * rho * r / (K - 1)) + K - 1) - rho == pytest.approx(0.0, abs=1e-12)
    loss, r2, norm = theory.ce_etf_loss(K, lam, rho)
    assert r2 == r and norm == rho
    M = etf_means(K, K, np.random.default_rng(1))
    Z, y = collapse(rho * M, [2] * K)
    assert loss == pytest.approx(ce_loss_loops(Z, r * M, y) + lam * K * r**2, rel=1e-12)
    # a stationary point in r: nearby radii cost more
    f = lambda s: ce_loss_loops(Z, s * M, y) + lam * K * s**2  # noqa: E731
    assert f(r * 1.01) > loss and f(r * 0.99) > loss


def test_zhu_closed_form_is_the_minimum_over_norms():
    K, lw, lz = 4, 5e-3, 1e-3
    loss, r, rho = theory.ce_etf_loss(K, lw, feature_decay=lz, constraint="none")
    grid = [(a, b) for a in np.linspace(0.1, 10, 200) for b in np.linspace(0.1, 10, 200)]
    best = min(math.log1p((K - 1) * math.exp(-K * a * b / (K - 1))) + lw * K * b**2 + lz * a**2 for a, b in grid)
    assert loss <= best + 1e-12 and loss == pytest.approx(best, abs=1e-3)
    assert theory.ce_etf_loss(K, 1.0, feature_decay=1.0, constraint="none")[0] == pytest.approx(math.log(K))


def test_predict():
    assert predict(Problem(counts=[30, 30, 3, 3], tau=0.2, dim=8, nonneg=True)).geometry == "of"
    assert predict(Problem(counts=[3, 3, 3], dim=2, nonneg=False)).geometry == "etf"
    assert predict(Problem(counts=[3, 3, 2])).geometry == "unknown"
    assert predict(Problem(counts=[3, 3, 3], dim=1)).geometry == "unknown"
    assert predict(Problem(counts=[1, 1, 1])).geometry == "unknown"
    with pytest.warns(UserWarning):
        assert predict(Problem(counts=[3, 3, 3], dim=2, nonneg=True)).geometry == "unknown"
    ce = predict(Problem(counts=[4] * 4, loss="ce", constraint="ball"))
    assert ce.geometry == "etf" and ce.r_W == pytest.approx(theory.ce_classifier_radius(4, 5e-3))
    assert predict(Problem(counts=[4, 2], loss="ce")).geometry == "unknown"
    assert predict(Problem(counts=[4, 4], loss="ce", bias=True)).geometry == "unknown"
    p = predict(Problem(counts=[3, 3], tau=0.5, batches=[[0, 1, 3], [2, 4, 5]], nonneg=True))
    assert p.geometry == "of" and p.loss == pytest.approx(theory.sc_of_loss([3, 3], 0.5, batches=[[0, 1, 3], [2, 4, 5]]))


@pytest.mark.parametrize("seed", range(4))
def test_minibatch_of_formula_equals_loss_at_of_for_random_batchings(seed):
    """docs/theory.md §4 for any fixed batching: overlapping batches, repeated batches, batches without positives."""
    rng = np.random.default_rng(seed)
    counts = list(rng.integers(1, 5, size=3))
    N = sum(counts)
    batches = [sorted(rng.choice(N, int(rng.integers(1, N + 1)), replace=False).tolist()) for _ in range(5)]
    batches.append(batches[0])
    rho, tau = 1.5, float(rng.uniform(0.1, 1.0))
    Z, y = collapse(rho * np.eye(4)[:3], counts)
    assert theory.sc_of_loss(counts, tau, rho, batches=batches) == pytest.approx(
        sc_loss_loops(Z, y, tau, batches), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kwargs,unique", [
    (dict(counts=(30, 30, 3, 3)), True), (dict(counts=(3, 1, 1)), False), (dict(counts=(3, 2, 1)), True),
    (dict(counts=(3, 3), constraint="ball"), None), (dict(counts=(6, 6, 2), batching="shuffled:4"), None),
    (dict(counts=(6, 6, 2), batching="binding:4"), True), (dict(counts=(6, 1, 1), batching="binding:4"), False)])
def test_predict_knows_when_the_of_is_unique(kwargs, unique):
    pred = predict(Problem(nonneg=True, **kwargs))
    assert pred.geometry == "of" and pred.unique is unique
    assert ("not the unique" in pred.reason) is (unique is False)
