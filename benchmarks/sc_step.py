"""SC loss + gradient: time per step vs N (d = 32, K = 10, tau = 0.1, float32, unit rows, full batch).

    python -m benchmarks.sc_step [--quick | --full] [--repeats R]

Candidates, timed in interleaved rounds (median of R):
  * ``ufm``: ``ufm.losses.sc_loss_blocked`` (the tiled kernel ``sc_loss`` uses from width 256), jit;
  * ``naive_jax``: ``ufm.losses.sc_loss_dense`` (one N x N matrix per pass), jit;
  * ``torch``: SupContrast's ``SupConLoss`` (one view) forward + ``backward()``, eager PyTorch;
  * ``pymanopt``: one iteration of pymanopt's ``SteepestDescent`` on the Oblique manifold (its JAX backend, the
    cost being the jit-compiled dense loss in float32), i.e. a line search with several cost evaluations and a retraction;
  * ``exp_floor``: a fused ``sum(exp(x))`` over ``N^2`` entries generated in registers (2-D iota), no
    memory traffic: the time of the exps alone, one per ordered pair: what any SC step must evaluate (a kernel
    that recomputes them in its backward pass, as ``ufm``'s does, spends twice this);
  * ``gram_matmul``: one ``N x d`` by ``d x N`` product (``sum(Z Zᵀ)``, jit; dense sizes only). Any SC step needs
    the exps and two such products (the logits, and the gradient's product of the probabilities with ``Z``): the
    ``exp + matmul floor`` reported is ``exp_floor + 2 gram_matmul`` (times of the two measured apart, so a kernel
    that overlaps them may beat it).
Sizes where a dense candidate would need more than ``DENSE_MAX_BYTES`` per N x N matrix are skipped.
"""
from __future__ import annotations

import numpy as np

from .common import finish, interleaved, log, ms, ratio, section_args, table

SIZES = {"quick": [100, 1000, 4000], "full": [100, 300, 1000, 4000, 10000, 30000, 100000]}
PYMANOPT_MAX = {"quick": 1000, "full": 4000}
DENSE_MAX_BYTES = 1 << 30  # skip dense candidates whose N x N float32 matrix exceeds 1 GiB
D, K, TAU = 32, 10, 0.1


def exp_floor(n_entries):
    """A jit function summing ``exp`` over ``n_entries`` values made from 2-D iotas (fused, no memory reads;
    the value depends on both indices so that XLA cannot hoist the exp out of a broadcast)."""
    import jax
    import jax.numpy as jnp

    rows = 1024
    cols = -(-n_entries // rows)

    @jax.jit
    def f(scale):
        i = jax.lax.broadcasted_iota(jnp.float32, (rows, cols), 0)
        j = jax.lax.broadcasted_iota(jnp.float32, (rows, cols), 1)
        return jnp.sum(jnp.exp((i * cols + j) * scale - 1.0))

    return lambda: f(jnp.float32(1.0 / (rows * cols))).block_until_ready()


def candidates(N, mode):
    import jax
    import jax.numpy as jnp

    from ufm.losses import sc_loss_blocked, sc_loss_dense

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(N, D)).astype(np.float32)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    y = np.arange(N) % K
    Zj, yj = jnp.asarray(Z), jnp.asarray(y, jnp.int32)
    out = {}
    fast = jax.jit(jax.value_and_grad(lambda z: sc_loss_blocked(z, yj, TAU)))
    out["ufm"] = lambda: jax.block_until_ready(fast(Zj))
    dense_ok = N * N * 4 <= DENSE_MAX_BYTES
    if dense_ok:
        naive = jax.jit(jax.value_and_grad(lambda z: sc_loss_dense(z, yj, TAU)))
        out["naive_jax"] = lambda: jax.block_until_ready(naive(Zj))
    try:
        import torch

        from .torch_ref import step

        if dense_ok:
            dev = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
            Zt, yt = torch.from_numpy(Z).to(dev), torch.from_numpy(y).to(dev)
            sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
            out["torch"] = lambda: (step(Zt, yt, TAU), sync())
    except ImportError:
        log("sc_step: torch not installed (pip install -e '.[bench]'): skipped")
    if N <= PYMANOPT_MAX[mode]:
        out.update(_pymanopt(Z, y))
    out["exp_floor"] = exp_floor(N * N)
    if dense_ok:
        out["gram_matmul"] = gram_matmul(Zj)
    return out


def gram_matmul(Zj):
    """A jit function of ``sum(Z Zᵀ)``: one ``N x d`` by ``d x N`` product."""
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda z: jnp.sum(z @ z.T))
    return lambda: f(Zj).block_until_ready()


def exp_matmul_floor(times: dict):
    """``exp_floor + 2 gram_matmul`` (seconds), or None without both."""
    if "exp_floor" not in times or "gram_matmul" not in times:
        return None
    return times["exp_floor"] + 2 * times["gram_matmul"]


def _pymanopt(Z, y):
    """One SteepestDescent iteration (after a warm-up run that compiles), or {} without pymanopt."""
    try:
        import pymanopt
        from pymanopt.manifolds import Oblique
        from pymanopt.optimizers import SteepestDescent
    except ImportError:
        log("sc_step: pymanopt not installed: skipped")
        return {}
    import jax
    import jax.numpy as jnp

    from ufm.losses import sc_loss_dense

    manifold = Oblique(Z.shape[1], Z.shape[0])  # columns on the unit sphere: X = Z^T
    loss = jax.jit(lambda X: sc_loss_dense(X.T.astype(jnp.float32), jnp.asarray(y), TAU))  # float32 as the rest
    cost = pymanopt.function.jax(manifold)(lambda X: loss(X))
    problem = pymanopt.Problem(manifold, cost)
    iters = 3
    opt = SteepestDescent(max_iterations=iters, min_gradient_norm=0, min_step_size=0, verbosity=0)
    X0 = np.asarray(Z.T, np.float64)
    return {"pymanopt": lambda: opt.run(problem, initial_point=X0), "_pymanopt_iters": iters}


def main(argv=None):
    a = section_args(__doc__, argv)
    repeats = a.repeats or (5 if a.mode == "quick" else 9)
    rows = []
    for N in SIZES[a.mode]:
        cands = candidates(N, a.mode)
        iters = cands.pop("_pymanopt_iters", 1)
        reps = repeats if N <= 10000 else max(1, repeats // 3)
        log(f"sc_step: N={N}: {', '.join(cands)} ({reps} rounds)")
        res = interleaved(cands, reps)
        if "pymanopt" in res:
            for k in ("median_s", "min_s", "max_s"):
                res["pymanopt"][k] /= iters
        rows.append({"N": N, "d": D, "K": K, "tau": TAU, "dtype": "float32", "results": res})
    out = {"what": "SC loss+grad per step (s), full batch", "repeats": repeats, "mode": a.mode, "rows": rows}
    return finish("sc_step", out, render)


def render(out) -> str:
    head = ["N", "ufm (ms)", "naive JAX (ms)", "PyTorch SupCon (ms)", "pymanopt iter (ms)", "exp floor (ms)",
            "exp+matmul floor (ms)", "PyTorch / ufm", "naive / ufm", "ufm / exp floor", "ufm / exp+matmul floor"]
    body = []
    for r in out["rows"]:
        t = {k: v["median_s"] for k, v in r["results"].items()}
        if exp_matmul_floor(t) is not None:
            t["exp_matmul_floor"] = exp_matmul_floor(t)
        body.append([r["N"], ms(t.get("ufm")), ms(t.get("naive_jax")), ms(t.get("torch")), ms(t.get("pymanopt")),
                     ms(t.get("exp_floor")), ms(t.get("exp_matmul_floor")), ratio(t.get("torch"), t.get("ufm")),
                     ratio(t.get("naive_jax"), t.get("ufm")), ratio(t.get("ufm"), t.get("exp_floor")),
                     ratio(t.get("ufm"), t.get("exp_matmul_floor"))])
    return "SC loss + gradient, one step (median)\n\n" + table(head, body)


if __name__ == "__main__":
    main()
