"""Proved lower bounds (solvers.dual through solvers.certify): never above a known minimum, and still tight.

Every setting here has a closed-form minimum (simplex ETF, orthogonal frame, mini-batch OF, CE with r_W), so a
bound above it is a false proof; badly scaled settings (radius 100, tau 0.01, losses ~1e-4) are included.
"""
import pytest
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ufm import Problem, theory
from ufm.batching import batch_list
from solvers import certify, solve

pytestmark = pytest.mark.slow  # every test here takes seconds: the full suite only

warnings.filterwarnings("ignore", category=UserWarning)


def closed_form(p):
    pred = theory.predict(p)
    assert pred.loss is not None, p
    return pred.loss


def check(p, method="auto", tight=1e-6):
    """The bound alone and the certificate of a converged float64 solve: both at or below the closed-form
    minimum; the solve's certificate within ``tight`` of it (a bound alone is built from the convex solver's point
    only, which for CE can be ~1e-5 loose: valid, and reported as such)."""
    ref = closed_form(p)
    c = certify(p, None, method=method)
    assert c.lower_bound is not None, c.details
    assert c.lower_bound <= ref, (p, c.lower_bound - ref)  # a bound above the minimum proves nothing
    assert c.bound_margin >= 0
    sol = solve(p, dtype="float64", steps=20000)
    s = certify(p, sol, method=method)
    assert s.lower_bound <= ref, (p, s.lower_bound - ref)
    assert ref - s.lower_bound <= tight * max(1.0, abs(ref)), (p, ref - s.lower_bound)
    assert s.certified, (p, s.gap)
    return c


def test_cases_where_the_solver_value_was_above_the_minimum():
    ce = Problem(counts=(5, 5, 5), loss="ce", constraint="ball", radius=100.0)
    c = check(ce)
    assert c.solver_bound is not None  # the solver's number is kept beside the proof
    check(Problem(counts=(40, 4, 4, 4, 4), tau=0.15, dim=5, nonneg=True))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(K=st.integers(2, 6), n=st.integers(2, 30), tau=st.sampled_from([0.01, 0.05, 0.2, 1.0, 3.0]),
       radius=st.sampled_from([0.1, 1.0, 10.0]))
def test_etf_bound_never_above_the_minimum(K, n, tau, radius):
    if radius ** 2 / tau > 2000:  # exp(-K rho^2/((K-1) tau)) underflows: the loss is exactly log(n - 1)
        tau = radius ** 2 / 2000
    check(Problem(counts=(n,) * K, tau=tau, dim=max(K - 1, 2), radius=radius))  # d = 1: a disconnected circle


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(counts=st.lists(st.integers(1, 40), min_size=2, max_size=6), tau=st.sampled_from([0.05, 0.15, 0.5, 2.0]),
       radius=st.sampled_from([1.0, 10.0]))
def test_of_bound_never_above_the_minimum(counts, tau, radius):
    if sum(c >= 2 for c in counts) == 0:
        counts = [2] + counts[1:]
    check(Problem(counts=tuple(counts), tau=tau, nonneg=True, radius=radius, dim=len(counts)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(counts=st.lists(st.integers(1, 8), min_size=2, max_size=4), b=st.integers(2, 6),
       tau=st.sampled_from([0.1, 0.5, 1.0]), seed=st.integers(0, 5))
def test_minibatch_of_bound_never_above_the_minimum(counts, b, tau, seed):
    p = Problem(counts=tuple(counts), tau=tau, nonneg=True, batching=f"fixed:{min(b, sum(counts))}",
                batch_seed=seed)
    ref = theory.sc_of_loss(p.counts, tau, batches=batch_list(p), labels=p.label_array)
    Z = np.eye(p.dim)[p.label_array]  # the OF itself: its first-order bound proves it optimal
    c = certify(p, type("S", (), {"Z": Z})(), method="first-order")
    assert c.lower_bound <= ref and ref - c.lower_bound <= 1e-9 and c.certified


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(K=st.integers(2, 5), n=st.integers(1, 6), wd=st.sampled_from([1e-3, 5e-3, 5e-2]),
       radius=st.sampled_from([1.0, 3.0, 100.0]))
def test_ce_bound_never_above_the_minimum(K, n, wd, radius):
    check(Problem(counts=(n,) * K, loss="ce", constraint="ball", radius=radius, weight_decay=wd, dim=K))


def test_a_perturbed_dual_point_still_gives_a_valid_bound():
    from solvers import dual

    p = Problem(counts=(6, 4, 2), tau=0.3, nonneg=True)
    Z = np.eye(3)[p.label_array]
    rng = np.random.default_rng(0)
    for _ in range(5):
        Zn = np.abs(Z + 0.3 * rng.standard_normal(Z.shape))
        Zn /= np.linalg.norm(Zn, axis=1, keepdims=True)
        b = dual.sc_bound(p, Zn @ Zn.T)
        assert b.lower_bound <= closed_form(p)
