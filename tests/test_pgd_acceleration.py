"""``solvers.pgd`` with ``acceleration=True`` (FISTA with adaptive restart on the engine's Armijo trial): the same
certified minima as the plain loop, fewer steps where the plain loop is slow, and nothing changed without it."""
import numpy as np
import pytest

from solvers import certify, pgd
from ufm import Problem, theory

SC_SPHERE = Problem(counts=(6,) * 4, tau=0.5, dim=4)
CE_BALL = Problem(counts=(5, 5, 5), loss="ce", constraint="ball", weight_decay=5e-3)
UFM_PLUS = Problem(counts=(20, 20, 3, 3), tau=0.2, dim=6, nonneg=True)
SLOW_SC = Problem(counts=(6, 6, 6), tau=0.1, dim=3)  # small tau: the plain loop needs ~1500 steps


@pytest.mark.slow
@pytest.mark.parametrize("p", [SC_SPHERE, CE_BALL, UFM_PLUS], ids=["sc-sphere", "ce-ball", "ufm-plus"])
def test_accelerated_solve_reaches_the_certified_minimum(p):
    """The accelerated answer is certified (its gap to the proved lower bound within certify's tolerance), no
    lower than that bound, and within rounding of the plain loop's answer; the loss never rose."""
    acc = pgd.solve(p, seed=0, acceleration=True)
    plain = pgd.solve(p, seed=0)
    assert acc.converged and acc.acceleration and not plain.acceleration
    c = certify(p, acc)
    assert c.certified and c.lower_bound is not None
    assert acc.loss >= c.lower_bound - 1e-9 and acc.loss - c.lower_bound <= 1e-6 * max(1.0, abs(acc.loss))
    assert abs(acc.loss - plain.loss) <= 1e-9 * max(1.0, abs(plain.loss))
    assert np.all(np.diff(acc.history) <= 1e-12 * (1 + np.abs(acc.history[:-1])))  # monotone up to rounding
    assert acc.evaluations >= acc.steps + 1


@pytest.mark.slow
def test_acceleration_takes_fewer_steps_on_an_ill_conditioned_problem():
    """SC at tau = 0.1: the pull between classes is exp(-1/tau)-weak, the plain loop crawls; FISTA needs several
    times fewer steps and fewer evaluations (each momentum step costs two), and ends no higher."""
    best = theory.sc_etf_loss(6, 3, 0.1)
    plain = pgd.solve(SLOW_SC, seed=0)
    acc = pgd.solve(SLOW_SC, seed=0, acceleration=True)
    assert plain.converged and acc.converged
    assert acc.steps * 4 <= plain.steps and acc.evaluations * 2 <= plain.evaluations
    assert -1e-12 <= acc.loss - best <= 1e-8 and acc.loss <= plain.loss + 1e-12


@pytest.mark.slow
def test_first_accelerated_step_is_the_plain_step():
    """At a start the momentum counter is 1 and ``y = x``: the first step with acceleration is the plain step, bit
    for bit (the same loss after it); later steps differ."""
    plain, acc = [pgd.solve(CE_BALL, seed=1, steps=8, tol=0, acceleration=a) for a in (False, True)]
    assert plain.history[1] == acc.history[1] and plain.history[0] == acc.history[0]
    assert not np.array_equal(plain.history[2:], acc.history[2:]) and not np.array_equal(plain.Z, acc.Z)


@pytest.mark.slow
def test_solve_many_accelerated_matches_solve():
    problems = [SC_SPHERE, SC_SPHERE.replace(tau=0.3)]
    many = pgd.solve_many(problems, seed=0, acceleration=True)
    for p, m in zip(problems, many):
        one = pgd.solve(p, seed=0, acceleration=True)
        assert m.acceleration and m.steps == one.steps
        assert abs(m.loss - one.loss) <= 1e-12 * max(1.0, abs(one.loss))


def test_bad_acceleration_is_refused():
    with pytest.raises(ValueError, match="acceleration"):
        pgd.solve(SC_SPHERE, acceleration=True, optimizer="adam")
    with pytest.raises(ValueError, match="acceleration"):
        pgd.solve_many([SC_SPHERE], acceleration="yes")
