"""One precision policy: float64 by default in the Python API, float32 opt-in and recorded, no silent down-cast.

tests/conftest.py turns x64 on for the whole test process, so the defaults are checked in a fresh interpreter
where JAX starts as a user's does (x64 off)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json
import numpy as np, jax, jax.numpy as jnp
import ufm, solvers
from solvers import epochs
assert not jax.config.jax_enable_x64
p = ufm.Problem(counts=(3, 3, 2), tau=0.5, dim=4)
y = p.label_array
Z = np.random.default_rng(0).normal(size=(8, 4))
out = {}
s = solvers.solve(p, steps=200)
out["solve"] = [str(s.Z.dtype), s.dtype]
m = solvers.solve_many([p, p.replace(tau=0.3)], steps=200)
out["solve_many"] = [[str(x.Z.dtype), x.dtype] for x in m]
e = epochs.solve(p.replace(batching="fixed:4"), epochs=3)
out["epochs"] = [str(np.asarray(e.Z).dtype), e.dtype]
f = solvers.solve(p, steps=200, dtype="float32")
out["float32"] = [str(f.Z.dtype), f.dtype]
out["sc_loss"] = str(ufm.sc_loss(Z, y, 0.5).dtype)
out["bcl_loss"] = str(ufm.bcl_loss(Z, y, 0.5, prototypes=np.eye(3, 4)).dtype)
out["bcl_avg_loss"] = str(ufm.losses.bcl_avg_loss(Z, y, 0.5).dtype)
out["ce_loss"] = str(ufm.ce_loss(Z, np.ones((3, 4)), y).dtype)
out["sc_loss_f32"] = str(ufm.sc_loss(Z.astype(np.float32), y, 0.5).dtype)
ref = float(ufm.sc_loss(Z, y, 0.5))
with jax.enable_x64(True):
    exact = float(ufm.sc_loss(jnp.asarray(Z), y, 0.5))
out["sc_loss_error"] = abs(ref - exact)
out["user_default_after"] = str(jnp.zeros(2).dtype)  # the caller's float32 JAX is left alone
print(json.dumps(out))
"""


@pytest.mark.slow
def test_float64_by_default_in_a_fresh_process():
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_ENABLE_X64": "0"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["solve"] == ["float64", "float64"]
    assert out["solve_many"] == [["float64", "float64"]] * 2
    assert out["epochs"] == ["float64", "float64"]
    assert out["float32"] == ["float32", "float32"]  # opt-in, recorded
    assert out["sc_loss"] == out["bcl_loss"] == out["bcl_avg_loss"] == out["ce_loss"] == "float64"
    assert out["sc_loss_f32"] == "float32"
    assert out["sc_loss_error"] == 0.0
    assert out["user_default_after"] == "float32"
