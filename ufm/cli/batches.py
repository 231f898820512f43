"""``ufm batches``: a batching's batches and interaction graph; is the orthogonal frame the unique minimiser?"""
from __future__ import annotations

import os

from .common import (UsageError, add_output_args, add_problem_args, add_size_args, atomic, check_size, dumps,
                     ensure_dir, problem_from_args, seed_int, versions, write_json)

HELP = ("show a batching's batches and interaction graph, and whether they force the orthogonal frame "
        "(SC in the UFM+); when not, a witness")


def add_parser(sub):
    p = sub.add_parser("batches", help=HELP, description=HELP)
    add_problem_args(p)
    g = p.add_argument_group("batches")
    g.add_argument("--seed", type=seed_int, default=0, help="batch_seed of the scheme's random partitions (default 0)")
    g.add_argument("--epochs", type=int, default=1,
                   help="shuffled / binding: analyse the batches of this many epochs together (default 1)")
    add_size_args(p)
    add_output_args(p)
    return p


def batches_report(problem, epochs: int) -> tuple[dict, object]:
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
             f"(a) classes tied together through batches: "
             + ("yes" if not rep["disconnected_classes"] else f"no, classes {rep['disconnected_classes']} fall "
                f"apart (parts per class {rep['class_parts']})"),
             "(b) every pair of classes meets with a positive anchor: "
             + ("yes" if not rep["unmet_class_pairs"] else f"no, pairs {rep['unmet_class_pairs']}"),
             f"OF unique: {rep['unique_of']} ({rep['reason']})"]
    w = rep["witness"]
    if w is not None:
        lines.append(f"witness moves samples {w['moved_samples'][:20]}{' ...' if len(w['moved_samples']) > 20 else ''}"
                     f": loss {w['loss']} vs OF minimum {w['of_loss']:.12f}, Gram changes by {w['gram_change']:g}, "
                     f"verified {w['verified']}")
    return "\n".join(lines)


def run(args) -> int:
    import numpy as np

    problem = problem_from_args(args)
    if args.epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {args.epochs}")
    check_size(problem, args, extra=2 * 8 * args.epochs * sum(int(c) for c in problem.counts),  # epochs' batches
               shrink="--counts / --dim / --epochs")
    if args.out:
        ensure_dir(args.out)
    rep, Zw = batches_report(problem, args.epochs)
    rep["versions"] = versions()
    if args.out:
        write_json(os.path.join(args.out, "result.json"), rep)
        if Zw is not None:
            with atomic(os.path.join(args.out, "witness.npz")) as tmp:
                np.savez(tmp, Z=Zw, labels=problem.label_array)
    print(dumps(rep) if args.json else summary(rep))
    return 0
