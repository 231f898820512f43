import numpy as np
import optax
import pytest

from solvers import pgd, solve
from ufm import Problem, geometry, predict, theory


def gram_error(sol, target_K):
    """Max entry-wise error of the normalised Gram against the collapsed target ``target_K[y_i, y_j]``."""
    y = sol.problem.label_array
    Zn = geometry.normalize_rows(sol.Z)
    return np.abs(Zn @ Zn.T - target_K[np.ix_(y, y)]).max()


@pytest.mark.parametrize("tau", [0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ufm_plus_imbalanced_reaches_orthogonal_frame(tau, seed):
    p = Problem(counts=(20, 20, 3, 3), tau=tau, dim=6, nonneg=True)
    sol = solve(p, dtype="float64", seed=seed)
    assert sol.converged and sol.dtype == "float64" and sol.Z.dtype == np.float64
    assert abs(sol.loss - theory.sc_of_loss(p.counts, tau)) <= 1e-6
    assert sol.loss >= theory.sc_of_loss(p.counts, tau) - 1e-12  # the closed form is a lower bound
    assert gram_error(sol, np.eye(4)) <= 1e-6
    assert np.all(sol.Z >= 0) and np.allclose(np.linalg.norm(sol.Z, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_sc_reaches_simplex_etf(seed):
    p = Problem(counts=(6,) * 4, tau=0.5, dim=4)
    sol = solve(p, dtype="float64", seed=seed)
    assert abs(sol.loss - theory.sc_etf_loss(6, 4, 0.5)) <= 1e-6
    assert gram_error(sol, theory.etf_gram(4)) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_l2_regularised_ce_on_ball_reaches_r_w(seed):
    p = Problem(counts=(6,) * 4, loss="ce", constraint="ball", weight_decay=5e-3)
    loss, r_w, _ = theory.ce_etf_loss(4, 5e-3, 1.0)
    sol = solve(p, dtype="float64", seed=seed, tol=1e-14)
    assert abs(sol.loss - loss) <= 1e-6
    assert np.abs(geometry.classifier_norms(sol.W) - r_w).max() <= 1e-6
    assert np.allclose(np.linalg.norm(sol.Z, axis=1), 1.0, atol=1e-6)  # ball solutions lie on the sphere
    assert gram_error(sol, theory.etf_gram(4)) <= 1e-6
    # classifier rows aligned with the class means
    mu = geometry.normalize_rows(geometry.class_means(sol.Z, p.label_array))
    assert np.allclose(geometry.normalize_rows(sol.W), mu, atol=1e-6)


@pytest.mark.slow
def test_ce_with_feature_decay_reaches_zhu_minimum():
    p = Problem(counts=(6,) * 4, loss="ce", constraint="none", weight_decay=5e-3, feature_decay=1e-3)
    sol = solve(p, dtype="float64", tol=1e-14)
    assert abs(sol.loss - predict(p).loss) <= 1e-6


@pytest.mark.slow
def test_imbalanced_sc_is_not_an_etf_and_beats_it():
    """No closed form: the solver's value lies below the ETF embedding's loss (symmetry breaks)."""
    from ufm import sc_loss

    p = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6)
    sol = solve(p, dtype="float64")
    w, V = np.linalg.eigh(theory.etf_gram(4))
    M = (V * np.sqrt(np.maximum(w, 0)))[:, 1:]  # ETF means in R^3
    Z = np.pad(M[p.label_array], ((0, 0), (0, 3)))
    assert sol.loss < float(sc_loss(Z, p.label_array, 0.2)) - 1e-4


@pytest.mark.slow
def test_tol_zero_runs_exactly_steps_and_float32():
    p = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True)
    sol = solve(p, steps=37, tol=0, continuation=False, dtype="float32")
    assert sol.steps == 37 and len(sol.history) == 38 and not sol.converged and sol.continuation_steps == 0
    assert sol.dtype == "float32" and sol.Z.dtype == np.float32
    assert np.all(np.diff(sol.history) <= 1e-6)  # pgd never increases the loss (up to float32 rounding)
    again = solve(p, steps=37, tol=0, continuation=False, dtype="float32")
    assert np.array_equal(sol.Z, again.Z)  # same seed, same result
    other = solve(p, steps=37, tol=0, seed=1, continuation=False, dtype="float32")
    assert not np.array_equal(sol.Z, other.Z)


@pytest.mark.parametrize("optimizer", ["momentum", "adam", optax.sgd(0.05, momentum=0.9)])
@pytest.mark.slow
def test_optax_optimizers(optimizer):
    p = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True)
    sol = solve(p, dtype="float64", optimizer=optimizer, steps=3000, tol=1e-12)
    assert abs(sol.loss - theory.sc_of_loss(p.counts, 0.2)) <= 1e-4


@pytest.mark.slow
def test_non_finite_loss_raises():
    p = Problem(counts=(6,) * 4, loss="ce", constraint="none", weight_decay=5e-3, feature_decay=1e-3)
    with pytest.raises(pgd.NonFiniteLoss, match="non-finite"):
        solve(p, optimizer="sgd", lr=1e30, steps=50)


@pytest.mark.parametrize("kwargs,word", [(dict(steps=0), "steps"), (dict(lr=-1.0), "lr"),
                                         (dict(optimizer="lbfgs"), "optimizer"), (dict(tol=-1.0), "tol"),
                                         (dict(dtype="float16"), "dtype")])
def test_bad_solver_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        solve(Problem(counts=(2, 2)), **kwargs)


@pytest.mark.slow
def test_warm_start_from_a_solution_continues_at_the_minimum():
    p = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True)
    first = solve(p, dtype="float64")
    again = solve(p, dtype="float64", init=first, seed=7)
    assert again.steps < first.steps and abs(again.loss - first.loss) <= 1e-9
    assert np.abs(again.Z - first.Z).max() <= 1e-5
    with pytest.raises(ValueError, match="init"):
        solve(p, init=np.zeros((3, 6)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.slow
def test_continuation_reaches_the_orthogonal_frame_where_plain_descent_stalls(seed):
    """Five majorities of 20, five minorities of 2, d = K = 10, tau = 1: plain PGD stops above the OF minimum
    from most random starts (classes sharing an axis); the low-temperature stage avoids it."""
    p = Problem(counts=(20,) * 5 + (2,) * 5, tau=1.0, dim=10, nonneg=True)
    sol = solve(p, dtype="float64", seed=seed, starts=1, continuation=True)
    assert sol.continuation_steps > 0 and len(sol.start_losses) == 1
    assert abs(sol.loss - theory.sc_of_loss(p.counts, 1.0)) <= 1e-6
    assert gram_error(sol, np.eye(10)) <= 1e-6
    assert np.all(np.isfinite(sol.history)) and len(sol.history) == sol.steps + 1


def test_default_starts_reach_the_orthogonal_frame_where_continuation_stalls():
    """Five majorities of 36, five minorities of 3, d = K = 10, tau = 0.1 (the digits STEP-10 comparison of
    ``ufm train``): here continuation stops above the OF minimum from most starts and plain descent from a few;
    the default four starts (two of each) keep the best."""
    p = Problem(counts=(36,) * 5 + (3,) * 5, tau=0.1, dim=10, nonneg=True)
    best = theory.sc_of_loss(p.counts, 0.1)
    sol = solve(p, dtype="float64", steps=300, tol=1e-10, seed=5)
    assert pgd.n_starts(p) == pgd.AUTO_STARTS == len(sol.start_losses)
    assert sol.start_losses[0] - best > 1e-4  # this seed's first (plain) start stalls: the others are needed
    assert sol.loss <= min(sol.start_losses) + 1e-12 and abs(sol.loss - best) <= 1e-6
    assert gram_error(sol, np.eye(10)) <= 1e-5


def test_starts_contract():
    p = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True)
    assert pgd.n_starts(p) == pgd.AUTO_STARTS and pgd.n_starts(p, init=np.zeros((46, 6))) == 1
    assert pgd.n_starts(Problem(counts=(5, 5), tau=0.2, dim=2, nonneg=True)) == 1  # balanced: one start
    assert pgd.n_starts(Problem(counts=(5, 2), tau=0.2, dim=2)) == 1  # no ReLU: the landscape is benign
    one = solve(p, dtype="float64", seed=3, starts=1)
    three = solve(p, dtype="float64", seed=3, starts=3)
    assert len(three.start_losses) == 3 and three.start_losses[0] == one.loss  # start 0 is the plain solve
    assert three.loss <= min(three.start_losses) + 1e-12 and one.continuation_steps == 0
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="starts"):
            solve(p, starts=bad)


@pytest.mark.slow
def test_ce_with_relu_default_starts_reach_the_relaxation_bound():
    """CE with ReLU features on the ball, STEP R = 10: from a single start PGD can leave a minority class at 0
    (a dead class); the default starts reach the reduced relaxation's bound (no closed form is known)."""
    from solvers import certify

    p = Problem(counts=(30, 30, 3, 3), loss="ce", dim=6, nonneg=True, constraint="ball", weight_decay=5e-3)
    sol = solve(p, dtype="float64", seed=2)
    assert len(sol.start_losses) == pgd.AUTO_STARTS
    assert sol.start_losses[0] - min(sol.start_losses) > 1e-3  # this seed's first start leaves a class dead
    c = certify(p, sol)
    assert c.certified and abs(c.gap) <= 1e-6
    assert np.all(sol.Z >= 0) and np.all(np.linalg.norm(sol.Z, axis=1) <= 1 + 1e-9)


@pytest.mark.slow
def test_progress_bar_cuts_the_run_into_segments_without_changing_it(monkeypatch):
    """A solve with a progress bar runs the same iterations in segments: same steps, loss and Z, bit for bit, for
    the Armijo rule (with continuation) and an optax optimizer; the bar goes to stderr (a terminal here: the bar
    draws only on one)."""
    import io
    import sys

    from ufm import Problem

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)

    for p, kw in [(Problem(counts=(10, 5, 2), tau=0.3, nonneg=True), {}),
                  (Problem(counts=(6, 6, 6), tau=0.5), {"optimizer": "adam", "steps": 300})]:
        a = solve(p, dtype="float64", progress=False, **kw)
        b = solve(p, dtype="float64", progress=True, **kw)
        assert (a.steps, a.loss, a.reason) == (b.steps, b.loss, b.reason) and np.array_equal(a.Z, b.Z)
    assert "solve N=" in err.getvalue()
