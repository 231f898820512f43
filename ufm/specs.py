"""Typed statements of the problem families that the grid workflows run: :class:`PhaseSpec` (``ufm phase``: the
class-level problems over the imbalance ratio ``R`` and tau, or CE's weight decay), :class:`SweepSpec`
(``ufm sweep``: N-sample problems over ``R``, tau, loss, ReLU and batching) and :class:`LandscapeSpec`
(``ufm landscape``: integer class counts x temperatures, many random starts each).

Each is a frozen dataclass that validates itself on construction, as ``ufm.Problem`` does: a bad field raises one
``ValueError`` (``TypeError`` for a value of the wrong kind) whose message starts with the field's name, so the
command line prints it as one line (exit 2) and a Python caller learns the same before any work. Lists given for
the tuple fields are stored as tuples (the records are hashable and compare by value). The workflows
(``solvers.phase``, ``solvers.sweep``, ``solvers.landscape``) take these records; the command line only maps its
flags onto them.

Nothing heavy is imported here at module level: the loss registry (``ufm.objectives``) and ``ufm.Problem`` are
imported when a record is validated.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from .defaults import DEFAULT_STEPS

__all__ = ["PhaseSpec", "SweepSpec", "LandscapeSpec", "log_grid", "IMBALANCES", "MAX_SAMPLES", "MAX_SEED",
           "LANDSCAPE_MAX_N"]

IMBALANCES = ("step", "long-tail")
MAX_SAMPLES = 10**6  # most samples N of one sweep point (the features alone are N x d floats, the Gram N x N)
MAX_SEED = 2**32 - 1  # seeds are 32-bit (NumPy's and JAX's generators)
LANDSCAPE_MAX_N = 400  # most samples of one landscape point (the local certificate's Hessian is (N d) x (N d))


def log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n`` values log-spaced from ``lo`` to ``hi``, both included exactly (``ufm phase``'s ``LO:HI:N``).

    Args:
      lo: the first value, > 0.
      hi: the last value, >= ``lo``.
      n: how many values, >= 1 (1: ``lo``, which must then equal ``hi``).
    Returns:
      the values, increasing.
    """
    if n < 1 or not (0 < lo <= hi) or not math.isfinite(hi) or (n == 1 and lo != hi):
        raise ValueError(f"grid: expected 0 < lo <= hi and n >= 1 (lo == hi for n = 1), got {lo}, {hi}, {n}")
    if n == 1:
        return (float(lo),)
    vals = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    vals[-1] = hi
    return tuple(float(v) for v in vals)


# --- field checks: each raises with the field's name first ----------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int(name: str, v, lo: int | None = None, hi: int | None = None) -> int:
    if not _is_int(v):
        raise TypeError(f"{name}: must be an integer, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        where = (f">= {lo}" if hi is None else f"in {lo}..{hi}") if lo is not None else f"<= {hi}"
        raise ValueError(f"{name}: must be an integer {where}, got {v}")
    return v


def _real(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be a finite number, got {v}")
    return v


def _reals(name: str, values) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: must be a list of numbers, got {values!r}")
    out = tuple(_real(name, v) for v in values)
    if not out:
        raise ValueError(f"{name}: the list is empty")
    return out


def _increasing(name: str, values: tuple[float, ...], lo: float | None = None, positive: bool = False):
    for v in values:
        if positive and not v > 0:
            raise ValueError(f"{name}: every value must be a finite number > 0, got {v!r}")
        if lo is not None and v < lo:
            raise ValueError(f"{name}: every value must be >= {lo:g}, got {v}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name}: the values must be strictly increasing, got {list(values)}")


def _choice(name: str, v, choices) -> str:
    if v not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {v!r}")
    return v


def _bool(name: str, v) -> bool:
    if not isinstance(v, (bool, int)) or (not isinstance(v, bool) and v not in (0, 1)):
        raise TypeError(f"{name}: must be True or False, got {v!r}")
    return bool(v)


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)  # a frozen record normalises its own fields in __post_init__


# --- ufm phase --------------------------------------------------------------------------------------------------------

DEFAULT_PHASE_RATIOS = log_grid(1.0, 100.0, 25)
DEFAULT_PHASE_TAUS = log_grid(0.05, 1.0, 8)
DEFAULT_PHASE_WEIGHT_DECAYS = log_grid(1e-3, 1e-1, 8)


@dataclass(frozen=True)
class PhaseSpec:
    """A phase diagram's family of class-level problems (``ufm.ClassProblem``, real class sizes) and its grid:
    ``K = classes`` classes sized by ``imbalance`` (``ufm.imbalance.class_sizes``) at each ratio ``R`` of
    ``ratios``, for each temperature of ``taus`` (SC, BCL) or each weight decay of ``weight_decays`` (CE).

    Which axis a loss has follows from the loss (``axis``: ``"tau"`` for a contrastive loss, ``"weight_decay"``
    for CE); the other must stay None, and the loss's one defaults to 8 values log-spaced over 0.05..1 (tau) or
    1e-3..1e-1 (weight decay). ``dim`` None becomes ``classes``. Validated on construction (module doc).

    Args:
      loss: a loss whose objective declares a class-level value (``ufm.objectives``: ``class_level``).
      nonneg: UFM+ (non-negative features); refused for a loss with class prototypes (BCL).
      classes: K >= 2.
      imbalance: ``"step"`` (majorities of ``R n_min``, minorities of ``n_min``) or ``"long-tail"``.
      n_min: the smallest class's size, a real >= 2 (or exactly 1).
      minority_fraction: the share of minority classes, in (0, 1).
      dim: the features' dimension d >= 1 (None: K).
      constraint: ``"sphere"`` or ``"ball"``.
      radius: the sphere's or ball's radius, > 0.
      ratios: the imbalance ratios R >= 1, strictly increasing (default 25 log-spaced over 1..100).
      taus: the temperatures, > 0, strictly increasing (contrastive losses only).
      weight_decays: CE's weight decays lambda_W, > 0, strictly increasing (CE only).
    """

    loss: str = "sc"
    nonneg: bool = False
    classes: int = 4
    imbalance: str = "step"
    n_min: float = 5.0
    minority_fraction: float = 0.5
    dim: int | None = None
    constraint: str = "sphere"
    radius: float = 1.0
    ratios: tuple[float, ...] = DEFAULT_PHASE_RATIOS
    taus: tuple[float, ...] | None = None
    weight_decays: tuple[float, ...] | None = None

    def __post_init__(self):
        from . import objectives

        _choice("loss", self.loss, objectives.NAMES)
        obj = objectives.get(self.loss)
        _set(self, "nonneg", _bool("nonneg", self.nonneg))
        if obj.prototypes and self.nonneg:
            raise ValueError(f"nonneg: loss {self.loss} (class prototypes) has no class-level bound with "
                             "non-negative features")
        if obj.class_level is None:
            raise ValueError(f"loss: {self.loss}: its objective declares no class-level value (ufm.objectives: "
                             "class_level); the phase diagram needs one")
        if obj.contrastive and self.weight_decays is not None:
            raise ValueError(f"weight_decays: the weight decay is CE's axis; {self.loss} has a temperature: give its "
                             "temperatures instead")
        if not obj.contrastive and self.taus is not None:
            raise ValueError("taus: CE has no temperature; give its weight decays instead")
        _set(self, "classes", _int("classes", self.classes, 2))
        if self.dim is not None:
            _set(self, "dim", _int("dim", self.dim, 1))
        else:
            _set(self, "dim", self.classes)
        n_min = _real("n_min", self.n_min)
        if not (n_min >= 2 or n_min == 1):
            raise ValueError(f"n_min: must be a number >= 2 (or exactly 1), got {n_min}")
        _set(self, "n_min", n_min)
        frac = _real("minority_fraction", self.minority_fraction)
        if not 0 < frac < 1:
            raise ValueError(f"minority_fraction: must lie in (0, 1), got {frac}")
        _set(self, "minority_fraction", frac)
        _choice("imbalance", self.imbalance, IMBALANCES)
        _choice("constraint", self.constraint, ("sphere", "ball"))
        radius = _real("radius", self.radius)
        if not radius > 0:
            raise ValueError(f"radius: must be > 0, got {radius}")
        _set(self, "radius", radius)
        ratios = _reals("ratios", self.ratios)
        _increasing("ratios", ratios, positive=True)
        if ratios[0] < 1:
            raise ValueError(f"ratios: every R must be >= 1, got {ratios[0]}")
        _set(self, "ratios", ratios)
        name = "taus" if obj.contrastive else "weight_decays"
        given = getattr(self, name)
        values = (DEFAULT_PHASE_TAUS if obj.contrastive else DEFAULT_PHASE_WEIGHT_DECAYS) if given is None \
            else _reals(name, given)
        _increasing(name, values, positive=True)
        _set(self, name, values)

    @property
    def axis(self) -> str:
        """``"tau"`` (a contrastive loss) or ``"weight_decay"`` (CE): the second axis of the grid."""
        return "tau" if self.taus is not None else "weight_decay"

    @property
    def values(self) -> tuple[float, ...]:
        """The second axis's values: ``taus`` or ``weight_decays``."""
        values = self.taus if self.taus is not None else self.weight_decays
        assert values is not None  # __post_init__ fills the loss's axis
        return values

    @property
    def points(self) -> int:
        """The grid's size, ``len(values) * len(ratios)``."""
        return len(self.values) * len(self.ratios)

    def family(self) -> dict:
        """The family as the plain dict the phase workflow's helpers read (``solvers.workflows.phase``:
        ``grid_problem``, ``choose_path``, ``memory_bytes``): ``loss``, ``nonneg``, ``classes``, ``imbalance``,
        ``n_min``, ``minority_fraction``, ``dim``, ``constraint``, ``radius``, ``axis``."""
        return {"loss": self.loss, "nonneg": self.nonneg, "classes": self.classes, "imbalance": self.imbalance,
                "n_min": self.n_min, "minority_fraction": self.minority_fraction, "dim": self.dim,
                "constraint": self.constraint, "radius": self.radius, "axis": self.axis}

    @classmethod
    def from_dict(cls, spec: dict, ratios, values) -> "PhaseSpec":
        """The record of an older call: a family dict (``family``'s keys; ``radius`` and ``constraint`` optional;
        ``axis``, when given, must be the loss's) with the grid's ``ratios`` and axis ``values``. Validated."""
        if not isinstance(spec, dict):
            raise TypeError(f"spec: must be a PhaseSpec or a dict, got {type(spec).__name__}")
        known = {"loss", "nonneg", "classes", "imbalance", "n_min", "minority_fraction", "dim", "constraint",
                 "radius", "axis"}
        extra = sorted(set(spec) - known)
        if extra:
            raise ValueError(f"spec: unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")
        if ratios is None or values is None:
            raise ValueError("ratios: a dict spec needs the grid's ratios and values (or give a PhaseSpec)")
        kw = {k: spec[k] for k in known - {"axis"} if k in spec}
        from . import objectives

        loss = kw.get("loss", "sc")
        axis = "tau" if loss in objectives.NAMES and objectives.get(loss).contrastive else "weight_decay"
        if "axis" in spec and spec["axis"] != axis:
            raise ValueError(f"axis: loss {loss} has the axis {axis!r}, got {spec['axis']!r}")
        kw["taus" if axis == "tau" else "weight_decays"] = tuple(values)
        return cls(ratios=tuple(ratios), **kw)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --- ufm sweep --------------------------------------------------------------------------------------------------------

def _names(name: str, values, what: str = "names") -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: must be a list of {what}, got {values!r}")
    out = tuple(values)
    if not out:
        raise ValueError(f"{name}: the list is empty")
    return out


@dataclass(frozen=True)
class SweepSpec:
    """A sweep's grid of N-sample problems (``ufm.Problem``): for each loss of ``losses``, each ratio ``R``,
    each batching, each choice of ``nonneg`` and (contrastive losses) each temperature, the integer counts
    ``ufm.imbalance.counts_for(imbalance, classes, n_min, R, minority_fraction)``. CE has no temperature: its
    points are solved once per ``R`` (``tau`` None), on the ball, with weight decay ``weight_decay``.

    Validated on construction, every point included (its ``ufm.Problem`` is built), so a bad grid fails before
    any work. :meth:`points` gives the points as the dicts recorded in ``results.jsonl`` (their canonical JSON is
    the point's ``id``).

    Args:
      losses: loss names (``ufm.objectives.NAMES``).
      imbalance: ``"step"`` or ``"long-tail"``.
      classes: K.
      n_min: the smallest class's size (an integer).
      ratios: imbalance ratios R >= 1.
      taus: temperatures > 0 (contrastive losses).
      dim: the features' dimension (None: K).
      nonneg: the ReLU choices, e.g. ``(False,)``, ``(False, True)``.
      batchings: batching schemes (``"full"``, ``"fixed:8"``, ``"binding:8"``, ...).
      minority_fraction: the share of minority classes (step).
      radius: the sphere's radius (CE: the ball's).
      weight_decay: CE's lambda_W (None: CE's default).
      seed: the random starts and the batchings' ``batch_seed``, in 0..2^32-1.
      steps: most projected-gradient steps per point, >= 1.
      epochs: epochs of the epoch schemes (``shuffled``, ``binding``), >= 1.
      dtype: ``"float64"`` or ``"float32"``.
    """

    losses: tuple[str, ...] = ("sc",)
    imbalance: str = "step"
    classes: int = 4
    n_min: int = 3
    ratios: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    taus: tuple[float, ...] = (0.5, 1.0)
    dim: int | None = None
    nonneg: tuple[bool, ...] = (False,)
    batchings: tuple[str, ...] = ("full",)
    minority_fraction: float = 0.5
    radius: float = 1.0
    weight_decay: float | None = None
    seed: int = 0
    steps: int = DEFAULT_STEPS
    epochs: int = 200
    dtype: str = "float64"
    _points: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        from . import objectives

        losses = _names("loss", self.losses, "loss names")
        ratios = _reals("ratios", self.ratios)
        taus = _reals("taus", self.taus)
        nonneg = tuple(_bool("nonneg", v) for v in _names("nonneg", self.nonneg, "True / False"))
        batchings = _names("batchings", self.batchings, "batching schemes")
        for R in ratios:
            if not R >= 1:
                raise ValueError(f"ratios: every R must be >= 1, got {R}")
        for t in taus:
            if not t > 0:
                raise ValueError(f"taus: every tau must be > 0, got {t}")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be an integer in [0, {MAX_SEED}] (2^32 - 1), got {self.seed!r}")
        for loss in losses:
            if loss not in objectives.NAMES:
                raise ValueError(f"loss: must be one of {', '.join(objectives.NAMES)}, got {loss!r}")
        _choice("dtype", self.dtype, ("float64", "float32"))
        for name, value in (("losses", losses), ("ratios", ratios), ("taus", taus), ("nonneg", nonneg),
                            ("batchings", batchings)):
            _set(self, name, value)
        _set(self, "_points", tuple(self._build()))

    def _build(self) -> list[dict]:
        from . import imbalance, objectives
        from .batching import EPOCH_SCHEMES, parse_scheme

        classes, n_min, points = self.classes, self.n_min, []
        for loss in self.losses:
            for R in self.ratios:
                if isinstance(n_min, int) and isinstance(classes, int) and n_min * max(R, classes) > MAX_SAMPLES:
                    raise ValueError(f"ratios: R = {R:g} with K = {classes} and n_min = {n_min} gives "
                                     f"N >= {min(n_min * max(R, classes), 1.7e308):.3g} samples; at most "
                                     f"{MAX_SAMPLES:.0e} (10^{round(math.log10(MAX_SAMPLES))}): lower R, --classes "
                                     "or --n-min")
                counts = imbalance.counts_for(self.imbalance, classes, n_min, R, self.minority_fraction)
                if sum(counts) > MAX_SAMPLES:
                    raise ValueError(f"ratios: R = {R:g} gives N = {sum(counts):.3g} samples; at most "
                                     f"{MAX_SAMPLES:.0e} (10^{round(math.log10(MAX_SAMPLES))}): lower R or --n-min")
                for b in self.batchings:
                    parse_scheme(b, sum(counts))
                    for nn in self.nonneg:
                        contrastive = objectives.get(loss).contrastive
                        for tau in (self.taus if contrastive else [None]):
                            points.append({
                                "R": float(R), "tau": None if tau is None else float(tau), "loss_type": loss,
                                "nonneg": bool(nn), "batching": b, "counts": list(counts), "K": classes,
                                "dim": classes if self.dim is None else self.dim, "imbalance": self.imbalance,
                                "n_min": n_min, "minority_fraction": self.minority_fraction, "radius": self.radius,
                                "weight_decay": None if contrastive else self.weight_decay,
                                "seed": self.seed, "steps": self.steps, "dtype": self.dtype,
                                **({"epochs": self.epochs} if parse_scheme(b).name in EPOCH_SCHEMES else {})})
        for p in points:
            self.problem(p)  # validate every point before any work
        return points

    def points(self) -> list[dict]:
        """The grid's points in order (loss, R, batching, nonneg, tau), as fresh dicts: the fields recorded in
        ``results.jsonl`` (``R``, ``tau``, ``loss_type``, ``nonneg``, ``batching``, ``counts``, ``K``, ``dim``,
        ``imbalance``, ``n_min``, ``minority_fraction``, ``radius``, ``weight_decay``, ``seed``, ``steps``,
        ``dtype``, and ``epochs`` for an epoch scheme)."""
        return [{**p, "counts": list(p["counts"])} for p in self._points]

    @staticmethod
    def problem(point: dict):
        """The ``ufm.Problem`` of a point of :meth:`points` (CE: on the ball, with its weight decay)."""
        from . import objectives
        from .problem import Problem

        kw: dict[str, Any] = dict(counts=point["counts"], loss=point["loss_type"], dim=point["dim"],
                                  nonneg=point["nonneg"], radius=point["radius"], batching=point["batching"],
                                  batch_seed=point["seed"])
        if point["tau"] is not None:
            kw["tau"] = point["tau"]
        if not objectives.get(point["loss_type"]).contrastive:  # a classifier: weight decay, features on the ball
            kw["weight_decay"] = point["weight_decay"]
            kw["constraint"] = "ball"
        return Problem(**kw)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "_points"}


# --- ufm landscape ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LandscapeSpec:
    """A landscape grid: full-batch SC on the unit sphere, no ReLU, float64, at integer class counts x
    temperatures, ``starts`` random starts per point (start ``i`` from seed ``seed + i``).

    The class counts are either ``counts`` (explicit count vectors) or the family ``classes``, ``imbalance``,
    ``n_min``, ``minority_fraction``, ``ratios`` (``ufm.imbalance.counts_for``, sizes rounded to integers; a
    vector that rounds to one already in the grid is kept once), not both: with ``counts`` the family fields
    stay None; without it, a family field left None takes its default (3 classes, step, ``n_min`` 2, fraction
    0.5, ratios 1, 2, 5). Validated on construction, every point included.

    Args:
      counts: explicit count vectors (each >= 2 classes of >= 1 sample, one of >= 2), or None.
      classes: K >= 2 (family).
      imbalance: ``"step"`` or ``"long-tail"`` (family).
      n_min: the smallest class's size, an integer >= 1 (family).
      minority_fraction: the share of minority classes, in (0, 1) (family).
      ratios: imbalance ratios R >= 1, strictly increasing (family).
      taus: temperatures > 0, strictly increasing.
      dim: the features' dimension (None: K + 1, the theorem's d > K).
      starts: random starts per point, >= 1.
      seed: start ``i`` of every point is drawn from ``seed + i``.
      steps: most projected-gradient steps per start, >= 1.
      tol: relative tolerance of the global certificate and of equal losses, >= 0.
      gram_tol: two stationary points are one when their Gram invariants agree to this, > 0.
    """

    counts: tuple[tuple[int, ...], ...] | None = None
    classes: int | None = None
    imbalance: str | None = None
    n_min: int | None = None
    minority_fraction: float | None = None
    ratios: tuple[float, ...] | None = None
    taus: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    dim: int | None = None
    starts: int = 8
    seed: int = 0
    steps: int = DEFAULT_STEPS
    tol: float = 1e-6
    gram_tol: float = 1e-2
    _points: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        family = {"classes": self.classes, "imbalance": self.imbalance, "n_min": self.n_min,
                  "minority_fraction": self.minority_fraction, "ratios": self.ratios}
        if self.counts is not None:
            given = [k for k, v in family.items() if v is not None]
            if given:
                raise ValueError(f"counts: states the class sizes: drop {', '.join(given)} (the family fields)")
            if isinstance(self.counts, (str, bytes)) or not hasattr(self.counts, "__iter__"):
                raise TypeError(f"counts: must be a list of count vectors, got {self.counts!r}")
            vectors = []
            for c in self.counts:
                if isinstance(c, (str, bytes)) or not hasattr(c, "__iter__"):
                    raise TypeError(f"counts: every entry must be a count vector, got {c!r}")
                c = tuple(_int("counts", v) for v in c)
                if len(c) < 2 or min(c) < 1 or max(c) < 2:
                    raise ValueError(f"counts: every vector needs >= 2 classes, each of >= 1 sample, one of >= 2; "
                                     f"got {','.join(map(str, c))}")
                vectors.append(c)
            if not vectors:
                raise ValueError("counts: the grid has no count vector")
            _set(self, "counts", tuple(vectors))
        else:
            _set(self, "classes", _int("classes", 3 if self.classes is None else self.classes, 2))
            _set(self, "n_min", _int("n_min", 2 if self.n_min is None else self.n_min, 1))
            frac = _real("minority_fraction", 0.5 if self.minority_fraction is None else self.minority_fraction)
            if not 0 < frac < 1:
                raise ValueError(f"minority_fraction: must lie in (0, 1), got {frac}")
            _set(self, "minority_fraction", frac)
            _set(self, "imbalance", _choice("imbalance", self.imbalance or "step", IMBALANCES))
            ratios = _reals("ratios", (1.0, 2.0, 5.0) if self.ratios is None else self.ratios)
            _increasing("ratios", ratios, positive=True)
            if ratios[0] < 1:
                raise ValueError(f"ratios: every R must be >= 1, got {ratios[0]}")
            _set(self, "ratios", ratios)
        taus = _reals("taus", self.taus)
        _increasing("taus", taus, positive=True)
        _set(self, "taus", taus)
        if self.dim is not None:
            _set(self, "dim", _int("dim", self.dim, 1))
        _set(self, "starts", _int("starts", self.starts, 1))
        _set(self, "seed", _int("seed", self.seed, 0, MAX_SEED))
        _set(self, "steps", _int("steps", self.steps, 1))
        tol = _real("tol", self.tol)
        if tol < 0:
            raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
        gram_tol = _real("gram_tol", self.gram_tol)
        if not gram_tol > 0:
            raise ValueError(f"gram_tol: must be a finite number > 0, got {gram_tol!r}")
        _set(self, "tol", tol)
        _set(self, "gram_tol", gram_tol)
        _set(self, "_points", tuple(self._build()))

    def vectors(self) -> list[list[int]]:
        """The count vectors of the grid as asked, before repeats are dropped (explicit, or one per ratio)."""
        from . import imbalance

        if self.counts is not None:
            return [list(c) for c in self.counts]
        assert self.classes is not None and self.n_min is not None and self.ratios is not None
        return [list(imbalance.counts_for(self.imbalance or "step", self.classes, self.n_min, float(R),
                                          0.5 if self.minority_fraction is None else self.minority_fraction))
                for R in self.ratios]

    def _build(self) -> list[dict]:
        from .problem import Problem

        seen: set = set()
        points: list[dict[str, Any]] = []
        for c in self.vectors():
            c = [int(v) for v in c]
            if tuple(c) in seen:
                continue
            seen.add(tuple(c))
            if len(c) < 2 or min(c) < 1 or max(c) < 2:
                raise ValueError(f"counts: every vector needs K >= 2 classes of >= 1 sample and a class of >= 2, "
                                 f"got {c}")
            if sum(c) > LANDSCAPE_MAX_N:
                raise ValueError(f"counts: {c} has N = {sum(c)} samples; at most {LANDSCAPE_MAX_N} per point (the "
                                 "local certificate's Hessian is (N d) x (N d)): lower --ratios or --n-min")
            d = len(c) + 1 if self.dim is None else int(self.dim)
            for tau in self.taus:
                points.append({"counts": c, "tau": tau, "dim": d, "starts": self.starts, "seed": self.seed,
                               "steps": self.steps, "tol": self.tol, "gram_tol": self.gram_tol})
        for p in points:  # a bad temperature or dimension fails here, before any work
            Problem(counts=tuple(p["counts"]), loss="sc", tau=p["tau"], dim=p["dim"])
        return points

    def points(self) -> list[dict]:
        """The grid's points in order (count vectors outer, temperatures inner), each a fresh dict with
        ``counts``, ``tau``, ``dim``, ``starts``, ``seed``, ``steps``, ``tol``, ``gram_tol`` (the fields of a
        ``landscape.jsonl`` record)."""
        return [{**p, "counts": list(p["counts"])} for p in self._points]

    def settings(self) -> dict:
        """The run's settings as ``landscape.json`` records them (``settings``): the fixed problem fields, the
        start and certificate options, and ``family`` (None with explicit ``counts``)."""
        settings: dict[str, Any] = {
            "loss": "sc", "constraint": "sphere", "radius": 1.0, "batching": "full", "nonneg": False,
            "dtype": "float64", "dim": self.dim if self.dim is not None else "K+1", "starts": self.starts,
            "steps": self.steps, "tol": self.tol, "gram_tol": self.gram_tol, "seed": self.seed}
        if self.counts is not None:
            settings.update(family=None)
        else:
            settings.update(family={"classes": self.classes, "imbalance": self.imbalance, "n_min": self.n_min,
                                    "minority_fraction": self.minority_fraction, "ratios": list(self.ratios or ())})
        return settings

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (tuples as lists)."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        return {k: plain(v) for k, v in asdict(self).items() if k != "_points"}
