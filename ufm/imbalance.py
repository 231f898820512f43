"""Class counts of the imbalance profiles of the papers (the papers' experiments).

* STEP (Kini et al.): the first ``K - round(K * minority_fraction)`` classes are majorities with
  ``round(R * n_min)`` samples, the others minorities with ``n_min``.
* Long-tail: ``n_c = round(n_max * R^(-c/(K-1)))``, ``c = 0..K-1``, with ``n_max = round(R * n_min)`` so the
  last class has ``n_min`` samples.

``R >= 1`` is the imbalance ratio (majority / minority); ``R = 1`` is balanced.
"""
from __future__ import annotations

import math

__all__ = ["step_counts", "long_tail_counts", "counts_for", "class_sizes", "group_sizes", "majority_classes"]


def _check(K, n_min, R):
    if not isinstance(K, int) or K < 2:
        raise ValueError(f"classes must be an integer >= 2, got {K!r}")
    if not isinstance(n_min, int) or n_min < 1:
        raise ValueError(f"n_min must be an integer >= 1, got {n_min!r}")
    if not (math.isfinite(R) and R >= 1):
        raise ValueError(f"ratio R must be a finite number >= 1, got {R!r}")


def step_counts(K: int, n_min: int, R: float, minority_fraction: float = 0.5) -> tuple[int, ...]:
    """STEP imbalance: ``K - m`` majority classes of ``round(R n_min)``, then ``m = round(K f)`` minorities."""
    _check(K, n_min, R)
    if not 0 < minority_fraction < 1:
        raise ValueError(f"minority_fraction must lie in (0, 1), got {minority_fraction!r}")
    m = min(max(round(K * minority_fraction), 1), K - 1)
    return (round(R * n_min),) * (K - m) + (n_min,) * m


def long_tail_counts(K: int, n_min: int, R: float) -> tuple[int, ...]:
    """Long-tail imbalance: ``n_c = round(n_max R^(-c/(K-1)))`` with ``n_max = round(R n_min)``."""
    _check(K, n_min, R)
    n_max = round(R * n_min)
    return tuple(max(1, round(n_max * R ** (-c / (K - 1)))) for c in range(K))


def counts_for(profile: str, K: int, n_min: int, R: float, minority_fraction: float = 0.5):
    """Counts for ``profile`` in ``{"step", "long-tail"}``."""
    if profile == "step":
        return step_counts(K, n_min, R, minority_fraction)
    if profile in ("long-tail", "longtail"):
        return long_tail_counts(K, n_min, R)
    raise ValueError(f"imbalance must be 'step' or 'long-tail', got {profile!r}")


def class_sizes(profile: str, K: int, n_min: float, R: float, minority_fraction: float = 0.5) -> tuple[float, ...]:
    """The same profiles without rounding: real class sizes for the class-level problem (``ufm.ClassProblem``),
    so R can vary continuously. STEP: ``R n_min`` and ``n_min``; long-tail: ``n_min R^(1 - c/(K-1))``."""
    if not isinstance(K, int) or K < 2:
        raise ValueError(f"classes must be an integer >= 2, got {K!r}")
    if not (math.isfinite(n_min) and (n_min >= 2 or n_min == 1)):
        raise ValueError(f"n_min must be a number >= 2 (or exactly 1), got {n_min!r}")
    if not (math.isfinite(R) and R >= 1):
        raise ValueError(f"ratio R must be a finite number >= 1, got {R!r}")
    if profile == "step":
        if not 0 < minority_fraction < 1:
            raise ValueError(f"minority_fraction must lie in (0, 1), got {minority_fraction!r}")
        maj = majority_classes(K, minority_fraction)
        return tuple(float(R * n_min) if m else float(n_min) for m in maj)
    if profile in ("long-tail", "longtail"):
        return tuple(float(n_min * R ** (1 - c / (K - 1))) for c in range(K))
    raise ValueError(f"imbalance must be 'step' or 'long-tail', got {profile!r}")


def group_sizes(profile: str, K: int, n_min: float, R: float, minority_fraction: float = 0.5):
    """:func:`class_sizes` grouped by structure, without forming ``K`` numbers: ``(sizes, classes)``, the class
    size of each group and how many classes it holds, in class order. STEP: the majorities, then the minorities
    (two groups, also at ``R = 1``, where they share a size); long-tail: one class per group."""
    if profile == "step":
        if not isinstance(K, int) or K < 2:
            raise ValueError(f"classes must be an integer >= 2, got {K!r}")
        if not (math.isfinite(n_min) and (n_min >= 2 or n_min == 1)):
            raise ValueError(f"n_min must be a number >= 2 (or exactly 1), got {n_min!r}")
        if not (math.isfinite(R) and R >= 1):
            raise ValueError(f"ratio R must be a finite number >= 1, got {R!r}")
        if not 0 < minority_fraction < 1:
            raise ValueError(f"minority_fraction must lie in (0, 1), got {minority_fraction!r}")
        m = min(max(round(K * minority_fraction), 1), K - 1)
        return (float(R * n_min), float(n_min)), (K - m, m)
    sizes = class_sizes(profile, K, n_min, R, minority_fraction)
    return sizes, (1,) * K


def majority_classes(K: int, minority_fraction: float = 0.5) -> list[bool]:
    """Which classes are majorities (head) in both profiles: the first ``K - round(K f)``. Structural, so the
    balanced point ``R = 1`` splits the classes the same way as the others."""
    m = min(max(round(K * minority_fraction), 1), K - 1)
    return [c < K - m for c in range(K)]
