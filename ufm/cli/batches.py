"""``ufm batches``: a batching's batches and interaction graph; is the orthogonal frame the unique minimiser?"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .common import (UsageError, add_output_args, add_problem_args, add_size_args, atomic, check_size, dumps,
                     hold_folder, problem_from_args, seed_int, versions, write_json)

if TYPE_CHECKING:
    from ufm.problem import Problem

HELP = ("show a batching's batches and interaction graph, and whether they force the orthogonal frame "
        "(SC in the UFM+); when not, a witness")


def add_parser(sub):
    p = sub.add_parser("batches", help=HELP, description=HELP)
    add_problem_args(p)
    g = p.add_argument_group("batches")
    g.add_argument("--seed", type=seed_int, default=0, help="batch_seed of the scheme's random partitions (default 0)")
    g.add_argument("--epochs", type=int, default=None,
                   help="shuffled / binding: analyse the batches of this many epochs together (default: the fewest "
                        "epochs whose batch graph meets conditions (a) and (b), searched up to the epochs `ufm "
                        "solve` runs at most, 1000; a longer run meets them too)")
    add_size_args(p)
    add_output_args(p)
    return p


def _forced_by_graph(problem, epochs: int) -> bool:
    """Whether the batches of ``epochs`` epochs meet conditions (a) and (b) of the batch interaction graph."""
    from ufm import interaction
    from ufm.batching import union_batches

    g = interaction.interaction_graph(union_batches(problem, epochs), problem.label_array, problem.K, problem.dim)
    disconnected, unmet = interaction._conditions(g)
    return not disconnected and not unmet


def epochs_to_judge(problem: Problem, given: int | None, limit: int) -> tuple[int, str]:
    """How many epochs ``ufm batches`` judges, and why.

    An epoch scheme draws new batches every epoch, and a run minimises the loss over the union of the batches of
    all its epochs; adding batches only adds edges to the batch interaction graph, so once the union meets
    conditions (a) and (b) every longer run does too. One epoch says little about a run of many.

    Args:
      problem: the problem (its batching and batch seed).
      given: ``--epochs`` (None: search).
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


EPOCHS_RULE = {
    "given": "the epochs given by --epochs",
    "one set": "the batch set is the same every epoch",
    "fewest meeting (a) and (b)": "the fewest epochs whose batch graph meets (a) and (b); so does every longer run's",
    "limit": "not forced within {n} epochs, the most `ufm solve` runs by default; --epochs to judge another number",
}


def batches_report(problem: Problem, epochs: int) -> tuple[dict, Any]:
    """The ``--json`` object (module keys) and the witness embedding (or None)."""
    from ufm import interaction, theory
    from ufm.batching import describe, union_batches

    batches = union_batches(problem, epochs)
    v = interaction.check(batches, problem.label_array, problem.dim, problem.K, problem.tau, problem.radius)
    rep = {"problem": problem.to_dict(), "setting": "SC in the UFM+: non-negative rows on the sphere of radius "
           f"{problem.radius:g} in dim {problem.dim}", "batch_set": describe(problem, epochs),
           **interaction.report(v),
           "of_loss": theory.sc_of_loss(problem.counts, problem.tau, problem.radius, batches=batches,
                                        labels=problem.label_array),
           "batches": batches}
    return rep, v.witness_Z


def summary(rep) -> str:
    sizes = rep["batch_sizes"]
    lines = [f"{rep['batch_set']}: {rep['n_batches']} batches of sizes {min(sizes)}..{max(sizes)}",
             f"{rep['setting']}; OF minimum {rep['of_loss']:.10f} (tau {rep['problem']['tau']:g})",
             "(a) classes tied together through batches: "
             + ("yes" if not rep["disconnected_classes"] else f"no, classes {rep['disconnected_classes']} fall "
                f"apart (parts per class {rep['class_parts']})"),
             "(b) every pair of classes meets with a positive anchor: "
             + ("yes" if not rep["unmet_class_pairs"] else f"no, pairs {rep['unmet_class_pairs']}"),
             f"OF unique: {rep['unique_of']} ({rep['reason']})" if rep.get("epochs_rule", "one set") == "one set" else
             f"OF unique: {rep['unique_of']} over {rep['epochs']} epoch{'s' if rep['epochs'] != 1 else ''} "
             f"({rep['epochs_rule_text']}): {rep['reason']}"]
    w = rep["witness"]
    if w is not None:
        lines.append(f"witness moves samples {w['moved_samples'][:20]}{' ...' if len(w['moved_samples']) > 20 else ''}"
                     f": loss {w['loss']} vs OF minimum {w['of_loss']:.12f}, Gram changes by {w['gram_change']:g}, "
                     f"verified {w['verified']}")
    return "\n".join(lines)


def run(args) -> int:
    import numpy as np

    problem = problem_from_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    from solvers.epochs import DEFAULT_EPOCHS

    most = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    check_size(problem, args, extra=2 * 8 * most * sum(int(c) for c in problem.counts),  # epochs' batches
               shrink="--counts / --dim / --epochs")
    hold_folder(args, "ufm batches", ("result.json", "witness.npz"))
    epochs, rule = epochs_to_judge(problem, args.epochs, DEFAULT_EPOCHS)
    rep, Zw = batches_report(problem, epochs)
    rep.update(epochs=epochs, epochs_rule=rule, epochs_rule_text=EPOCHS_RULE[rule].format(n=DEFAULT_EPOCHS))
    rep["versions"] = versions()
    if args.out:
        write_json(os.path.join(args.out, "result.json"), rep)
        if Zw is not None:
            with atomic(os.path.join(args.out, "witness.npz")) as tmp:
                np.savez(tmp, Z=Zw, labels=problem.label_array)
    print(dumps(rep) if args.json else summary(rep))
    return 0
