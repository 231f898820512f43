"""Fuzzing the command line: random flags of ``ufm solve``, ``ufm certify --bound-only`` and ``ufm batches`` with
random values (empty, negative, huge, non-numeric, lists with empty entries) end with a documented exit code
(0, 1, 2 or 3) and never a traceback. Values that would make a valid run slow (many steps, large counts that
fit in memory) are left out: each call stays fast."""
import argparse

import pytest
from cli_run import run_cli

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ufm.cli import _parser  # noqa: E402

pytestmark = pytest.mark.slow  # every test here takes seconds: the full suite only

BAD = ["", " ", "-1", "0", "x", "nan", "inf", "-inf", "1e308", "99999999999999999999", "3,,4", ",", "1,2,"]
FLOAT = [*BAD, "0.5", "1", "2", "1e-9"]
INT = [*BAD, "1", "2", "3", "1000000000000"]
COUNTS = [*BAD, "3,4", "2,2,2", "4,4,1", "3", "5,1", "1000000000,1000000000", "-3,4", "0,4", "3,x"]
SMALL_INT = ["", "-1", "0", "1", "2", "20", "x", "1.5", "3,,4"]  # counts of work: huge is slow, not bad
VALUES = {
    "--counts": COUNTS,
    "--dim": [*SMALL_INT, "100000000", "99999999999999999999", "3", "5"],
    "--steps": SMALL_INT, "--epochs": SMALL_INT + ["1000000000000"],
    "--starts": SMALL_INT + ["1000000000000"],
    "--seed": INT + ["4294967295", "4294967296"],
    "--batching": ["", "full", "fixed:2", "shuffled:2", "binding:3", "subsets:2", "fixed:", "fixed:-1", "fixed:x",
                   "bogus", "fixed:100000", "fixed:0", ":", "fixed:2:3"],
    "--batches": ["", ";", "0,1;2,3", "0,,1", "x", "0,1;99", "-1,0", "/nonexistent/batches.json", "0;1;2;3;4;5;6"],
    "--loss": ["sc", "ce", "bcl", "bcl-avg", "", "x"], "--constraint": ["sphere", "ball", "", "x"],
    "--optimizer": ["pgd", "sgd", "adam", "", "x"], "--method": ["auto", "full", "reduced", "first-order", "x"],
    "--solver": ["clarabel", "SCS", "", "x"],
}
SKIP = {"-h", "--help", "--out"}


def flag_space(command):
    """``{flag: (takes a value, candidate values)}`` from the command's own parser."""
    parser, _ = _parser([command])
    space = {}
    for action in parser.commands[command]._actions:
        flags = [s for s in action.option_strings if s.startswith("--") and s not in SKIP]
        if not flags:
            continue
        flag = flags[0]
        if action.nargs == 0 or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            space[flag] = (False, [])
        elif flag in VALUES:
            space[flag] = (True, VALUES[flag])
        elif action.type is int:
            space[flag] = (True, SMALL_INT)
        else:
            space[flag] = (True, FLOAT)
    return space


COMMANDS = {"solve": [], "certify": ["--bound-only"], "batches": []}
SPACES = {c: flag_space(c) for c in COMMANDS}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(COMMANDS)))
    space = SPACES[command]
    flags = draw(st.lists(st.sampled_from(sorted(space)), max_size=5, unique=True))
    argv = [command, *COMMANDS[command], "--counts", "3,2"]  # small unless a drawn --counts replaces it
    for flag in flags:
        takes, values = space[flag]
        argv += [flag, draw(st.sampled_from(values))] if takes else [flag]
    if command == "solve":
        argv += ["--steps", "30"] if "--steps" not in flags else []
    return argv


def test_flag_space_covers_the_parsers():
    for command, space in SPACES.items():
        assert {"--counts", "--seed", "--dim", "--batching", "--tau"} <= set(space), command


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_cli_fuzz_exit_codes(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code in (0, 1, 2, 3), (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    if code == 2:
        assert err.strip() and len(err.strip().splitlines()) == 1, (argv, err)
