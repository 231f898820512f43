"""Packaging basics: the licence pyproject names is there, the version comes from the package metadata, and
``ufm --version`` answers without importing JAX."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_license_file_is_mit():
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        assert f.readline().strip() == "MIT License"


def test_version_is_the_metadata_version():
    import ufm

    assert ufm.__version__ == pyproject()["project"]["version"]


def test_cli_version_is_fast_and_imports_no_jax():
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "ufm", "--version"], capture_output=True,
                         text=True, env=ENV, cwd=ROOT)
    assert run.returncode == 0
    assert run.stdout.strip() == f"ufm {pyproject()['project']['version']}"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in run.stderr.splitlines() if "|" in line}
    assert not imported & {"jax", "jaxlib", "cvxpy", "scipy", "matplotlib", "optax", "torch", "tqdm"}


def test_test_extra_pins_the_cpu_torch_and_bench_takes_a_range():
    extras = pyproject()["project"]["optional-dependencies"]
    assert "torch==2.13.0" in extras["test"]
    assert not any(d.startswith("torch==") for d in extras["bench"] + extras["notebooks"])
    assert "docs" in extras["all"][0] and "notebooks" in extras["all"][0]


def test_benchmark_results_name_their_machine():
    import glob
    import json

    files = glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.json"))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as f:
            assert "machine" in json.load(f), os.path.basename(path)
