"""The benchmark baselines compute what they claim (SupContrast = ufm's loss, the PyTorch solver reaches the closed
form), and the suite judges its targets correctly. No timing here: speed lives in benchmarks/."""
import json
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from reference import sc_loss_loops

from benchmarks.__main__ import targets
from benchmarks.common import table
from ufm import project, theory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # class 2 is a singleton


@pytest.mark.slow
def test_supcon_equals_ufm_loss_and_its_gradient():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_ref import step, supcon_loss

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(10, 5))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    for tau in (0.1, 0.7):
        loss, grad = step(torch.tensor(Z), torch.tensor(LABELS), tau)
        assert float(loss) == pytest.approx(sc_loss_loops(Z, LABELS, tau), rel=1e-12)
        eps = 1e-6
        v = rng.normal(size=Z.shape)
        fd = (sc_loss_loops(Z + eps * v, LABELS, tau) - sc_loss_loops(Z - eps * v, LABELS, tau)) / (2 * eps)
        assert float((grad.numpy() * v).sum()) == pytest.approx(fd, rel=1e-6)
    # SupContrast's base temperature b scales the value by tau / b (docs/theory.md §2)
    b = float(supcon_loss(torch.tensor(Z), torch.tensor(LABELS), 0.1, base_temperature=0.07))
    assert b == pytest.approx(0.1 / 0.07 * sc_loss_loops(Z, LABELS, 0.1), rel=1e-12)


def test_torch_projection_is_ufms():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_ref import project as tproject

    Z = np.random.default_rng(1).normal(size=(8, 4))
    Z[0] = -np.abs(Z[0])  # no positive entry: the documented fallback
    got = tproject(torch.tensor(Z), 1.5, nonneg=True).numpy()
    assert np.allclose(got, np.asarray(project(Z, "sphere", 1.5, True)), atol=1e-15)


def test_torch_pgd_reaches_the_orthogonal_frame():
    pytest.importorskip("torch")
    from benchmarks.torch_ref import solve_pgd

    labels = np.repeat(np.arange(4), [6, 6, 3, 2])
    Z, loss, steps, _ = solve_pgd(labels, 0.2, 5, seed=0)
    assert abs(loss - theory.sc_of_loss([6, 6, 3, 2], 0.2)) <= 1e-6 and 1 < steps < 5000
    assert float(Z.min()) >= 0


def _results(torch_s, ufm_s, floor_s, peak, loop_s, many_s):
    step = {"rows": [{"N": 4000, "results": {"torch": {"median_s": torch_s}, "ufm": {"median_s": ufm_s},
                                             "exp_floor": {"median_s": floor_s}}}]}
    memory = {"rows": [{"N": 100_000, "impl": "ufm", "peak_rss_bytes": peak}]}
    many = {"rows": [{"set": "same shape", "loop_s": loop_s, "many_s": many_s}]}
    return {"sc_step": step, "memory": memory, "many": many, "certified": None}


def test_targets_are_judged_from_the_results():
    met = targets(_results(torch_s=2.0, ufm_s=0.05, floor_s=0.03, peak=1 << 30, loop_s=30.0, many_s=1.0))
    assert [t["met"] for t in met] == [True, True, True, True]
    missed = targets(_results(torch_s=1.0, ufm_s=0.1, floor_s=0.04, peak=5 << 30, loop_s=3.0, many_s=1.0))
    assert [t["met"] for t in missed] == [False, False, False, False]
    assert missed[0]["measured"] == "10.0x" and missed[2]["measured"] == "5.00 GiB"
    assert targets({"sc_step": None, "memory": None, "many": None}) == []


def test_markdown_table():
    out = table(["a", "b"], [[1, 0.123456], [None, "x"]])
    assert out.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| — | x |"]


@pytest.mark.parametrize("argv,word", [(["--only", "nope"], "--only"), (["--repeats", "0"], "--repeats")])
def test_ufm_bench_bad_input_exits_2(capsys, argv, word):
    from ufm.cli import main

    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err


# -- where results go --------------------------------------------------------------------------------------------
def _snapshot(folder):
    """name -> (mtime_ns, bytes) of every file in ``folder``."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                out[name] = (os.stat(path).st_mtime_ns, fh.read())
    return out


@pytest.mark.slow
def test_ufm_bench_writes_to_out_and_leaves_the_committed_results(capsys, tmp_path, monkeypatch):
    from benchmarks.common import COMMITTED
    from ufm.cli import main

    monkeypatch.setenv("UFM_BENCH_MANY_N", "6")  # the plumbing, not the timing: a few problems per set

    before, env_before = _snapshot(COMMITTED), os.environ.get("UFM_BENCH_OUT")
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--only", "many", "--repeats", "1", "--out", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert "solve_many" in stdout and str(out) in err
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0].startswith("many_") and names[1].startswith("suite_"), names
    many, suite = (json.loads((out / n).read_text()) for n in names)
    assert many["section"] == "many" and many["mode"] == "quick" and many["repeats"] == 1
    assert suite["sections"] == ["many"] and suite["failed"] == [] and suite["mode"] == "quick"
    assert _snapshot(COMMITTED) == before
    assert os.environ.get("UFM_BENCH_OUT") == env_before  # the run's folder does not leak out of it


def test_results_go_where_the_runner_says(tmp_path, monkeypatch):
    import benchmarks.common as common
    from benchmarks import store

    monkeypatch.delenv(common.OUT_ENV, raising=False)

    assert common.RESULTS == common.results_dir() == common.COMMITTED
    with common.results_in(tmp_path / "run") as folder:
        assert common.RESULTS == common.results_dir() == folder == str(tmp_path / "run")
        path, done = store.open_store("points")
        assert path == str(tmp_path / "run" / "points.jsonl") and done == {}
        store.run_once(path, done, {"n": 1}, lambda: {"value": 2.0})
        written = common.save("section", {"value": 1.0})
        assert os.path.dirname(written) == folder and common.load("section", common.backend())["value"] == 1.0
    assert common.results_dir() == common.COMMITTED and os.environ.get(common.OUT_ENV) is None
    assert len(store.read_records(str(tmp_path / "run" / "points.jsonl"))) == 1


def test_default_out_is_a_new_dated_folder(tmp_path, monkeypatch):
    from benchmarks.__main__ import out_dir
    from benchmarks.common import COMMITTED

    monkeypatch.chdir(tmp_path)
    first, second = out_dir(None, False), out_dir(None, False)
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert re.fullmatch(r"ufm-bench-\d{8}-\d{6}(-\d+)?", os.path.basename(first))
    assert os.path.dirname(first) == str(tmp_path)
    assert out_dir(str(tmp_path / "given"), False) == str(tmp_path / "given") and (tmp_path / "given").is_dir()
    assert out_dir(None, True) == COMMITTED  # --update-results, from this checkout
    with pytest.raises(ValueError, match="not both"):
        out_dir("x", True)


@pytest.mark.parametrize("argv,word", [(["--out", "x", "--update-results"], "--update-results"),
                                       (["--out", "/proc/no/such/place"], "--out")])
def test_ufm_bench_bad_out_exits_2(capsys, argv, word):
    from ufm.cli import main

    try:
        code = main(["bench", *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and word in err and "Traceback" not in err


def test_python_m_benchmarks_run_takes_out_and_rejects_bad_input(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--help"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and "--out DIR" in r.stdout and "--update-results" in r.stdout
    r = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--only", "nope", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "nope" in r.stderr and not (tmp_path / "o").exists()


def test_the_suite_is_packaged_and_importable_from_anywhere(tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "benchmarks*" in include and "ufm*" in include and "solvers*" in include
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", "import benchmarks.__main__ as m, benchmarks.common as c; "
                        "print(m.SECTIONS, c.ROOT)"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr  # after `pip install -e .` (or `pip install .`) of this pyproject
    assert "sc_step" in r.stdout


def test_phase_and_cache_targets_are_judged_from_the_results():
    scale = [{"K": 10, "points": 4, "certified": 4, "warm_wall_s": 8.0, "cold_wall_s": 12.0},
             {"K": 1000, "points": 4, "certified": 3, "warm_wall_s": 8.0, "cold_wall_s": 12.0}]
    lt = [{"K": 100, "grid": [4, 4], "points": 16, "certified": 16, "cpu_ms_per_point": 120.0, "wall_s": 9.0,
           "cpu_s": 2.0, "estimated_bytes": 3 << 20, "peak_rss_bytes": 2 << 20},
          {"K": 1000, "grid": [1, 1], "points": 1, "certified": 1, "cpu_ms_per_point": 9e3, "wall_s": 20.0,
           "cpu_s": 9.0, "estimated_bytes": 1 << 20, "peak_rss_bytes": 3 << 20},
          {"K": 100, "grid": [100, 100], "points": 10_000, "certified": 10_000, "cpu_ms_per_point": 120.0,
           "wall_s": 960.0, "cpu_s": 1200.0, "estimated_bytes": 2 << 20, "peak_rss_bytes": 2 << 20}]
    cc = {"ratios": {"solve_over_bare_wall": 1.2, "phase_warm_over_off_cpu": 0.7,
                     "phase_above_bare_warm_over_off_cpu": 0.55}}
    bcl = [{"K": 10, "points": 4, "certified": 4, "cold_wall_s": 8.0},
           {"K": 100, "points": 4, "certified": 3, "cold_wall_s": 5.0}]
    got = targets({"phase": {"scale": scale}, "phase_long_tail": {"rows": lt}, "compile_cache": cc,
                   "phase_ce": {"ratio": 1.5, "rows": [{"certified": 64, "points": 64}] * 2},
                   "phase_bcl": {"rows": bcl}})
    # a coarse grid has no speed target (its boundary bisection dominates), only the memory estimate's
    assert [t["met"] for t in got] == [True, False, True, True, False, False, True, True, True, False, True, False]
    assert got[4]["measured"] == "0.33x" and got[5]["measured"].startswith("16.0 min wall, 20.0 min CPU (120 ms")
    assert got[8]["measured"] == "8.0 s wall cold, 4/4" and got[9]["measured"] == "5.0 s wall cold, 3/4"
    assert got[11]["measured"] == "0.55x (0.70x of the whole process)"  # judged above the bare start-up
