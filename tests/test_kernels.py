"""The tiled SC kernel (ufm.kernels) against the dense reference and the plain loops.

Small tiles (``block=16``) force many tiles and padding on small problems; ``c`` (the bound on the logits)
forces one tiling or the other: the shifted one for ``2c <= SHIFT_LIMIT``, the online one above.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import sc_loss_loops

from ufm import kernels, sc_loss
from ufm.losses import BLOCKED_MIN, batch_index, sc_loss_blocked, sc_loss_dense

RNG = np.random.default_rng(5)
N, D = 45, 6
LABELS = np.array([0] * 12 + [1] * 12 + [2] * 10 + [3] * 10 + [4])  # class 4 is a singleton
BATCHES = batch_index([[0, 1, 13, 14, 44, 30], list(range(10, 45)), [2, 3], [7], [5, 20, 31, 32, 33]], N)


def unit_rows(n, d, rng=RNG):
    Z = rng.normal(size=(n, d))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


Z64 = jnp.asarray(unit_rows(N, D))


def blocked(Z, tau, batches=None):
    return sc_loss_blocked(Z, LABELS, tau, batches, block=16)


# compiled once per dtype and batching, reused by the tests (compilation dominates small tests)
vg_blocked = jax.jit(jax.value_and_grad(blocked, argnums=(0, 1)))
vg_dense = jax.jit(jax.value_and_grad(lambda z, t, b=None: sc_loss_dense(z, LABELS, t, b), argnums=(0, 1)))


@pytest.mark.parametrize("tau", [1e-3, 0.05, 1.0])  # 1e-3: the online tiling in float64 (2/tau > 640)
@pytest.mark.parametrize("batches", [None, BATCHES], ids=["full", "batches"])
@pytest.mark.slow
def test_float64_values_and_gradients_match_dense(tau, batches):
    """Values, Z-gradients and tau-gradients agree to 1e-6 (relative to the largest entry)."""
    got, (g, g_tau) = vg_blocked(Z64, tau, batches)
    ref, (g_ref, g_tau_ref) = vg_dense(Z64, tau, batches)
    assert abs(float(got) - float(ref)) <= 1e-6 * max(1.0, abs(float(ref)))
    assert float(jnp.abs(g - g_ref).max()) <= 1e-6 * float(jnp.abs(g_ref).max())
    assert float(g_tau) == pytest.approx(float(g_tau_ref), rel=1e-6)
    loops = sc_loss_loops(np.asarray(Z64), LABELS, tau, None if batches is None else np.asarray(batches))
    assert float(got) == pytest.approx(loops, rel=1e-9)


@pytest.mark.slow
def test_both_tilings_agree_with_each_other():
    """The same logits through the shifted tiling (c = the true bound) and the online one (c forced above the
    limit): equal lse and equal gradients."""
    U = Z64 * np.sqrt(5.0)  # ||u||^2 = 5: 2c = 10 <= 640
    valid = jnp.asarray(RNG.random(N) > 0.2)
    w = jnp.asarray(RNG.random(N))
    out = {}
    for name, c in [("shifted", 5.0), ("online", 1e4)]:
        f = lambda u: kernels.lse_others(u, valid, c, block=16)  # noqa: E731
        lse = jax.jit(f)(U)
        out[name] = (lse, jax.jit(jax.grad(lambda u: jnp.sum(jnp.where(jnp.isfinite(lse), w * f(u), 0.0))))(U))
    assert np.allclose(out["shifted"][0], out["online"][0], rtol=1e-12, atol=0)
    assert np.allclose(out["shifted"][1], out["online"][1], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_lse_others_matches_logsumexp_and_rows_without_others():
    U = jnp.asarray(RNG.normal(size=(20, 4)))
    valid = jnp.asarray([True] + [False] * 19)  # the one valid row has no other slot
    lse_vg = jax.jit(jax.value_and_grad(lambda u, v: jnp.sum(jnp.where(v, 0.0, kernels.lse_others(u, v, block=8)))))
    lse = jax.jit(lambda u, v: kernels.lse_others(u, v, block=8))
    assert float(lse(U, valid)[0]) == -np.inf
    assert np.all(np.isfinite(np.asarray(lse_vg(U, valid)[1])))
    S = np.asarray(U) @ np.asarray(U).T
    np.fill_diagonal(S, -np.inf)
    full = lse(U, jnp.ones(20, bool))
    assert np.allclose(full, np.log(np.exp(S).sum(1)), rtol=1e-12)


@pytest.mark.parametrize("batches", [None, BATCHES], ids=["full", "batches"])
@pytest.mark.slow
def test_float32_random_rows_match_float64_to_1e_4(batches):
    """tau = 1e-3 and 0.02 take the online tiling in float32 (2/tau > 80), 0.5 the shifted one."""
    Z = unit_rows(N, D, np.random.default_rng(8))
    for tau in (1e-3, 0.02, 0.5):
        ref, (g_ref, _) = vg_dense(jnp.asarray(Z), tau, batches)
        got, (g, _) = vg_blocked(jnp.asarray(Z, jnp.float32), jnp.float32(tau), batches)
        assert got.dtype == jnp.float32 and g.dtype == jnp.float32
        assert np.isfinite(float(got)) and float(got) == pytest.approx(float(ref), rel=1e-4)
        assert np.abs(np.asarray(g, np.float64) - np.asarray(g_ref)).max() <= 1e-4 * float(jnp.abs(g_ref).max())


@pytest.mark.parametrize("tau", [1e-3, 0.1])
@pytest.mark.slow
def test_float32_near_collapse_small_tau(tau):
    """Near-collapsed rows, logits up to 1/tau (SupContrast's max-with-diagonal underflows here). The value
    agrees to 1e-4; the gradient is a small difference of terms of size ~1/(N tau) (the lse part), and agrees to
    1e-4 of that size (float32 cannot do better: the logits themselves carry 1/tau * 6e-8)."""
    rng = np.random.default_rng(7)
    Z = np.eye(D)[LABELS % D] + 3e-3 * rng.normal(size=(N, D))
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    ref, (g_ref, _) = vg_dense(jnp.asarray(Z), tau)
    got, (g, _) = vg_blocked(jnp.asarray(Z, jnp.float32), jnp.float32(tau))
    assert float(got) == pytest.approx(float(ref), rel=1e-4)
    scale = float(jnp.abs(jax.grad(lambda z: kernels.lse_others(z / np.sqrt(tau)).sum() / N)(jnp.asarray(Z))).max())
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.abs(np.asarray(g, np.float64) - np.asarray(g_ref)).max() <= 1e-4 * scale


@pytest.mark.slow
def test_vmap_over_traced_tau_and_jit():
    taus = jnp.asarray([1e-3, 0.1, 2.0])  # one problem per tiling and a large tau
    Zs = jnp.stack([Z64, Z64[::-1], Z64 * 0.5])
    got, (g, _) = jax.vmap(vg_blocked, in_axes=(0, 0, None))(Zs, taus, BATCHES)
    for k in range(3):
        ref, (g_ref, _) = vg_dense(Zs[k], taus[k], BATCHES)
        assert float(got[k]) == pytest.approx(float(ref), rel=1e-9)
        assert np.allclose(g[k], g_ref, rtol=1e-8, atol=1e-12 * float(jnp.abs(g_ref).max()))


def test_sc_loss_dispatches_on_width():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 5, BLOCKED_MIN)
    Z = jnp.asarray(unit_rows(BLOCKED_MIN, 4, rng))
    loss = jax.jit(sc_loss)
    assert float(loss(Z, y, 0.2)) == float(jax.jit(sc_loss_blocked)(Z, y, 0.2))
    small = batch_index([list(range(10))], BLOCKED_MIN)
    assert float(loss(Z, y, 0.2, small)) == float(jax.jit(sc_loss_dense)(Z, y, 0.2, small))
    assert float(loss(Z, y, 0.2)) == pytest.approx(float(jax.jit(sc_loss_dense)(Z, y, 0.2)), rel=1e-12)


@pytest.mark.slow
def test_memory_has_no_n_by_n_buffer():
    """XLA's own account of the compiled loss+grad: temporaries O(N d + block^2), far below one N x N matrix."""
    n, d = 4000, 16
    Z, y = jnp.ones((n, d), jnp.float32), jnp.zeros(n, jnp.int32)

    def temp_bytes(f):
        compiled = jax.jit(jax.value_and_grad(lambda z: f(z, y, 0.1))).lower(Z).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    nn = n * n * 4
    assert temp_bytes(sc_loss_dense) >= nn  # the reference does hold N x N matrices
    assert temp_bytes(sc_loss_blocked) <= 4 * kernels.BLOCK ** 2 * 4 + 16 * n * d * 4 < nn / 4


def test_class_sums_any_label_values():
    Zb = jnp.asarray(RNG.normal(size=(7, 3)))
    yb = jnp.asarray([9, 2, 9, 100, 2, 9, 5])
    valid = jnp.asarray([True, True, True, True, False, True, True])
    S, n = kernels.class_sums(Zb, yb, valid)
    for i in range(7):
        if valid[i]:
            members = [j for j in range(7) if valid[j] and yb[j] == yb[i]]
            assert int(n[i]) == len(members)
            assert np.allclose(S[i], np.asarray(Zb)[members].sum(0), rtol=1e-14)
