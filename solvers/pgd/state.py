"""The types of the projected-gradient engine: what fixes a compiled program (:class:`Static`), a problem's
numbers (:class:`Hyper`), the loop state (:class:`PGDState`), the answer (:class:`Solution`) and why a run
stopped (:func:`stop_reason`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np

from ufm import objectives
from ufm.batching import batch_list, pad as pad_batches

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["OPTIMIZERS", "NonFiniteLoss", "Solution", "Static", "Hyper", "PGDState", "hyper_of", "batch_array",
           "static_of", "stop_reason", "check_args"]

OPTIMIZERS = ("pgd", "sgd", "momentum", "nesterov", "adam")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: raised, never returned."""


@dataclass
class Solution:
    """A solver's answer. Arrays are NumPy: ``Z (N, d)``, ``W (K, d)`` or None, ``b (K,)`` or None,
    ``history (steps + 1,)`` the objective before the first step and after each step (of the start kept).
    ``C (K, d)`` or None: the class prototypes of a loss that has them (BCL).
    ``start_losses``: the final loss of every random start (NaN for one that became non-finite). ``loss``: the
    objective at ``Z`` (``W``, ``b``), evaluated in float64 whatever the run's dtype. ``converged`` and ``reason``,
    why the run stopped (:func:`stop_reason`: ``converged``, ``stationary``, ``max_steps``; ``float32_inaccurate``
    when a float32 run's own loss disagrees with float64 at its point; epoch runs: ``converged`` or
    ``max_epochs``)."""

    Z: np.ndarray
    W: np.ndarray | None
    b: np.ndarray | None
    loss: float
    history: np.ndarray
    steps: int
    converged: bool
    seconds: float
    dtype: str
    seed: int
    problem: Problem = field(default=None, repr=False)  # type: ignore[assignment]  # the engines always set it
    gradient_mapping: float = float("nan")
    optimizer: str = "pgd"
    lr: float = float("nan")
    continuation_steps: int = 0
    start_losses: tuple = ()
    reason: str = ""
    C: np.ndarray | None = None
    evaluations: int = 0
    acceleration: bool = False


class Static(NamedTuple):
    """What fixes the compiled program: shapes and discrete choices."""

    loss: str
    constraint: str
    bias: bool
    N: int
    K: int
    dim: int
    batch_shape: tuple | None
    steps: int
    optimizer: object
    dtype: str
    continuation: bool = False
    acceleration: bool = False


class Hyper(NamedTuple):
    """The numbers of a problem, as arrays (traced: a vmap over problems may vary them); what an objective's
    ``value`` reads. ``n``: the real sample count (None: ``N``; set for problems padded by ``solve_many``),
    ``mask``: the real rows of a padded problem (None: all)."""

    labels: jax.Array | np.ndarray  # NumPy leaves from hyper_of; jax.Arrays once traced
    tau: jax.Array | np.ndarray
    radius: jax.Array | np.ndarray
    nonneg: jax.Array | np.ndarray
    weight_decay: jax.Array | np.ndarray
    feature_decay: jax.Array | np.ndarray
    batches: jax.Array | np.ndarray | None
    continuation: jax.Array | np.ndarray
    n: jax.Array | None = None
    mask: jax.Array | None = None


class PGDState(NamedTuple):
    """The loop state of :func:`run` (one compiled ``lax.while_loop``).

    ``x`` the variables (``Z``; ``W``, ``b``), ``f``/``g`` the objective and gradient at ``x``, ``t`` steps
    taken, ``hist`` the objective after each step, ``gm`` the last gradient mapping, ``done``/``finite``/
    ``stalled`` (the line search could not decrease the loss), ``tau`` the temperature of the current stage,
    ``stage0`` still in the low-temperature stage, ``stage1`` the step where it ended; ``eta`` the step,
    ``eta_step`` the step the current line search began with, ``k`` its halvings; ``opt`` the optax state;
    ``evals`` the objective-and-gradient evaluations so far.

    With acceleration (``Static.acceleration``; None without), as in jaxopt's ``ProximalGradient``: ``y`` the
    extrapolated point the next trial starts from, ``fy``/``gy`` the objective and gradient there, ``momentum``
    the FISTA counter (``1`` at a start or restart; ``y`` is ``x`` while it is below 2, see ``solvers.pgd.loop``)."""

    x: dict
    f: jax.Array
    g: dict
    t: jax.Array
    hist: jax.Array
    done: jax.Array
    gm: jax.Array
    finite: jax.Array
    stalled: jax.Array
    tau: jax.Array
    stage0: jax.Array
    stage1: jax.Array
    eta: jax.Array
    eta_step: jax.Array
    k: jax.Array
    opt: object = None
    evals: jax.Array | None = None
    y: dict | None = None
    fy: jax.Array | None = None
    gy: dict | None = None
    momentum: jax.Array | None = None


def hyper_of(problem: Problem, dtype, continuation=None, start=0) -> Hyper:
    """The :class:`Hyper` of a problem. ``continuation``: whether this start runs the low-temperature stage
    (None: contrastive losses with ``nonneg``, odd starts only)."""
    contrastive = objectives.of(problem).contrastive
    if continuation is None:
        continuation = contrastive and problem.nonneg and start % 2 == 1
    dt = np.dtype(dtype)  # NumPy leaves: built without a device operation (solve_many builds hundreds)
    return Hyper(labels=np.asarray(problem.label_array, np.int32), tau=np.asarray(problem.tau, dt),
                 radius=np.asarray(problem.radius, dt), nonneg=np.asarray(problem.nonneg),
                 weight_decay=np.asarray(problem.weight_decay, dt),
                 feature_decay=np.asarray(problem.feature_decay, dt), batches=batch_array(problem),
                 continuation=np.asarray(contrastive and bool(continuation)))


def batch_array(problem: Problem):
    """The fixed batch set of the objective as a padded ``int32`` array ``(n_batches, width)``, ``-1`` marking an
    empty slot, or None (full batch)."""
    b = batch_list(problem)
    return None if b is None else pad_batches(b)


def static_of(problem: Problem, steps, optimizer, dtype, continuation=None, acceleration=False) -> Static:
    """The static part of a solve. The program holds the continuation stage for SC unless
    ``continuation=False`` (``hyper_of``'s flag then turns it on or off per problem); ``acceleration`` (the
    FISTA step, ``optimizer="pgd"`` only) is a program of its own."""
    b = batch_array(problem)
    shape = None if b is None else tuple(b.shape)
    return Static(problem.loss, problem.constraint, problem.bias, problem.N, problem.K, problem.dim, shape,
                   int(steps), optimizer, dtype, objectives.of(problem).contrastive and optimizer == "pgd"
                   and continuation is not False, bool(acceleration))



def stop_reason(s: PGDState) -> str:
    """Why a run stopped: ``"converged"`` (the stopping test of the module doc), ``"stationary"`` (no step could
    decrease the loss: numerically stationary), ``"max_steps"``, or ``"non_finite"``."""
    if not bool(s.finite):
        return "non_finite"
    if bool(s.done):
        return "stationary" if bool(s.stalled) else "converged"
    return "max_steps"



MAX_STEPS = 2**31 - 2  # the compiled loop's step counter is an int32 (steps + 1 must fit)


def check_args(steps, lr, optimizer, tol, dtype, acceleration=False):
    """``ValueError`` naming the argument for a bad ``steps``, ``lr``, ``optimizer``, ``tol``, ``dtype`` or
    ``acceleration`` (the arguments ``solve``, ``solve_many`` and ``solvers.epochs.solve`` share)."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > MAX_STEPS:  # the compiled loop counts in int32
        raise ValueError(f"steps must be at most {MAX_STEPS} (the loop's int32 counter), got {steps}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0 (or None for the rule), got {lr!r}")
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS} or an optax.GradientTransformation, "
                         f"got {optimizer!r}")
    if tol is not None and not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if not isinstance(acceleration, (bool, np.bool_)):
        raise ValueError(f"acceleration must be True or False, got {acceleration!r}")
    if acceleration and optimizer != "pgd":
        raise ValueError(f"acceleration: the FISTA step is a variant of optimizer='pgd' (its line search), not of "
                         f"{optimizer!r}; an optax optimizer brings its own momentum")
