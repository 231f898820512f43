import jax.numpy as jnp
import numpy as np
import pytest

from ufm import project

CASES = [("sphere", False), ("sphere", True), ("ball", False), ("ball", True), ("none", True), ("none", False)]
RNG = np.random.default_rng(0)


def feasible(X, constraint, rho, nonneg, atol=1e-12):
    n = np.linalg.norm(X, axis=1)
    ok = np.ones(len(X), bool)
    if constraint == "sphere":
        ok &= np.abs(n - rho) <= atol
    if constraint == "ball":
        ok &= n <= rho + atol
    if nonneg:
        ok &= np.all(X >= 0, axis=1)
    return ok.all()


def random_feasible(constraint, rho, nonneg, n, d, rng):
    Y = rng.normal(size=(n, d))
    if nonneg:
        Y = np.abs(Y)
        Y[rng.random((n, d)) < 0.3] = 0.0
        Y[np.all(Y == 0, axis=1), 0] = 1.0
    if constraint == "none":
        return Y * rng.uniform(0, 3, size=(n, 1))
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True) * rho
    if constraint == "ball":
        Y = Y * rng.uniform(0, 1, size=(n, 1))
    return Y


@pytest.mark.parametrize("constraint,nonneg", CASES)
@pytest.mark.parametrize("rho", [1.0, 2.5])
def test_feasible_idempotent_nearest(constraint, nonneg, rho):
    Z = RNG.normal(size=(200, 4)) * RNG.uniform(0.01, 5, size=(200, 1))
    Z[:5] = -np.abs(Z[:5])  # rows with no positive entry
    P = np.asarray(project(jnp.asarray(Z), constraint, rho, nonneg))
    assert feasible(P, constraint, rho, nonneg)
    assert np.allclose(np.asarray(project(jnp.asarray(P), constraint, rho, nonneg)), P, atol=1e-12)
    # nearest: no random feasible point is closer to Z than P (row by row)
    dist = np.linalg.norm(Z - P, axis=1)
    for _ in range(50):
        Y = random_feasible(constraint, rho, nonneg, 200, 4, RNG)
        assert np.all(dist <= np.linalg.norm(Z - Y, axis=1) + 1e-12)


def test_nonneg_sphere_matches_brute_force():
    """On the non-negative sphere the projection is rho * (best support's normalised positive part)."""
    rng = np.random.default_rng(1)
    for z in rng.normal(size=(300, 3)):
        best = min((np.linalg.norm(z - y), tuple(y)) for y in _candidates(z))[1]
        p = np.asarray(project(jnp.asarray(z[None]), "sphere", 1.0, True))[0]
        assert np.linalg.norm(z - p) == pytest.approx(np.linalg.norm(z - np.array(best)), abs=1e-12)


def _candidates(z):
    d = len(z)
    for mask in range(1, 2**d):
        S = [i for i in range(d) if mask >> i & 1]
        y = np.zeros(d)
        y[S] = np.maximum(z[S], 0)
        if np.linalg.norm(y) > 0:
            yield y / np.linalg.norm(y)
        for i in S:
            e = np.zeros(d)
            e[i] = 1.0
            yield e


def test_all_zero_row_rule():
    Z = jnp.asarray([[0.0, 0.0, 0.0], [-3.0, -1.0, -2.0], [-1.0, -1.0, -5.0]])
    P = np.asarray(project(Z, "sphere", 2.0, True))
    assert np.allclose(P, [[2, 0, 0], [0, 2, 0], [2, 0, 0]])  # rho * e_argmax, first on ties
    assert np.allclose(np.asarray(project(Z[:1], "sphere", 1.0, False)), [[1, 0, 0]])
    assert np.allclose(np.asarray(project(Z, "ball", 1.0, True)), 0.0)
    assert np.all(np.isfinite(P))


def test_unknown_constraint():
    with pytest.raises(ValueError, match="constraint"):
        project(jnp.ones((2, 2)), "cube")
