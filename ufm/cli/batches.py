"""``ufm batches``: a batching's batches and interaction graph; is the orthogonal frame the unique minimiser?"""
from __future__ import annotations


from .common import (UsageError, add_output_args, add_problem_args, add_size_args, check_size, dumps, hold_folder,
                     problem_from_args, seed_int)

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


def __getattr__(name):  # the report's pieces moved to the library (solvers.workflows.batches)
    if name in ("epochs_to_judge", "batches_report", "EPOCHS_RULE"):
        from solvers.workflows import batches

        return getattr(batches, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from solvers.workflows.batches import batches

    problem = problem_from_args(args)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    from solvers.epochs import DEFAULT_EPOCHS

    most = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    check_size(problem, args, extra=2 * 8 * most * sum(int(c) for c in problem.counts),  # epochs' batches
               shrink="--counts / --dim / --epochs")
    out = hold_folder(args, "ufm batches", ("result.json", "witness.npz"))
    rep = batches(problem, epochs=args.epochs, out=out)
    print(dumps(rep) if args.json else summary(rep))
    return 0
