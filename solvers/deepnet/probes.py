"""Read-outs of frozen embeddings: nearest-class-centre and linear-probe accuracy.

Both work on the *normalised* embeddings (the SC convention) and return fractions in ``[0, 1]``.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ufm.geometry import class_means, normalize_rows

__all__ = ["ncc_predict", "ncc_accuracy", "linear_probe", "accuracy"]


def accuracy(pred, y) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y))) if len(y) else float("nan")


def ncc_predict(Z_train, y_train, Z, K):
    """Nearest class centre: the class whose normalised mean of normalised training rows has the largest
    cosine with each normalised row of ``Z``. ``(n,)`` ints."""
    M = normalize_rows(class_means(normalize_rows(Z_train), y_train, K))
    return np.argmax(normalize_rows(Z) @ M.T, axis=1)


def ncc_accuracy(Z_train, y_train, Z, y, K) -> float:
    return accuracy(ncc_predict(Z_train, y_train, Z, K), y)


@partial(jax.jit, static_argnums=(2, 3))
def _fit(X, y, K, steps, l2):
    """Multinomial logistic regression by L-BFGS, ``steps`` iterations from zero."""
    def f(p):
        logits = X @ p["W"] + p["b"]
        ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + l2 * jnp.sum(p["W"] ** 2)

    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(f)
    p0 = {"W": jnp.zeros((X.shape[1], K), X.dtype), "b": jnp.zeros((K,), X.dtype)}

    def body(carry, _):
        p, s = carry
        v, g = vg(p, state=s)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=f)
        return (optax.apply_updates(p, u), s), v

    (p, _), _ = jax.lax.scan(body, (p0, opt.init(p0)), None, length=steps)
    return p


def linear_probe(Z_train, y_train, Z, K, steps=100, l2=1e-3):
    """Predictions ``(n,)`` of a softmax-regression probe fitted on the normalised, then standardised,
    training embeddings (L2 penalty ``l2 ||W||^2``, ``steps`` L-BFGS iterations; float32)."""
    Xtr = normalize_rows(Z_train)
    mean, std = Xtr.mean(0), Xtr.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    f = lambda A: jnp.asarray((normalize_rows(A) - mean) / std, jnp.float32)  # noqa: E731
    p = _fit(f(Z_train), jnp.asarray(y_train, jnp.int32), int(K), int(steps), jnp.float32(l2))
    return np.asarray(jnp.argmax(f(Z) @ p["W"] + p["b"], axis=1))
