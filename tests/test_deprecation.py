"""``nonneg`` is the one keyword for non-negative features (UFM+) in the Python API; ``relu=``, its older spelling,
still works for one release: it warns (``DeprecationWarning``) and gives the same result. The ``--relu`` flags
stay as aliases of ``--nonneg``, and files written with the old ``relu`` key are still read."""
import dataclasses
import json
import warnings

import numpy as np
import pytest

import ufm
from ufm import measurement
from ufm.cli import _parser


def rows(counts=(4, 4, 2), seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    return np.abs(np.eye(len(counts))[y] + 0.01 * rng.standard_normal((len(y), len(counts)))), y


def test_measure_row_relu_warns_and_measures_the_same():
    Z, y = rows()
    new = measurement.measure_row(Z, y, loss="sc", tau=0.1, nonneg=True)
    with pytest.warns(DeprecationWarning, match="relu= is deprecated; use nonneg="):
        old = measurement.measure_row(Z, y, loss="sc", tau=0.1, relu=True)
    assert json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True, default=str)
    assert new["nonneg"] is True and new["relu"] is True  # the old key is still written


def test_a_reference_written_for_relu_still_gets_the_flag():
    Z, y = rows()
    seen = {}

    def old_style(counts, dim, *, loss, tau, relu, batching, batches, labels, **options):
        seen["relu"] = relu
        K = len(counts)
        return {"mean_cosines": np.eye(K).tolist()}

    with pytest.warns(DeprecationWarning, match="takes relu=, which is deprecated"):
        measurement.measure_row(Z, y, loss="sc", tau=0.1, nonneg=True, reference=old_style)
    assert seen == {"relu": True}


def test_tracker_relu_warns_and_is_nonneg():
    with pytest.warns(DeprecationWarning, match="relu= is deprecated"):
        t = ufm.Tracker(None, loss="sc", tau=0.1, relu=False, reference=False)
    assert t.nonneg is False
    with pytest.warns(DeprecationWarning, match="Tracker.relu is deprecated"):
        assert t.relu is False
    assert ufm.Tracker(None, "sc", 0.1, False, reference=False).nonneg is False  # positional, as before


def test_the_workflow_keywords():
    from solvers.workflows import measure as M

    y = np.repeat(np.arange(3), (4, 4, 2))
    with pytest.warns(DeprecationWarning, match="relu="):
        old = M.ufm_problem(y, 3, loss="sc", tau=0.2, relu=True)
    assert old == M.ufm_problem(y, 3, loss="sc", tau=0.2, nonneg=True) and old[0].nonneg


def test_encoder_relu_warns_and_builds_the_same_network():
    import jax

    from solvers.deepnet import encoders

    x = np.random.default_rng(0).standard_normal((5, 6, 1)).astype(np.float32)
    key = jax.random.PRNGKey(0)
    for nonneg in (True, False):
        new = encoders.encoder("mlp", dim=4, width=8, nonneg=nonneg)
        with pytest.warns(DeprecationWarning, match="relu="):
            old = encoders.encoder("mlp", dim=4, width=8, relu=nonneg)
        Zn = np.asarray(new.apply(new.init(key, (6, 1)), x))
        Zo = np.asarray(old.apply(old.init(key, (6, 1)), x))
        assert np.array_equal(Zn, Zo) and (Zn.min() >= 0) == nonneg


def test_train_config_relu_warns_and_old_files_are_read():
    from solvers.deepnet.train import TrainConfig

    with pytest.warns(DeprecationWarning, match="relu= is deprecated"):
        old = TrainConfig(relu=False)
    assert old == TrainConfig(nonneg=False) and old.nonneg is False
    with pytest.warns(DeprecationWarning, match="TrainConfig.relu is deprecated"):
        assert old.relu is False
    d = old.to_dict()
    assert d["nonneg"] is False and d["relu"] is False  # the old key is still written
    legacy = {k: v for k, v in d.items() if k != "nonneg"}  # a file from before the rename
    assert TrainConfig.from_dict(legacy) == old and TrainConfig.from_dict(d) == old
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # copies of a config never go through the old name
        assert dataclasses.replace(old, nonneg=True).nonneg is True and old.replace(epochs=2).nonneg is False
    with pytest.raises(TypeError, match="not both"):
        TrainConfig(relu=False, nonneg=True)


@pytest.mark.parametrize("command,flags", [("measure", ["--nonneg", "--relu"]),
                                           ("train", ["--nonneg", "--relu", "--no-nonneg", "--no-relu"])])
def test_the_relu_flags_are_aliases_of_nonneg(command, flags):
    parser, _ = _parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    actions = {flag: sub._option_string_actions[flag] for flag in flags}
    assert {a.dest for a in actions.values()} == {"nonneg"}
    assert "--nonneg" in sub.format_help() and "--relu" in sub.format_help()
