"""One projected step of the engine, in the metric of ``solvers.pgd`` (its module doc): the objective, the
projection, the step metric, the initial step ``eta0``, and the rules of ufm's projected-gradient loops
(``solvers.pgd``, ``solvers.epochs``, ``solvers.classlevel``), each written once:

* the trial (:func:`armijo_trial`, all three loops): one projected step and its Armijo test, with one rounding
  slack (``ARMIJO_SLACK``);
* the step size (:func:`next_eta`, ``pgd`` with or without acceleration, ``epochs`` and the class-level loops):
  after an accepted step grow by ``GROW``, at most ``ETA_MAX * eta0``; after a rejected one halve (``SHRINK``), at
  most ``MAX_HALVINGS`` times in a row. The class-level loops (``classlevel``, ``reduced``) make one trial per
  iteration with no cap (their objective without its constant part is exponentially small at small ``tau``, and
  its steps exponentially long) and grow by 2 (``solvers.classlevel.CLASS_GROW``, measured there);
* the stop test (:func:`small_step`, ``pgd`` and ``epochs``): the step small and the relative change of the loss
  small (:func:`small_change`). ``pgd`` tests each step (the gradient mapping; from the extrapolated point under
  acceleration); ``epochs`` tests each epoch (the rows' displacement over the epoch, and its own batches' loss
  before and after it, since consecutive epochs have different batches) and stops after ``patience`` epochs in a
  row. The class-level loops (``classlevel``, ``reduced``) use :func:`small_change` alone, on their loss over a
  segment of iterations (each segment a fixed-length scan over a batch of problems, the test made between
  segments; a momentum method's single step may change the loss little far from a minimum);
* acceleration (:func:`extrapolate`, ``classlevel`` and ``reduced`` always, ``pgd`` with ``acceleration=True``):
  the FISTA momentum step with adaptive restart (the loops project the extrapolated point). The epoch solver has
  none of its own (its optax optimizers ``"momentum"`` and ``"nesterov"`` carry momentum across batches).

References:
  Beck & Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse problems", SIAM J.
  Imaging Sci. 2 (2009); O'Donoghue & Candes, "Adaptive restart for accelerated gradient schemes", Found. Comput.
  Math. 15 (2015).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ufm import constraints, objectives
from ufm.constraints import project

from .state import Static

__all__ = ["ETA_MAX", "GROW", "SHRINK", "MAX_HALVINGS", "ARMIJO_SLACK", "objective", "project_vars", "n_samples",
           "metric", "default_eta0", "optax_of", "init_params", "inner", "armijo_trial", "next_eta", "small_step",
           "small_change",
           "extrapolate"]

ETA_MAX = 1000  # the step never grows beyond ETA_MAX * eta0
GROW = 1.25  # the step after an accepted one
SHRINK = 0.5  # the step after a rejected one
MAX_HALVINGS = 50  # a line search that fails this many times in a row: no step decreases the loss (stationary)
ARMIJO_SLACK = 10  # the Armijo test forgives ARMIJO_SLACK * eps * |f(x)| of rounding


def objective(static: Static, x, h):
    """The objective ``x -> f`` of a problem, regularisers included (``ufm.objectives``: the loss's ``value``)."""
    return objectives.get(static.loss).value(x, h._replace(n=n_samples(static, h)))


def project_vars(static, x, h):
    """``Z`` (and the prototypes ``C``, which live on the features' set) projected onto the feasible set."""
    out = {**x, "Z": project(x["Z"], static.constraint, h.radius, h.nonneg)}
    if "C" in x:
        out["C"] = project(x["C"], static.constraint, h.radius, h.nonneg)
    return out


def n_samples(static, h):
    """N: the static row count, or the real one of a problem padded with masked rows (``solve_many``)."""
    return static.N if h is None or h.n is None else h.n


def metric(static, h=None):
    """Weights of the step metric per variable: rows of Z (and of the prototypes C) move by N * gradient (see
    module doc)."""
    n = n_samples(static, h)
    return {"Z": 1.0 / n, "C": 1.0 / n, "W": 1.0, "b": 1.0}


def default_eta0(static, h):
    """Initial step of the rule in the module doc."""
    if objectives.get(static.loss).contrastive:
        return h.tau / h.radius ** 2
    if not constraints.get(static.constraint).bounded:
        return jnp.ones_like(h.radius)
    return 1.0 / h.radius ** 2


def optax_of(name, lr):
    """The ``optax.GradientTransformation`` of an optimizer name at rate ``lr`` (a transformation passed in is
    returned as it is)."""
    if not isinstance(name, str):
        return name
    return {"sgd": lambda: optax.sgd(lr), "momentum": lambda: optax.sgd(lr, momentum=0.9),
            "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
            "adam": lambda: optax.adam(lr)}[name]()


def init_params(static, key, h):
    """Random feasible start: Gaussian rows (absolute values under ReLU) projected; Gaussian W (entries of scale
    0.1, 1 under ReLU); b = 0."""
    dt = jnp.dtype(static.dtype)
    kz, kw = jax.random.split(key)
    Z = jax.random.normal(kz, (static.N, static.dim), dt)
    if h.mask is not None:  # padded rows (solve_many): zero, so they project to a fixed point and never move
        Z = jnp.where(h.mask[:, None], Z, 0.0)
    Z = jnp.where(h.nonneg, jnp.abs(Z), Z)
    if not constraints.get(static.constraint).bounded:
        Z = Z * 0.1
    x = {"Z": Z}
    if "C" in objectives.get(static.loss).variables:  # prototypes: Gaussian rows on the features' set
        Cp = jax.random.normal(kw, (static.K, static.dim), dt)
        x["C"] = jnp.where(h.nonneg, jnp.abs(Cp), Cp)
    if not objectives.get(static.loss).contrastive:
        # ReLU features: a small W lets a minority class's rows reach 0, where they stay (a dead class)
        x["W"] = jnp.where(h.nonneg, 1.0, 0.1) * jax.random.normal(kw, (static.K, static.dim), dt)
        if static.bias:
            x["b"] = jnp.zeros((static.K,), dt)
    return project_vars(static, x, h)


def inner(w, a, b):
    """``<a, b>`` in the step metric with weights ``w`` per variable (:func:`metric`)."""
    return sum(w[k] * jnp.sum(a[k] * b[k]) for k in a)


def armijo_trial(value_and_grad, project_fn, x, f, g, eta, w):
    """One trial of the projected Armijo rule (module doc), shared by every projected-gradient loop.

    Args:
      value_and_grad: ``x -> (f, grad)`` (``grad`` may be None when the caller needs the value only).
      project_fn: ``x -> P(x)``, the feasible set.
      x: the point (a dict of arrays). f: ``f(x)``. g: ``grad f(x)`` (plain gradient).
      eta: the trial step. w: metric weights per variable (rows of ``Z`` move by ``g / w``).
    Returns:
      ``(xn, fn, gn, ok)``: the projected trial point, its value and gradient, and whether it passes
      ``f(xn) <= f(x) + <g, xn - x> + ||xn - x||_w^2 / (2 eta)`` (plus ``ARMIJO_SLACK eps |f(x)|`` of rounding
      slack).
    """
    tm = jax.tree_util.tree_map
    gs = {k: g[k] / w[k] for k in g}
    xn = project_fn(tm(lambda a, b: a - eta * b, x, gs))
    fn, gn = value_and_grad(xn)
    d = tm(lambda a, b: a - b, xn, x)
    eps = jnp.finfo(f.dtype).eps
    ok = fn <= f + inner(w, gs, d) + inner(w, d, d) / (2 * eta) + ARMIJO_SLACK * eps * jnp.abs(f)
    return xn, fn, gn, ok


def next_eta(ok, eta, eta0, rejected, grow=GROW):
    """The step-size rule: after an accepted trial (``ok``) the step grows by ``grow`` (``GROW``), at most
    ``ETA_MAX * eta0`` (``eta0 = inf``: no cap); after a rejected one it is ``rejected`` (the caller's halving,
    ``SHRINK * eta``, or where its search restarts).

    Args:
      ok: whether the trial at ``eta`` passed. eta: the trial step. eta0: the initial step of the rule.
      rejected: the step after a failed trial.
      grow: the growth factor after an accepted trial.
    Returns:
      The next step.
    """
    return jnp.where(ok, jnp.minimum(eta * grow, ETA_MAX * eta0), rejected)


def small_step(gm, fn, f, tol, scale):
    """The stop test: the size of the step ``gm`` at most ``sqrt(tol) * scale`` and the relative change of the
    loss from ``f`` to ``fn`` at most ``tol`` (``|fn - f| <= tol (1 + |f|)``).

    Args:
      gm: the size of the step, RMS per row: ``solvers.pgd``'s gradient mapping (in units of ``eta0``, so a step of
        ``eta0`` counts its displacement), ``solvers.epochs``'s displacement over an epoch (in units of ``rho``,
        ``scale = 1``). fn: the loss after it. f: the loss before it (of the same objective).
      tol: the tolerance (``0``: never small). scale: the radius (``1`` for an unbounded set).
    Returns:
      A boolean array.
    """
    return (gm <= jnp.sqrt(tol) * scale) & small_change(fn, f, tol)


def small_change(fn, f, tol):
    """The loss half of :func:`small_step`: ``|fn - f| <= tol (1 + |f|)`` (False where ``f`` is NaN: no previous
    value). Arithmetic only, so it takes JAX or NumPy arrays (the class-level loops test it between segments).

    Args:
      fn: the loss now. f: the loss before. tol: the tolerance.
    Returns:
      A boolean array.
    """
    return abs(fn - f) <= tol * (1 + abs(f))


def extrapolate(x_new, x, t, better):
    """Acceleration: the FISTA momentum step from the accepted point ``x_new`` and the previous one ``x``, with
    the adaptive restart of O'Donoghue & Candes (momentum dropped when the step did not decrease the loss).

    Args:
      x_new: the new point. x: the previous point (dicts of arrays). t: the momentum counter (``1`` at a start).
      better: whether the step decreased the loss (otherwise restart: ``t = 1``, no momentum).
    Returns:
      ``(y, t_new)``: the extrapolated point (not projected) and the new counter.
    """
    t_new = jnp.where(better, (1 + jnp.sqrt(1 + 4 * t * t)) / 2, 1.0)
    mom = jnp.where(better, (t - 1) / t_new, 0.0)
    return jax.tree_util.tree_map(lambda a, b: a + mom * (a - b), x_new, x), t_new
