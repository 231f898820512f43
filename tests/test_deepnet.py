"""solvers.deepnet.encoders: shapes, determinism, gradients, the final ReLU, statelessness, ResNet-18's size."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers.deepnet import encoders as deepnet
from ufm import sc_loss

# small widths keep compilation cheap; the shapes are those of digits (8x8x1) and mnist1d (40x1)
ARCHS = [("mlp", dict(width=16, dim=12)), ("cnn", dict(width=8, dim=12)), ("resnet18", dict(width=4))]
SHAPES = [(8, 8, 1), (40, 1)]


def batch(shape, n=6, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n,) + shape, jnp.float32)


# every architecture on images; the 1-D path of the ResNet (whose gradient compiles slowly) in the next test
CASES = [(a, kw, s) for a, kw in ARCHS for s in SHAPES if not (a == "resnet18" and len(s) == 2)]


@pytest.mark.parametrize("arch,kw,shape", CASES, ids=[f"{a}-{len(s) - 1}d" for a, _, s in CASES])
@pytest.mark.slow
def test_shapes_determinism_relu_and_gradients(arch, kw, shape):
    enc = deepnet.encoder(arch, nonneg=True, **kw)
    dim = kw.get("dim", 8 * kw["width"])
    x = batch(shape)
    init = enc.init
    apply = jax.jit(enc.apply)  # eager op-by-op dispatch would compile every layer separately
    p = init(jax.random.PRNGKey(0), shape)
    Z = apply(p, x)
    assert Z.shape == (6, dim) == (6, enc.dim) and Z.dtype == jnp.float32
    assert float(Z.min()) >= 0 and float(Z.max()) > 0  # the final ReLU
    same = apply(init(jax.random.PRNGKey(0), shape), x)
    other = apply(init(jax.random.PRNGKey(1), shape), x)
    assert np.array_equal(Z, same) and not np.allclose(Z, other)
    # stateless: train and eval agree, and a sample's embedding does not depend on the rest of its batch
    assert np.array_equal(jax.jit(enc.apply, static_argnames="train")(p, x, train=True), Z)
    mixed = jnp.concatenate([x[:2], batch(shape, n=4, seed=9)])
    assert np.allclose(apply(p, mixed)[:2], Z[:2], atol=1e-5)
    # gradients reach every parameter through an SC loss on normalised embeddings
    y = jnp.array([0, 0, 1, 1, 2, 2])
    g = jax.jit(jax.grad(lambda q: sc_loss(deepnet.normalize(enc.apply(q, x)), y, 0.5)))(p)
    norms = [float(jnp.linalg.norm(v)) for v in jax.tree_util.tree_leaves(g)]
    assert len(norms) == len(jax.tree_util.tree_leaves(p)) and all(np.isfinite(norms))
    assert min(norms) > 0


@pytest.mark.parametrize("arch,kw", ARCHS, ids=[a for a, _ in ARCHS])
@pytest.mark.slow
def test_no_relu_gives_signed_embeddings_and_head_sets_dim(arch, kw):
    shape = (40, 1)  # 1-D signals (mnist1d)
    enc = deepnet.encoder(arch, nonneg=False, **kw)
    Z = jax.jit(enc.apply)(enc.init(jax.random.PRNGKey(0), shape), batch(shape))
    assert float(Z.min()) < 0 < float(Z.max())
    enc = deepnet.encoder(arch, nonneg=True, head=10, dim=5, width=kw["width"])
    p = enc.init(jax.random.PRNGKey(0), shape)
    Z = jax.jit(enc.apply)(p, batch(shape))
    assert Z.shape == (6, 5) and enc.dim == 5 and float(Z.min()) >= 0
    assert p["head"][0]["w"].shape[1] == 10


def test_resnet18_is_the_cifar_resnet18():
    """11,173,962 parameters is CIFAR ResNet-18 with BatchNorm and a 10-way fc (3x3 stem, no max-pool);
    GroupNorm has as many parameters as BatchNorm, and the embedding has no fc (512 x 10 + 10 = 5130)."""
    enc = deepnet.encoder("resnet18")
    shapes = enc.init(jax.random.PRNGKey(0), (32, 32, 3))
    assert deepnet.num_params(shapes) == 11_173_962 - 5_130
    assert enc.dim == 512 and shapes["body"]["stem"]["w"].shape == (3, 3, 3, 64)
    out = jax.eval_shape(enc.apply, shapes, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    assert out.shape == (2, 512)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="arch"):
        deepnet.encoder("vit")
    with pytest.raises(ValueError, match="dim"):
        deepnet.encoder("resnet18", dim=128)
    with pytest.raises(ValueError, match="width"):
        deepnet.encoder("mlp", width=0)


def test_ce_head_logits():
    p = deepnet.head_init(jax.random.PRNGKey(0), 3, 4, bias=True)
    Z = jnp.ones((2, 4))
    assert p["W"].shape == (3, 4) and p["b"].shape == (3,)
    assert np.allclose(deepnet.head_logits(p, Z), Z @ p["W"].T)
    assert "b" not in deepnet.head_init(jax.random.PRNGKey(0), 3, 4)
