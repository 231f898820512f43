"""The objective registry (ufm.objectives) and the balanced contrastive loss end to end: value against a plain
loop, Problem validation, solve, the convex relaxations and the proved bound."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ufm import Problem, bcl_loss, objectives, theory
from ufm.batching import batch_list
from solvers import certify, relaxation, solve
from reference import bcl_avg_loss_loops, sc_loss_loops

warnings.filterwarnings("ignore", category=UserWarning)


def test_registry_names_and_errors():
    assert objectives.NAMES == ("sc", "ce", "bcl")
    for name in objectives.NAMES:
        o = objectives.get(name)
        assert o.name == name and o.kind in ("contrastive", "classifier")
    with pytest.raises(ValueError, match="loss must be one of sc, ce, bcl"):
        objectives.get("triplet")
    with pytest.raises(ValueError, match="loss"):
        Problem(counts=(2, 2), loss="triplet")
    with pytest.raises(ValueError, match="weight_decay"):
        Problem(counts=(2, 2), loss="bcl", weight_decay=1e-3)
    with pytest.raises(ValueError, match="constraint 'none'"):
        Problem(counts=(2, 2), loss="bcl", constraint="none")


@pytest.mark.parametrize("batches", [None, [[0, 1, 2, 5], [3, 4, 5, 6, 0], [7, 8, 1]]])
def test_bcl_matches_the_plain_loop(batches):
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1])
    Z = rng.standard_normal((9, 4))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    with jax.enable_x64(True):
        got = float(bcl_loss(jnp.asarray(Z), labels, 0.3, batches))
    assert abs(got - bcl_avg_loss_loops(Z, labels, 0.3, batches)) <= 1e-12
    assert abs(got - sc_loss_loops(Z, labels, 0.3, batches)) > 1e-3  # a different loss, not SC renamed


def test_bcl_is_sc_shifted_when_every_class_has_one_size():
    """One class size n in every batch: each class's sum is divided by n (n - 1 for the anchor's own), so BCL and
    SC differ exactly by the weights; with two members per class the own class has weight 1, others 1/2."""
    Z = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    labels = np.array([0, 0, 1, 1, 2, 2])
    with jax.enable_x64(True):
        got = float(bcl_loss(jnp.asarray(Z), labels, 1.0))
    # anchor: positive at 1, its own class 1 member (weight 1) at e^1, two classes of 2 members (weight 1/2) at e^0
    ref = -1.0 + np.log(np.e + 2 * (2 * 0.5))
    assert abs(got - ref) <= 1e-12


def test_bcl_balanced_etf_is_certified_and_its_closed_form_proved():
    from ufm.objectives import bcl

    p = Problem(counts=(6, 6, 6), loss="bcl", tau=0.3, dim=2)
    pred = theory.predict(p)
    assert pred.geometry == "etf" and abs(pred.loss - bcl.etf_loss((6, 6, 6), 0.3)) == 0
    sol = solve(p, dtype="float64")
    c = certify(p, sol)
    assert c.certified and c.lower_bound <= pred.loss <= c.lower_bound + 1e-8


def test_bcl_under_imbalance_leaves_the_simplex_with_a_certified_point_below_it():
    """The claim that BCL keeps the simplex under imbalance, judged by the certificate: at counts 10,5,2 the
    solver's point is certified optimal and lies below the ETF's loss, so the ETF is not a minimiser here."""
    p = Problem(counts=(10, 5, 2), loss="bcl", tau=0.5, dim=3)
    sol = solve(p, dtype="float64")
    c = certify(p, sol)
    assert c.certified and sol.loss < theory.predict(p).loss - 1e-3


@pytest.mark.parametrize("p", [Problem(counts=(4, 3, 2), loss="bcl", tau=0.5, dim=3),
                               Problem(counts=(4, 4, 4), loss="bcl", tau=0.5, batching="fixed:4", nonneg=True)],
                         ids=["full", "batches"])
def test_bcl_relaxations_agree_and_bound_the_solution(p):
    full = relaxation.solve_relaxation(p, "full")
    sol = solve(p, dtype="float64", steps=20000, tol=1e-14)
    if batch_list(p) is None:
        red = relaxation.solve_relaxation(p, "reduced")
        assert abs(full.value - red.value) <= 1e-6
    c = certify(p, sol, method="full")
    assert c.lower_bound <= sol.loss + 1e-12 and c.certified
