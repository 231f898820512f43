"""solvers: the engines that answer a ``ufm.Problem``.

``solvers.pgd``: jit-compiled projected gradient (JAX + optax).
``solvers.relaxation``: convex Gram relaxations in cvxpy (full and symmetry-reduced programs).
``solvers.first_order``: the first-order (linearisation + eigenvalue) certificate for any batching and large N.
``solvers.certify``: solution + bound -> gap, relaxed geometry, prediction check (:func:`certify`).
"""
from . import first_order, pgd, relaxation
from .certify import Certificate, certify
from .pgd import Solution, solve

__all__ = ["pgd", "relaxation", "first_order", "solve", "Solution", "certify", "Certificate"]
