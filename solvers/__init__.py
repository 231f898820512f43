"""solvers: the engines that answer a ``ufm.Problem``.

``solvers.pgd``: jit-compiled projected gradient (JAX + optax) on a fixed objective (full batch or a fixed
batch set); ``solve_many`` runs many problems in one vmap-ed loop, split over devices when there are several.
``solvers.epochs``: stochastic projected gradient over epochs (batchings that reshuffle). ``solvers.solve``
picks between them.
``solvers.relaxation``: convex Gram relaxations in cvxpy (full and symmetry-reduced programs).
``solvers.first_order``: the first-order certificate at a solution, for any batching.
``solvers.dual``: proved lower bounds from a candidate Gram (every certificate's bound comes from here).
``solvers.certificate``: solution + bound -> gap, relaxed geometry, prediction check (:func:`certify`; the module
has its own name, so importing it never shadows the function ``solvers.certify``).
``solvers.local``: a proved strict local minimum or saddle at a point (:func:`certify_local`, ball arithmetic).
``solvers.classlevel``: the class-level problem (``ufm.ClassProblem``, any N, real class sizes), many at once, and
its proved bounds.

One call per command of the ``ufm`` command line, each returning the dict the command prints with ``--json`` (and
writing its files with ``out=``): :func:`solve` (``ufm solve``: a ``Solution``; ``solvers.workflows.report`` makes
its report) and :func:`certify`, :func:`verify` (a :class:`Setting`, the built-in suite or an audit),
:func:`sweep` (a ``ufm.SweepSpec``), :func:`phase` (a ``ufm.PhaseSpec``), :func:`landscape` (a
``ufm.LandscapeSpec``), :func:`batches` (what a batching forces) and :func:`measure` (a network's embeddings beside
the UFM). They live in ``solvers.workflows`` and load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ufm._lazy import lazy

# public name -> (submodule, attribute; None: the submodule itself); loaded on first use (PEP 562), so that a
# workflow's constants (e.g. the theorem list of ``ufm verify --help``) do not import JAX
_EXPORTS = {
    "pgd": ("pgd", None), "epochs": ("epochs", None), "relaxation": ("relaxation", None),
    "first_order": ("first_order", None), "dual": ("dual", None), "classlevel": ("classlevel", None), "solve_many": ("pgd", "solve_many"),
    "Solution": ("pgd", "Solution"), "certify": ("certificate", "certify"), "Certificate": ("certificate", "Certificate"),
    "certificate": ("certificate", None),
    "local": ("local", None), "certify_local": ("local", "certify_local"), "LocalCertificate": ("local", "LocalCertificate"),
    # the workflows, one call per command of the command line (each returns the dict its command prints)
    "verify": ("workflows.verify", "verify_report"), "Setting": ("workflows.verify", "Setting"),
    "sweep": ("workflows.sweep", "sweep"), "phase": ("workflows.phase", "phase"),
    "landscape": ("workflows.landscape", "landscape"), "batches": ("workflows.batches", "batches"),
    "measure": ("workflows.measure", "measure"),
}

__all__ = ["pgd", "epochs", "relaxation", "first_order", "dual", "classlevel", "certificate", "solve", "solve_many",
           "Solution", "certify", "Certificate", "local", "certify_local", "LocalCertificate",
           "verify", "Setting", "sweep", "phase", "landscape", "batches", "measure"]

if TYPE_CHECKING:
    from . import certificate, classlevel, dual, epochs, first_order, local, pgd, relaxation
    from .certificate import Certificate, certify
    from .local import LocalCertificate, certify_local
    from ufm.problem import Problem

    from .pgd import Solution, solve_many
    from .workflows.batches import batches
    from .workflows.landscape import landscape
    from .workflows.measure import measure
    from .workflows.phase import phase
    from .workflows.sweep import sweep
    from .workflows.verify import Setting
    from .workflows.verify import verify_report as verify


__getattr__, __dir__ = lazy(__name__, _EXPORTS, __all__)


def solve(problem: Problem, **kwargs: Any) -> Solution:
    """Solve ``problem``: ``solvers.epochs.solve`` for an epoch scheme (``shuffled``, ``binding``) or when
    ``epochs=`` is given (stochastic passes over any batching), else ``solvers.pgd.solve`` (deterministic, on the
    full batch or the fixed batch set). Keyword arguments go to the chosen solver."""
    from ufm.batching import is_epoch_scheme

    from . import epochs, pgd

    if is_epoch_scheme(problem) or "epochs" in kwargs:
        if "steps" in kwargs:
            raise ValueError(f"steps: batching {problem.batching!r} runs over epochs; give epochs=, not steps=")
        return epochs.solve(problem, **kwargs)
    return pgd.solve(problem, **kwargs)
