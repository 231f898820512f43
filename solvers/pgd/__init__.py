"""Projected gradient for UFM problems, the whole loop inside one jit-compiled ``lax.while_loop``.

**Variables.** ``Z (N, d)`` (projected onto the problem's set after every step), and for CE ``W (K, d)`` and, with
``bias``, ``b (K,)`` (free).

**Metric and step-size rule** (why no tuning is needed for tau in [0.05, 5] and N up to 10^4). Every sample's
row moves by its *own* gradient, ``N * dL/dz_i``, which is O(rho / tau) whatever N is (the loss is a mean over
N anchors); ``W`` and ``b`` move by their plain gradients. The initial step is ``eta0 = tau / rho^2`` for SC
(one step moves a row by O(1) of the radius) and ``1 / rho^2`` for CE (``1`` with ``constraint="none"``);
``lr`` overrides it. The default optimizer ``"pgd"`` then adapts the step by Armijo backtracking on the
projected step (halve until ``f(x+) <= f(x) + <g, x+ - x> + ||x+ - x||^2 / (2 eta)`` in that metric) and grows
it by 1.25 after each accepted step, capped at ``1000 * eta0``. The optax optimizers ``"sgd"``,
``"momentum"``, ``"nesterov"`` and ``"adam"`` (or any ``optax.GradientTransformation`` you pass) use the fixed
rate ``0.5 * eta0`` (``0.01 * rho`` for adam) and no line search.

**Stopping.** After step t, with ``x+ = P(x - eta g)``: the gradient mapping ``G = (x - x+) / eta`` (row RMS,
in units of ``eta0``) and the relative loss change. The run has converged when
``eta0 * rms(G) <= sqrt(tol) * rho`` *and* ``|f(x+) - f(x)| <= tol * (1 + |f(x)|)``, or when the line search
can no longer decrease the loss (numerical stationarity). The first step at ``tau`` after the low-temperature
stage (below) has no previous loss at ``tau`` to compare: it never ends the run. ``tol=0`` runs exactly ``steps``
steps. Default
``tol``: 1e-12 in float64, 1e-6 in float32.

**Acceleration.** ``acceleration=True`` (``optimizer="pgd"`` only) runs FISTA (Beck & Teboulle 2009) on the same
rules (``step``'s module doc): the Armijo trial is taken from the extrapolated point ``y``, a passed trial is the
step if it does not raise the loss (then ``y+ = P(x+ + (t - 1) / t+ (x+ - x))``), and one that raises it restarts
the momentum from ``x`` without a step (O'Donoghue & Candes 2015); so the loss never rises. The stop test is the
one above with the gradient mapping at ``y``. The first step is the plain one. A momentum step costs two
objective-and-gradient evaluations (``Solution.evaluations``); the method pays off on ill-conditioned problems
(small ``tau``, small decays), where the plain loop takes thousands of steps (docs/solve.md has measurements).
The default is off: the plain loop.

**Spurious minima (UFM+) and what the solver does.** With ``nonneg`` and imbalanced counts the landscape
has stationary points above the orthogonal frame (the global minimum, Kini et al. 2024): two minority classes
sit on one coordinate axis while a majority class spreads over two; rows sit *exactly* on one point and the
separating gradient is exactly zero, so no local step escapes. Two remedies, measured in
``benchmarks/ufm_plus_starts.py`` (docs/solve.md): *continuation* (first minimise at
``tau1 = min(tau, 0.05 rho^2)`` to tolerance 1e-8, within half of the steps, then at ``tau`` from there: at a low
temperature the loss looks at the hardest negatives only) removes the failures of some problems and causes them
in others; *several starts*, the lowest loss kept. So by default (``starts=None``) an
imbalanced problem with ``nonneg`` runs ``AUTO_STARTS`` starts, SC ones alternately without and with
continuation (CE with ReLU has a trap of its own: a minority class whose rows all reach 0 stays there; its
``W`` starts at unit scale, which makes that rarer); other problems run one start, without continuation.
``continuation=True``/``False`` forces it for every start. The history holds the low-temperature objective for
the first ``Solution.continuation_steps`` steps.

**Layout.** ``state`` (the types: :class:`Static`, :class:`Hyper`, :class:`PGDState`, :class:`Solution`, stop
reasons), ``step`` (the objective, projection, metric, and the rules: the projected Armijo trial, the step size,
the stop test, the FISTA step), ``loop`` (the compiled loop, plain or accelerated), ``one`` (:func:`solve`, with starts), ``many`` (:func:`solve_many` and its pools; the slot-layout SC kernel
is ``ufm.kernels.sc_slots_vg``). This package re-exports their public names.
"""
from __future__ import annotations

# ruff: noqa: F401  (re-exports)
from .loop import CONTINUATION_TAU, CONTINUATION_TOL, PROGRESS_SEGMENTS, PROGRESS_WORK, loop_parts, run, run_jit
from .many import LOCKSTEP_MAX_N, PAD_SMALL, POOL_CHUNK, POOL_SLOTS, lockstep_pays, pool_threads, solve_many
from .one import AUTO_STARTS, F32_AGREEMENT, n_starts, solve, start_key, start_keys
from .state import (OPTIMIZERS, Hyper, NonFiniteLoss, PGDState, Solution, Static, batch_array, check_args, hyper_of,
                    static_of, stop_reason)
from .step import (ETA_MAX, armijo_trial, default_eta0, init_params, inner, metric, objective, optax_of,
                   project_vars)

__all__ = ["Solution", "solve", "solve_many", "n_starts", "OPTIMIZERS", "objective", "NonFiniteLoss"]

# the names of the single-module layout, for callers that reached for them
_hyper, _project, _optax, _check_args, _batches = hyper_of, project_vars, optax_of, check_args, batch_array
