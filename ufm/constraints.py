"""Euclidean projections of each row of ``Z`` onto the feasible set (docs/theory.md §3).

Sets, per row ``z`` (radius ``rho``):
  * ``"sphere"``: ``||z|| = rho``;           with ``nonneg``: ``||z|| = rho, z >= 0``
  * ``"ball"``:   ``||z|| <= rho``;          with ``nonneg``: ``||z|| <= rho, z >= 0``
  * ``"none"``:   no norm constraint;        with ``nonneg``: ``z >= 0``

Orthant first, then the norm: exact for the ball and, for the sphere, whenever the clipped row is non-zero.

**All-zero-row rule.** When the row to be normalised is zero (a zero row on the sphere, or a row with no
positive entry on the non-negative sphere) the projection is a set. ufm returns ``rho * e_j`` with
``j = argmax(z)`` (the first index on ties): for the non-negative sphere this *is* a nearest point
(``||z - rho e_j||^2 = ||z||^2 - 2 rho z_j + rho^2``); for the sphere every point is nearest. Never a division by
zero, never a NaN.
"""
from __future__ import annotations

import jax.numpy as jnp

CONSTRAINTS = ("sphere", "ball", "none")

__all__ = ["project", "CONSTRAINTS"]


def project(Z, constraint: str = "sphere", radius=1.0, nonneg=False):
    """Project each row of ``Z`` ``(N, d)`` onto the set named by ``constraint`` (see module doc).

    ``radius`` and ``nonneg`` may be traced JAX values (so a vmap over problems can vary them);
    ``constraint`` is static.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    X = jnp.where(nonneg, jnp.maximum(Z, 0.0), Z)
    if constraint == "none":
        return X
    norm = jnp.linalg.norm(X, axis=-1, keepdims=True)
    safe = jnp.where(norm > 0, norm, 1.0)
    if constraint == "ball":
        return X * jnp.minimum(1.0, radius / safe)
    fallback = radius * (jnp.arange(Z.shape[-1]) == jnp.argmax(Z, axis=-1)[..., None]).astype(Z.dtype)
    return jnp.where(norm > 0, X * (radius / safe), fallback)
