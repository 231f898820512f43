"""Step time of the CIFAR-10 ResNet-18 setting of Kini et al. (SC, tau 0.1, ReLU, STEP imbalance, binding
batches, SGD lr 0.1 momentum 0.9, weight decay 5e-4) on whatever device JAX sees.

    python -m benchmarks.resnet_step [--n-per-batch 10000] [--batch 256] [--width 64] [--epochs 2] [--data-dir D]

Without ``--data-dir`` it writes CIFAR-10-format python batches of random images (``--n-per-batch`` images in
each of the five training batches and in the test batch) to a temporary folder: the step time does not depend
on the pixels, and nothing is downloaded. With ``--data-dir`` it reads the real CIFAR-10 batches there.
Runs the real command (``ufm train --dataset cifar10 --arch resnet18 ...``) in a fresh process and reports
``seconds_per_step`` (median over the epochs after the first, so without compilation), the wall time and the
device; JSON in ``benchmarks/results/resnet_step.json``.
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

from ufm.records import write_json

from .machine import describe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_fake_cifar(folder, n, seed=0):
    """CIFAR-10 python batches of random images: five training batches and a test batch of ``n`` each."""
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(os.path.join(folder, name), "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, n).tolist()}, fh)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-per-batch", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--imbalance", default="step:10")
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = a.data_dir
        if data_dir is None:
            data_dir = os.path.join(tmp, "cifar-10-batches-py")
            os.makedirs(data_dir)
            write_fake_cifar(data_dir, a.n_per_batch)
        args = ["train", "--dataset", "cifar10", "--data-dir", data_dir, "--arch", "resnet18", "--width",
                str(a.width), "--loss", "sc", "--tau", "0.1", "--relu", "--imbalance", a.imbalance, "--batching",
                f"binding:{a.batch}", "--epochs", str(a.epochs), "--no-probe", "--no-ufm", "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ufm", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"ufm train failed:\n{proc.stderr[-3000:]}")
    rep = json.loads(proc.stdout)
    res = {"command": "ufm " + " ".join(args), "data": "real" if a.data_dir else "random CIFAR-format images",
           "n_train": rep["data"]["n_train"], "steps": rep["steps"], "seconds_per_step": rep["seconds_per_step"],
           "train_seconds": rep["seconds"], "wall_s": wall, "device": rep["device"], "machine": describe()}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    write_json(os.path.join(ROOT, "benchmarks", "results", "resnet_step.json"), res)
    sps = res["seconds_per_step"]
    print("| device | width | batch (+K bound) | N train | steps | s / step | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {res['device']} | {a.width} | {a.batch} | {res['n_train']} | {res['steps']} | "
          f"{'n/a' if sps is None else f'{sps:.4f}'} | {wall:.0f} |")


if __name__ == "__main__":
    main()
