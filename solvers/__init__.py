"""solvers: the engines that answer a ``ufm.Problem``.

``solvers.pgd``: jit-compiled projected gradient (JAX + optax); ``solve_many`` runs many problems in one
vmap-ed loop, split over devices when there are several.
"""
from . import pgd
from .pgd import Solution, solve, solve_many

__all__ = ["pgd", "solve", "solve_many", "Solution"]
