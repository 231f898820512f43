"""Checks that mutation probing found missing: each would let a wrong verdict through unnoticed.

* ``certify`` of an epoch-scheme solution (``shuffled``, ``binding``) must certify the objective the run minimised:
  the mean over the anchor slots of the batches of *all* its epochs (``ufm.batching.union_batches``), not the
  first epoch's; under UFM+ its bound can be no higher than the closed-form OF minimum of those batches.
* ``ufm.interaction`` must reject a witness whose loss is not the OF minimum (or whose Gram is the OF's), and a
  verified witness's loss must be the closed form when recomputed independently.

(NC1 against plain loops under imbalance: ``tests/test_geometry.py``; exact lines of the human summaries:
``tests/test_cli.py``, ``tests/test_cli_batches.py``, ``tests/test_sweep.py``.)
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_run import run_cli
from reference import sc_loss_loops

import solvers
import ufm
from ufm import Problem, batching, interaction, theory

EPOCHS = 30


def loss64(Z, labels, tau, batches):
    """``ufm.sc_loss`` in float64, on the given batches (independent of the code under test's bookkeeping)."""
    with jax.enable_x64(True):
        return float(ufm.sc_loss(jnp.asarray(np.asarray(Z), jnp.float64), jnp.asarray(labels), tau, batches))


# -- certify of an epoch-scheme solution -----------------------------------------------------------------------
@pytest.fixture(scope="module", params=["shuffled:4", "binding:4"])
def epoch_run(request):
    p = Problem(counts=(6, 5, 3), tau=0.5, dim=4, nonneg=True, batching=request.param, batch_seed=1)
    sol = solvers.solve(p, epochs=EPOCHS, tol=0, seed=0, dtype="float64")
    assert sol.epochs == EPOCHS  # tol=0: every epoch runs
    return p, sol


@pytest.mark.slow
def test_epoch_certificate_is_about_the_union_of_the_runs_batches(epoch_run):
    p, sol = epoch_run
    union = batching.union_batches(p, sol.epochs)
    first = batching.epoch_batch_list(p, 0)
    assert len(union) == EPOCHS * len(first)
    want = loss64(sol.Z, p.label_array, p.tau, union)
    assert want == pytest.approx(sc_loss_loops(sol.Z, p.label_array, p.tau, union), rel=1e-12)
    of_union = theory.sc_of_loss(p.counts, p.tau, batches=union, labels=p.label_array)
    of_first = theory.sc_of_loss(p.counts, p.tau, batches=first, labels=p.label_array)
    assert abs(of_union - of_first) > 1e-3  # the first epoch's objective is another one
    assert abs(loss64(sol.Z, p.label_array, p.tau, first) - want) > 1e-3
    cert = solvers.certify(p, sol)
    assert cert.method == "first-order"
    assert cert.loss == pytest.approx(want, abs=1e-12)
    assert cert.lower_bound <= of_union + 1e-13  # UFM+: the OF minimum of these batches is the true minimum
    assert cert.certified is True and cert.gap == pytest.approx(cert.loss - cert.lower_bound, abs=1e-15)
    assert of_union - 1e-6 <= cert.lower_bound  # so the bound is about these batches, not the first epoch's


@pytest.mark.slow
def test_epoch_certificate_full_program_agrees(epoch_run):
    """The full Gram program on the same union of batches: a bound below the OF minimum and close to it."""
    p, sol = epoch_run
    union = batching.union_batches(p, sol.epochs)
    of_union = theory.sc_of_loss(p.counts, p.tau, batches=union, labels=p.label_array)
    cert = solvers.certify(p, sol, method="full")
    assert cert.method == "full"
    assert cert.loss == pytest.approx(loss64(sol.Z, p.label_array, p.tau, union), abs=1e-12)
    assert of_union - 1e-6 <= cert.lower_bound <= of_union + 1e-13


@pytest.mark.slow
def test_cli_certify_of_an_epoch_run(capsys):
    code, out, err = run_cli(capsys, "certify", "--counts", "6,5,3", "--tau", "0.5", "--dim", "4", "--nonneg",
                             "--batching", "shuffled:4", "--seed", "1", "--epochs", "20", "--solve-tol", "0",
                             "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["dtype"] == "float64" and rep["batching"]["epochs"] == 20
    p = Problem(counts=(6, 5, 3), tau=0.5, dim=4, nonneg=True, batching="shuffled:4", batch_seed=1)
    union = batching.union_batches(p, 20)
    of_union = theory.sc_of_loss(p.counts, p.tau, batches=union, labels=p.label_array)
    assert rep["batching"]["of_loss"] == pytest.approx(of_union, rel=1e-12)
    assert rep["lower_bound"] <= of_union + 1e-13
    assert rep["certificate_loss"] >= of_union - 1e-12
    assert rep["certificate_loss"] == pytest.approx(rep["loss"], abs=1e-12)
    first = batching.epoch_batch_list(p, 0)
    assert abs(theory.sc_of_loss(p.counts, p.tau, batches=first, labels=p.label_array) - of_union) > 1e-3


# -- interaction: the witness check -----------------------------------------------------------------------------
def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


NOT_UNIQUE = [  # (counts, batches, dim): batchings whose OF is not unique (tests/test_interaction.py)
    ([3, 3], "0,1,3;2,4,5", 2),
    ([3, 3], "0,1,3;2,4,5", 3),
    ([2, 2, 1], "0,1,4;0,1,2,3", 3),
    ([2, 2, 2], "0,1,2,3;2,3,4,5", 3),
    ([4, 2], "0,1,2;1,2,3;0,4,5;3,4,5", 5),
]


def wrong_colourings(g):
    """Colourings that are *not* minimisers: every node on one direction; a node of class 0 on class 1's direction
    (forced orthogonal somewhere, so the loss rises); and the OF itself (same loss, same Gram: no witness)."""
    of = g.node_class.copy()
    yield "all_one_direction", np.zeros_like(of)
    col = of.copy()
    col[g.class_nodes(0)] = 1
    yield "class_0_on_class_1", col
    yield "the_of", of


@pytest.mark.parametrize("counts,text,dim", NOT_UNIQUE)
@pytest.mark.slow
def test_a_wrong_witness_is_rejected(monkeypatch, counts, text, dim):
    batches = [list(b) for b in batching.parse_batches(text)]
    y = labels_of(counts)
    assert interaction.check(batches, y, dim, tau=0.3).unique_of is False  # a true witness exists
    g = interaction.interaction_graph(batches, y, len(counts), dim)
    for name, col in wrong_colourings(g):
        Zw = np.eye(dim)[col[g.node]]
        best = theory.sc_of_loss(counts, 0.3, batches=batches, labels=y)
        if name != "the_of":
            assert loss64(Zw, y, 0.3, batches) - best > 1e-6, name  # really not a minimiser
        monkeypatch.setattr(interaction, "_constructions",
                            lambda g, dim, unmet, col=col: iter([("bogus", col, [0], "bogus")]))
        monkeypatch.setattr(interaction, "_search", lambda g, dim: (None, False))
        v = interaction.check(batches, y, dim, tau=0.3)
        assert v.unique_of is None and v.witness is None and v.witness_Z is None, name
        monkeypatch.setattr(interaction, "_constructions", lambda g, dim, unmet: iter(()))
        monkeypatch.setattr(interaction, "_search", lambda g, dim, col=col: (col, True))
        v = interaction.check(batches, y, dim, tau=0.3)
        assert v.unique_of is not False and v.witness is None, name
        w, _ = interaction._witness(g, batches, "bogus", col, [0], "bogus", dim, 0.3, 1.0, True)
        assert w["verified"] is False, name
        monkeypatch.undo()


@pytest.mark.parametrize("counts,text,dim", NOT_UNIQUE)
@pytest.mark.parametrize("tau,rho", [(0.3, 1.0), (0.1, 1.0), (0.5, 2.0)])
@pytest.mark.slow
def test_a_verified_witness_has_the_closed_form_loss(counts, text, dim, tau, rho):
    batches = [list(b) for b in batching.parse_batches(text)]
    y = labels_of(counts)
    v = interaction.check(batches, y, dim, tau=tau, radius=rho)
    w = v.witness
    assert v.unique_of is False and w["verified"] is True
    best = theory.sc_of_loss(counts, tau, rho, batches=batches, labels=y)
    assert w["of_loss"] == best
    got = loss64(v.witness_Z, y, tau, batches)
    assert abs(got - best) <= 1e-9 and abs(w["loss"] - got) <= 1e-12
    Zof = rho * np.eye(dim)[y]
    assert np.abs(v.witness_Z @ v.witness_Z.T - Zof @ Zof.T).max() == pytest.approx(w["gram_change"])
    assert w["gram_change"] >= 0.5 * rho**2
