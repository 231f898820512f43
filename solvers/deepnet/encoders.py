"""Encoders in plain JAX (no Flax, no Equinox): parameters are pytrees of arrays, layers are functions.

An :class:`Encoder` is a pair of pure functions, as an optax ``GradientTransformation`` is:

    enc = encoder("mlp", dim=128, nonneg=True)
    params = enc.init(key, input_shape)        # input_shape: one sample's shape, e.g. (8, 8, 1)
    Z = enc.apply(params, x, train=True)       # x (n, *input_shape) -> Z (n, enc.dim)

Architectures (``ARCHS``):
  * ``mlp``: flatten, ``depth`` hidden dense layers of ``width`` units with ReLU, a linear layer to ``dim``.
  * ``cnn``: three 3 x 3 convolutions (``width``, ``2 width``, ``4 width`` channels; strides 1, 2, 2), each
    followed by GroupNorm and ReLU, global average pooling, a linear layer to ``dim``.
  * ``resnet18``: the CIFAR-style ResNet-18 (He et al. 2016 as used by Kini et al. and Graf et al.): a 3 x 3
    stem (stride 1, **no max-pool**), four stages of two basic blocks (``width``, ``2 width``, ``4 width``,
    ``8 width`` channels; strides 1, 2, 2, 2), global average pooling. Its embedding is the pooled feature
    (``dim = 8 width``, 512 for ``width=64``): there is no last linear layer, as in the papers.

The convolutions work on 1-D signals ``(n, L, C)`` and images ``(n, H, W, C)`` alike (channels last).

**Normalisation: stateless.** The CNN and the ResNet use GroupNorm instead of BatchNorm (``min(32, C // 8)``
groups: 32 as usual for wide layers, but never fewer than 8 channels per group, so that a 1 x 1 feature map,
e.g. an 8 x 8 digit after three stride-2 stages, still normalises over 8 or more numbers), so ``apply`` needs no running statistics, a sample's embedding never depends on the rest of its batch
(padding slots and batch-binding examples leave the others unchanged), and train and eval outputs are equal.
``train`` is kept in the signature for a uniform interface (nothing here is stochastic).

**Final activation.** ``nonneg=True`` puts a ReLU on the embedding, so that it is non-negative (UFM+, Kini et al.):
for the MLP and CNN after the last linear layer; for the ResNet the last block's ReLU, before the pooling, as in
the standard network. ``nonneg=False`` leaves it out (the last block's output is ``F(x) + x`` without ReLU), so
embeddings can be negative.

**Projection head** (``head=h``): the body's features (after a ReLU) go through ``dense(h) - ReLU - dense(dim)``
(SupCon's head); the loss, the geometry and the probes all see the head's output (the embedding the UFM models),
and ``nonneg`` applies to that output. (``relu=`` is the deprecated name of ``nonneg``.)

Initialisation: He-normal weights, zero biases, GroupNorm scale 1 and offset 0; all from the ``key``, by one
random draw (:func:`materialize`).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm.deprecation import renamed

ARCHS = ("mlp", "cnn", "resnet18")

__all__ = ["ARCHS", "Encoder", "encoder", "mlp", "cnn", "resnet18", "normalize", "head_init", "head_logits",
           "num_params"]


class Encoder(NamedTuple):
    """``init(key, input_shape) -> params`` and ``apply(params, x, train=False) -> Z (n, dim)``."""

    init: Callable
    apply: Callable
    dim: int


# --- layers ---------------------------------------------------------------------------------------------------

class _Init(NamedTuple):
    """A parameter to create: ``shape`` and ``std`` (Gaussian), or ``fill`` (a constant) when ``std`` is None."""

    shape: tuple
    std: float | None = None
    fill: float = 0.0


def materialize(key, spec):
    """Arrays for a pytree of :class:`_Init` leaves, every Gaussian entry from **one** draw of ``key``.

    One ``jax.random.normal`` of the total size, cut and scaled in NumPy: a single small compilation whatever
    the depth (drawing layer by layer compiles the random-number generator once per shape, once for every
    layer of a ResNet). Not meant to be traced under ``jit``.
    """
    leaves, treedef = jax.tree_util.tree_flatten(spec, is_leaf=lambda v: isinstance(v, _Init))
    total = sum(math.prod(v.shape) for v in leaves if v.std is not None)
    flat = np.asarray(jax.random.normal(key, (total,), jnp.float32)) if total else np.zeros(0, np.float32)
    out, i = [], 0
    for v in leaves:
        if v.std is None:
            out.append(jnp.full(v.shape, v.fill, jnp.float32))
        else:
            m = math.prod(v.shape)
            out.append(jnp.asarray(flat[i:i + m].reshape(v.shape) * np.float32(v.std)))
            i += m
    return jax.tree_util.tree_unflatten(treedef, out)


def parameter_count(enc, input_shape) -> int:
    """The number of parameters of ``enc`` (an :class:`Encoder` of this module) for inputs of ``input_shape``,
    counted from its parameter specs: nothing is allocated, so a size check can run before the first array."""
    global materialize
    real, counted = materialize, []

    def count(key, spec):
        leaves = jax.tree_util.tree_flatten(spec, is_leaf=lambda v: isinstance(v, _Init))[0]
        counted.append(sum(math.prod(v.shape) for v in leaves))

    materialize = count
    try:
        enc.init(None, tuple(input_shape))
    finally:
        materialize = real
    return sum(counted)


def _dense_init(n_in, n_out):
    return {"w": _Init((n_in, n_out), math.sqrt(2.0 / n_in)), "b": _Init((n_out,))}


def _dense(p, x):
    return x @ p["w"] + p["b"]


def _conv_init(rank, c_in, c_out, k=3):
    return {"w": _Init((k,) * rank + (c_in, c_out), math.sqrt(2.0 / (k**rank * c_in)))}


_DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def _conv(p, x, stride=1):
    """'SAME' convolution over all spatial axes of ``x (n, *spatial, C)``."""
    rank = x.ndim - 2
    return jax.lax.conv_general_dilated(x, p["w"], (stride,) * rank, "SAME", dimension_numbers=_DIMS[rank])


def _norm_init(c):
    return {"scale": _Init((c,), fill=1.0), "offset": _Init((c,))}


def _groups(c):
    """GroupNorm groups for ``c`` channels: up to 32, each of at least 8 channels (dividing ``c``)."""
    g = max(1, min(32, c // 8))
    while c % g:
        g -= 1
    return g


def _group_norm(p, x, eps=1e-5):
    """GroupNorm over the spatial axes and ``_groups(C)`` channel groups (stateless, per sample)."""
    c = x.shape[-1]
    g = _groups(c)
    xs = x.reshape(x.shape[:-1] + (g, c // g))
    axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
    mean = xs.mean(axis=axes, keepdims=True)
    var = xs.var(axis=axes, keepdims=True)
    xs = (xs - mean) * jax.lax.rsqrt(var + eps)
    return xs.reshape(x.shape) * p["scale"] + p["offset"]


def _pool(x):
    return x.mean(axis=tuple(range(1, x.ndim - 1)))


def _flatten(x):
    return x.reshape(x.shape[0], -1)


def normalize(Z, eps=1e-12):
    """Rows of ``Z (n, d)`` divided by their norms (a zero row stays zero)."""
    return Z / jnp.maximum(jnp.linalg.norm(Z, axis=-1, keepdims=True), eps)


def _identity(x):
    return x


def _finish(body_spec, body_apply, dim_body, dim, nonneg, head):
    """Wrap a body (``body_spec(input_shape)`` -> parameter specs) with the optional projection head and the
    final activation."""
    act = jax.nn.relu if nonneg else _identity
    if head is None:
        def apply(params, x, train=False):
            return body_apply(params["body"], jnp.asarray(x, jnp.float32), act)

        return Encoder(lambda key, shape: materialize(key, {"body": body_spec(tuple(shape))}), apply, dim_body)

    def init(key, shape):
        return materialize(key, {"body": body_spec(tuple(shape)),
                                 "head": [_dense_init(dim_body, head), _dense_init(head, dim)]})

    def apply(params, x, train=False):
        h = body_apply(params["body"], jnp.asarray(x, jnp.float32), jax.nn.relu)
        h = jax.nn.relu(_dense(params["head"][0], h))
        return act(_dense(params["head"][1], h))

    return Encoder(init, apply, dim)


# --- architectures --------------------------------------------------------------------------------------------

def mlp(dim=128, width=512, depth=2, nonneg=True, head=None, *, relu=None) -> Encoder:
    """Flatten, ``depth`` x (dense ``width`` + ReLU), dense to ``dim`` (+ ReLU with ``nonneg``; ``relu``: its
    deprecated name)."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)

    def spec(shape):
        sizes = [math.prod(shape)] + [width] * depth + [dim]
        return [_dense_init(a, b) for a, b in zip(sizes[:-1], sizes[1:])]

    def apply(params, x, final):
        h = _flatten(x)
        for p in params[:-1]:
            h = jax.nn.relu(_dense(p, h))
        return final(_dense(params[-1], h))

    return _finish(spec, apply, dim, dim, nonneg, head)


def cnn(dim=128, width=32, nonneg=True, head=None, *, relu=None) -> Encoder:
    """Three 3 x 3 conv + GroupNorm + ReLU layers (strides 1, 2, 2), average pool, dense to ``dim`` (+ ReLU with
    ``nonneg``; ``relu``: its deprecated name)."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    chans, strides = (width, 2 * width, 4 * width), (1, 2, 2)

    def spec(shape):
        rank, c = len(shape) - 1, shape[-1]
        convs = []
        for c_out in chans:
            convs.append({"conv": _conv_init(rank, c, c_out), "norm": _norm_init(c_out)})
            c = c_out
        return {"convs": convs, "out": _dense_init(c, dim)}

    def apply(params, x, final):
        for p, s in zip(params["convs"], strides):
            x = jax.nn.relu(_group_norm(p["norm"], _conv(p["conv"], x, s)))
        return final(_dense(params["out"], _pool(x)))

    return _finish(spec, apply, dim, dim, nonneg, head)


def _block_init(rank, c_in, c_out, stride):
    p = {"conv1": _conv_init(rank, c_in, c_out), "norm1": _norm_init(c_out),
         "conv2": _conv_init(rank, c_out, c_out), "norm2": _norm_init(c_out)}
    if stride != 1 or c_in != c_out:
        p["short"] = _conv_init(rank, c_in, c_out, k=1)
        p["short_norm"] = _norm_init(c_out)
    return p


def _block(p, x, stride, act):
    out = jax.nn.relu(_group_norm(p["norm1"], _conv(p["conv1"], x, stride)))
    out = _group_norm(p["norm2"], _conv(p["conv2"], out))
    short = _group_norm(p["short_norm"], _conv(p["short"], x, stride)) if "short" in p else x
    return act(out + short)


def resnet18(width=64, nonneg=True, head=None, dim=None, *, relu=None) -> Encoder:
    """CIFAR-style ResNet-18 (module doc); embedding ``8 width`` wide, or ``dim`` through a projection head
    (``nonneg``: the last ReLU; ``relu``: its deprecated name)."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    stages = [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]
    if head is None and dim not in (None, 8 * width):
        raise ValueError(f"dim: resnet18's embedding is its pooled features, 8 x width = {8 * width}; "
                         f"add a projection head to embed in dim={dim}")

    def spec(shape):
        rank, c = len(shape) - 1, shape[-1]
        params = {"stem": _conv_init(rank, c, width), "stem_norm": _norm_init(width), "blocks": []}
        c = width
        for c_out, stride in stages:
            for s in (stride, 1):
                params["blocks"].append(_block_init(rank, c, c_out, s))
                c = c_out
        return params

    def apply(params, x, final):
        x = jax.nn.relu(_group_norm(params["stem_norm"], _conv(params["stem"], x)))
        blocks = params["blocks"]
        strides = [s for _, stride in stages for s in (stride, 1)]
        for j, (p, s) in enumerate(zip(blocks, strides)):
            x = _block(p, x, s, final if j == len(blocks) - 1 else jax.nn.relu)
        return _pool(x)

    return _finish(spec, apply, 8 * width, dim or 8 * width, nonneg, head)


DEFAULT_WIDTH = {"mlp": 512, "cnn": 32, "resnet18": 64}


def encoder(arch: str, *, dim=None, width=None, nonneg=True, head=None, relu=None) -> Encoder:
    """The encoder named ``arch`` (``ARCHS``); ``width`` defaults to ``DEFAULT_WIDTH[arch]``, ``dim`` to 128
    (mlp, cnn) or ``8 width`` (resnet18); ``nonneg``: a ReLU on the embedding (``relu``: its deprecated name).
    Raises ``ValueError`` naming the bad argument."""
    nonneg = renamed("relu", relu, "nonneg", nonneg)
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    width = DEFAULT_WIDTH[arch] if width is None else width
    for name, v in (("dim", dim), ("width", width), ("head", head)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if arch == "resnet18":
        return resnet18(width, nonneg, head, dim)
    dim = 128 if dim is None else dim
    return mlp(dim, width, 2, nonneg, head) if arch == "mlp" else cnn(dim, width, nonneg, head)


def head_init(key, K, dim, bias=False):
    """The CE classifier: ``W (K, dim)`` (small Gaussian) and, with ``bias``, ``b (K,)`` zeros."""
    spec = {"W": _Init((K, dim), 1.0 / math.sqrt(dim))}
    if bias:
        spec["b"] = _Init((K,))
    return materialize(key, spec)


def head_logits(p, Z):
    """``Z W^T (+ b)``: logits ``(n, K)``."""
    out = Z @ p["W"].T
    return out + p["b"] if "b" in p else out


def num_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
