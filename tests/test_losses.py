import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ce_loss_loops, sc_loss_loops

from ufm import ce_loss, sc_loss
from ufm.losses import batch_index

RNG = np.random.default_rng(0)
LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # class 2 is a singleton


def unit_rows(n, d, rng=RNG):
    Z = rng.normal(size=(n, d))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


@pytest.mark.parametrize("tau", [0.07, 0.5, 3.0])
def test_sc_full_batch_matches_loops(tau):
    Z = unit_rows(10, 5)
    assert float(sc_loss(jnp.asarray(Z), LABELS, tau)) == pytest.approx(sc_loss_loops(Z, LABELS, tau), rel=1e-12)


def test_sc_unnormalised_rows_match_loops():
    Z = RNG.normal(size=(10, 4)) * 0.7
    assert float(sc_loss(jnp.asarray(Z), LABELS, 0.3)) == pytest.approx(sc_loss_loops(Z, LABELS, 0.3), rel=1e-12)


@pytest.mark.slow
def test_sc_batches_sharing_samples_match_loops():
    Z = unit_rows(10, 5)
    batches = [[0, 1, 3, 5], [2, 3, 4, 6, 7, 8], [9, 0], [5]]  # sample 0, 3, 5 in two batches; lone sample
    got = float(sc_loss(jnp.asarray(Z), LABELS, 0.2, batches))
    assert got == pytest.approx(sc_loss_loops(Z, LABELS, 0.2, batches), rel=1e-12)
    padded = batch_index(batches, 10)
    assert padded.shape == (4, 6) and int(padded[3, 1]) == -1
    assert float(sc_loss(jnp.asarray(Z), LABELS, 0.2, padded)) == pytest.approx(got, rel=1e-14)


def test_sc_batches_without_positives_give_zero():
    Z = unit_rows(10, 5)
    assert float(sc_loss(jnp.asarray(Z), LABELS, 0.2, [[0, 3, 5, 6], [1, 4]])) == 0.0


def test_sc_one_batch_of_everything_is_the_full_batch():
    Z = jnp.asarray(unit_rows(10, 5))
    assert float(sc_loss(Z, LABELS, 0.4, [list(range(10))])) == pytest.approx(float(sc_loss(Z, LABELS, 0.4)),
                                                                             rel=1e-14)


@pytest.mark.slow
def test_sc_float32_small_tau_is_finite_and_matches_float64():
    # near-orthogonal rows, tau = 1e-3: logits up to 1e3; the self-similarity would overflow the max trick
    rng = np.random.default_rng(1)
    Z = np.eye(12)[:10] + 1e-3 * rng.normal(size=(10, 12))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    ref = float(sc_loss(jnp.asarray(Z), LABELS, 1e-3))
    assert ref == pytest.approx(sc_loss_loops(Z, LABELS, 1e-3), rel=1e-10)
    got = sc_loss(jnp.asarray(Z, jnp.float32), jnp.asarray(LABELS), jnp.float32(1e-3))
    assert got.dtype == jnp.float32 and np.isfinite(float(got))
    assert float(got) == pytest.approx(ref, rel=1e-4)
    g = jax.grad(sc_loss)(jnp.asarray(Z, jnp.float32), jnp.asarray(LABELS), jnp.float32(1e-3))
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("bias", [False, True])
def test_ce_matches_loops(bias):
    Z, W = RNG.normal(size=(10, 4)), RNG.normal(size=(4, 4)) * 2
    b = RNG.normal(size=4) if bias else None
    got = float(ce_loss(jnp.asarray(Z), jnp.asarray(W), LABELS, None if b is None else jnp.asarray(b)))
    assert got == pytest.approx(ce_loss_loops(Z, W, LABELS, b), rel=1e-12)


def _fd_check(f, x, rng, eps=1e-6, n=6):
    g = np.asarray(jax.grad(f)(x))
    for _ in range(n):
        v = rng.normal(size=x.shape)
        fd = (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)
        assert float(np.sum(g * v)) == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.slow
def test_sc_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    Z = jnp.asarray(unit_rows(10, 5, rng))
    _fd_check(lambda z: sc_loss(z, LABELS, 0.3), Z, rng)
    _fd_check(lambda z: sc_loss(z, LABELS, 0.3, [[0, 1, 3, 5], [2, 3, 4, 6, 7, 8]]), Z, rng)


@pytest.mark.slow
def test_ce_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    Z, W, b = (jnp.asarray(rng.normal(size=s)) for s in [(10, 4), (4, 4), (4,)])
    _fd_check(lambda z: ce_loss(z, W, LABELS, b), Z, rng)
    _fd_check(lambda w: ce_loss(Z, w, LABELS, b), W, rng)
    _fd_check(lambda bb: ce_loss(Z, W, LABELS, bb), b, rng)


seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
@pytest.mark.slow
def test_invariances(seed):
    """Rotation of Z, relabelling of classes, permuting samples with labels (and batches with them)."""
    rng = np.random.default_rng(seed)
    Z, W = unit_rows(10, 5, rng), rng.normal(size=(4, 5))
    batches = [[0, 1, 3, 5], [2, 3, 4, 6, 7, 8, 9]]
    sc = float(sc_loss(jnp.asarray(Z), LABELS, 0.25, batches))
    ce = float(ce_loss(jnp.asarray(Z), jnp.asarray(W), LABELS))
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert float(sc_loss(jnp.asarray(Z @ Q), LABELS, 0.25, batches)) == pytest.approx(sc, rel=1e-10)
    assert float(ce_loss(jnp.asarray(Z @ Q), jnp.asarray(W @ Q), LABELS)) == pytest.approx(ce, rel=1e-10)
    relabel = rng.permutation(4)
    assert float(sc_loss(jnp.asarray(Z), relabel[LABELS], 0.25, batches)) == pytest.approx(sc, rel=1e-12)
    Wp = np.empty_like(W)
    Wp[relabel] = W
    assert float(ce_loss(jnp.asarray(Z), jnp.asarray(Wp), relabel[LABELS])) == pytest.approx(ce, rel=1e-12)
    perm = rng.permutation(10)  # new sample i is old sample perm[i]
    inv = np.argsort(perm)
    pb = [[int(inv[i]) for i in b] for b in batches]
    assert float(sc_loss(jnp.asarray(Z[perm]), LABELS[perm], 0.25, pb)) == pytest.approx(sc, rel=1e-12)
    assert float(ce_loss(jnp.asarray(Z[perm]), jnp.asarray(W), LABELS[perm])) == pytest.approx(ce, rel=1e-12)


def test_losses_jit_and_vmap():
    Z = jnp.asarray(np.stack([unit_rows(10, 5) for _ in range(3)]))
    taus = jnp.asarray([0.1, 0.5, 1.0])
    got = jax.jit(jax.vmap(lambda z, t: sc_loss(z, LABELS, t)))(Z, taus)
    for k in range(3):
        assert float(got[k]) == pytest.approx(sc_loss_loops(np.asarray(Z[k]), LABELS, float(taus[k])), rel=1e-10)
