"""ufm: the unconstrained-features model of classification losses.

State a problem (:class:`Problem`, or its class-level form with real class sizes: :class:`ClassProblem`), evaluate its losses (:func:`sc_loss`, :func:`ce_loss`), project onto its
constraints (:func:`project`), measure geometry (:mod:`ufm.geometry`), compare with theory (:mod:`ufm.theory`),
see whether a batching forces the orthogonal frame (:mod:`ufm.interaction`), and log a network's geometry per epoch
beside the UFM (:class:`Tracker`). Solvers live in the sibling package ``solvers``; the tracker finds its UFM side
through the entry-point group ``ufm.references`` (docs/design.md).

The names below load on first use (PEP 562): ``import ufm`` costs nothing, and JAX is imported only by what
needs it (``ufm.sc_loss``, ``ufm.Problem``, ...), which keeps ``ufm --help`` fast.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy


def _version() -> str:
    """The installed distribution's version (pyproject.toml is its one source); ``0+unknown`` when ufm runs from a
    source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ufm")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

# public name -> (submodule, attribute; None: the submodule itself)
_EXPORTS = {
    "Problem": ("problem", "Problem"),
    "ProblemBase": ("problem", "ProblemBase"),
    "sc_loss": ("losses", "sc_loss"),
    "ce_loss": ("losses", "ce_loss"),
    "bcl_loss": ("losses", "bcl_loss"),
    "bcl_avg_loss": ("losses", "bcl_avg_loss"),
    "objectives": ("objectives", None),
    "project": ("constraints", "project"),
    "predict": ("theory", "predict"),
    "geometry": ("geometry", None),
    "theory": ("theory", None),
    "batching": ("batching", None),
    "interaction": ("interaction", None),
    "kernels": ("kernels", None),
    "Tracker": ("tracker", "Tracker"),
    "ClassProblem": ("classlevel", "ClassProblem"),
    "classlevel": ("classlevel", None),
    "PhaseSpec": ("specs", "PhaseSpec"),
    "SweepSpec": ("specs", "SweepSpec"),
    "LandscapeSpec": ("specs", "LandscapeSpec"),
}

__all__ = ["Problem", "ProblemBase", "sc_loss", "ce_loss", "bcl_loss", "bcl_avg_loss", "project", "predict",
           "objectives", "geometry", "theory", "batching", "interaction", "kernels", "Tracker", "ClassProblem",
           "classlevel", "PhaseSpec", "SweepSpec", "LandscapeSpec", "__version__"]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from . import batching, classlevel, geometry, interaction, kernels, objectives, theory
    from .classlevel import ClassProblem
    from .constraints import project
    from .losses import bcl_avg_loss, bcl_loss, ce_loss, sc_loss
    from .problem import Problem, ProblemBase
    from .specs import LandscapeSpec, PhaseSpec, SweepSpec
    from .theory import predict
    from .tracker import Tracker


__getattr__, __dir__ = lazy(__name__, _EXPORTS, __all__)
