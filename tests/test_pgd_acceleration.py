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
    if p is UFM_PLUS:  # every start reaches the minimum, the odd ones (continuation) restarting at tau included
        assert len(acc.start_losses) == 4 and max(acc.start_losses) - acc.loss <= 1e-9


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
    """One padded group (the SC problems of different N), the UFM+ problem's four starts (two with the
    low-temperature stage) rows of it: each answer is ``solve``'s, to rounding."""
    problems = [SC_SPHERE, SC_SPHERE.replace(tau=0.3), UFM_PLUS]
    many = pgd.solve_many(problems, seed=0, acceleration=True)
    for p, m in zip(problems, many):
        one = pgd.solve(p, seed=0, acceleration=True)
        assert m.acceleration and abs(m.steps - one.steps) <= 2
        assert np.allclose(m.start_losses, one.start_losses, rtol=1e-9, atol=0)


def test_bad_acceleration_is_refused():
    with pytest.raises(ValueError, match="acceleration"):
        pgd.solve(SC_SPHERE, acceleration=True, optimizer="adam")
    with pytest.raises(ValueError, match="acceleration"):
        pgd.solve_many([SC_SPHERE], acceleration="yes")


def test_no_convergence_on_the_first_step_after_the_low_temperature_stage():
    """After the switch to ``tau`` the state's loss is ``inf`` (any first trial passes): that step's loss-change
    test has nothing to compare, so it never ends the run, whatever the step (here a zero gradient: no move but
    rounding)."""
    import jax
    import jax.numpy as jnp

    from solvers.pgd.loop import loop_parts
    from solvers.pgd.state import hyper_of, static_of

    p = UFM_PLUS
    with jax.enable_x64(True):
        static, h = static_of(p, 100, "pgd", "float64"), hyper_of(p, jnp.float64, continuation=True, start=1)
        lr, tol = jnp.asarray(0.0), jnp.asarray(1e-12)
        start, body, _ = loop_parts(static, h, lr, tol)
        s = start(jax.random.PRNGKey(0), None)
        s = s._replace(f=jnp.asarray(jnp.inf), stage0=jnp.asarray(False), tau=jnp.asarray(p.tau),
                       g=jax.tree_util.tree_map(jnp.zeros_like, s.g))
        s1 = body(s)
    assert int(s1.t) == 1 and float(s1.gm) <= 1e-12 and not bool(s1.done)  # a small step, yet not done


@pytest.mark.slow
def test_lockstep_vmap_of_the_accelerated_loop_is_the_loop():
    """The GPU path of ``solve_many`` (one ``vmap`` of all rows, ``run_many``; its ``lax.cond`` becomes a select):
    each row ends where its own loop does."""
    import jax
    import jax.numpy as jnp

    from solvers.pgd.loop import run_jit
    from solvers.pgd.many import run_many_jit, stack
    from solvers.pgd.one import start_keys
    from solvers.pgd.state import hyper_of, static_of

    problems = [SC_SPHERE, SC_SPHERE.replace(tau=0.3), SC_SPHERE.replace(tau=0.15)]
    with jax.enable_x64(True):
        static = static_of(SC_SPHERE, 500, "pgd", "float64", acceleration=True)
        hs = [hyper_of(p, jnp.float64) for p in problems]
        keys = start_keys([0, 1, 2], [0, 0, 0])
        lr, tol = jnp.asarray(0.0), jnp.asarray(1e-12)
        many = jax.device_get(run_many_jit(static, stack(hs), keys, lr, tol))
        for k, h in enumerate(hs):
            one = jax.device_get(run_jit(static, h, keys[k], lr, tol))
            assert bool(one.done) and int(many.t[k]) == int(one.t) and int(many.evals[k]) == int(one.evals)
            assert abs(float(many.f[k]) - float(one.f)) <= 1e-12 * abs(float(one.f))


def test_ufm_solve_takes_acceleration_and_refuses_it_where_it_has_none(capsys):
    import json

    from cli_run import run_cli

    code, out, _ = run_cli(capsys, "solve", "--counts", "6,6,6", "--tau", "0.1", "--dim", "3", "--acceleration",
                           "--json")
    rep = json.loads(out)
    assert code == 0 and rep["converged"]
    assert rep["loss"] == pytest.approx(theory.sc_etf_loss(6, 3, 0.1, 1.0), abs=1e-9)
    for extra in (["--optimizer", "adam"], ["--epochs", "3"]):
        code, _, err = run_cli(capsys, "solve", "--counts", "6,6,6", "--dim", "3", "--acceleration", *extra)
        assert code == 2 and "acceleration" in err and "Traceback" not in err
