"""solvers: the engines that answer a ``ufm.Problem``.

``solvers.pgd``: jit-compiled projected gradient (JAX + optax) on a fixed objective (full batch or a fixed
batch set); ``solve_many`` runs many problems in one vmap-ed loop, split over devices when there are several.
``solvers.epochs``: stochastic projected gradient over epochs (batchings that reshuffle). ``solvers.solve``
picks between them.
``solvers.relaxation``: convex Gram relaxations in cvxpy (full and symmetry-reduced programs).
``solvers.first_order``: the first-order (linearisation + eigenvalue) certificate for any batching and large N.
``solvers.certify``: solution + bound -> gap, relaxed geometry, prediction check (:func:`certify`).
"""
from . import epochs, first_order, pgd, relaxation
from .certify import Certificate, certify
from .pgd import Solution, solve_many

__all__ = ["pgd", "epochs", "relaxation", "first_order", "solve", "solve_many", "Solution", "certify",
           "Certificate"]


def solve(problem, **kwargs) -> Solution:
    """Solve ``problem``: ``solvers.epochs.solve`` for an epoch scheme (``shuffled``, ``binding``) or when
    ``epochs=`` is given (stochastic passes over any batching), else ``solvers.pgd.solve`` (deterministic, on the
    full batch or the fixed batch set). Keyword arguments go to the chosen solver."""
    from ufm.batching import is_epoch_scheme

    if is_epoch_scheme(problem) or "epochs" in kwargs:
        if "steps" in kwargs:
            raise ValueError(f"steps: batching {problem.batching!r} runs over epochs; give epochs=, not steps=")
        return epochs.solve(problem, **kwargs)
    return pgd.solve(problem, **kwargs)
