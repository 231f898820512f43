"""Batchings: which samples meet in which batch (docs/theory.md §4).

A batching is a *scheme* (text ``NAME[:b]``) or explicit batches (a tuple of index tuples).

Schemes, for ``N`` samples and batch size ``b``:
  * ``full``: one batch of all samples.
  * ``fixed:b``: one random partition (drawn from ``batch_seed``), the same every epoch.
  * ``shuffled:b``: a new random partition every epoch.
  * ``binding:b``: Kini et al.'s batch-binding. The *binding examples* are the first example of every class;
    the other samples are shuffled every epoch and cut into batches of ``b``, then the K binding examples are
    appended to every batch (so a batch holds up to ``b + K`` samples).
  * ``subsets:b``: all ``b``-subsets of the samples, one fixed batch set (no epochs). Enumerated exactly (in
    lexicographic order) when there are at most ``SUBSETS_EXACT_MAX`` of them; otherwise a seeded sample of
    ``subsets_sample_size(b)`` subsets, each drawn uniformly (independently, from ``batch_seed``). All subsets
    have the same size, so the sampled objective is an unbiased estimate of the all-subsets objective (the
    expectation of one random batch's mean loss); ``ufm.theory.sc_of_loss_subsets`` gives the exact OF minimum
    of the all-subsets objective whatever ``N``.

Explicit batches: a tuple of index tuples (``Problem.batches``), from text ``"0,1,3;2,4,5"``
(:func:`parse_batches`) or a file (:func:`read_batches`). A sample may sit in several batches.

**Last partial batch: kept.** When ``b`` does not divide the number of samples to cut, the last batch is
smaller; every sample is seen once per epoch. The same rule for every scheme.

Randomness: the partition of epoch ``e`` comes from ``numpy.random.default_rng([batch_seed, e])`` (``fixed``
always uses epoch 0): reproducible on any machine.

Batches travel as an int array ``(n_batches, width)`` padded with ``-1`` (``ufm.losses.batch_index``).
"""
from __future__ import annotations

import itertools
import json
import math
import numbers
import os
import re
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np

if TYPE_CHECKING:
    from .problem import Problem
    from numpy.typing import ArrayLike

SCHEMES = ("full", "fixed", "shuffled", "binding", "subsets")
EPOCH_SCHEMES = ("shuffled", "binding")  # a new batch set every epoch

__all__ = ["SCHEMES", "EPOCH_SCHEMES", "SUBSETS_EXACT_MAX", "Scheme", "parse_scheme", "validate",
           "binding_examples", "epoch_batches", "batch_list", "pad", "subset_batches", "subsets_sample_size",
           "parse_batches", "read_batches", "batches_from_text", "is_epoch_scheme", "epoch_batch_list", "union_batches",
           "describe"]

MAX_BATCHES_FILE = 1 << 30  # bytes of a batches file
SUBSETS_EXACT_MAX = 2000  # subsets:b enumerates all C(N, b) subsets up to this many, else samples


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


def validate(scheme: str, batches: Sequence[Sequence[int]] | None, n: int) -> tuple[tuple[int, ...], ...] | None:
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


def binding_examples(labels: ArrayLike) -> np.ndarray:
    """Index of the first example of every class ``(K,)``: Kini et al.'s binding examples."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    return first


def _cut(order: np.ndarray, b: int) -> list[np.ndarray]:
    return [order[i:i + b] for i in range(0, len(order), b)]


def pad(batches: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """A list of index arrays as an int32 array ``(n_batches, width)`` padded with -1."""
    width = max(len(b) for b in batches) if width is None else width
    out = np.full((len(batches), width), -1, dtype=np.int32)
    for row, b in zip(out, batches):
        row[: len(b)] = b
    return out


def epoch_batches(scheme: str | Scheme, labels: ArrayLike, epoch: int = 0, batch_seed: int = 0) -> list[np.ndarray]:
    """The batches of one epoch, as a list of index arrays (``full``, ``fixed``, ``shuffled``, ``binding``).

    ``fixed`` returns the same partition for every epoch; ``shuffled`` and ``binding`` a new one per epoch.
    """
    s = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    labels = np.asarray(labels)
    n = len(labels)
    if s.name == "full":
        return [np.arange(n)]
    if s.name == "subsets":
        raise ValueError("batching: 'subsets' is one fixed batch set, not an epoch scheme: use batch_list")
    assert s.b is not None  # every scheme but full has a batch size
    rng = np.random.default_rng([batch_seed, 0 if s.name == "fixed" else epoch])
    if s.name == "binding":
        bound = binding_examples(labels)
        rest = np.setdiff1d(np.arange(n), bound)
        if len(rest) == 0:
            return [bound]
        return [np.concatenate([chunk, bound]) for chunk in _cut(rng.permutation(rest), s.b)]
    return _cut(rng.permutation(n), s.b)


def batch_list(problem: Problem):
    """The fixed batches that define ``problem``'s objective as a list of index lists, or ``None`` for the
    full batch. Epoch schemes have no fixed batch set: ``ValueError``."""
    if problem.batches is not None:
        return [list(b) for b in problem.batches]
    s = parse_scheme(problem.batching)
    if s.name == "full":
        return None
    if s.name == "fixed":
        return [b.tolist() for b in epoch_batches(s, problem.label_array, 0, problem.batch_seed)]
    if s.name == "subsets":
        return subset_batches(problem.N, s.b, problem.batch_seed)[0]  # type: ignore[arg-type]  # subsets:b has b
    raise ValueError(f"batching {problem.batching!r} draws new batches every epoch, so it has no fixed "
                     "objective: solve it with solvers.solve (stochastic epochs, solvers.epochs), or take "
                     "one epoch's batches with epoch_batch_list / several with union_batches")


def subsets_sample_size(b: int) -> int:
    """How many ``b``-subsets ``subsets:b`` samples when there are too many to enumerate:
    ``min(2000, max(64, 4_000_000 // b**2))`` (the loss holds one ``b x b`` block per batch)."""
    return min(2000, max(64, 4_000_000 // b**2))


def subset_batches(n: int, b: int, batch_seed: int = 0) -> tuple[list[list[int]], bool]:
    """The batch set of ``subsets:b`` for ``n`` samples: ``(batches, exact)``.

    ``exact=True``: all ``C(n, b)`` subsets in lexicographic order (when ``C(n, b) <= SUBSETS_EXACT_MAX``).
    ``exact=False``: ``subsets_sample_size(b)`` subsets drawn independently and uniformly (each sorted), from
    ``numpy.random.default_rng([batch_seed, 0])``.
    """
    if math.comb(n, b) <= SUBSETS_EXACT_MAX:
        return [list(c) for c in itertools.combinations(range(n), b)], True
    rng = np.random.default_rng([batch_seed, 0])
    return [sorted(rng.choice(n, b, replace=False).tolist()) for _ in range(subsets_sample_size(b))], False


_BATCH_TEXT = re.compile(r"^[\d\s,;]*$")


def parse_batches(text: str) -> tuple[tuple[int, ...], ...]:
    """Explicit batches from text: batches separated by ``;`` or new lines, indices by ``,`` or spaces;
    ``#`` starts a comment. ``"0,1,3;2,4,5"`` -> ``((0, 1, 3), (2, 4, 5))``. Raises ``ValueError`` naming
    ``batches`` for an empty batch or a non-integer entry (ranges are checked by ``validate``)."""
    lines = [line.split("#", 1)[0] for line in str(text).splitlines()]
    parts = [p for line in lines for p in line.split(";")]
    while parts and not parts[-1].strip():  # a trailing separator or blank line ends the list
        parts.pop()
    out = []
    for k, part in enumerate(parts):
        items = [v for v in re.split(r"[,\s]+", part.strip()) if v]
        if not items:
            raise ValueError(f"batches: batch {k} is empty (in {text.strip()[:60]!r})")
        try:
            out.append(tuple(int(v) for v in items))
        except ValueError:
            bad = next(v for v in items if not v.lstrip("-").isdigit())
            raise ValueError(f"batches: batch {k} holds {bad!r}, not a sample index") from None
    if not out:
        raise ValueError("batches: no batch given")
    return tuple(out)


def read_batches(path: str | os.PathLike) -> tuple[tuple[int, ...], ...]:
    """Explicit batches from a file: ``.json`` holds a list of index lists; any other file is text for
    :func:`parse_batches` (one batch per line, or ``;``-separated). ``ValueError`` naming ``batches``."""
    import stat

    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ValueError(f"batches: {str(path)!r} is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read, /dev/zero never end
            raise ValueError(f"batches: {str(path)!r} is not a regular file (a FIFO, device or socket)")
        if st.st_size > MAX_BATCHES_FILE:
            raise ValueError(f"batches: {str(path)!r} holds {st.st_size} bytes, more than {MAX_BATCHES_FILE}")
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise ValueError(f"batches: cannot read {str(path)!r} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"batches: {str(path)!r} is not a text file (UTF-8)") from None
    if not str(path).endswith(".json"):
        return parse_batches(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"batches: {str(path)!r} is not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise ValueError(f"batches: {str(path)!r} is nested too deeply; give a list of index lists") from None
    if not isinstance(data, list) or not all(isinstance(b, list) for b in data):
        raise ValueError(f"batches: {str(path)!r} must hold a list of index lists, e.g. [[0, 1, 3], [2, 4, 5]]")
    return tuple(tuple(b) for b in data)


def batches_from_text(text: str) -> tuple[tuple[int, ...], ...]:
    """A ``--batches`` value: the path of an existing file (:func:`read_batches`), else index text
    (:func:`parse_batches`)."""
    if os.path.exists(text):
        return read_batches(text)
    if _BATCH_TEXT.match(text) or "," in text or ";" in text:
        return parse_batches(text)
    raise ValueError(f"batches: {text!r} is neither index text like '0,1,3;2,4,5' nor a file")


def is_epoch_scheme(problem: Problem) -> bool:
    """Whether ``problem`` draws a new batch set every epoch (``shuffled``, ``binding``)."""
    return problem.batches is None and parse_scheme(problem.batching).name in EPOCH_SCHEMES


def epoch_batch_list(problem: Problem, epoch: int = 0) -> list[list[int]]:
    """The batches of one epoch of ``problem`` (any batching; a fixed set is the same every epoch; the full
    batch is ``[[0..N-1]]``)."""
    if is_epoch_scheme(problem):
        return [b.tolist() for b in epoch_batches(problem.batching, problem.label_array, epoch,
                                                  problem.batch_seed)]
    fixed = batch_list(problem)
    return [list(range(problem.N))] if fixed is None else fixed


def union_batches(problem: Problem, epochs: int = 1) -> list[list[int]]:
    """The batch set of ``epochs`` epochs: for an epoch scheme the batches of epochs ``0..epochs-1`` one
    after the other (the objective a run of that many epochs minimises on average); for a fixed set (and the
    full batch) its batches once (repeating a set leaves its mean loss unchanged)."""
    if not is_epoch_scheme(problem):
        return epoch_batch_list(problem)
    return [b for e in range(epochs) for b in epoch_batch_list(problem, e)]


def describe(problem: Problem, epochs: int = 1) -> str:
    """In words, the batch set that :func:`union_batches` returns."""
    if problem.batches is not None:
        return f"{len(problem.batches)} explicit batches"
    s = parse_scheme(problem.batching)
    if s.name == "full":
        return "the full batch"
    assert s.b is not None  # every scheme but full has a batch size
    if s.name == "fixed":
        return f"one fixed partition into batches of {s.b} (batch_seed {problem.batch_seed})"
    if s.name == "subsets":
        total = math.comb(problem.N, s.b)
        if total <= SUBSETS_EXACT_MAX:
            return f"all {total} {s.b}-subsets"
        return (f"a seeded sample of {subsets_sample_size(s.b)} of the {total:.3g} {s.b}-subsets "
                f"(batch_seed {problem.batch_seed})")
    what = "binding" if s.name == "binding" else "shuffled"
    return (f"the batches of {epochs} epoch{'s' if epochs != 1 else ''} of {what} batches of {s.b} "
            f"(batch_seed {problem.batch_seed})")
