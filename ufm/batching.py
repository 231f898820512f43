"""Batchings: which samples meet in which batch (REFERENCE.md §4.3).

A batching is a *scheme* (text ``NAME[:b]``) or explicit batches (a tuple of index tuples).

Schemes, for ``N`` samples and batch size ``b``:
  * ``full``: one batch of all samples.
  * ``fixed:b``: one random partition (drawn from ``batch_seed``), the same every epoch.
  * ``shuffled:b``: a new random partition every epoch.
  * ``binding:b``: Kini et al.'s batch-binding. The *binding examples* are the first example of every class;
    the other samples are shuffled every epoch and cut into batches of ``b``, then the K binding examples are
    appended to every batch (so a batch holds up to ``b + K`` samples).
  * ``subsets:b``: all ``b``-subsets of the samples (see ``ufm.batching`` functions for enumeration).

**Last partial batch: kept.** When ``b`` does not divide the number of samples to cut, the last batch is
smaller; every sample is seen once per epoch. The same rule for every scheme.

Randomness: the partition of epoch ``e`` comes from ``numpy.random.default_rng([batch_seed, e])`` (``fixed``
always uses epoch 0): reproducible on any machine.

Batches travel as an int array ``(n_batches, width)`` padded with ``-1`` (``ufm.losses.batch_index``).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

SCHEMES = ("full", "fixed", "shuffled", "binding", "subsets")
EPOCH_SCHEMES = ("shuffled", "binding")  # a new batch set every epoch

__all__ = ["SCHEMES", "EPOCH_SCHEMES", "Scheme", "parse_scheme", "validate", "binding_examples",
           "epoch_batches", "batch_list", "pad"]


class Scheme(NamedTuple):
    """A parsed scheme: ``name`` in ``SCHEMES`` and batch size ``b`` (None for ``full``)."""

    name: str
    b: int | None


def parse_scheme(text: str, n: int | None = None) -> Scheme:
    """``"fixed:4"`` -> ``Scheme("fixed", 4)``. With ``n``, checks ``1 <= b <= n``. Raises ``ValueError``
    naming ``batching``."""
    if not isinstance(text, str):
        raise ValueError(f"batching must be a text like 'fixed:4', got {text!r}")
    name, _, size = text.partition(":")
    if name not in SCHEMES:
        raise ValueError(f"batching: unknown scheme {name!r}; choose one of {', '.join(SCHEMES)} "
                         "(e.g. 'binding:64') or give explicit batches")
    if name == "full":
        if size:
            raise ValueError("batching: 'full' takes no batch size")
        return Scheme("full", None)
    try:
        b = int(size)
    except ValueError:
        raise ValueError(f"batching: {name!r} needs a batch size, e.g. '{name}:8' (got {text!r})") from None
    if b <= 0:
        raise ValueError(f"batching: batch size must be >= 1, got {b}")
    if n is not None and b > n:
        raise ValueError(f"batching: batch size {b} is larger than the number of samples N={n}")
    return Scheme(name, b)


def validate(scheme: str, batches, n: int):
    """Check a scheme / explicit batches for ``n`` samples; return explicit batches as a tuple of tuples
    (or None). Raises ``ValueError`` naming ``batching`` or ``batches`` for an unknown scheme, a bad batch size,
    an empty batch, an index outside ``0..n-1`` or a sample repeated inside one batch."""
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
    parse_scheme(scheme, n)
    return None


def binding_examples(labels) -> np.ndarray:
    """Index of the first example of every class ``(K,)``: Kini et al.'s binding examples."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    return first


def _cut(order: np.ndarray, b: int) -> list[np.ndarray]:
    return [order[i:i + b] for i in range(0, len(order), b)]


def pad(batches, width: int | None = None) -> np.ndarray:
    """A list of index arrays as an int32 array ``(n_batches, width)`` padded with -1."""
    width = max(len(b) for b in batches) if width is None else width
    out = np.full((len(batches), width), -1, dtype=np.int32)
    for row, b in zip(out, batches):
        row[: len(b)] = b
    return out


def epoch_batches(scheme: str | Scheme, labels, epoch: int = 0, batch_seed: int = 0) -> list[np.ndarray]:
    """The batches of one epoch, as a list of index arrays (``full``, ``fixed``, ``shuffled``, ``binding``).

    ``fixed`` returns the same partition for every epoch; ``shuffled`` and ``binding`` a new one per epoch.
    """
    s = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    labels = np.asarray(labels)
    n = len(labels)
    if s.name == "full":
        return [np.arange(n)]
    if s.name == "subsets":
        raise ValueError("batching: 'subsets' has no epochs; see the subsets functions")
    rng = np.random.default_rng([batch_seed, 0 if s.name == "fixed" else epoch])
    if s.name == "binding":
        bound = binding_examples(labels)
        rest = np.setdiff1d(np.arange(n), bound)
        if len(rest) == 0:
            return [bound]
        return [np.concatenate([chunk, bound]) for chunk in _cut(rng.permutation(rest), s.b)]
    return _cut(rng.permutation(n), s.b)


def batch_list(problem):
    """The fixed batches that define ``problem``'s objective as a list of index lists, or ``None`` for the
    full batch. Epoch schemes have no fixed batch set: ``ValueError``."""
    if problem.batches is not None:
        return [list(b) for b in problem.batches]
    s = parse_scheme(problem.batching)
    if s.name == "full":
        return None
    if s.name == "fixed":
        return [b.tolist() for b in epoch_batches(s, problem.label_array, 0, problem.batch_seed)]
    raise ValueError(f"batching {problem.batching!r} draws new batches every epoch: use epoch_batches")
