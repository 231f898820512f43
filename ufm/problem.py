"""``Problem``: an immutable statement of an unconstrained-features problem, validated on construction."""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np

from . import batching, constraints, objectives

LOSSES = objectives.NAMES
DEFAULT_CE_WEIGHT_DECAY = 5e-3  # ufm.objectives.ce.DEFAULT_WEIGHT_DECAY

__all__ = ["Problem", "ProblemBase", "LOSSES", "DEFAULT_CE_WEIGHT_DECAY"]


def _int_tuple(name, values):
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list of integers, got {values!r}") from None
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name} must hold integers, got {v!r}")
        if isinstance(v, numbers.Integral):
            out.append(int(v))
        elif float(v).is_integer():
            out.append(int(v))
        else:
            raise ValueError(f"{name} must hold integers, got {v!r}")
    return tuple(out)


RADIUS_MIN, RADIUS_MAX = 1e-150, 1e150  # radius^2 stays a normal, finite float64


def check_real(name, v, *, positive=False, nonneg=False):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    v = float(v)
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


@dataclass(frozen=True, kw_only=True, repr=False)
class ProblemBase:
    """What every statement of an unconstrained-features problem shares: the loss and its parameters, the
    dimension and the feature set, with their checks written once (``ValueError`` naming the field).

    The three levels (:class:`Problem`: samples; ``ufm.ClassProblem``: class means with real class sizes;
    ``ufm.reduced.GroupProblem``: groups of equal-size classes) are frozen dataclasses on this base; each adds its own
    fields (the class sizes first, positionally) and checks, and calls :meth:`_check_shared` with ``K``.
    The shared fields are keyword-only; ``to_dict``, ``repr`` and the constructor list a level's positional
    fields first, then these, then its other keyword fields.

    Fields (names from the papers):
      loss: a registered objective (``ufm.objectives``).
      tau: temperature of SC and BCL (logits ``<z_i, z_k>/tau``); unused by CE.
      dim: embedding dimension ``d``; defaults to ``K`` (room for an orthogonal frame).
      constraint: a registered feature set (``ufm.constraints``): ``"sphere"``, ``"ball"`` or ``"none"``.
      radius: ``rho``. nonneg: UFM+ (a ReLU before the loss: ``Z >= 0``).
      weight_decay: CE ``lambda_W`` (None: the loss's default). feature_decay: CE ``lambda_Z``. bias: CE bias.
    """

    loss: str = "sc"
    tau: float = 0.1
    dim: int = None  # type: ignore[assignment]  # optional argument; _check_shared always sets an int
    constraint: str = "sphere"
    radius: float = 1.0
    nonneg: bool = False
    weight_decay: float | None = None
    feature_decay: float = 0.0
    bias: bool = False

    #: the level's name where its features need a norm bound (``"the class-level problem"``); None: any set
    bounded_only: ClassVar[str | None] = None

    if TYPE_CHECKING:  # every level has class sizes: a field, or a property of its own fields
        @property
        def counts(self) -> tuple: ...

    def __post_init__(self) -> None:  # each level has its own, which calls _check_shared
        raise TypeError("ProblemBase is the shared base of the problem types; state a Problem, a ClassProblem or a "
                        "GroupProblem")

    def _refuse(self, obj) -> None:
        """Raise ``ValueError`` (naming the field) for what this level cannot state with objective ``obj``;
        run before the numeric checks."""

    def _check_shared(self, K: int) -> None:
        """Check and normalise the shared fields for ``K`` classes (``ValueError`` naming the field)."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        obj = objectives.get(self.loss)  # ValueError naming loss when it is not registered
        self._refuse(obj)
        set_("tau", check_real("tau", self.tau, positive=True))
        dim = K if self.dim is None else self.dim
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        set_("dim", int(dim))
        bounded = constraints.get(self.constraint).bounded  # ValueError naming constraint when not registered
        if self.bounded_only and not bounded:
            raise ValueError(f"constraint {self.constraint!r}: {self.bounded_only} needs 'sphere' or 'ball'")
        set_("radius", check_real("radius", self.radius, positive=True))
        if not (RADIUS_MIN <= self.radius <= RADIUS_MAX):  # the engines work with radius^2 (at_unit_radius)
            raise ValueError(f"radius must lie in {RADIUS_MIN:g}..{RADIUS_MAX:g} (radius^2 a normal float64), got "
                             f"{self.radius!r}")
        set_("nonneg", bool(self.nonneg))
        set_("bias", bool(self.bias))
        set_("feature_decay", check_real("feature_decay", self.feature_decay, nonneg=True))
        if self.weight_decay is not None:
            set_("weight_decay", check_real("weight_decay", self.weight_decay, nonneg=True))
        for k, v in obj.validate(self).items():  # the loss's own fields and checks
            set_(k, check_real(k, v, nonneg=True) if k in ("weight_decay", "feature_decay") else v)

    # -- derived --------------------------------------------------------------------------------------------
    @property
    def K(self) -> int:
        """Number of classes."""
        return len(self.counts)

    @property
    def N(self) -> float:
        """Number of samples (the sum of the class sizes; real on the class level)."""
        return float(sum(self.counts))

    @classmethod
    def _ordered_fields(cls) -> list[dataclasses.Field]:
        """The fields in constructor order: positional first, then keyword-only (shared, then the level's)."""
        fs = dataclasses.fields(cls)
        return [f for f in fs if not f.kw_only] + [f for f in fs if f.kw_only]

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._ordered_fields() if f.repr)
        return f"{type(self).__name__}({inner})"

    def to_dict(self) -> dict:
        """All fields as JSON-ready values (tuples become lists), in constructor order."""
        out = {}
        for f in self._ordered_fields():
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        """The problem ``to_dict`` wrote (keys that are not fields are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> Self:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def at_unit_radius(self) -> tuple[Self, float]:
        """``(the same problem at radius 1, rho)``: an exact change of variables ``Z = rho Z'`` (the objective's
        ``unit_radius`` maps the other fields), so engines can work at a fixed scale whatever the radius. Without
        a norm bound the problem is returned unchanged (``rho = 1``)."""
        rho = self.radius
        if rho == 1.0 or not constraints.get(self.constraint).bounded:
            return self, 1.0
        fields = objectives.get(self.loss).unit_radius(self, rho * rho)  # type: ignore[misc]  # every loss has one
        return self.replace(radius=1.0, **fields), rho


@dataclass(frozen=True, repr=False)
class Problem(ProblemBase):
    """An unconstrained-features problem: what is asked, not how it is solved.

    Fields (names from the papers; the shared ones are :class:`ProblemBase`'s, keyword-only):
      counts: samples per class ``(n_1, ..., n_K)``; samples are ordered class by class. Or give ``labels``.
      loss: a registered objective (``ufm.objectives``): ``"sc"`` (supervised contrastive), ``"ce"`` (cross-entropy
        with a linear classifier ``W``), ``"bcl"`` (balanced contrastive of Zhu et al.: class prototypes ``C`` on
        the features' set are variables too), ``"bcl-avg"`` (its class-averaging part alone).
      tau: temperature of SC and BCL (logits ``<z_i, z_k>/tau``); unused by CE.
      dim: embedding dimension ``d``; defaults to ``K`` (room for an orthogonal frame).
      constraint: ``"sphere"`` (``||z_i|| = radius``), ``"ball"`` (``<= radius``) or ``"none"`` (CE with
        ``feature_decay > 0`` only, as in Zhu et al. 2021).
      radius: ``rho``. nonneg: UFM+ (a ReLU before the loss: ``Z >= 0``).
      weight_decay: CE ``lambda_W`` on ``||W||_F^2`` (default 5e-3 for CE; must be > 0: without it the CE loss
        only tends to 0 as ``||W||`` grows and no minimiser exists). SC has no ``W``.
      feature_decay: CE ``lambda_Z`` on ``||Z||_F^2 / N``. bias: CE classifier bias ``b`` (unregularised).
      labels: explicit labels ``(N,)`` in ``0..K-1`` instead of ``counts`` (any order).
      batching: the batching scheme (``"full"``: one batch of all samples); see ``ufm.batching``.
      batches: explicit batches (tuple of index tuples) instead of a scheme.
      batch_seed: the seed of the scheme's random partitions (``fixed``, ``shuffled``, ``binding``).
    """

    # counts and dim are optional arguments, never None once __post_init__ has filled them in
    counts: tuple[int, ...] = None  # type: ignore[assignment]
    labels: tuple[int, ...] | None = field(default=None, repr=False, kw_only=True)
    batching: str = field(default="full", kw_only=True)
    batches: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False, kw_only=True)
    batch_seed: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.counts is None and self.labels is None:
            raise ValueError("counts: give the class counts (or labels); there are no classes")
        if self.labels is not None:
            labels = _int_tuple("labels", self.labels)
            if not labels:
                raise ValueError("labels: empty; there are no classes")
            K = len(self.counts) if self.counts is not None else max(labels) + 1
            bad = [y for y in labels if not 0 <= y < K]
            if bad:
                raise ValueError(f"labels must lie in 0..{K - 1}, got {bad[0]}")
            counts = tuple(int(c) for c in np.bincount(labels, minlength=K))
            missing = [c for c, n in enumerate(counts) if n == 0]
            if missing:
                raise ValueError(f"labels: class {missing[0]} has no sample; labels must use every class 0..{K - 1}")
            if self.counts is not None and _int_tuple("counts", self.counts) != counts:
                raise ValueError(f"counts {self.counts} disagree with the labels' counts {counts}")
            set_("labels", labels)
        else:
            counts = _int_tuple("counts", self.counts)
        if not counts:
            raise ValueError("counts: empty; there are no classes")
        for c, n in enumerate(counts):
            if n <= 0:
                raise ValueError(f"counts: class {c} has {n} samples; every class needs at least one")
        set_("counts", counts)

        self._check_shared(len(counts))

        set_("batches", batching.validate(self.batching, self.batches, self.N))
        if isinstance(self.batch_seed, bool) or not isinstance(self.batch_seed, numbers.Integral):
            raise ValueError(f"batch_seed must be an integer, got {self.batch_seed!r}")
        set_("batch_seed", int(self.batch_seed))
        if self.nonneg and self.dim < self.K:
            warnings.warn(f"nonneg with dim={self.dim} < K={self.K}: no orthogonal frame fits", stacklevel=3)

    # -- derived --------------------------------------------------------------------------------------------
    @property
    def N(self) -> int:
        """Number of samples."""
        return int(sum(self.counts))

    @property
    def label_array(self) -> np.ndarray:
        """Labels ``(N,)`` int32: explicit labels, else ``counts[0]`` zeros, then ``counts[1]`` ones, ..."""
        if self.labels is not None:
            return np.asarray(self.labels, dtype=np.int32)
        return np.repeat(np.arange(self.K, dtype=np.int32), self.counts)

    @property
    def balanced(self) -> bool:
        return len(set(self.counts)) == 1
