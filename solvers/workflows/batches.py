"""What a batching's batches force (``ufm batches``): the batches of a problem's batching (for an epoch scheme, the
union of enough epochs), their batch interaction graph, and whether it forces the orthogonal frame (SC in the UFM+)
as the unique minimiser; when it does not, a witness (``ufm.interaction``).

An epoch scheme draws new batches every epoch, and a run minimises the loss over the union of the batches of all
its epochs; adding batches only adds edges to the batch interaction graph, so once the union meets conditions (a)
and (b) every longer run does too. :func:`epochs_to_judge` finds the fewest such epochs (one epoch says little
about a run of many); :func:`batches` reports on them.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ufm.problem import Problem

__all__ = ["batches", "batches_report", "epochs_to_judge", "EPOCHS_RULE", "OUTPUTS"]

OUTPUTS = ("result.json", "witness.npz")  # what a run with out= writes (the witness when there is one)

EPOCHS_RULE = {
    "given": "the epochs given by --epochs",
    "one set": "the batch set is the same every epoch",
    "fewest meeting (a) and (b)": "the fewest epochs whose batch graph meets (a) and (b); so does every longer run's",
    "limit": "not forced within {n} epochs, the most `ufm solve` runs by default; --epochs to judge another number",
}


def _forced_by_graph(problem: Problem, epochs: int) -> bool:
    """Whether the batches of ``epochs`` epochs meet conditions (a) and (b) of the batch interaction graph."""
    from ufm import interaction
    from ufm.batching import union_batches

    g = interaction.interaction_graph(union_batches(problem, epochs), problem.label_array, problem.K, problem.dim)
    disconnected, unmet = interaction._conditions(g)
    return not disconnected and not unmet


def epochs_to_judge(problem: Problem, given: int | None, limit: int) -> tuple[int, str]:
    """How many epochs ``ufm batches`` judges, and why (module doc).

    Args:
      problem: the problem (its batching and batch seed).
      given: the epochs asked for (None: search).
      limit: the most epochs searched (the epochs ``ufm solve`` runs at most by default).
    Returns:
      ``(epochs, rule)``: ``rule`` is ``"given"``, ``"one set"`` (a batching that does not change between
      epochs), ``"fewest meeting (a) and (b)"`` (the fewest epochs whose union meets conditions (a) and (b),
      found by doubling and bisection; with few dimensions the OF may be unique earlier) or ``"limit"`` (not met
      within ``limit`` epochs: judged at the limit).
    """
    from ufm.batching import is_epoch_scheme

    if not is_epoch_scheme(problem):
        return 1 if given is None else given, "one set"
    if given is not None:
        return given, "given"
    hi = 1
    while not _forced_by_graph(problem, hi):
        if hi >= limit:
            return limit, "limit"
        hi = min(2 * hi, limit)
    lo = hi // 2  # not forced at lo (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _forced_by_graph(problem, mid):
            hi = mid
        else:
            lo = mid
    return hi, "fewest meeting (a) and (b)"


def batches_report(problem: Problem, epochs: int) -> tuple[dict, Any]:
    """The report on the batches of ``epochs`` epochs of ``problem``'s batching, and the witness.

    Args:
      problem: the problem (SC; its counts, dim, tau, radius, batching and batch seed).
      epochs: how many epochs' batches to take together (1 for a batching that does not change).
    Returns:
      ``(report, witness_Z)``: ``report`` holds ``problem``, ``setting``, ``batch_set``, the interaction report
      (``ufm.interaction.report``: ``unique_of``, ``reason``, ``disconnected_classes``, ``unmet_class_pairs``,
      ``witness``, ...), ``of_loss`` and ``batches``; ``witness_Z`` is the witness embedding ``(N, d)`` or None.
    """
    from ufm import interaction, theory
    from ufm.batching import describe, union_batches

    batch_list = union_batches(problem, epochs)
    v = interaction.check(batch_list, problem.label_array, problem.dim, problem.K, problem.tau, problem.radius)
    rep = {"problem": problem.to_dict(), "setting": "SC in the UFM+: non-negative rows on the sphere of radius "
           f"{problem.radius:g} in dim {problem.dim}", "batch_set": describe(problem, epochs),
           **interaction.report(v),
           "of_loss": theory.sc_of_loss(problem.counts, problem.tau, problem.radius, batches=batch_list,
                                        labels=problem.label_array),
           "batches": batch_list}
    return rep, v.witness_Z


def batches(problem: Problem, *, epochs: int | None = None, out: str | None = None) -> dict:
    """The batches of ``problem``'s batching, their interaction graph, and whether they force the orthogonal
    frame (``ufm batches``).

    Args:
      problem: the problem (``ufm.Problem``; its batching, or explicit batches, and batch seed).
      epochs: an epoch scheme's epochs to judge together (None: the fewest meeting conditions (a) and (b), searched
        up to ``solvers.epochs.DEFAULT_EPOCHS``; :func:`epochs_to_judge`).
      out: a folder to write ``result.json`` (and ``witness.npz``, ``Z`` and ``labels``, when there is a witness)
        into; None: write nothing.
    Returns:
      :func:`batches_report`'s report with ``epochs``, ``epochs_rule``, ``epochs_rule_text`` and ``versions``:
      the ``result.json`` of ``ufm batches``.
    Raises:
      ValueError: ``epochs`` below 1.
    """
    from ufm.records import versions

    from ..epochs import DEFAULT_EPOCHS

    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs: must be an integer >= 1, got {epochs!r}")
    n, rule = epochs_to_judge(problem, epochs, DEFAULT_EPOCHS)
    rep, Zw = batches_report(problem, n)
    rep.update(epochs=n, epochs_rule=rule, epochs_rule_text=EPOCHS_RULE[rule].format(n=DEFAULT_EPOCHS))
    rep["versions"] = versions()
    if out is not None:
        import io

        import numpy as np

        from ufm import runs
        from ufm.records import replace_bytes, write_json

        with runs.open_run(out, "ufm batches", OUTPUTS, flag="out"):
            write_json(os.path.join(out, "result.json"), rep)
            if Zw is not None:
                buf = io.BytesIO()
                np.savez(buf, Z=Zw, labels=problem.label_array)
                replace_bytes(os.path.join(out, "witness.npz"), buf.getvalue())
    return rep
