"""First-order certificate (solvers.first_order, solvers.dual): minorant, loss, eigenvalue bound, validity, tightness."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ufm import Problem, sc_loss, theory
from ufm.batching import batch_list
from ufm.losses import batch_index
from solvers import first_order as FO
from solvers import dual, pgd, relaxation

OVERLAP = ((0, 1, 5, 9), (2, 3, 6, 10, 0), (4, 7, 8, 11, 0, 5))  # sample 0 in three batches, 5 in two


@pytest.mark.slow
def test_minorant_is_the_gram_gradient_and_touches_the_loss():
    """With d = N, Z is invertible and ``grad_Z f = 2 Q Z`` determines every entry of ``Q = df/dG``; the affine
    minorant equals the loss at its own candidate."""
    p = Problem(counts=(4, 4, 4), tau=0.4, dim=12, batches=OVERLAP)
    Z = np.random.default_rng(3).standard_normal((12, 12))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    idx = batch_index(batch_list(p), p.N)
    with jax.enable_x64(True):
        grad = np.asarray(jax.jit(jax.grad(sc_loss))(jnp.asarray(Z), p.label_array, p.tau, idx))
        f = float(sc_loss(jnp.asarray(Z), p.label_array, p.tau, idx))
    Q, const = dual.sc_minorant(p, Z @ Z.T)
    assert np.array_equal(Q, Q.T) and np.all(np.diag(Q) == 0)
    assert np.abs(Q - 0.5 * grad @ np.linalg.inv(Z)).max() <= 1e-10 * np.abs(Q).max()
    assert abs(np.sum(Q * (Z @ Z.T)) + const - f) <= 1e-13


def test_lambda_min_lower_is_below_the_true_eigenvalue_and_close():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40, 200):
        X = rng.standard_normal((n, n))
        A = (X + X.T) / 2
        lo = dual.lambda_min_lower(A)
        exact = np.linalg.eigvalsh(A)[0]
        assert lo <= exact and exact - lo <= 1e-10 * max(1, np.abs(A).sum(1).max())
    assert dual.lambda_min_lower(np.array([[1.0, np.nan], [np.nan, 1.0]])) is None


def test_many_small_batches_are_certified_block_by_block():
    p = Problem(counts=(3000, 3000, 3000), tau=0.3, nonneg=True, batching="fixed:30")
    Z = np.eye(3)[p.label_array]
    fo = FO.first_order_bound(p, Z)
    ref = theory.sc_of_loss(p.counts, 0.3, batches=batch_list(p), labels=p.label_array)
    assert fo.status == "optimal" and fo.lower_bound <= ref and ref - fo.lower_bound <= 1e-12


@pytest.mark.parametrize("p", [
    Problem(counts=(4, 4, 4), tau=0.4, batches=OVERLAP, constraint="ball"),
    Problem(counts=(5, 3, 2), loss="ce", bias=True, constraint="none", feature_decay=1e-3, nonneg=True),
], ids=["sc-batches", "ce-bias"])
def test_solution_loss_is_the_solver_objective_in_float64(p):
    rng = np.random.default_rng(0)
    x = {"Z": rng.standard_normal((p.N, p.dim))}
    if p.loss == "ce":
        x |= {"W": rng.standard_normal((p.K, p.dim)), "b": rng.standard_normal(p.K)}
    with jax.enable_x64(True):
        static, h = pgd.static_of(p, 1, "pgd", "float64"), pgd.hyper_of(p, jnp.float64)
        xp = pgd.project_vars(static, {k: jnp.asarray(v) for k, v in x.items()}, h)
        ref = float(pgd.objective(static, xp, h))
    assert abs(FO.solution_loss(p, x["Z"], x.get("W"), x.get("b")) - ref) <= 1e-12 * max(1, abs(ref))


CASES = [  # the first two share their compiled solver with tests/test_certify.py
    Problem(counts=(20, 20, 2, 2), tau=0.5, dim=6),
    Problem(counts=(8, 4, 2), tau=0.4, constraint="ball", dim=3),
    Problem(counts=(4, 4, 4), tau=0.5, nonneg=True, batching="fixed:4"),
    Problem(counts=(5, 3, 2), loss="ce", bias=True, nonneg=True),
    Problem(counts=(4, 4, 4), loss="ce", constraint="none", feature_decay=1e-3),
]


@functools.lru_cache
def solved(p):
    return pgd.solve(p, dtype="float64") if p.N > 40 else pgd.solve(p, dtype="float64", tol=1e-14, steps=20000)


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"{p.loss}-{p.counts}-{p.constraint}-{p.nonneg}-{p.batching}")
@pytest.mark.slow
def test_certifies_optima_and_never_exceeds_the_full_program(p):
    # the full program itself for small N; the reduced one (equal, tests/test_relaxation.py) for the full batch
    ref = relaxation.solve_relaxation(p, "full" if p.N <= 20 else "reduced").value
    sol = solved(p)
    fo = FO.first_order_bound(p, sol.Z, sol.W, sol.b)
    assert fo.eig_method == "cholesky" and fo.status == "optimal"
    assert fo.lower_bound <= ref + 1e-7  # Clarabel's value is accurate to ~1e-8
    assert fo.loss - fo.lower_bound <= 1e-6  # tight at a (numerically) optimal solution
    Z = sol.Z + 0.05 * np.random.default_rng(0).standard_normal(sol.Z.shape)  # a poor point
    poor = FO.first_order_bound(p, Z, sol.W, sol.b)
    assert poor.lower_bound <= ref + 1e-7 and poor.loss - poor.lower_bound > 1e-4  # valid, and no certificate


def test_random_points_give_valid_bounds():
    p = Problem(counts=(4, 3, 2), tau=0.5, dim=3, constraint="ball")
    full = relaxation.solve_relaxation(p, "full").value
    rng = np.random.default_rng(0)
    for _ in range(5):
        Z = rng.standard_normal((p.N, 3))
        assert FO.first_order_bound(p, Z).lower_bound <= full + 1e-7


def test_exact_orthogonal_frame_is_certified_to_rounding():
    counts = (7, 5, 3)
    p = Problem(counts=counts, tau=0.2, dim=4, nonneg=True)
    Z = np.eye(4)[p.label_array]
    fo = FO.first_order_bound(p, Z)
    assert abs(fo.loss - theory.sc_of_loss(counts, 0.2)) <= 1e-13
    assert abs(fo.lower_bound - fo.loss) <= 1e-13


def test_ce_needs_w():
    with pytest.raises(ValueError, match="W"):
        FO.first_order_bound(Problem(counts=(2, 2), loss="ce"), np.ones((4, 2)))
