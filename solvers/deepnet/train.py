"""Train an encoder under SC or CE on real data (pure JAX + optax) and measure the UFM's geometry every epoch.

    cfg = TrainConfig(dataset="digits", arch="mlp", loss="sc", nonneg=True, imbalance="step:10",
                      batching="binding:64", epochs=60)
    result = train(cfg)                       # TrainResult: params, history (one dict per epoch), Z_train, ...

**Losses.** SC: ``ufm.sc_loss`` (mean over anchor slots) on the L2-normalised embeddings of a batch, temperature
``tau``. CE: mean cross-entropy of a linear head ``Z W^T (+ b)`` on the raw embeddings.

**Batches** (:func:`batches_of_epoch`): ``ufm.batching.epoch_batches(batching, labels, epoch, batch_seed=seed)``
for ``full``, ``fixed:b``, ``shuffled:b`` and ``binding:b`` (Kini et al.'s binding examples appended to every
batch); ``subsets:b``: the fixed set of ``ufm.batching.subset_batches`` in a new order every epoch. Batches are
padded to one width with ``-1`` (one compiled step for the whole run); padding slots are neither anchors nor
negatives.

**Views.** ``views=2``: two augmented views of every sample of the batch (SupCon); ``augment=True`` with
``views=1``: one augmented view. Augmentation: a random translation by up to ``max(1, size // 8)`` positions
along every spatial axis (zero padding), and for CIFAR-10 a random horizontal flip. The geometry and the
accuracies are always measured on the un-augmented samples.

**Optimizer.** ``sgd`` (momentum ``momentum``, default 0.9) with the weight decay added to the gradient
(PyTorch's ``weight_decay``), or ``adam`` with decoupled weight decay (AdamW). Learning rate ``lr`` (default
0.1 for sgd, 1e-3 for adam), ``constant`` by default, or a ``cosine`` schedule to 0, or a ``step`` schedule
(x0.1 at 50% and 75% of the steps). Constant is the default because the geometry keeps moving towards the
UFM's long after the accuracy has settled, and a decaying rate freezes it early (docs/deepnets.md: the digits target).

**Every epoch** (history record): one row of a ``ufm.Tracker`` (:func:`tracker_for`: the same code path as a
tracker in any training loop), measuring the *normalised* training embeddings whatever the loss (and, for CE,
the classifier ``W``): ``mean_cosines``, ``nc1``, ``delta_gm``, ``etf_distance``, ``min_cosine`` /
``max_cosine`` (off-diagonal), ``cosine_groups``, ``nc3`` / ``nc4``, ``classifier_norms``, and with a UFM
reference (:func:`ufm_reference`) ``distance_to_ufm`` and the UFM's ``ufm_*`` values. The run's own keys are
passed to the row: ``step``, ``lr``, ``train_loss`` (mean over the epoch's batches), ``train_accuracy`` (CE: the
network's classifier; SC: nearest class centre on the training set), ``test_accuracy`` (CE: classifier; SC:
nearest class centre), ``ncc_train_accuracy``, ``ncc_test_accuracy``, ``probe_test_accuracy``
(softmax-regression probe on the frozen normalised embeddings); then ``geometry`` (those of the geometry keys
that ``ufm.geometry.report`` returns, as one dict) and ``seconds`` (the epoch's wall time, read-outs included).

**Randomness.** One ``seed``: initialisation, batches (``batch_seed = seed``), augmentation (a key per step
folded from the step number) and the data split. A resumed run takes exactly the steps of an uninterrupted one.

**Device.** Whatever JAX sees: the dataset is put on the default device once; a GPU is used when present.
Training runs in float32, also when the caller has turned on ``jax_enable_x64``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ufm import objectives
from ufm.batching import epoch_batches, pad, parse_scheme, subset_batches
from .data import DATASETS, Dataset, load, parse_imbalance
from ufm.defaults import REFERENCE_STEPS
from ufm.deprecation import renamed
from ufm.losses import sc_loss
from ufm.progress import Progress
from ufm.records import clean
from ufm.tracker import Tracker

from . import checkpoint, probes
from . import encoders as deepnet

__all__ = ["TrainConfig", "TrainResult", "train", "make_optimizer", "batch_loss", "augment", "embed",
           "evaluate", "steps_per_epoch", "batches_of_epoch", "tracker_for", "ufm_reference", "OPTIMIZERS",
           "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}
REPORT = ("mean_cosines", "nc1", "delta_gm", "etf_distance", "classifier_norms", "global_mean")  # the keys of
# ufm.geometry.report: a record's "geometry"


def _positive_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")


def _number(name, v, lo=None, hi=None, open_lo=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if lo is not None and (v < lo or (open_lo and v == lo)):
        raise ValueError(f"{name} must be {'>' if open_lo else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (validated on construction; ``ValueError`` names the field).

    Data: ``dataset`` (``solvers.deepnet.data.DATASETS``), ``data_dir``, ``imbalance`` (``step:R[:fraction]``,
    ``longtail:R``, ``none``), ``label_noise``, ``test_fraction``. Model: ``arch`` (``deepnet.ARCHS``),
    ``dim``, ``width``, ``head``, ``nonneg`` (a ReLU on the embedding: UFM+), ``loss`` (``sc``/``ce``), ``tau``
    (SC), ``bias`` (CE head).
    Optimisation: ``optimizer``, ``lr`` (None: 0.1 sgd / 1e-3 adam), ``momentum``, ``weight_decay``,
    ``schedule``, ``epochs``, ``batching``, ``views``, ``augment``, ``seed``. ``probe``: fit the linear probe
    every epoch (off saves time in sweeps). ``relu`` (keyword only): the deprecated name of ``nonneg``.

    ``to_dict`` writes ``nonneg`` and, for files read by older versions, the same value as ``relu``;
    :meth:`from_dict` reads either.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    imbalance: str = "none"
    label_noise: float = 0.0
    test_fraction: float = 0.3
    arch: str = "mlp"
    dim: int | None = None
    width: int | None = None
    head: int | None = None
    nonneg: bool = True
    loss: str = "sc"
    tau: float = 0.1
    bias: bool = False
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "constant"
    epochs: int = 60
    batching: str = "shuffled:128"
    views: int = 1
    augment: bool = False
    seed: int = 0
    probe: bool = True

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        parse_imbalance(self.imbalance)
        _number("label_noise", self.label_noise, 0, 1)
        _number("test_fraction", self.test_fraction, 0, 1, open_lo=True)
        if self.test_fraction >= 1:
            raise ValueError(f"test_fraction must be < 1, got {self.test_fraction}")
        heads = [n for n in objectives.NAMES if objectives.get(n).deepnet is not None]
        if self.loss not in objectives.NAMES or objectives.get(self.loss).deepnet is None:
            raise ValueError(f"loss must be one with a deep-net head ({', '.join(heads)}), got {self.loss!r}")
        _number("tau", self.tau, 0, open_lo=True)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr is not None:
            _number("lr", self.lr, 0, open_lo=True)
        _number("momentum", self.momentum, 0, 1)
        _number("weight_decay", self.weight_decay, 0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        _positive_int("epochs", self.epochs)
        _positive_int("seed", self.seed, 0)
        parse_scheme(self.batching)
        if self.views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {self.views!r}")
        if self.loss_head == "sc" and self.bias:
            raise ValueError("bias applies to loss='ce' only (SC has no classifier)")
        deepnet.encoder(self.arch, dim=self.dim, width=self.width, nonneg=self.nonneg, head=self.head)

    @property
    def loss_head(self) -> str:
        """The loss head of the network (``Objective.deepnet``): ``"sc"`` (normalised embeddings into SC) or
        ``"ce"`` (a linear classifier into softmax cross-entropy)."""
        return objectives.get(self.loss).deepnet  # type: ignore[return-value]  # a loss without one is refused above

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else float(self.lr)

    @property
    def augmented(self) -> bool:
        return self.augment or self.views == 2

    def to_dict(self) -> dict:
        """The fields, and ``relu`` (``nonneg``'s older name) for readers of older files."""
        return {**dataclasses.asdict(self), "relu": self.nonneg}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config ``to_dict`` wrote, or an older file's (``relu`` for ``nonneg``); other keys are ignored."""
        d = dict(d)
        if "nonneg" not in d and "relu" in d:
            d["nonneg"] = d["relu"]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)



def _deprecated_relu(self) -> bool:
    warnings.warn("TrainConfig.relu is deprecated; use TrainConfig.nonneg (the same meaning)", DeprecationWarning,
                  stacklevel=2)
    return self.nonneg


setattr(TrainConfig, "relu", property(_deprecated_relu, doc="The deprecated name of ``nonneg``."))
_fields_init = TrainConfig.__init__


@functools.wraps(_fields_init)
def _init_with_relu(self, *args, relu=None, **kwargs):
    """The dataclass's ``__init__``, also taking ``relu=`` (``nonneg``'s deprecated name, keyword only)."""
    if relu is not None:
        if "nonneg" in kwargs:
            raise TypeError("TrainConfig: give nonneg= (relu= is its deprecated name), not both")
        kwargs["nonneg"] = renamed("relu", relu, "nonneg", True)
    _fields_init(self, *args, **kwargs)


setattr(TrainConfig, "__init__", _init_with_relu)

@dataclass
class TrainResult:
    """What a run leaves: final ``params`` ({"encoder", "head" (CE)}), ``history`` (one dict per epoch),
    normalised-or-not raw embeddings ``Z_train (N, d)`` / ``Z_test`` of the un-augmented samples, the
    ``data`` (``solvers.deepnet.data.Dataset``), ``steps`` taken, ``seconds`` (this process's wall time),
    ``seconds_per_step`` (median over the epochs after the first, so without compilation; None for one epoch),
    ``steps_to_fit`` (the step count at the end of the first epoch with 100% training accuracy, or None)."""

    config: TrainConfig
    params: dict
    history: list
    Z_train: np.ndarray
    Z_test: np.ndarray
    data: Dataset = field(repr=False)
    steps: int
    seconds: float
    seconds_per_step: float | None
    steps_to_fit: int | None
    device: str

    @property
    def final(self) -> dict:
        return self.history[-1]


# --- pieces ---------------------------------------------------------------------------------------------------

def batches_of_epoch(config, labels, epoch) -> list:
    """The batches (index arrays) of ``epoch``: ``ufm.batching.epoch_batches`` for ``full``, ``fixed``,
    ``shuffled`` and ``binding``; for ``subsets:b`` the fixed set ``ufm.batching.subset_batches`` (all
    ``b``-subsets of the training set, or a seeded sample of them), visited in a new random order every epoch."""
    s = parse_scheme(config.batching)
    if s.name != "subsets":
        return epoch_batches(s, labels, epoch, config.seed)
    batches = subset_batches(len(labels), s.b, config.seed)[0]  # type: ignore[arg-type]  # subsets:b has a b
    order = np.random.default_rng([config.seed, epoch]).permutation(len(batches))
    return [np.asarray(batches[i]) for i in order]


def steps_per_epoch(config, labels) -> int:
    return len(batches_of_epoch(config, labels, 0))


def batch_width(config, labels) -> int:
    """Widest batch of the scheme (the same every epoch: the partition sizes do not depend on the epoch)."""
    return max(len(b) for b in batches_of_epoch(config, labels, 0))


def _schedule(config, total_steps):
    lr = config.learning_rate
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(lr, {int(total_steps * 0.5): 0.1, int(total_steps * 0.75): 0.1})
    return optax.constant_schedule(lr)


def make_optimizer(config, total_steps) -> optax.GradientTransformation:
    """SGD + momentum with coupled weight decay, or AdamW; on the config's schedule (module doc)."""
    sched = _schedule(config, total_steps)
    if config.optimizer == "adam":
        return optax.adamw(sched, weight_decay=config.weight_decay)
    return optax.chain(optax.add_decayed_weights(config.weight_decay),
                       optax.sgd(sched, momentum=config.momentum or None))


def augment(key, x, flip=False):
    """A random translation of every sample ``x (n, *spatial, C)`` by up to ``max(1, size // 8)`` positions per
    spatial axis (zero padding); with ``flip``, a random mirror of the last spatial axis (2-D images)."""
    spatial, rank = x.shape[1:-1], x.ndim - 2
    s = max(1, min(spatial) // 8)
    k_shift, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_shift, (x.shape[0], rank), 0, 2 * s + 1)
    xp = jnp.pad(x, [(0, 0)] + [(s, s)] * rank + [(0, 0)])

    def one(xi, o):
        return jax.lax.dynamic_slice(xi, [o[i] for i in range(rank)] + [0], spatial + x.shape[-1:])

    out = jax.vmap(one)(xp, offsets)
    if flip and rank == 2:
        mirror = jax.random.bernoulli(k_flip, 0.5, (x.shape[0],))
        out = jnp.where(mirror[:, None, None, None], out[:, :, ::-1], out)
    return out


def batch_loss(enc, config, params, x, y, valid, key):
    """The loss of one padded batch: ``x (b, ...)``, ``y (b,)``, ``valid (b,)`` bool (False on padding)."""
    if config.augmented:
        keys = jax.random.split(key, config.views)
        flip = config.dataset == "cifar10"
        x = jnp.concatenate([augment(k, x, flip) for k in keys])
        y, valid = jnp.tile(y, config.views), jnp.tile(valid, config.views)
    Z = enc.apply(params["encoder"], x, train=True)
    if config.loss_head == "sc":
        idx = jnp.where(valid, jnp.arange(len(y)), -1)[None, :]
        return sc_loss(deepnet.normalize(Z), y, config.tau, idx)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(deepnet.head_logits(params["head"], Z), y)
    return jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(valid.sum(), 1)


@functools.lru_cache(maxsize=16)
def _compiled(model: TrainConfig, total_steps: int):
    """``(encoder, optimizer, step, apply)`` for the fields of a config that shape the program (``model``:
    the config with its data-only fields reset), cached so that runs differing only in data, noise or seed
    (a sweep, a resumed run) reuse one compilation. ``step(params, opt_state, x_all, y_all, row, key)`` takes
    one padded row of batch indices; ``apply(params, x)`` embeds."""
    enc = deepnet.encoder(model.arch, dim=model.dim, width=model.width, nonneg=model.nonneg, head=model.head)
    opt = make_optimizer(model, total_steps)

    def step(params, opt_state, x_all, y_all, row, key):
        valid = row >= 0
        safe = jnp.where(valid, row, 0)
        loss, g = jax.value_and_grad(lambda p: batch_loss(enc, model, p, x_all[safe], y_all[safe], valid, key))(
            params)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    apply = jax.jit(lambda p, x: enc.apply(p["encoder"], x))
    return enc, opt, jax.jit(step, donate_argnums=(0, 1)), apply


def _model_fields(config) -> TrainConfig:
    return config.replace(data_dir=None, imbalance="none", label_noise=0.0, test_fraction=0.3, seed=0, probe=True)


def embed(apply, params, x, chunk=1024) -> np.ndarray:
    """``apply(params, x_chunk)`` over ``x`` in chunks of ``chunk`` rows (the last one padded): ``(n, d)``."""
    n = len(x)
    out = []
    for i in range(0, n, chunk):
        xb = x[i:i + chunk]
        m = len(xb)
        if m < chunk:
            xb = jnp.concatenate([xb, jnp.zeros((chunk - m,) + xb.shape[1:], xb.dtype)])
        out.append(np.asarray(apply(params, xb))[:m])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(config, params, Z_train, y_train, Z_test, y_test, K) -> dict:
    """The per-epoch accuracies of the module doc (the geometry is the tracker's)."""
    out = {"ncc_train_accuracy": probes.ncc_accuracy(Z_train, y_train, Z_train, y_train, K),
           "ncc_test_accuracy": probes.ncc_accuracy(Z_train, y_train, Z_test, y_test, K)}
    if config.probe:
        out["probe_test_accuracy"] = probes.accuracy(probes.linear_probe(Z_train, y_train, Z_test, K), y_test)
    if config.loss_head == "ce":
        head = jax.tree_util.tree_map(np.asarray, params["head"])
        logits = lambda Z: Z @ head["W"].T + head.get("b", 0.0)  # noqa: E731
        out["train_accuracy"] = probes.accuracy(np.argmax(logits(Z_train), 1), y_train)
        out["test_accuracy"] = probes.accuracy(np.argmax(logits(Z_test), 1), y_test)
    else:
        out["train_accuracy"] = out["ncc_train_accuracy"]
        out["test_accuracy"] = out["ncc_test_accuracy"]
    return out


def tracker_for(config, out=None, reference=False) -> Tracker:
    """The ``ufm.Tracker`` of a run of ``config``: its loss, tau, ReLU and batching, measuring the normalised
    embeddings (the module doc); ``out``: the folder of ``history.jsonl`` and ``geometry_per_epoch.png`` (None:
    rows in memory only); ``reference``: the UFM side (:func:`ufm_reference`) or False."""
    return Tracker(out, loss=config.loss, tau=config.tau, nonneg=config.nonneg, batching=config.batching,
                   reference=reference, normalize=True)


def ufm_reference(config, *, max_n=2000, steps=REFERENCE_STEPS, certify=True):
    """The UFM of a run of ``config`` as a tracker's reference (``ufm.measurement``'s module doc):
    ``solvers.deepnet.compare.compare`` (full batch, dimension ``min(d, K)``, counts scaled past ``max_n``,
    certified), its whole answer kept under ``comparison``."""
    from . import compare

    def reference(counts, dim, **_):  # loss, tau, nonneg: those of config; batching: full (compare's doc)
        # compare measures a distance to the cosines it is given; the tracker measures that of every row instead
        out = compare.compare(np.eye(len(counts)), counts, config, dim=dim, max_n=max_n, steps=steps,
                              seed=config.seed, certify=certify)
        out["distance_to_ufm"] = None
        cert = out["certificate"] or {}
        return {"mean_cosines": out["mean_cosines"], "delta_gm": out["delta_gm"], "nc1": out["nc1"],
                "etf_distance": out["etf_distance"], "loss": out["loss"], "lower_bound": cert.get("lower_bound"),
                "certified": cert.get("certified"), "counts_scaled": out["counts_scaled"], "comparison": out}

    return reference


def _init(enc, config, key, input_shape, K):
    k_enc, k_head = jax.random.split(key)
    params = {"encoder": enc.init(k_enc, tuple(input_shape))}
    if config.loss_head == "ce":
        params["head"] = deepnet.head_init(k_head, K, enc.dim, config.bias)
    return params


def _load_data(config) -> Dataset:
    return load(config.dataset, data_dir=config.data_dir, seed=config.seed, test_fraction=config.test_fraction,
                imbalance=config.imbalance, label_noise=config.label_noise)


def _resume(folder, config, templates):
    trees, meta = checkpoint.load(folder, templates, required=("epoch", "history"))
    saved = dict(meta.get("config", {}))
    if "nonneg" not in saved and "relu" in saved:  # a checkpoint written before nonneg had its name
        saved["nonneg"] = saved["relu"]
    diff = sorted(k for k, v in config.to_dict().items() if saved.get(k, v) != v or k not in saved)
    if diff:
        raise ValueError(f"resume: the checkpoint in {folder} is of another run (differs in "
                         f"{', '.join(diff)}); use the same flags, or another --out")
    return trees, meta


def train(config: TrainConfig, *, data: Dataset | None = None, out: str | None = None, checkpoint_every: int = 0,
          resume: bool = False, progress: bool = True, on_epoch=None, until_fit: bool = False,
          tracker: Tracker | None = None) -> TrainResult:
    """Train per ``config`` (module doc) and return a :class:`TrainResult`.

    Args:
      data: a loaded dataset (default: ``solvers.deepnet.data.load`` with the config's data fields).
      out: folder for checkpoints (needed by ``checkpoint_every`` and ``resume``).
      checkpoint_every: write ``out/checkpoint.{npz,json}`` every this many epochs (0: never) and at the end.
      resume: continue from ``out``'s checkpoint (same config required; ``ValueError`` otherwise).
      progress: a progress bar on stderr.
      on_epoch: called after every epoch with the whole history so far (a list of records; e.g. to write a
        JSON-lines file).
      until_fit: stop after the first epoch with 100% training accuracy (the label-noise experiment; use a
        ``constant`` schedule so that the stopping point does not change the learning rates).
      tracker: the ``ufm.Tracker`` that measures and records every epoch (:func:`tracker_for`; default: one without
        files or UFM side). It starts over (``reset``) from the epochs of a resumed checkpoint, or from none; its
        UFM reference, if any, is asked for before the first epoch. The caller closes it.
    Raises:
      ValueError naming the problem (bad data, bad checkpoint); RuntimeError when the loss becomes non-finite.
    """
    with jax.enable_x64(False):  # float32 whatever the global flag: the same run gives the same numbers
        return _train(config, data, out, checkpoint_every, resume, progress, on_epoch, until_fit,
                      tracker_for(config) if tracker is None else tracker)


def _train(config, data, out, checkpoint_every, resume, progress, on_epoch, until_fit, tracker):
    start = time.perf_counter()
    _positive_int("checkpoint_every", checkpoint_every, 0)
    if (checkpoint_every or resume) and out is None:
        raise ValueError("checkpoint_every / resume need an output folder (out)")
    data = _load_data(config) if data is None else data
    K = data.K
    spe = steps_per_epoch(config, data.y_train)
    width = batch_width(config, data.y_train)
    enc, opt, step, apply = _compiled(_model_fields(config), config.epochs * spe)
    key = jax.random.PRNGKey(config.seed)
    k_init, k_aug = jax.random.split(key)
    params = _init(enc, config, k_init, data.x_train.shape[1:], K)
    opt_state = opt.init(params)
    history, first_epoch = [], 0
    if resume:
        trees, meta = _resume(out, config, {"params": params, "opt_state": opt_state})
        params, opt_state = trees["params"], trees["opt_state"]
        history, first_epoch = meta["history"], int(meta["epoch"])
    params, opt_state = jax.device_put((params, opt_state))
    tracker.reset(history)
    tracker.reference_result(data.y_train, enc.dim)  # the UFM side (if any) now: not inside an epoch's seconds

    x_all, y_all = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test = jnp.asarray(data.x_test)
    chunk = min(1024, len(data.y_train))
    bar = Progress((config.epochs - first_epoch) * spe, "train", enabled=progress)
    epoch_seconds, note = [], ""

    def save_checkpoint(epoch):
        meta = {"config": config.to_dict(), "epoch": epoch, "step": epoch * spe, "history": history,
                "data": data.info}
        checkpoint.save(out, {"params": params, "opt_state": opt_state}, clean(meta))

    for epoch in range(first_epoch, config.epochs):
        t0 = time.perf_counter()
        rows = jnp.asarray(pad(batches_of_epoch(config, data.y_train, epoch), width))
        losses = []
        for j in range(len(rows)):
            k = jax.random.fold_in(k_aug, epoch * spe + j)
            params, opt_state, loss = step(params, opt_state, x_all, y_all, rows[j], k)
            losses.append(loss)
            bar.update(1, note)
        train_loss = float(jnp.mean(jnp.stack(losses)))
        epoch_seconds.append((time.perf_counter() - t0) / len(rows))
        if not math.isfinite(train_loss):
            raise RuntimeError(f"the training loss became non-finite in epoch {epoch + 1}; lower --lr")
        Z_train, Z_test = embed(apply, params, x_all, chunk), embed(apply, params, x_test, chunk)
        lr = float(_schedule(config, config.epochs * spe)((epoch + 1) * spe - 1))
        rec = tracker.row(epoch + 1, Z_train, data.y_train, W=params["head"]["W"] if "head" in params else None,
                          step=(epoch + 1) * spe, lr=lr, train_loss=train_loss,
                          **evaluate(config, params, Z_train, data.y_train, Z_test, data.y_test, K))
        rec["geometry"] = {k: rec[k] for k in REPORT}
        rec["seconds"] = time.perf_counter() - t0
        rec = tracker.append(rec)  # JSON-ready: NumPy scalars to Python, NaN to None
        history.append(rec)
        note = (f"epoch {epoch + 1}/{config.epochs} loss {train_loss:.4f} acc {rec['train_accuracy']:.3f}/"
                f"{rec['test_accuracy']:.3f} delta_gm {rec['delta_gm']:.3f}")
        if on_epoch is not None:
            on_epoch(history)
        if checkpoint_every and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs):
            save_checkpoint(epoch + 1)
        if until_fit and rec["train_accuracy"] >= 1.0:
            break

    if first_epoch >= config.epochs:  # resumed a finished run: only the read-outs
        Z_train, Z_test = embed(apply, params, x_all, chunk), embed(apply, params, x_test, chunk)
    fit = next((r["step"] for r in history if r["train_accuracy"] >= 1.0), None)
    per_step = statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else None
    steps = history[-1]["step"] if history else 0
    return TrainResult(config, jax.tree_util.tree_map(np.asarray, params), history, Z_train, Z_test, data, steps,
                       time.perf_counter() - start, per_step, fit, str(jax.devices()[0]))
