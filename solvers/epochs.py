"""Stochastic projected gradient over epochs: mini-batch SC when the batches change every epoch.

``solve`` runs on any SC problem; it is what ``solvers.solve`` uses for the epoch schemes ``shuffled`` and
``binding``. On a fixed batch set (``fixed``, ``subsets``, explicit, the full batch) every epoch visits the
same batches in the same order (``solvers.pgd.solve`` minimises those deterministically instead).

**Algorithm.** Epoch ``e`` takes the batches ``ufm.batching.epoch_batch_list(problem, e)`` (drawn from
``problem.batch_seed``). For each batch ``B`` in turn: the gradient ``g`` of ``L_B``, the SC loss of ``B``
alone (mean over its ``|B|`` anchors: ``solvers.pgd.objective`` with the batch set ``{B}``); each row moves by
its own gradient ``|B| g_i`` (the metric of ``solvers.pgd``) times the step ``eta``; then the rows are projected
(``solvers.pgd.step.project_vars``). The default ``optimizer="pgd"`` chooses ``eta`` per batch by ``solvers.pgd``'s
Armijo backtracking *on that batch's loss* (a stochastic line search: start from the last step, halve until the
projected step passes, grow by 1.25 after it, at most ``1000 eta0``, ``eta0 = tau / rho^2``). This suits the
problem: under UFM+ the OF minimises every batch's loss at once (interpolation), so the stochastic gradients
vanish there and no decay is needed; and at small ``tau`` the pull between classes is ``exp(-rho^2/tau)``-weak,
which the line search compensates with long steps (at ``tau = 0.1`` it reaches the OF in tens of epochs where a
constant step needs thousands). ``"sgd"`` is a constant step (``lr``, default ``0.5 tau / rho^2``); ``"momentum"``,
``"nesterov"``, ``"adam"`` or an ``optax.GradientTransformation`` transform the batch gradients instead. Each
epoch is one jit-compiled ``lax.scan`` over its batches (one compilation for all epochs: every epoch has the
same batch shapes).

**Stopping.** The engine's stop test (``solvers.pgd.step.small_step``) after each epoch, held in each of the last
``patience`` epochs: the RMS displacement of the rows over the epoch (``moves``, in units of ``rho``; an epoch's
steps in place of ``solvers.pgd``'s one gradient mapping) at most ``sqrt(tol)`` *and* the relative change of the
epoch's own objective (its batches' loss before and after the epoch: consecutive epochs have different batches,
so their losses are not comparable) at most ``tol`` (``tol`` defaults as in ``solvers.pgd``: 1e-12 in float64,
1e-6 in float32; ``tol=0`` runs every epoch and skips the test). The patience matters for epoch schemes: the rows
of a small class move only in the epochs whose batches happen to hold two of its members with another class, so
one quiet epoch proves nothing; for a claim, run a fixed number of epochs (``tol=0``).

**What is reported** (:class:`EpochSolution`). ``loss``: the objective of the batch set of *all the epochs
run* (``ufm.batching.union_batches(problem, epochs)``: the mean over the anchor slots of every batch of every
epoch, i.e. the slot-weighted mean of the epoch objectives), at the final ``Z``. Under UFM+ its minimum is the
closed form ``of_loss`` (``ufm.theory.sc_of_loss`` on that batch set) and ``ufm.interaction`` says whether the
OF is its unique minimiser. ``history[e]``: the objective of epoch ``e``'s batches at the end of epoch ``e``
(``history[0]``: epoch 0's batches at the start); ``delta_gm[e]`` likewise; ``full_batch_loss`` the loss of
one batch of all samples (NaN above ``FULL_BATCH_MAX`` samples); ``moves[e]`` the RMS row displacement of epoch
``e``. Progress goes to stderr (by default once a run has lasted 2 s).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ufm import constraints, geometry, objectives, theory
from ufm.batching import describe, epoch_batch_list, pad
from ufm.progress import Progress

if TYPE_CHECKING:
    from ufm.problem import Problem

from .pgd.state import NonFiniteLoss, Solution, check_args, hyper_of, static_of
from .pgd.step import (MAX_HALVINGS, SHRINK, armijo_trial, init_params, next_eta, objective, optax_of, project_vars,
                        small_step)

__all__ = ["solve", "EpochSolution", "DEFAULT_EPOCHS"]

DEFAULT_EPOCHS = 1000
FULL_BATCH_MAX = 4096  # full_batch_loss holds one N x N block: NaN above this N


@dataclass
class EpochSolution(Solution):
    """A :class:`solvers.pgd.Solution` from epochs (module doc). ``steps`` counts batch steps; ``history`` and
    ``delta_gm`` have ``epochs + 1`` entries; ``gradient_mapping`` is the last epoch's RMS row displacement
    divided by ``rho``."""

    epochs: int = 0
    batches_per_epoch: int = 0
    delta_gm: np.ndarray | None = None
    moves: np.ndarray | None = None
    of_loss: float | None = None
    full_batch_loss: float = float("nan")
    objective: str = ""

    def batching_report(self) -> dict:
        """The ``batching`` block of ``ufm solve --json`` for an epoch run."""
        from ufm.batching import union_batches
        from ufm.interaction import check

        p = self.problem
        verdict = None
        if p.nonneg and constraints.get(p.constraint).equality:
            verdict = check(union_batches(p, self.epochs), p.label_array, p.dim, p.K, p.tau, p.radius,
                            verify=False).unique_of
        return {"scheme": p.batching, "epochs": self.epochs, "batches_per_epoch": self.batches_per_epoch,
                "objective": self.objective, "of_loss": self.of_loss,
                "gap_to_of": None if self.of_loss is None else self.loss - self.of_loss,
                "unique_of": verdict, "full_batch_loss": self.full_batch_loss,
                "delta_gm_history": self.delta_gm.tolist()}  # type: ignore[union-attr]  # set by solve


def _init(static, name, h, key, lr):
    x = init_params(static, key, h)
    return x, ({"eta": lr} if name == "pgd" else optax_of(name, lr).init(x))


def _rows(static, h, x, B):
    """The batch ``B`` (a padded row of indices) as a problem of its own: its rows of ``Z``, its labels and the
    local batch ``[0..|B|-1]``; plus the indices to write the rows back (padding goes out of range: dropped).
    A step then costs O(|B| d), not O(N d). BCL's prototypes ``C`` join every batch whole."""
    valid = B >= 0
    safe = jnp.where(valid, B, 0)
    hb = h._replace(labels=h.labels[safe], batches=jnp.where(valid, jnp.arange(B.shape[0]), -1)[None])
    return {**x, "Z": x["Z"][safe]}, hb, jnp.where(valid, B, static.N), jnp.sum(valid)


def _armijo(static, h, x, n, eta, eta0):
    """One projected gradient step on the loss of one batch (``x``, ``h`` from :func:`_rows`, ``n = |B|``) with
    the engine's Armijo trial and step-size rule (``solvers.pgd.step``: :func:`armijo_trial`, :func:`next_eta`) in
    the metric where rows move by ``n`` times their gradient: halve ``eta`` until the step passes, then grow it by
    ``GROW`` (at most ``ETA_MAX eta0``); no step passes after ``MAX_HALVINGS`` halvings: stay."""
    f = lambda x: objective(static, x, h)  # noqa: E731
    vg = lambda x: (f(x), None)  # noqa: E731  (a trial needs the value only)
    project_fn = lambda x: project_vars(static, x, h)  # noqa: E731
    w = {k: 1.0 / n for k in x}  # Z, and BCL's prototypes C: rows move by n times their gradient
    fx, g = jax.value_and_grad(f)(x)

    def shrink(c):
        eta = c[0] * SHRINK
        xn, _, _, ok = armijo_trial(vg, project_fn, x, fx, g, eta, w)
        return eta, xn, ok, c[3] + 1

    xn, _, _, ok = armijo_trial(vg, project_fn, x, fx, g, eta, w)
    eta, xn, ok, _ = jax.lax.while_loop(lambda c: ~c[2] & (c[3] < MAX_HALVINGS), shrink, (eta, xn, ok, 0))
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), xn, x), next_eta(ok, eta, eta0, eta)


def _epoch(static, name, h, x, state, batches, lr):
    """One epoch: a scan over the rows of ``batches (n_batches, width)``; returns ``x, state, move``."""
    opt = None if name == "pgd" else optax_of(name, lr)

    def step(carry, B):
        x, s = carry
        xb, hb, back, n = _rows(static, h, x, B)
        if opt is None:
            xb, eta = _armijo(static, hb, xb, n, s["eta"], lr)
            return ({**xb, "Z": x["Z"].at[back].set(xb["Z"], mode="drop")}, {"eta": eta}), None
        # optax state (momentum, adam moments) spans all rows: the step does too
        g = jax.grad(lambda xb: objective(static, xb, hb))(xb)
        g = {k: v * n for k, v in g.items()}
        u, s = opt.update({**g, "Z": jnp.zeros_like(x["Z"]).at[back].add(g["Z"], mode="drop")}, s, x)
        return (project_vars(static, optax.apply_updates(x, u), h), s), None

    (xn, s), _ = jax.lax.scan(step, (x, state), batches)
    return xn, s, jnp.sqrt(jnp.mean(jnp.sum((xn["Z"] - x["Z"]) ** 2, axis=1)))


def _loss(static, x, h, batches):
    return objective(static, x, h._replace(batches=batches))


def _delta_gm(x, labels, K):
    return geometry.delta_gm(geometry.normalize_rows(np.asarray(x["Z"])), labels, K)


_init_jit = jax.jit(_init, static_argnums=(0, 1))
_epoch_jit = jax.jit(_epoch, static_argnums=(0, 1))
_loss_jit = jax.jit(_loss, static_argnums=0)


def solve(problem: Problem, *, epochs: int = DEFAULT_EPOCHS, lr: float | None = None,
          optimizer: str | optax.GradientTransformation = "pgd",
          tol: float | None = None, patience: int = 10, seed: int = 0, dtype: str | None = None,
          progress: bool | None = None) -> EpochSolution:
    """Minimise an SC ``problem`` by stochastic projected gradient over ``epochs`` epochs (module doc).

    Args:
      problem: a ``ufm.Problem`` with a contrastive loss (SC, BCL; its ``batch_seed`` draws the batches).
      epochs: the most epochs (``tol=0``: exactly this many).
      lr: the first (``pgd``) or fixed step ``eta`` in the metric of the module doc (None: ``tau / rho^2`` for
        pgd, ``0.5 tau / rho^2`` for the optax optimizers, ``0.01 rho`` for adam).
      optimizer: ``"pgd"`` (stochastic Armijo line search), ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``,
        or an ``optax.GradientTransformation`` (it brings its own rate).
      tol: stopping tolerance (module doc: the RMS row displacement of an epoch at most ``sqrt(tol) * rho`` and
        the relative change of its objective at most ``tol``); patience: in how many consecutive epochs.
      seed: the random start (the same start as ``solvers.pgd.solve`` with this seed).
      dtype: ``"float64"`` (default) or ``"float32"`` (opt-in; recorded). progress: True, False, or None (after 2 s).
    Raises:
      ValueError for a bad argument or a CE problem; NonFiniteLoss when the loss becomes NaN or infinite.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    check_args(1, lr, optimizer, tol, dtype)
    if not objectives.of(problem).contrastive:
        raise ValueError(f"loss: the epoch solver is for contrastive losses; a {problem.loss!r} problem's loss is a "
                         "mean of per-sample terms, so solve it full-batch with solvers.pgd.solve")
    name = optimizer
    dtype = dtype or "float64"
    tol = (1e-12 if dtype == "float64" else 1e-6) if tol is None else float(tol)
    start = time.perf_counter()
    labels = problem.label_array
    bar = Progress(epochs, "epochs", enabled=bool(progress))
    with jax.enable_x64(dtype == "float64"):
        flat = problem.replace(batching="full", batches=None)
        static = static_of(flat, 1, "sgd", dtype)
        h = hyper_of(flat, jnp.dtype(dtype))
        rate = lr or float(0.01 * problem.radius if name == "adam" else
                           (1.0 if name == "pgd" else 0.5) * problem.tau / problem.radius**2)
        rate = jnp.asarray(rate, dtype)  # type: ignore[assignment]  # the same number, as a traced leaf
        x, opt_state = _init_jit(static, name, h, jax.random.PRNGKey(seed), rate)
        sets = [jnp.asarray(pad(epoch_batch_list(problem, 0)))]
        history = [float(_loss_jit(static, x, h, sets[0]))]
        dgm = [_delta_gm(x, labels, problem.K)]
        converged, move, moves, quiet = False, float("nan"), [], 0
        for e in range(epochs):
            if e > 0:
                sets.append(jnp.asarray(pad(epoch_batch_list(problem, e))))
            # the epoch's objective before it, for the stop test (epoch 0's is history[0])
            before = history[0] if e == 0 or tol == 0 else float(_loss_jit(static, x, h, sets[e]))
            x, opt_state, mv = _epoch_jit(static, name, h, x, opt_state, sets[e], rate)
            f = float(_loss_jit(static, x, h, sets[e]))
            if not math.isfinite(f):
                raise NonFiniteLoss(f"the loss became non-finite in epoch {e}; try dtype='float64', a larger tau "
                                    "or a smaller lr")
            move = float(mv) / problem.radius
            moves.append(move)
            history.append(f)
            dgm.append(_delta_gm(x, labels, problem.K))
            if progress is None and not bar.enabled and time.perf_counter() - start > 2.0:
                bar.enabled = True
            bar.update(1, f"loss {f:.6g} delta_gm {dgm[-1]:.2e} move {move:.1e}")
            quiet = quiet + 1 if tol > 0 and bool(small_step(move, f, before, tol, 1.0)) else 0
            if quiet >= patience:
                converged = True
                break
        run = len(sets)
        slots = np.asarray([int(jnp.sum(B >= 0)) for B in sets], dtype=np.float64)
        loss = float(np.dot([float(_loss_jit(static, x, h, B)) for B in sets], slots) / slots.sum())
        full = float(_loss_jit(static, x, h, None)) if problem.N <= FULL_BATCH_MAX else float("nan")
        x = jax.device_get(x)
    return EpochSolution(
        Z=np.asarray(x["Z"]), W=None, b=None, C=None if "C" not in x else np.asarray(x["C"]), loss=loss,
        history=np.asarray(history), steps=run * len(sets[0]),
        converged=converged, seconds=time.perf_counter() - start, dtype=dtype, seed=int(seed), problem=problem,
        reason="converged" if converged else "max_epochs", gradient_mapping=move, optimizer=optimizer if isinstance(optimizer, str) else "custom",
        lr=float(opt_state["eta"] if name == "pgd" else rate), moves=np.asarray(moves), epochs=run,
        batches_per_epoch=len(sets[0]), delta_gm=np.asarray(dgm), of_loss=_of_minimum(problem, sets, slots),
        full_batch_loss=full, objective=f"mean over the anchor slots of {describe(problem, run)}")


def _of_minimum(problem, sets, slots):
    """The UFM+ minimum of the batches of all epochs (slot-weighted mean of the epochs' minima), or None."""
    if not (problem.nonneg and constraints.get(problem.constraint).equality and problem.dim >= problem.K):
        return None
    of = [theory.sc_of_loss(problem.counts, problem.tau, problem.radius, batches=np.asarray(B),
                            labels=problem.label_array) for B in sets]
    return float(np.dot(of, slots) / slots.sum())
