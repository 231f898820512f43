"""Batchings: which samples meet in which batch.

A batching is either a scheme name (``"full"``: one batch of all samples) or explicit batches (a tuple of
index tuples; a sample may appear in several batches, but at most once in a batch).
"""
from __future__ import annotations

import numbers

import numpy as np

SCHEMES = ("full",)

__all__ = ["SCHEMES", "validate", "batch_list"]


def validate(scheme: str, batches, n: int):
    """Check a scheme / explicit batches for ``n`` samples; return the batches as a tuple of tuples (or None).

    Raises ``ValueError`` naming ``batching`` or ``batches`` for an unknown scheme, an empty batch, an index
    outside ``0..n-1`` or a sample repeated inside one batch.
    """
    if batches is not None:
        if scheme not in ("full", "explicit"):
            raise ValueError(f"batches: give explicit batches or a batching scheme, not both (got {scheme!r})")
        out = []
        for k, b in enumerate(batches):
            b = list(b)
            if not b:
                raise ValueError(f"batches: batch {k} is empty")
            for i in b:
                if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
                    raise ValueError(f"batches: batch {k} holds {i!r}, not a sample index")
                if not 0 <= i < n:
                    raise ValueError(f"batches: batch {k} holds index {i}, outside 0..{n - 1}")
            if len(set(b)) != len(b):
                raise ValueError(f"batches: batch {k} repeats a sample")
            out.append(tuple(int(i) for i in b))
        if not out:
            raise ValueError("batches: no batch given")
        return tuple(out)
    if scheme not in SCHEMES:
        raise ValueError(f"batching must be one of {SCHEMES} (or explicit batches), got {scheme!r}")
    return None


def batch_list(problem):
    """The batches of ``problem`` as a list of index lists, or ``None`` for the full batch."""
    if problem.batches is not None:
        return [list(b) for b in problem.batches]
    return None
