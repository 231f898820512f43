"""solvers: the engines that answer a ``ufm.Problem``.

``solvers.pgd``: jit-compiled projected gradient (JAX + optax).
"""
from . import pgd
from .pgd import Solution, solve

__all__ = ["pgd", "solve", "Solution"]
