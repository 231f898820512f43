"""One projected step of the engine, in the metric of ``solvers.pgd`` (its module doc): the objective, the
projection, the step metric, the initial step ``eta0`` and the Armijo trial shared by ``solvers.pgd`` and
``solvers.epochs``."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ufm import constraints, objectives
from ufm.constraints import project

from .state import Static

__all__ = ["ETA_MAX", "objective", "project_vars", "n_samples", "metric", "default_eta0", "optax_of", "init_params",
           "inner", "armijo_trial"]

ETA_MAX = 1000  # the step never grows beyond ETA_MAX * eta0


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
    """One trial of the projected Armijo rule (module doc), shared by ``pgd`` and ``epochs``.

    Args:
      value_and_grad: ``x -> (f, grad)``. project_fn: ``x -> P(x)``, the feasible set.
      x: the point (a dict of arrays). f: ``f(x)``. g: ``grad f(x)`` (plain gradient).
      eta: the trial step. w: metric weights per variable (rows of ``Z`` move by ``g / w``).
    Returns:
      ``(xn, fn, gn, ok)``: the projected trial point, its value and gradient, and whether it passes
      ``f(xn) <= f(x) + <g, xn - x> + ||xn - x||_w^2 / (2 eta)`` (plus ``10 eps |f(x)|`` of rounding slack).
    """
    tm = jax.tree_util.tree_map
    gs = {k: g[k] / w[k] for k in g}
    xn = project_fn(tm(lambda a, b: a - eta * b, x, gs))
    fn, gn = value_and_grad(xn)
    d = tm(lambda a, b: a - b, xn, x)
    eps = jnp.finfo(f.dtype).eps
    ok = fn <= f + inner(w, gs, d) + inner(w, d, d) / (2 * eta) + 10 * eps * jnp.abs(f)
    return xn, fn, gn, ok
