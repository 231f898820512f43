"""The command line starts fast and forgives: ``ufm --help`` and ``ufm CMD --help`` import no JAX, cvxpy, scipy,
matplotlib or optax and take well under a second; ``import ufm`` is lazy; an unknown flag or sub-command is one
line on stderr with the closest valid one, exit 2, no traceback."""
import functools
import os
import re
import statistics
import subprocess
import sys
import time

import pytest
from cli_run import run_cli

from ufm.cli import COMMANDS, _parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = {"jax", "jaxlib", "cvxpy", "scipy", "matplotlib", "optax", "torch"}
ENV = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def python(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=cwd)


def heavy_roots(importtime_stderr: str) -> dict[str, set[str]]:
    """``python -X importtime``'s report -> each heavy package imported, with the outermost imports it came
    under (the report lists a module's imports before it, indented one step deeper)."""
    rows = []
    for line in importtime_stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|( *)([\w.]+)$", line)
        if m:
            rows.append((len(m.group(1)) // 2, m.group(2)))
    found = {}
    for i, (_, name) in enumerate(rows):
        top = name.split(".")[0]
        if top in HEAVY:
            root = next(n for d, n in rows[i:] if d == 0)
            found.setdefault(top, set()).add(root)
    return found


HELPS = [[], *([c] for c in COMMANDS)]
# modules outside ufm.cli that a command's parser reads: the --constraint choices (ufm.constraints.CONSTRAINTS,
# to be importable without JAX) and verify's epilog (the theorems of solvers.workflows.verify)
PARSER_READS = {"solve": "ufm.constraints", "certify": "ufm.constraints", "batches": "ufm.constraints",
                "verify": "solvers.workflows.verify"}


@functools.cache
def heavy_imports_of(module: str) -> list[str]:
    r = python("-c", f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & "
                     f"set({sorted(HEAVY)!r}))))")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.parametrize("cmd", HELPS, ids=lambda c: " ".join(["ufm", *c, "--help"]))
@pytest.mark.slow
def test_help_imports_nothing_heavy_and_is_fast(cmd):
    needs = PARSER_READS.get(cmd[0]) if cmd else None
    pending = heavy_imports_of(needs) if needs else []
    r = python("-X", "importtime", "-m", "ufm", *cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: ufm" in r.stdout
    heavy = heavy_roots(r.stderr)
    # nothing heavy, except what the module the parser reads drags in while it is not yet light
    assert all(roots <= ({needs} if pending else set()) for roots in heavy.values()), heavy
    if pending:
        pytest.xfail(f"the parser of ufm {cmd[0]} reads {needs}, which imports {', '.join(pending)}")
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        r = python("-m", "ufm", *cmd, "--help")
        walls.append(time.perf_counter() - t)
        assert r.returncode == 0
    # well under 1 s on an idle machine (about 0.15 s); 2 s leaves room for a loaded one
    assert statistics.median(walls) < 2.0, walls


def test_import_ufm_is_lazy_and_its_names_resolve():
    code = ("import sys, ufm; heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'jax', 'cvxpy', "
            "'scipy', 'matplotlib', 'optax'}); print(heavy)")
    r = python("-c", code)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    import ufm

    assert set(ufm.__all__) >= {"Problem", "sc_loss", "ce_loss", "project", "predict", "geometry", "theory",
                                "batching", "interaction", "kernels", "__version__"}
    for name in ufm.__all__:
        assert getattr(ufm, name) is not None and name in dir(ufm)
    from ufm import Problem, predict
    from ufm.problem import Problem as P
    from ufm.theory import predict as pr

    assert Problem is P and predict is pr and ufm.geometry is sys.modules["ufm.geometry"]
    with pytest.raises(AttributeError, match="no_such_name"):
        ufm.no_such_name  # noqa: B018


def test_the_written_out_choices_match_their_sources():
    from benchmarks.__main__ import SECTIONS
    from solvers.deepnet.data import DATASETS
    from solvers.deepnet.encoders import ARCHS
    from solvers.deepnet.train import OPTIMIZERS, SCHEDULES
    from ufm.cli import bench, train

    assert (train.ARCHS, train.OPTIMIZERS, train.SCHEDULES, train.DATASETS) == (ARCHS, OPTIMIZERS, SCHEDULES,
                                                                                DATASETS)
    assert bench.SECTIONS == SECTIONS


def choices(parser, dest):
    return tuple(next(a for a in parser._actions if a.dest == dest).choices)


def test_loss_and_constraint_choices_come_from_the_registries():
    from ufm.constraints import CONSTRAINTS
    from ufm.objectives import NAMES

    parser, _ = _parser(["solve", "certify", "batches"])
    for cmd in ("solve", "certify", "batches"):
        assert choices(parser.commands[cmd], "loss") == tuple(NAMES)
        assert choices(parser.commands[cmd], "constraint") == tuple(CONSTRAINTS)


# -- forgiving errors --------------------------------------------------------------------------------------------
TYPOS = [
    ("solve", ["--tua", "0.5"], "--tau"), ("solve", ["--stpes=10"], "--steps"), ("solve", ["--nonnen"], "--nonneg"),
    ("solve", ["--weight_decay", "1"], "--weight-decay"), ("certify", ["--methd", "full"], "--method"),
    ("batches", ["--epcohs", "2"], "--epochs"), ("sweep", ["--out", "x", "--ratoins", "1,2"], "--ratios"),
    ("plot", ["x", "--tto", "y"], "--to"), ("verify", ["--audti", "3"], "--audit"),
    ("train", ["--arhc", "mlp"], "--arch"), ("bench", ["--repaets", "1"], "--repeats"),
]


@pytest.mark.parametrize("cmd,argv,near", TYPOS, ids=[f"{c} {n}" for c, _, n in TYPOS])
def test_unknown_flag_suggests_the_closest(capsys, cmd, argv, near):
    code, out, err = run_cli(capsys, cmd, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert f"(did you mean {near}?)" in err and f"`ufm {cmd} --help`" in err and err.startswith(f"ufm {cmd}: error:")
    assert "Traceback" not in err


def test_unknown_flag_far_from_every_flag(capsys):
    code, _, err = run_cli(capsys, "solve", "--zzzzzz", "1")
    assert code == 2 and err.strip() == "ufm solve: error: unknown flag --zzzzzz; see `ufm solve --help`"


def test_stray_argument_is_named(capsys):
    code, _, err = run_cli(capsys, "solve", "extra")
    assert code == 2 and "unexpected argument 'extra'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("word,near", [("solv", "solve"), ("certfy", "certify"), ("batch", "batches"),
                                       ("bnech", "bench")])
def test_unknown_command_suggests_the_closest(capsys, word, near):
    code, out, err = run_cli(capsys, word, "--counts", "3,3")
    assert code == 2 and out == ""
    assert err.strip() == f"ufm: error: unknown command {word!r} (did you mean {near!r}?); see `ufm --help`"


def test_unknown_command_far_from_every_command_lists_them(capsys):
    code, _, err = run_cli(capsys, "xyzzy")
    assert code == 2 and all(c in err for c in COMMANDS) and len(err.strip().splitlines()) == 1


def test_other_argparse_errors_are_one_line_too(capsys):
    for argv, word in [(["solve", "--loss", "mse"], "--loss"), (["sweep"], "--out"), (["solve", "--tau"], "--tau"),
                       (["bench", "--quick", "--full"], "--full")]:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and word in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and f"`ufm {argv[0]} --help`" in err, (argv, err)


def test_the_entry_point_prints_one_line_and_exits_2():
    for argv in (["solve", "--tua", "0.5"], ["solv"]):
        r = python("-m", "ufm", *argv)
        assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "did you mean" in r.stderr, r.stderr


@pytest.mark.parametrize("argv, flag", [(["--taus", "0.5,-1"], "--taus"), (["--ratios", "0.5"], "--ratios"),
                                        (["--loss", "mse"], "--loss"), (["--steps", "0"], "--steps"),
                                        (["--batchings", "fixed:0"], "--batchings")])
def test_sweep_errors_name_the_flag(capsys, tmp_path, argv, flag):
    code, out, err = run_cli(capsys, "sweep", "--out", str(tmp_path / "s"), *argv)
    assert code == 2 and out == "" and f"ufm sweep: error: {flag}: " in err, err
    assert not (tmp_path / "s").exists()
