"""The objective registry (ufm.objectives) and the balanced contrastive losses end to end: ``bcl`` (Zhu et al.'s
loss, class prototypes included) against a transcription of their code, ``bcl-avg`` (its class-averaging part)
against a plain loop, Problem validation, solve, the convex relaxations and the proved bound."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ufm import Problem, bcl_avg_loss, bcl_loss, objectives, theory
from ufm.batching import batch_list
from solvers import certify, relaxation, solve
from reference import balscl_forward, bcl_avg_loss_loops, bcl_loss_loops, sc_loss_loops

pytestmark = pytest.mark.slow  # every test here takes seconds: the full suite only

warnings.filterwarnings("ignore", category=UserWarning)


def test_registry_names_and_errors():
    assert objectives.NAMES == ("sc", "ce", "bcl", "bcl-avg")
    for name in objectives.NAMES:
        o = objectives.get(name)
        assert o.name == name and o.kind in ("contrastive", "classifier")
    with pytest.raises(ValueError, match="loss must be one of sc, ce, bcl, bcl-avg"):
        objectives.get("triplet")
    with pytest.raises(ValueError, match="loss"):
        Problem(counts=(2, 2), loss="triplet")
    with pytest.raises(ValueError, match="weight_decay"):
        Problem(counts=(2, 2), loss="bcl", weight_decay=1e-3)
    with pytest.raises(ValueError, match="constraint 'none'"):
        Problem(counts=(2, 2), loss="bcl", constraint="none")


@pytest.mark.parametrize("batches", [None, [[0, 1, 2, 5], [3, 4, 5, 6, 0], [7, 8, 1]]])
def test_bcl_avg_matches_the_plain_loop(batches):
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1])
    Z = rng.standard_normal((9, 4))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    with jax.enable_x64(True):
        got = float(bcl_avg_loss(jnp.asarray(Z), labels, 0.3, batches))
    assert abs(got - bcl_avg_loss_loops(Z, labels, 0.3, batches)) <= 1e-12
    assert abs(got - sc_loss_loops(Z, labels, 0.3, batches)) > 1e-3  # a different loss, not SC renamed


def test_bcl_avg_is_sc_shifted_when_every_class_has_one_size():
    """One class size n in every batch: each class's sum is divided by n (n - 1 for the anchor's own), so BCL and
    SC differ exactly by the weights; with two members per class the own class has weight 1, others 1/2."""
    Z = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    labels = np.array([0, 0, 1, 1, 2, 2])
    with jax.enable_x64(True):
        got = float(bcl_avg_loss(jnp.asarray(Z), labels, 1.0))
    # anchor: positive at 1, its own class 1 member (weight 1) at e^1, two classes of 2 members (weight 1/2) at e^0
    ref = -1.0 + np.log(np.e + 2 * (2 * 0.5))
    assert abs(got - ref) <= 1e-12


@pytest.mark.slow
def test_bcl_avg_balanced_etf_is_certified_and_its_closed_form_proved():
    from ufm.objectives import bcl_avg

    p = Problem(counts=(6, 6, 6), loss="bcl-avg", tau=0.3, dim=2)
    pred = theory.predict(p)
    assert pred.geometry == "etf" and abs(pred.loss - bcl_avg.etf_loss((6, 6, 6), 0.3)) == 0
    sol = solve(p, dtype="float64")
    c = certify(p, sol)
    assert c.certified and c.lower_bound <= pred.loss <= c.lower_bound + 1e-8


@pytest.mark.slow
def test_bcl_avg_under_imbalance_leaves_the_simplex_with_a_certified_point_below_it():
    """The class-averaging analogue of BCL's claim, judged by the certificate: at counts 10,5,2 the solver's point
    is certified optimal and lies below the ETF's loss, so the ETF is not a minimiser here."""
    p = Problem(counts=(10, 5, 2), loss="bcl-avg", tau=0.5, dim=3)
    sol = solve(p, dtype="float64")
    c = certify(p, sol)
    assert c.certified and sol.loss < theory.predict(p).loss - 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("p", [Problem(counts=(4, 3, 2), loss="bcl-avg", tau=0.5, dim=3),
                               Problem(counts=(4, 4, 4), loss="bcl-avg", tau=0.5, batching="fixed:4", nonneg=True),
                               Problem(counts=(4, 3, 2), loss="bcl", tau=0.5, dim=3),
                               Problem(counts=(3, 2, 1), loss="bcl", tau=0.4, dim=3, nonneg=True),
                               Problem(counts=(4, 4, 4), loss="bcl", tau=0.5, batching="fixed:4", nonneg=True)],
                         ids=["avg-full", "avg-batches", "full", "full-relu", "batches"])
def test_bcl_relaxations_agree_and_bound_the_solution(p):
    full = relaxation.solve_relaxation(p, "full")
    sol = solve(p, dtype="float64", steps=20000, tol=1e-14)
    if batch_list(p) is None:
        red = relaxation.solve_relaxation(p, "reduced")
        assert abs(full.value - red.value) <= 1e-6
    c = certify(p, sol, method="full")
    assert c.lower_bound <= sol.loss + 1e-12 and c.certified


# -- bcl: Zhu et al.'s loss, class prototypes included ------------------------------------------------------------
def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_bcl_matches_a_transcription_of_the_authors_code(seed):
    """``ufm.bcl_loss`` against ``BalSCL.forward`` transcribed line for line (tests/reference.py), one view, on
    random imbalanced labels (some classes absent from a batch, some with one sample), full batch and batches."""
    rng = np.random.default_rng(seed)
    K, N, d = 4, 13, 5
    labels = rng.choice(K, size=N, p=[0.55, 0.25, 0.15, 0.05])
    Z, C = _unit(rng.standard_normal((N, d))), _unit(rng.standard_normal((K, d)))
    tau = float(rng.uniform(0.07, 1.0))
    perm = rng.permutation(N)
    batches = [perm[:5].tolist(), perm[5:9].tolist(), perm[9:].tolist() + [int(perm[0])]]
    with jax.enable_x64(True):
        full = float(bcl_loss(jnp.asarray(Z), labels, tau, prototypes=jnp.asarray(C)))
        batched = float(bcl_loss(jnp.asarray(Z), labels, tau, batches, prototypes=jnp.asarray(C)))
    assert abs(full - balscl_forward(C, Z[:, None, :], labels, K, tau)) <= 1e-12
    assert abs(batched - bcl_loss_loops(Z, labels, tau, C, batches)) <= 1e-12
    assert abs(full - float(bcl_avg_loss_loops(Z, labels, tau))) > 1e-6  # the prototypes change the loss


def test_bcl_two_views_of_one_feature_are_the_one_view_loss_on_the_doubled_batch():
    """Their training script passes two views; with both views equal to ``z_i`` (no augmentation in the UFM) their
    loss is the one-view loss on the batch holding every sample twice (docs/theory.md §2)."""
    rng = np.random.default_rng(7)
    labels = np.array([0, 0, 0, 1, 2, 2])
    Z, C = _unit(rng.standard_normal((6, 3))), _unit(rng.standard_normal((3, 3)))
    with jax.enable_x64(True):
        doubled = float(bcl_loss(jnp.asarray(np.concatenate([Z, Z])), np.concatenate([labels, labels]), 0.2,
                                 prototypes=jnp.asarray(C)))
        one = float(bcl_loss(jnp.asarray(Z), labels, 0.2, prototypes=jnp.asarray(C)))
    assert abs(doubled - balscl_forward(C, np.stack([Z, Z], axis=1), labels, 3, 0.2)) <= 1e-12
    assert abs(doubled - one) > 1e-3  # the second view is one more positive: a different number


def test_bcl_needs_its_prototypes():
    with pytest.raises(TypeError):
        bcl_loss(jnp.ones((2, 2)), np.array([0, 1]), 0.5)
    with pytest.raises(ValueError, match="prototypes"):
        bcl_loss(jnp.ones((2, 2)), np.array([0, 1]), 0.5, prototypes=jnp.ones((2, 3)))
    p = Problem(counts=(2, 2), loss="bcl", dim=2)
    assert objectives.of(p).variables == ("Z", "C")
    with pytest.raises(ValueError, match="prototypes C"):
        certify(p, type("S", (), {"Z": np.eye(2)[[0, 0, 1, 1]], "W": None, "b": None})())


def test_bcl_etf_closed_form_is_the_loss_at_the_etf_with_prototypes_at_the_vertices():
    from solvers.workflows.verify import etf_vectors

    p = Problem(counts=(5, 2, 1), loss="bcl", tau=0.4, dim=2, radius=1.5)
    V = 1.5 * etf_vectors(3, 2)
    with jax.enable_x64(True):
        got = float(bcl_loss(jnp.asarray(V[p.label_array]), p.label_array, 0.4, prototypes=jnp.asarray(V)))
    assert theory.predict(p).geometry == "etf" and abs(got - theory.predict(p).loss) <= 1e-13


@pytest.mark.slow
def test_bcl_solve_carries_prototypes_on_the_sphere_and_is_certified():
    p = Problem(counts=(4, 3, 2), loss="bcl", tau=0.5, dim=3, radius=1.5)
    sol = solve(p, dtype="float64")
    assert sol.C.shape == (3, 3) and np.allclose(np.linalg.norm(sol.C, axis=1), 1.5, atol=1e-12)
    c = certify(p, sol)
    assert c.method == "reduced" and c.certified and 0 <= c.gap <= 1e-9
    # a certified point below the ETF: the claim fails already here
    assert c.lower_bound < 0.995 * theory.predict(p).loss


@pytest.mark.slow
def test_bcl_bound_never_above_a_found_minimum_or_the_etf():
    """Proved bounds (reduced, full, first-order at a random feasible point) never exceed the loss at any feasible
    point: the solver's, the ETF with prototypes at the vertices, random ones."""
    from solvers.first_order import first_order_bound
    from solvers.workflows.verify import etf_vectors

    rng = np.random.default_rng(1)
    p = Problem(counts=(5, 2, 1), loss="bcl", tau=0.3, dim=2)
    sol = solve(p, dtype="float64")
    V = etf_vectors(3, 2)
    bounds = [certify(p, None, method=m).lower_bound for m in ("reduced", "full")]
    Zr, Cr = _unit(rng.standard_normal((8, 2))), _unit(rng.standard_normal((3, 2)))
    bounds.append(first_order_bound(p, Zr, C=Cr).lower_bound)
    with jax.enable_x64(True):
        points = [sol.loss, float(bcl_loss(jnp.asarray(V[p.label_array]), p.label_array, 0.3, prototypes=V)),
                  float(bcl_loss(jnp.asarray(Zr), p.label_array, 0.3, prototypes=jnp.asarray(Cr)))]
    assert all(b is not None for b in bounds)
    assert max(bounds) <= min(points)
    assert abs(bounds[0] - bounds[1]) <= 1e-6 and sol.loss - bounds[0] <= 1e-8  # the relaxation is tight here


def test_bcl_on_the_class_level_refuses_relu_features():
    """BCL's class level carries the prototypes as K more rows; with non-negative features it is refused by name."""
    from ufm import ClassProblem

    with pytest.raises(ValueError, match="nonneg"):
        ClassProblem(counts=(3, 2), loss="bcl", tau=0.5, nonneg=True)
    ClassProblem(counts=(3, 2), loss="bcl", tau=0.5)
    ClassProblem(counts=(3, 2), loss="bcl-avg", tau=0.5)


def test_solve_summary_prints_the_temperature_of_bcl(capsys):
    """The human summary states a contrastive loss's temperature (the objective says which numbers it has)."""
    from cli_run import run_cli

    code, out, err = run_cli(capsys, "solve", "--loss", "bcl", "--counts", "2,1", "--dim", "2", "--tau", "0.25",
                             "--steps", "20")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("BCL, counts 2,1") and "tau=0.25" in first and "weight_decay" not in first
