"""``solve`` and ``certify`` answer a fixed set of problems as recorded in tests/data/golden.json (tests/golden.py):
a change of structure must not change a number."""
import json

import pytest

import golden

pytestmark = pytest.mark.slow  # every test here takes seconds: the full suite only


@pytest.fixture(scope="module")
def now():
    return golden.answers()


def test_answers_unchanged(now):
    with open(golden.PATH) as f:
        recorded = json.load(f)
    assert [r["problem"] for r in recorded] == [dict(p, counts=list(p["counts"])) for p in golden.PROBLEMS]
    for old, new in zip(recorded, now):
        assert new["steps"] == old["steps"], old["problem"]
        assert abs(new["loss"] - old["loss"]) <= 1e-12 * max(1.0, abs(old["loss"])), old["problem"]
        assert new["method"] == old["method"] and new["certified"] == old["certified"], old["problem"]
        assert abs(new["lower_bound"] - old["lower_bound"]) <= 1e-9 * max(1.0, abs(old["lower_bound"])), old["problem"]
