"""Every registered loss (``ufm.objectives.NAMES``) through every entry point: solve, certify, verify, sweep,
phase, solve_many, the ``ufm solve`` summary and the deep-net path, each driven by what the objective declares
(``relaxation``, ``dual_bound``, ``class_level``, ``summary_fields``, ``deepnet``), never by its name. A loss
registered here without a certificate (label-smoothed cross-entropy, a classifier loss that is not CE) is refused
cleanly by ``certify`` and runs in ``solve``: it must never be proved with CE's bound."""
import json
import sys
import types
import warnings

import numpy as np
import pytest
from cli_run import run_cli

from ufm import Problem, objectives
from ufm.objectives.base import Objective, Prediction

warnings.filterwarnings("ignore", category=UserWarning)

LOSSES = objectives.NAMES
TOL = 1e-6


def tiny(loss: str, **kw) -> Problem:
    """Three classes of two samples in dimension 3 (tau = 1: losses of order 1, the certificate's relative
    tolerance meaningful); every loss's defaults otherwise."""
    return Problem(**{"counts": (2, 2, 2), "loss": loss, "dim": 3, "tau": 1.0, **kw})


# -- a loss with no certificate: label-smoothed CE, registered for one test ------------------------------------
EPS = 0.1


def _smoothed_value(x, h):
    import jax
    import jax.numpy as jnp

    logits = x["Z"] @ x["W"].T + (0.0 if x.get("b") is None else x["b"])
    logp = jax.nn.log_softmax(logits, axis=1)
    K = logits.shape[1]
    target = (1 - EPS) * jax.nn.one_hot(h.labels, K) + EPS / K
    out = -jnp.mean(jnp.sum(target * logp, axis=1))
    return out + h.weight_decay * jnp.sum(x["W"] ** 2) + h.feature_decay * jnp.sum(x["Z"] ** 2) / h.n


def _smoothed_loss_loops(Z, W, labels, wd):
    """The plain-loop reference of the toy loss (no bias, no feature decay)."""
    K, total = W.shape[0], 0.0
    for i, y in enumerate(labels):
        s = [float(Z[i] @ W[c]) for c in range(K)]
        m = max(s)
        lse = m + np.log(sum(np.exp(v - m) for v in s))
        total += sum(((1 - EPS) * (c == y) + EPS / K) * (lse - s[c]) for c in range(K))
    return total / len(labels) + wd * float(np.sum(W * W))


def _toy():
    from ufm.objectives import ce

    return Objective(name="ce-smooth", title="label-smoothed cross-entropy (a test loss, no certificate)",
                     kind="classifier", validate=ce.validate, value=_smoothed_value,
                     predict=lambda p: Prediction("unknown", None, "no theorem for label smoothing"),
                     normalize_rows=False, unit_radius=ce.unit_radius, summary_fields=("weight_decay",))


@pytest.fixture
def toy(monkeypatch):
    """Register the toy loss for one test: its name in ``NAMES``, its module importable."""
    module = types.ModuleType("ufm.objectives.ce_smooth")
    module.OBJECTIVE = _toy()
    monkeypatch.setitem(sys.modules, "ufm.objectives.ce_smooth", module)
    monkeypatch.setattr(objectives, "NAMES", objectives.NAMES + ("ce-smooth",))
    return module.OBJECTIVE


# -- the declarations ------------------------------------------------------------------------------------------
def test_the_registry_holds_the_four_losses():
    assert {"sc", "bcl", "bcl-avg", "ce"} <= set(LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_declares_what_it_supports(loss):
    obj = objectives.get(loss)
    assert obj.name == loss
    assert obj.relaxation in (None, "contrastive", "ce") and obj.dual_bound in (None, "contrastive", "ce")
    assert obj.class_level in (None, "contrastive", "prototypes", "ce") and obj.deepnet in (None, "sc", "ce")
    assert obj.certifiable == (obj.relaxation is not None and obj.dual_bound is not None)
    p = tiny(loss).to_dict()
    assert obj.summary_fields and all(f in p for f in obj.summary_fields)
    # a contrastive program reads log-weights, a class-level contrastive value class log-weights
    assert obj.relaxation != "contrastive" or obj.log_weights is not None
    assert obj.class_level != "contrastive" or obj.class_log_weights is not None
    # the class-level value with prototypes is BCL's own (the prototypes as K more rows), and only for them
    assert (obj.class_level == "prototypes") == (obj.class_level is not None and obj.prototypes)
    assert obj.relaxation != "ce" or obj.variables == ("Z", "W", "b")


# -- solve and certify -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_solve_and_certify(loss):
    from solvers import certify, first_order, solve

    p = tiny(loss)
    sol = solve(p, steps=3000)
    assert sol.converged and np.isfinite(sol.loss)
    again = first_order.solution_loss(p, sol.Z, getattr(sol, "W", None), getattr(sol, "b", None),
                                      C=getattr(sol, "C", None))
    assert abs(again - sol.loss) <= 1e-8 * max(1.0, abs(sol.loss))
    cert = certify(p, sol)
    if not objectives.get(loss).certifiable:
        assert cert.status == "not certifiable" and cert.lower_bound is None and cert.certified is False
        return
    assert cert.certified, cert.details
    assert cert.lower_bound <= sol.loss + 1e-12
    pred = cert.prediction
    if pred["loss"] is not None:  # the proved bound never above the theorem's minimum
        assert cert.lower_bound <= pred["loss"] + 1e-12
        assert abs(sol.loss - pred["loss"]) <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_solve_many_gives_what_solve_gives(loss):
    from solvers import solve, solve_many

    problems = [tiny(loss), tiny(loss, counts=(3, 2, 2))]
    many = solve_many(problems, steps=2000)
    for p, s in zip(problems, many):
        one = solve(p, steps=2000)
        assert abs(s.loss - one.loss) <= 1e-6 * max(1.0, abs(one.loss))


# -- verify: the rows about this loss --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_verify_rows_of_each_loss(loss):
    """The verify rows that state a theorem about this loss hold on a small balanced setting; a loss no row
    states a theorem about has none to run."""
    from solvers.workflows import verify

    title = {"sc": "sc-etf", "ce": "ce-etf", "bcl": "bcl-etf"}.get(loss)
    keys = [t.key for t in verify.THEOREMS]
    if title is None:
        assert not any(k.startswith(loss + "-") for k in keys)
        return
    assert title in keys
    rows = verify.verify((3, 3, 3), tau=1.0, dim=4, weight_decay=1e-2, steps=2000, starts=2)
    row = next(r for r in rows if r.key == title)
    assert row.verdict == "holds", (row.verdict, row.reason)


# -- a sweep of one point --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_sweep_one_point(loss, tmp_path):
    from solvers.workflows import sweep

    points = sweep.sweep_points(losses=(loss,), classes=2, n_min=2, ratios=(1,), taus=(1.0,), dim=2,
                                weight_decay=1e-2, steps=2000, dtype="float64")
    assert len(points) == 1 and points[0]["loss_type"] == loss
    [rec] = sweep.run_sweep(points, str(tmp_path), show_progress=False)
    assert not sweep.failed(rec), rec
    assert np.isfinite(rec["loss"])
    assert rec["certified"] is objectives.get(loss).certifiable


# -- phase: the class-level value, or a clean refusal ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_class_level_or_a_clean_refusal(loss, capsys, tmp_path):
    from ufm.classlevel import ClassProblem

    obj = objectives.get(loss)
    axis = ["--taus", "1"] if "tau" in obj.summary_fields else ["--weight-decays", "0.01"]
    if obj.class_level is None:
        with pytest.raises(ValueError, match="loss"):
            ClassProblem(counts=(2, 2, 2), loss=loss, dim=3, tau=1.0)
        code, _, err = run_cli(capsys, "phase", "--loss", loss, "--ratios", "1", *axis, "--classes", "2",
                                 "--out", str(tmp_path / "phase"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and loss in err and "Traceback" not in err
        return
    from solvers import classlevel, solve

    extra = {} if "tau" in obj.summary_fields else {"constraint": "ball", "weight_decay": 1e-2}
    cp = ClassProblem(counts=(2, 2, 2), loss=loss, dim=3, tau=1.0, **extra)
    [cs] = classlevel.solve_classes([cp], steps=3000)
    [cc] = classlevel.certify_classes([cp], [cs])
    assert cc.certified, cc
    # the class-level minimum is the sample problem's (integer counts, the full batch)
    full = solve(tiny(loss, **extra), steps=3000)
    assert abs(cs.loss - full.loss) <= 1e-5 * max(1.0, abs(full.loss))


# -- the command line --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_cli_summary_prints_the_declared_fields(loss, capsys):
    code, out, err = run_cli(capsys, "solve", "--counts", "2,2,2", "--loss", loss, "--dim", "3", "--tau", "1",
                             "--steps", "500")
    assert code == 0, err
    head = out.splitlines()[0]
    for name in objectives.get(loss).summary_fields:
        assert f"{name}=" in head, head
    assert ("tau=" in head) == ("tau" in objectives.get(loss).summary_fields)


def test_train_choices_come_from_the_registry(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    choices = out.split("--loss {", 1)[1].split("}", 1)[0].split(",")
    assert tuple(choices) == LOSSES


@pytest.mark.parametrize("loss", LOSSES)
def test_deepnet_head_or_a_clean_refusal(loss, capsys):
    from solvers.deepnet.train import TrainConfig

    head = objectives.get(loss).deepnet
    if head is None:
        with pytest.raises(ValueError, match="deep-net head"):
            TrainConfig(loss=loss)
        code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--loss", loss, "--epochs", "1")
        assert code == 2 and len(err.strip().splitlines()) == 1 and loss in err and "Traceback" not in err
        return
    assert TrainConfig(loss=loss).loss_head == head


# -- a loss without a certificate ------------------------------------------------------------------------------
def test_the_toy_loss_is_refused_by_every_proof(toy):
    from solvers import certify, dual, first_order, relaxation

    p = tiny("ce-smooth")
    assert objectives.of(p) is toy and not toy.certifiable
    cert = certify(p)
    assert cert.status == "not certifiable" and cert.lower_bound is None and cert.certified is None
    assert "not certifiable" in cert.details["why"]
    # the engines never route a classifier to cross-entropy's programs or bounds
    for build in (relaxation.full_program, relaxation.reduced_program):
        with pytest.raises(ValueError, match="not certifiable"):
            build(p)
    with pytest.raises(ValueError, match="dual bound"):
        dual.ce_bound(p, np.eye(6), np.zeros((6, 3)), 1.0)
    with pytest.raises(ValueError, match="not certifiable"):
        first_order.first_order_bound(p, np.eye(6, 3), np.eye(3))
    from ufm.classlevel import ClassProblem

    with pytest.raises(ValueError, match="class-level"):
        ClassProblem(counts=(2, 2, 2), loss="ce-smooth", dim=3)
    from ufm.reduced import GroupProblem

    with pytest.raises(ValueError, match="class-level"):
        GroupProblem(sizes=(2.0,), classes=(3,), loss="ce-smooth", dim=3)


@pytest.mark.slow
def test_the_toy_loss_solves_and_certify_says_not_certifiable(toy, capsys):
    from solvers import certify, first_order, solve

    p = tiny("ce-smooth", weight_decay=1e-2)
    sol = solve(p, steps=3000)
    assert sol.converged and np.isfinite(sol.loss)
    ref = _smoothed_loss_loops(first_order.feasible_rows(p, sol.Z), np.asarray(sol.W, np.float64), p.label_array,
                               1e-2)
    assert abs(first_order.solution_loss(p, sol.Z, sol.W) - ref) <= 1e-12
    assert abs(sol.loss - ref) <= 1e-8
    # label smoothing keeps the loss above plain CE's certified minimum at the same point
    ce = certify(p.replace(loss="ce"), sol)
    assert ce.lower_bound is not None and sol.loss > ce.lower_bound
    cert = certify(p, sol)
    assert cert.status == "not certifiable" and cert.certified is False and cert.lower_bound is None
    assert abs(cert.loss - ref) <= 1e-12
    code, out, err = run_cli(capsys, "certify", "--counts", "2,2,2", "--loss", "ce-smooth", "--dim", "3")
    assert code == 3 and len(err.strip().splitlines()) == 1 and "not certifiable" in err and not out
    code, out, err = run_cli(capsys, "solve", "--counts", "2,2,2", "--loss", "ce-smooth", "--dim", "3",
                             "--steps", "300", "--json")
    assert code == 0, err
    assert json.loads(out)["problem"]["loss"] == "ce-smooth"
