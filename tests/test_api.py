"""The Python API does what the command line does: every ``ufm`` command has a library function, exported from
``solvers`` (or, for the commands outside the UFM's workflows, from its own package), and each one-call function
gives the JSON its command prints (or writes) on a tiny problem; the typed specs refuse a bad field in one error
that names it."""
import importlib
import json

import numpy as np
import pytest

from cli_run import run_cli

# command -> the library function that does its job ("module:attribute")
API = {
    "solve": "solvers:solve", "certify": "solvers:certify", "verify": "solvers:verify", "sweep": "solvers:sweep",
    "phase": "solvers:phase", "landscape": "solvers:landscape", "batches": "solvers:batches",
    "measure": "solvers:measure",
    "plot": "ufm.plots:plot_all", "train": "solvers.deepnet.train:train", "bench": "benchmarks.__main__:main",
}
TIMES = ("seconds", "solve_seconds", "certificate_seconds", "versions")


def _resolve(target):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def test_every_command_has_a_library_function():
    from ufm.cli import COMMANDS

    assert set(COMMANDS) == set(API)
    import solvers

    for command, target in API.items():
        assert callable(_resolve(target)), command
        if target.startswith("solvers:"):
            assert target.split(":")[1] in solvers.__all__, command


def _strip(obj):
    """``obj`` without its timings and versions (which differ between two runs), at every depth."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _same(a, b):
    """Equal JSON, floats to 1e-9 relative (the same seeded solve in the same process)."""
    a, b = _strip(json.loads(json.dumps(a))), _strip(json.loads(json.dumps(b)))
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (sorted(set(a) ^ set(b)), list(a), list(b))
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    else:
        assert a == b


def test_batches_matches_the_command(tmp_path, capsys):
    import solvers
    from ufm import Problem

    argv = ["--counts", "3,3,2", "--tau", "0.5", "--nonneg", "--batching", "shuffled:3", "--seed", "2"]
    code, out, err = run_cli(capsys, "batches", *argv, "--json", "--out", str(tmp_path / "cli"))
    assert code == 0, err
    problem = Problem(counts=(3, 3, 2), tau=0.5, nonneg=True, batching="shuffled:3", batch_seed=2)
    rep = solvers.batches(problem, out=str(tmp_path / "api"))
    _same(json.loads(out), rep)
    _same(json.loads((tmp_path / "cli" / "result.json").read_text()),
          json.loads((tmp_path / "api" / "result.json").read_text()))
    assert rep["epochs_rule"] in ("fewest meeting (a) and (b)", "limit")
    with pytest.raises(ValueError, match="^epochs"):
        solvers.batches(problem, epochs=0)


@pytest.mark.slow
def test_solve_and_certify_match_the_commands(capsys):
    import solvers
    from solvers.workflows.report import solution_report
    from ufm import Problem

    code, out, err = run_cli(capsys, "solve", "--counts", "3,3,1", "--tau", "0.5", "--steps", "400", "--json")
    assert code == 0, err
    problem = Problem(counts=(3, 3, 1), tau=0.5)
    sol = solvers.solve(problem, steps=400, seed=0)
    rep = solution_report(sol)
    _same(json.loads(out), rep)
    code, out, err = run_cli(capsys, "certify", "--counts", "3,3,1", "--tau", "0.5", "--steps", "400", "--json")
    assert code == 0, err
    cert = solvers.certify(problem, sol)
    _same(json.loads(out), {**rep, **cert.to_dict()})


def test_measure_matches_the_command(tmp_path, capsys):
    import solvers

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [5, 4, 3])
    Z = rng.normal(size=(12, 4)) + 3 * np.eye(4)[y]
    np.save(tmp_path / "Z.npy", Z)
    np.save(tmp_path / "y.npy", y)
    paths = [str(tmp_path / "Z.npy"), str(tmp_path / "y.npy")]
    code, out, err = run_cli(capsys, "measure", "--embeddings", paths[0], "--labels", paths[1], "--no-ufm",
                             "--tau", "0.2", "--json", "--out", str(tmp_path / "cli"))
    assert code == 0, err
    rep = solvers.measure(*paths, tau=0.2, ufm=False, out=str(tmp_path / "api"))
    _same(json.loads(out), rep)
    written = sorted(p.name for p in (tmp_path / "api").iterdir() if not p.name.startswith("."))
    assert written == ["cosines.png", "per_class.csv", "result.json"]
    arrays = solvers.measure(Z, y, tau=0.2, ufm=False)  # arrays given directly: the same numbers, no file names
    assert arrays["inputs"]["embeddings"] is None and arrays["geometry"] == rep["geometry"]


@pytest.mark.slow
def test_verify_matches_the_command(tmp_path, capsys):
    import solvers

    code, out, err = run_cli(capsys, "verify", "--counts", "2,2", "--tau", "0.5", "--dim", "3", "--steps", "800",
                             "--starts", "2", "--json", "--out", str(tmp_path))
    assert code in (0, 3), err
    rep = solvers.verify(solvers.Setting((2, 2), tau=0.5, dim=3), steps=800, starts=2)
    _same(json.loads(out), rep)
    assert rep["exit"] == code
    _same(json.loads((tmp_path / "verify.json").read_text()), rep)


@pytest.mark.slow
def test_sweep_matches_the_command(tmp_path, capsys):
    import solvers
    from ufm import SweepSpec

    argv = ["--classes", "2", "--n-min", "2", "--ratios", "1,2", "--taus", "0.5", "--steps", "300"]
    code, out, err = run_cli(capsys, "sweep", *argv, "--json", "--out", str(tmp_path / "cli"))
    assert code == 0, err
    spec = SweepSpec(classes=2, n_min=2, ratios=(1, 2), taus=(0.5,), steps=300)
    recs = solvers.sweep(spec, str(tmp_path / "api"), progress=False)
    _same([json.loads(line) for line in out.splitlines()], recs)
    assert (tmp_path / "api" / "cosines_vs_R.png").exists()


@pytest.mark.slow
def test_phase_matches_the_command(tmp_path, capsys):
    import solvers
    from ufm import PhaseSpec

    code, out, err = run_cli(capsys, "phase", "--classes", "3", "--ratios", "1,3", "--taus", "0.5",
                             "--no-figures", "--json", "--out", str(tmp_path / "cli"))
    assert code == 0, err
    rep = solvers.phase(PhaseSpec(classes=3, ratios=(1, 3), taus=(0.5,)), out=str(tmp_path / "api"), figures=False)
    _same(json.loads(out), rep)
    _same(json.loads((tmp_path / "cli" / "phase.json").read_text()),
          json.loads((tmp_path / "api" / "phase.json").read_text()))
    # the family dict of older calls gives the same grid
    old = solvers.phase({"loss": "sc", "nonneg": False, "classes": 3, "imbalance": "step", "n_min": 5.0,
                         "minority_fraction": 0.5, "dim": 3, "axis": "tau"}, [1, 3], [0.5])
    _same(rep, old)


@pytest.mark.slow
def test_landscape_matches_the_command(tmp_path, capsys):
    import solvers
    from ufm import LandscapeSpec

    code, out, err = run_cli(capsys, "landscape", "--counts", "2,2,1", "--taus", "0.5", "--starts", "2",
                             "--steps", "500", "--no-figures", "--json", "--out", str(tmp_path / "cli"))
    assert code in (0, 3), err
    spec = LandscapeSpec(counts=((2, 2, 1),), taus=(0.5,), starts=2, steps=500)
    rep = solvers.landscape(spec, str(tmp_path / "api"), figures=False)
    _same(json.loads(out), rep)


@pytest.mark.parametrize("make, field", [
    (lambda: __import__("ufm").PhaseSpec(classes=1), "classes"),
    (lambda: __import__("ufm").PhaseSpec(loss="ce", taus=(0.1,)), "taus"),
    (lambda: __import__("ufm").PhaseSpec(ratios=(2, 1)), "ratios"),
    (lambda: __import__("ufm").PhaseSpec(ratios=(0.5, 1)), "ratios"),
    (lambda: __import__("ufm").PhaseSpec(n_min=1.5), "n_min"),
    (lambda: __import__("ufm").PhaseSpec(loss="bcl", nonneg=True), "nonneg"),
    (lambda: __import__("ufm").PhaseSpec(classes="4"), "classes"),
    (lambda: __import__("ufm").SweepSpec(losses=("hinge",)), "loss"),
    (lambda: __import__("ufm").SweepSpec(taus=()), "taus"),
    (lambda: __import__("ufm").SweepSpec(seed=-1), "seed"),
    (lambda: __import__("ufm").SweepSpec(batchings=("fixed:0",)), "batching"),
    (lambda: __import__("ufm").LandscapeSpec(counts=((2, 2),), classes=3), "counts"),
    (lambda: __import__("ufm").LandscapeSpec(gram_tol=0), "gram_tol"),
    (lambda: __import__("ufm").LandscapeSpec(counts=((300, 200),)), "counts"),
    (lambda: __import__("solvers").Setting((3, 0)), "counts"),
    (lambda: __import__("solvers").Setting((3, 3), tau=-1), "tau"),
    (lambda: __import__("solvers").Setting((3, 3), constraint="cube"), "constraint"),
])
def test_specs_refuse_a_bad_field_naming_it(make, field):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    assert str(info.value).startswith(field), str(info.value)


def test_specs_normalise_and_compare_by_value():
    from ufm import LandscapeSpec, PhaseSpec, SweepSpec

    a = PhaseSpec(classes=3, ratios=[1, 2], taus=[0.5])
    assert a == PhaseSpec(classes=3, ratios=(1.0, 2.0), taus=(0.5,)) and a.dim == 3 and a.axis == "tau"
    assert hash(a) == hash(PhaseSpec(classes=3, ratios=(1.0, 2.0), taus=(0.5,)))
    ce = PhaseSpec(loss="ce")
    assert ce.axis == "weight_decay" and ce.values[0] == pytest.approx(1e-3) and ce.values[-1] == pytest.approx(0.1)
    with pytest.raises(Exception):
        a.classes = 5  # frozen
    s = SweepSpec(classes=2, n_min=2, ratios=(1, 3), taus=(0.5,), losses=("sc", "ce"))
    pts = s.points()
    assert [p["loss_type"] for p in pts] == ["sc", "sc", "ce", "ce"] and pts[2]["tau"] is None
    from solvers.workflows.sweep import sweep_points

    assert pts == sweep_points(classes=2, n_min=2, ratios=(1, 3), taus=(0.5,), losses=("sc", "ce"),
                               steps=5000, epochs=200)
    ls = LandscapeSpec(ratios=(1, 1.1, 2.6), taus=(0.1, 0.2))
    assert ls.classes == 3 and len(ls.points()) == 2 * len({tuple(v) for v in ls.vectors()})
    assert ls.settings()["family"]["ratios"] == [1.0, 1.1, 2.6]


def test_phase_refuses_a_dict_without_its_grid_and_a_spec_with_one():
    import solvers
    from ufm import PhaseSpec

    with pytest.raises(ValueError, match="^ratios"):
        solvers.phase({"loss": "sc", "classes": 3})
    with pytest.raises(ValueError, match="^ratios"):
        solvers.phase(PhaseSpec(), [1.0], [0.5])
    with pytest.raises(ValueError, match="^rtol"):
        solvers.phase(PhaseSpec(classes=2, ratios=(1,), taus=(0.5,)), rtol=2)
    with pytest.raises(ValueError, match="^axis"):
        solvers.phase({"loss": "sc", "classes": 3, "axis": "weight_decay"}, [1.0], [0.5])
