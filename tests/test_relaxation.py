"""Convex relaxations (solvers.relaxation): closed forms, reduced == full, batch cliques, solver failures."""
import cvxpy as cp
import numpy as np
import pytest

from ufm import Problem, theory
from ufm.batching import batch_list
from solvers import relaxation as R


def bound(problem, method, **kw):
    return R.solve_relaxation(problem, method, **kw)


def random_problem(seed):
    """A small random problem: SC or CE, UFM or UFM+, imbalanced counts (singletons too), ball or sphere."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 5))
    counts = tuple(int(c) for c in rng.integers(1, 6, size=K))
    loss = "sc" if seed % 2 == 0 else "ce"
    kw = dict(counts=counts, loss=loss, nonneg=bool(rng.integers(2)), constraint=str(rng.choice(["sphere", "ball"])),
              radius=float(rng.uniform(0.7, 1.5)))
    if loss == "sc":
        kw["tau"] = float(rng.uniform(0.2, 1.0))
    else:
        kw["weight_decay"] = float(rng.uniform(1e-3, 1e-2))
        kw["bias"] = bool(rng.integers(2))
        kw["feature_decay"] = float(rng.choice([0.0, 1e-3]))
    return Problem(**kw)


@pytest.mark.parametrize("seed", range(10))
def test_reduced_bound_equals_full_bound(seed):
    p = random_problem(seed)
    full, red = bound(p, "full"), bound(p, "reduced")
    assert full.status == red.status == "optimal" and full.solver == "CLARABEL"
    assert abs(full.value - red.value) <= 1e-6 * max(1, abs(full.value)), p
    assert full.rank == red.rank
    assert np.abs(full.mean_cosines - red.mean_cosines).max() <= 2e-3


@pytest.mark.parametrize("method", ["full", "reduced"])
def test_bounds_equal_closed_forms(method):
    etf = Problem(counts=(5, 5, 5), tau=0.5)
    of = Problem(counts=(6, 4, 2, 1), tau=0.3, nonneg=True, radius=1.3)
    ce = Problem(counts=(4, 4, 4), loss="ce", constraint="ball", weight_decay=5e-3)
    zhu = Problem(counts=(4, 4, 4), loss="ce", constraint="none", weight_decay=5e-3, feature_decay=1e-3)
    for p in (etf, of, ce, zhu):
        r = bound(p, method)
        assert abs(r.value - theory.predict(p).loss) <= 1e-6, p
    r = bound(etf, method)
    assert r.rank == 2 and np.abs(r.mean_cosines - theory.etf_gram(3)).max() <= 1e-4
    r = bound(of, method)
    assert r.rank == 4 and np.abs(r.mean_cosines - np.eye(4)).max() <= 1e-4


def test_reduced_program_is_size_free():
    """N = 10^8: the reduced program has O(K^2) unknowns and meets the ETF / OF closed forms."""
    n = 10 ** 7
    p = Problem(counts=(n,) * 10, tau=0.1)
    r = bound(p, "reduced")
    assert abs(r.value - theory.sc_etf_loss(n, 10, 0.1)) <= 1e-6 and r.rank == 9
    assert sum(v.size for v in R.reduced_program(p).problem.variables()) <= 2 * 10 * 10
    p = Problem(counts=(n, n, 3 * n, 2), tau=0.2, nonneg=True)
    assert abs(bound(p, "reduced").value - theory.sc_of_loss(p.counts, 0.2)) <= 1e-6


def test_mini_batch_cliques_match_dense_program_and_of_closed_form():
    p = Problem(counts=(4, 4, 4), tau=0.5, nonneg=True, batching="fixed:4")
    blocks, tree = R.cliques(p)
    assert len(blocks) == 3 and tree == []  # disjoint batches: three 4 x 4 blocks
    split, dense = R.full_program(p), R.full_program(p, decompose=False)
    for prog in (split, dense):
        prog.problem.solve(solver="CLARABEL")
    assert abs(split.problem.value - dense.problem.value) <= 1e-6
    of = theory.sc_of_loss(p.counts, 0.5, batches=batch_list(p), labels=p.label_array)
    assert abs(split.problem.value - of) <= 1e-6


def test_overlapping_batches_join_tree_and_cyclic_fallback():
    binding = ((1, 2, 5, 0, 4, 8), (3, 6, 7, 0, 4, 8), (9, 10, 11, 0, 4, 8))  # Kini's batch-binding
    p = Problem(counts=(4, 4, 4), tau=0.5, batches=binding)
    blocks, tree = R.cliques(p)
    assert len(blocks) == 3 and len(tree) == 2  # a join tree over the shared binding examples
    split, dense = R.full_program(p), R.full_program(p, decompose=False)
    for prog in (split, dense):
        prog.problem.solve(solver="CLARABEL")
    assert abs(split.problem.value - dense.problem.value) <= 1e-6
    for cycle in [((0, 1, 4), (4, 5, 8), (8, 9, 0)), ((0, 1, 4, 5, 8), (2, 3, 6, 7, 9), (0, 2, 10, 11), (1, 3))]:
        assert len(R.cliques(Problem(counts=(4, 4, 4), tau=0.5, batches=cycle))[0]) == 1  # one dense block


def test_class_orbits_detect_permutation_invariant_batchings():
    p = Problem(counts=(3, 2), tau=0.5)
    assert [(k.tolist(), m) for k, m in R.class_orbits(p)] == [([3, 2], 1)]
    whole = Problem(counts=(3, 2), tau=0.5, batches=((0, 1, 2, 3, 4), (3, 4)))  # unions of whole classes
    assert R.class_orbits(whole) is not None
    assert abs(bound(whole, "reduced").value - bound(whole, "full").value) <= 1e-6
    pairs = Problem(counts=(3, 2), tau=0.5, batches=((0, 1, 3), (0, 2, 3), (1, 2, 3), (0, 1, 4), (0, 2, 4),
                                                      (1, 2, 4)))  # every (2 of class 0, 1 of class 1) batch
    assert R.class_orbits(pairs) is not None
    assert abs(bound(pairs, "reduced").value - bound(pairs, "full").value) <= 1e-6
    assert R.class_orbits(Problem(counts=(3, 2), tau=0.5, batches=((0, 1, 3), (2, 4)))) is None
    with pytest.raises(ValueError, match="batching"):
        R.reduced_program(Problem(counts=(4, 4), tau=0.5, batching="fixed:3"))


def test_failed_or_inaccurate_solver_status_is_an_error(monkeypatch):
    p = Problem(counts=(3, 3), tau=0.5)

    def inaccurate(self, solver=None, **kw):
        self._status = "optimal_inaccurate"
        return 0.0

    monkeypatch.setattr(cp.Problem, "solve", inaccurate)
    with pytest.raises(R.SolverFailure, match="optimal_inaccurate") as err:
        bound(p, "reduced")
    assert "CLARABEL" in str(err.value) and "SCS" in str(err.value) and "try the 'reduced'" in str(err.value)
    assert err.value.status == "optimal_inaccurate"

    def broken(self, solver=None, **kw):
        raise cp.error.SolverError("numerical trouble")

    monkeypatch.setattr(cp.Problem, "solve", broken)
    with pytest.raises(R.SolverFailure, match="solver_error.*try solver CLARABEL"):
        bound(p, "full", solver="scs")


def test_scs_fallback_when_clarabel_fails(monkeypatch):
    p = Problem(counts=(3, 3, 2), tau=0.5)
    real = cp.Problem.solve

    def clarabel_fails(self, solver=None, **kw):
        if solver == "CLARABEL":
            raise cp.error.SolverError("numerical trouble")
        return real(self, solver=solver, **kw)

    monkeypatch.setattr(cp.Problem, "solve", clarabel_fails)
    r = bound(p, "reduced")
    monkeypatch.undo()
    assert r.solver == "SCS" and abs(r.value - bound(p, "reduced").value) <= 1e-6


def test_bad_solver_name():
    with pytest.raises(ValueError, match="solver"):
        bound(Problem(counts=(2, 2)), "reduced", solver="mosek")


def test_solver_order_puts_scs_first_for_large_dense_blocks():
    """Clarabel's dense scaling makes a full-batch block of N > 64 slow: SCS goes first there (no solve here)."""
    from solvers import relaxation

    small = relaxation.full_program(Problem(counts=(5, 5), tau=0.5, dim=2)).problem
    large = relaxation.full_program(Problem(counts=(35, 35), tau=0.5, dim=2)).problem
    binding = relaxation.full_program(Problem(counts=(35, 35), tau=0.5, dim=2, batching="fixed:10")).problem
    assert relaxation.largest_psd_block(small) == 10 and relaxation.solver_order(small)[0] == "CLARABEL"
    assert relaxation.largest_psd_block(large) == 70 and relaxation.solver_order(large)[0] == "SCS"
    assert relaxation.largest_psd_block(binding) <= 10 and relaxation.solver_order(binding)[0] == "CLARABEL"
