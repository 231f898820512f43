"""Feature sets: one record per constraint, a registry by name, and the row-wise Euclidean projection.

Sets, per row ``z`` (radius ``rho``; ``nonneg`` adds ``z >= 0``, the UFM+):
  * ``"sphere"``: ``||z|| = rho``   (Gram: ``diag(G) = rho^2``; dual multipliers ``mu`` free)
  * ``"ball"``:   ``||z|| <= rho``  (Gram: ``diag(G) <= rho^2``; ``mu <= 0``)
  * ``"none"``:   no norm bound     (CE with feature decay only; ``mu = 0``, the trace bounded by the decay)

Each :class:`Constraint` states what the engines need: whether the norm is bounded, whether it is an equality,
the norm part of the projection, and the Gram constraint of the relaxations. Outside this module no code compares
constraint names. ``CONSTRAINTS`` (the names) is importable without JAX.

**Projection.** Orthant first, then the norm: exact for the ball and, for the sphere, whenever the clipped row
is non-zero. **All-zero-row rule.** When the row to be normalised is zero (a zero row on the sphere, or a row
with no positive entry on the non-negative sphere) the projection is a set. ufm returns ``rho * e_j`` with
``j = argmax(z)`` (the first index on ties): for the non-negative sphere this *is* a nearest point
(``||z - rho e_j||^2 = ||z||^2 - 2 rho z_j + rho^2``); for the sphere every point is nearest. Never a division by
zero, never a NaN.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import jax
    import numpy as np

CONSTRAINTS = ("sphere", "ball", "none")

__all__ = ["project", "CONSTRAINTS", "Constraint", "get"]


class Constraint(NamedTuple):
    """A feature set. ``bounded``: rows have a norm bound ``rho``; ``equality``: the bound is attained
    (``||z|| = rho``); ``mu_sign``: the sign the dual multiplier of ``diag(G)`` may take (``"free"``,
    ``"nonpositive"``, ``"zero"``)."""

    name: str
    bounded: bool
    equality: bool
    mu_sign: str

    def gram_constraints(self, diag, rho2) -> list:
        """The relaxation's constraints on ``diag(G)`` (a cvxpy expression)."""
        if not self.bounded:
            return []
        return [diag == rho2] if self.equality else [diag <= rho2]


_REGISTRY = {
    "sphere": Constraint("sphere", bounded=True, equality=True, mu_sign="free"),
    "ball": Constraint("ball", bounded=True, equality=False, mu_sign="nonpositive"),
    "none": Constraint("none", bounded=False, equality=False, mu_sign="zero"),
}


def get(name: str) -> Constraint:
    """The :class:`Constraint` named ``name``; ``ValueError`` naming ``constraint``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {name!r}") from None


def project(Z: jax.Array | np.ndarray, constraint: str = "sphere", radius: float | jax.Array = 1.0,
            nonneg: bool | jax.Array = False) -> jax.Array:
    """Project each row of ``Z`` ``(N, d)`` onto the set named by ``constraint`` (see module doc).

    ``radius`` and ``nonneg`` may be traced JAX values (so a vmap over problems can vary them);
    ``constraint`` is static.
    """
    import jax.numpy as jnp

    c = get(constraint)
    X = jnp.where(nonneg, jnp.maximum(Z, 0.0), Z)
    if not c.bounded:
        return X
    norm = jnp.linalg.norm(X, axis=-1, keepdims=True)
    safe = jnp.where(norm > 0, norm, 1.0)
    if not c.equality:
        return X * jnp.minimum(1.0, radius / safe)
    fallback = radius * (jnp.arange(Z.shape[-1]) == jnp.argmax(Z, axis=-1)[..., None]).astype(Z.dtype)
    return jnp.where(norm > 0, X * (radius / safe), fallback)
