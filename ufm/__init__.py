"""ufm: the unconstrained-features model of classification losses.

State a problem (:class:`Problem`), evaluate its losses (:func:`sc_loss`, :func:`ce_loss`), project onto its
constraints (:func:`project`), measure geometry (:mod:`ufm.geometry`), compare with theory (:mod:`ufm.theory`)
and see whether a batching forces the orthogonal frame (:mod:`ufm.interaction`). Solvers live in the sibling
package ``solvers``.
"""
from . import batching, geometry, interaction, kernels, theory
from .constraints import project
from .losses import ce_loss, sc_loss
from .problem import Problem
from .theory import predict

__version__ = "0.1.0"

__all__ = ["Problem", "sc_loss", "ce_loss", "project", "predict", "geometry", "theory", "batching", "interaction",
           "kernels",
           "__version__"]
