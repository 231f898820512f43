"""Peak memory of one SC loss + gradient, full batch (d = 32, K = 10, tau = 0.1, float32).

    python -m benchmarks.memory [--quick | --full]

Every measurement runs in a fresh process (``python -m benchmarks.memory --one N IMPL``): it compiles
``jax.value_and_grad`` of the loss, runs it once, and reports the process's peak resident memory (``ru_maxrss``:
everything, Python and XLA included), its resident memory before compiling, and XLA's own account of the
compiled program's temporaries. On a GPU the peak is the device's ``peak_bytes_in_use``. ``naive_jax`` (one
N x N matrix per pass) is only compiled, not run, above ``NAIVE_RUN_MAX``: its temporaries then say what it would
need.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from .common import ROOT, finish, log, section_args, table

SIZES = {"quick": [10_000, 100_000], "full": [10_000, 50_000, 100_000]}
NAIVE_RUN_MAX = 10_000
D, K, TAU = 32, 10, 0.1
TARGET_BYTES = 4 * 2**30


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(N, impl):
    """Measure in this process; print one JSON line."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ufm.losses import sc_loss_blocked, sc_loss_dense

    loss = {"ufm": sc_loss_blocked, "naive_jax": sc_loss_dense}[impl]
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(N, D)).astype(np.float32)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    Z, y = jnp.asarray(Z), jnp.asarray(np.arange(N) % K, jnp.int32)
    before = _rss_bytes()
    compiled = jax.jit(jax.value_and_grad(lambda z: loss(z, y, TAU))).lower(Z).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    out = {"N": N, "impl": impl, "rss_before_bytes": before, "xla_temp_bytes": temp, "ran": False}
    if impl == "ufm" or N <= NAIVE_RUN_MAX:
        t = time.perf_counter()
        value, _ = jax.block_until_ready(compiled(Z))
        out.update(ran=True, seconds=time.perf_counter() - t, loss=float(value))
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        out["device_peak_bytes"] = stats.get("peak_bytes_in_use")
    print(json.dumps(out))


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--one":
        return one(int(sys.argv[2]), sys.argv[3])
    a = section_args(__doc__, argv)
    rows = []
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for N in SIZES[a.mode]:
        for impl in ("ufm", "naive_jax"):
            log(f"memory: N={N} {impl}")
            run = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--one", str(N), impl], cwd=ROOT,
                                 env=env, capture_output=True, text=True)
            if run.returncode != 0:
                rows.append({"N": N, "impl": impl, "error": run.stderr.strip().splitlines()[-1:]})
                continue
            rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    out = {"what": "peak memory of one SC loss+grad, full batch, float32", "mode": a.mode, "d": D, "K": K,
           "tau": TAU, "target_bytes": TARGET_BYTES, "rows": rows}
    return finish("memory", out, render)


def render(out) -> str:
    gib = lambda b: None if b is None else b / 2**30  # noqa: E731
    head = ["N", "implementation", "peak RSS (GiB)", "RSS before compile (GiB)", "XLA temporaries (GiB)",
            "one loss+grad (s)", "under 4 GiB"]
    body = []
    for r in out["rows"]:
        if "error" in r:
            body.append([r["N"], r["impl"], None, None, None, None, "error: " + " ".join(r["error"])])
            continue
        peak = r.get("device_peak_bytes") or (r["peak_rss_bytes"] if r["ran"] else None)
        body.append([r["N"], r["impl"], gib(peak), gib(r["rss_before_bytes"]), gib(r["xla_temp_bytes"]),
                     r.get("seconds"), None if peak is None else ("yes" if peak < out["target_bytes"] else "no")])
    return ("Peak memory, one SC loss + gradient, full batch (naive JAX above 10^4: compiled only)\n\n"
            + table(head, body))


if __name__ == "__main__":
    main()
