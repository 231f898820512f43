"""``ufm train``: train an encoder on real data under SC or CE, measure the geometry every epoch with a
``ufm.Tracker`` (``history.jsonl``, ``geometry_per_epoch.png``) beside the UFM's answer for the same counts, loss,
tau and ReLU, and set the final geometry beside it."""
from __future__ import annotations

import argparse
import os

from ufm.defaults import REFERENCE_STEPS

from .common import (UsageError, add_size_args, atomic, check_memory, dumps, eprint, fmt_matrix, hold_folder,
                     loss_choices, seed_int, versions, write_json)

HELP = "train a network (MLP, CNN, ResNet-18) under SC or CE and compare its geometry with the UFM"

# The choices of solvers.deepnet (encoders.ARCHS, train.OPTIMIZERS / SCHEDULES, data.DATASETS), written out so
# that the parser does not import JAX; tests/test_cli_fast.py checks that they match.
ARCHS = ("mlp", "cnn", "resnet18")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
DATASETS = ("digits", "mnist1d", "mnist", "fashion-mnist", "cifar10")


def add_parser(sub):
    p = sub.add_parser("train", help=HELP, description=HELP)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="digits", help="(default digits; offline)")
    g.add_argument("--data-dir", default=None, help="folder of the MNIST / FashionMNIST IDX or CIFAR-10 files")
    g.add_argument("--imbalance", default="none", help="training-set imbalance: step:R[:fraction], longtail:R "
                   "or none (default)")
    g.add_argument("--label-noise", type=float, default=0.0, help="fraction of training labels flipped (0)")
    g.add_argument("--test-fraction", type=float, default=0.3, help="test share of digits / mnist1d (0.3)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=ARCHS, default="mlp", help="(default mlp)")
    g.add_argument("--dim", type=int, default=None, help="embedding dimension (128; resnet18: 8 x width)")
    g.add_argument("--width", type=int, default=None, help="hidden width / base channels (512 / 32 / 64)")
    g.add_argument("--head", type=int, default=None, help="projection head with this hidden width (none)")
    g.add_argument("--nonneg", "--relu", dest="nonneg", action=argparse.BooleanOptionalAction, default=True,
                   help="a ReLU on the embedding, so it is non-negative (UFM+); --no-nonneg leaves it out; --relu / "
                        "--no-relu: the same flags under their older name (default --nonneg)")
    g.add_argument("--loss", choices=loss_choices(), default="sc",
                   help="a registered loss (ufm.objectives) with a deep-net head: sc or ce (default sc)")
    g.add_argument("--tau", type=float, default=0.1, help="SC temperature (0.1)")
    g.add_argument("--bias", action="store_true", help="CE classifier bias")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd (momentum) or adam (AdamW)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (0.1 sgd, 1e-3 adam)")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=5e-4)
    g.add_argument("--schedule", choices=SCHEDULES, default="constant", help="learning-rate schedule (constant)")
    g.add_argument("--epochs", type=int, default=60)
    g.add_argument("--batching", default=None, help="full, fixed:b, shuffled:b, binding:b, subsets:b (shuffled)")
    g.add_argument("--batch-size", type=int, default=None, help="b of a --batching given without one (128)")
    g.add_argument("--views", type=int, choices=[1, 2], default=1, help="2: two augmented views per sample")
    g.add_argument("--augment", action="store_true", help="augment the single view (random shifts)")
    g.add_argument("--seed", type=seed_int, default=0, help="initialisation, batches, split, noise (0)")
    g.add_argument("--no-probe", dest="probe", action="store_false", help="skip the per-epoch linear probe")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="write --out/checkpoint.{npz,json} every K epochs (0: never)")
    g.add_argument("--resume", action="store_true", help="continue from --out's checkpoint (same flags)")
    g.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    g = p.add_argument_group("UFM comparison")
    g.add_argument("--no-ufm", dest="ufm", action="store_false", help="skip the UFM solve")
    g.add_argument("--ufm-steps", type=int, default=REFERENCE_STEPS,
                   help=f"most PGD steps of the UFM solve ({REFERENCE_STEPS})")
    g.add_argument("--ufm-max-n", type=int, default=2000, help="scale the UFM counts down above this N (2000)")
    add_size_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write result.json, history.jsonl, embeddings.npz, geometry.png, gram.png, "
                        "geometry_per_epoch.png here")
    return p


OUTPUTS = ("result.json", "history.jsonl", "embeddings.npz", "geometry.png", "gram.png", "geometry_per_epoch.png",
           "checkpoint.npz", "checkpoint.json")


TRAIN_WORKSPACE = 384 << 20  # what the first epoch compiles and holds beyond the arrays (an mlp on digits: 260-410
# MiB measured over the resident memory after the imports; docs/reliability.md)


def train_memory(config, data) -> int:
    """Bytes a training run needs beyond its data, before anything is allocated: the encoder's parameters counted
    from their specs (``solvers.deepnet.encoders.parameter_count``: no array is made) in float32, times 6
    (parameters, gradients, two optimizer moments, the update and the checkpoint's copy), plus the activations of
    the widest batch (each layer's outputs kept for the backward pass, 3 copies) and the embeddings of every
    sample (float64, with the tracker's normalised copy), plus ``TRAIN_WORKSPACE`` for what XLA compiles and holds
    (the most of it for small models). Meant to refuse what cannot fit."""
    import math

    from solvers.deepnet.encoders import encoder, parameter_count
    from solvers.deepnet.train import batch_width

    enc = encoder(config.arch, dim=config.dim, width=config.width, nonneg=config.nonneg, head=config.head)
    shape = tuple(int(v) for v in data.x_train.shape[1:])
    n_params = parameter_count(enc, shape)
    width = config.width or {"mlp": 512, "cnn": 32, "resnet18": 64}[config.arch]
    pixels = math.prod(shape[:-1])
    # floats each sample leaves for the backward pass: the layers' outputs (convolutions with their norm and ReLU;
    # cnn: width, 2 width, 4 width channels at strides 1, 2, 2; resnet18: a stem and 4 convolutions per stage)
    per_sample = {"mlp": 2 * width, "cnn": 6 * width * pixels, "resnet18": 26 * width * pixels}[config.arch]
    per_sample += enc.dim + 2 * (config.head or 0)
    b = batch_width(config, data.y_train) * config.views
    N = len(data.y_train) + len(data.y_test)
    return int(4 * 6 * n_params + 4 * 3 * b * (per_sample + math.prod(shape)) + 8 * 2 * N * enc.dim
               + TRAIN_WORKSPACE)


def batching_of(args) -> str:
    """``--batching`` with ``--batch-size`` filled in (``binding`` + ``--batch-size 64`` -> ``binding:64``)."""
    scheme = args.batching or "shuffled"
    name, _, size = scheme.partition(":")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if size:
        if args.batch_size is not None and str(args.batch_size) != size:
            raise UsageError(f"--batching {scheme} and --batch-size {args.batch_size} disagree")
        return scheme
    if name in ("full", "explicit"):
        return name
    return f"{name}:{args.batch_size or 128}"


def config_from_args(args):
    from solvers.deepnet.train import TrainConfig

    try:
        return TrainConfig(dataset=args.dataset, data_dir=args.data_dir, imbalance=args.imbalance,
                           label_noise=args.label_noise, test_fraction=args.test_fraction, arch=args.arch,
                           dim=args.dim, width=args.width, head=args.head, nonneg=args.nonneg, loss=args.loss,
                           tau=args.tau, bias=args.bias, optimizer=args.optimizer, lr=args.lr,
                           momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                           epochs=args.epochs, batching=batching_of(args), views=args.views, augment=args.augment,
                           seed=args.seed, probe=args.probe)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_out(out, resume: bool):
    """Without ``--resume``, refuse an ``--out`` that already holds a checkpoint (it would be overwritten)."""
    from solvers.deepnet import checkpoint

    if out and not resume and any(os.path.exists(os.path.join(out, f)) for f in (checkpoint.NPZ, checkpoint.JSON)):
        raise UsageError(f"{out} holds a checkpoint of another run; use --resume or another --out")


def check_batch_size(config, n_train: int):
    """A ``--batching`` whose batch size exceeds the training set is refused (it cannot be formed)."""
    from ufm.batching import parse_scheme

    size = parse_scheme(config.batching).b
    if size is not None and size > n_train:
        raise UsageError(f"--batching {config.batching}: batch size {size} exceeds the {n_train} training samples; "
                         f"give a size <= {n_train}")


def summary(rep) -> str:
    from ufm import objectives

    c, g, u = rep["config"], rep["geometry"], rep["ufm_prediction"]
    tau = "tau" in objectives.get(c["loss"]).summary_fields  # the loss's own numbers (the objective says)
    lines = [f"{c['arch']} on {c['dataset']} ({rep['data']['n_train']} train / {rep['data']['n_test']} test, "
             f"counts {','.join(map(str, rep['data']['counts']))}), {c['loss'].upper()}"
             f"{' tau=%g' % c['tau'] if tau else ''}, {'ReLU' if c.get('nonneg', c.get('relu')) else 'no ReLU'}, "
             f"{c['batching']}, {rep['epochs']} epochs, {rep['steps']} steps, {rep['seconds']:.1f} s on "
             f"{rep['device']}",
             f"train accuracy {rep['train_accuracy']:.4f}   test accuracy {rep['test_accuracy']:.4f}"
             + (f"   linear probe {rep['probe_test_accuracy']:.4f}" if rep["probe_test_accuracy"] is not None
                else ""),
             f"network: delta_gm {g['delta_gm']:.4f}   etf_distance {g['etf_distance']:.4f}   nc1 {g['nc1']:.3e}",
             "cosines between class means (network):", fmt_matrix(g["mean_cosines"])]
    if u is not None:
        lines += [f"UFM ({u['prediction']['geometry']}: {u['prediction']['reason']}): delta_gm {u['delta_gm']:.4f}"
                  f"   etf_distance {u['etf_distance']:.4f}", "cosines between class means (UFM):",
                  fmt_matrix(u["mean_cosines"]), f"distance_to_ufm {rep['distance_to_ufm']:.4f}"]
    return "\n".join(lines)


def run(args) -> int:
    import numpy as np

    from solvers.deepnet import compare, train
    from solvers.deepnet.data import DataError
    from ufm import geometry

    config = config_from_args(args)
    if (args.resume or args.checkpoint_every) and not args.out:
        raise UsageError("--resume and --checkpoint-every need --out DIR")
    if args.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.ufm_steps < 1 or args.ufm_max_n < 2:
        raise UsageError("--ufm-steps must be >= 1 and --ufm-max-n >= 2")
    if args.ufm and config.loss_head == "ce" and config.weight_decay <= 0:
        raise UsageError("--weight-decay 0 with CE: the UFM comparison needs weight_decay > 0 (no minimiser "
                         "exists without it); give a weight decay or --no-ufm")
    check_out(args.out, args.resume)
    hold_folder(args, "ufm train", OUTPUTS)
    try:
        data = train._load_data(config)
    except (DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    check_batch_size(config, len(data.y_train))
    check_memory(args, train_memory(config, data), f"{config.arch} (width {config.width or 'default'}, dim "
                 f"{config.dim or 'default'}) on {len(data.y_train)} samples", "--width / --dim / --head / "
                 "--batch-size")
    # every epoch is one row of this tracker (history.jsonl, geometry_per_epoch.png), the UFM solved once for it
    reference = train.ufm_reference(config, max_n=args.ufm_max_n, steps=args.ufm_steps) if args.ufm else False
    tracker = train.tracker_for(config, out=args.out, reference=reference)
    if args.ufm and not args.quiet:
        eprint("solving the UFM (float64) ...")
    try:
        with tracker:
            result = train.train(config, data=data, out=args.out, checkpoint_every=args.checkpoint_every,
                                 resume=args.resume, progress=not (args.quiet or args.json), tracker=tracker)
    except DataError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    cmp = None
    if args.ufm:  # the tracker's UFM (solved once, before the first epoch), at the final geometry
        ref = tracker.reference_result(result.data.y_train, result.Z_train.shape[1])
        cmp = dict(ref["comparison"])  # type: ignore[index]  # --ufm: the tracker has a reference, so a result
        cmp["distance_to_ufm"] = geometry.gram_distance(result.final["geometry"]["mean_cosines"], cmp["mean_cosines"])
    rep = compare.train_report(result, cmp)
    rep["versions"] = versions()
    if args.out:
        from solvers.workflows.figures import plot_grams, plot_history

        write_json(os.path.join(args.out, "result.json"), rep)
        with atomic(os.path.join(args.out, "embeddings.npz")) as tmp:
            np.savez(tmp, Z_train=result.Z_train, y_train=result.data.y_train, Z_test=result.Z_test,
                     y_test=result.data.y_test)
        title = f"{config.arch}, {config.dataset}, {config.loss.upper()}, {'ReLU' if config.nonneg else 'no ReLU'}, " \
                f"{config.imbalance}, {config.batching}"
        with atomic(os.path.join(args.out, "geometry.png")) as tmp:
            plot_history(result.history, tmp, cmp, title)
        with atomic(os.path.join(args.out, "gram.png")) as tmp:
            plot_grams(rep["geometry"]["mean_cosines"], None if cmp is None else cmp["mean_cosines"], tmp, title)
    print(dumps(rep) if args.json else summary(rep))
    return 0
