"""JAX's persistent compilation cache (``ufm.cli.common.compile_cache``): on by default in a per-user folder, off
with ``UFM_JAX_CACHE=off`` or ``--no-compile-cache``; results equal either way; two processes may share it."""
import json
import os
import subprocess
import sys

import pytest

from ufm.cli.common import compile_cache_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["solve", "--counts", "3,2", "--tau", "0.5", "--steps", "300", "--json"]


def _clean_env():
    """The environment without any cache setting (the test run's own JAX cache folder included)."""
    return {k: v for k, v in os.environ.items() if k != "UFM_JAX_CACHE" and not k.startswith("JAX_")}


def _ufm(argv, env_extra, tmp_path):
    env = _clean_env()
    env.update({"PYTHONPATH": ROOT, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env_extra})
    return subprocess.run([sys.executable, "-m", "ufm", *argv], capture_output=True, text=True, env=env, cwd=ROOT)


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("UFM_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir() == os.path.join(str(tmp_path), "ufm", "jax")
    monkeypatch.setenv("UFM_JAX_CACHE", str(tmp_path / "elsewhere"))
    assert compile_cache_dir() == str(tmp_path / "elsewhere")


@pytest.mark.slow
def test_cache_on_and_off_give_equal_results_and_processes_share_it(tmp_path):
    folder = tmp_path / "xdg" / "ufm" / "jax"
    # two processes at once, one folder: both succeed and agree
    env = {**_clean_env(), "PYTHONPATH": ROOT, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    procs = [subprocess.Popen([sys.executable, "-m", "ufm", *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    entries = [f for f in os.listdir(folder) if not f.startswith(".")]
    assert entries, "nothing was cached"
    warm = _ufm(ARGS, {}, tmp_path)  # reads the cache
    off = _ufm(ARGS + ["--no-compile-cache"], {}, tmp_path)
    off_env = _ufm(ARGS, {"UFM_JAX_CACHE": "off"}, tmp_path / "other")
    assert not (tmp_path / "other" / "xdg").exists()
    results = [json.loads(o[0]) for o in outs] + [json.loads(r.stdout) for r in (warm, off, off_env)]
    for r in results[1:]:
        assert r["loss"] == results[0]["loss"]
