"""Each step budget is one named constant (``ufm.defaults``): every signature and command-line flag that takes it
reads it, so a budget changes in one place."""
import argparse
import inspect

import pytest

from ufm import defaults
from ufm.cli import COMMANDS, _parser

SIGNATURES = {
    defaults.DEFAULT_STEPS: ["solvers.pgd:solve", "solvers.pgd:solve_many", "solvers.workflows.verify:verify",
                             "solvers.workflows.verify:verify_setting", "solvers.workflows.verify:run_suite",
                             "solvers.workflows.verify:audit", "solvers.workflows.verify:Setting.command",
                             "solvers.workflows.sweep:sweep_points", "solvers.workflows.landscape:grid_points"],
    defaults.CLASS_STEPS: ["solvers.classlevel:solve_classes", "solvers.classlevel:solve_chains",
                           "solvers.reduced:solve_groups", "solvers.workflows.phase:phase",
                           "solvers.workflows.phase:boundary"],
    defaults.REFERENCE_STEPS: ["solvers.deepnet.compare:compare", "solvers.deepnet.train:ufm_reference",
                               "solvers.workflows.measure:solve_ufm",
                               "solvers.workflows.measure:certified_reference"],
}


def _resolve(target):
    import importlib

    module, name = target.split(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("value,target", [(v, t) for v, ts in SIGNATURES.items() for t in ts])
def test_every_steps_default_is_the_named_constant(value, target):
    assert inspect.signature(_resolve(target)).parameters["steps"].default == value


def test_the_budgets_are_the_recorded_ones():
    # the golden results were computed with these; a change here changes answers (docs/design.md, "Defaults")
    assert (defaults.DEFAULT_STEPS, defaults.CLASS_STEPS, defaults.REFERENCE_STEPS) == (5000, 4000, 20000)


def _flags():
    parser, _ = _parser(COMMANDS)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.dest in ("steps", "ufm_steps"):
                yield name, a


def test_every_steps_flag_reads_a_constant_and_says_it():
    seen = {}
    for name, a in _flags():
        want = defaults.REFERENCE_STEPS if a.dest == "ufm_steps" else defaults.DEFAULT_STEPS
        assert a.default == want, (name, a.dest)
        assert str(want) in a.help, (name, a.help)
        seen[name] = a.dest
    assert {"solve", "certify", "verify", "sweep", "landscape", "train"} <= set(seen), seen
