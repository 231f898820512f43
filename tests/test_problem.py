import warnings

import numpy as np
import pytest

from ufm import Problem

BAD = [
    (dict(counts=[]), "counts"),
    (dict(counts=[3, 0, 2]), "counts"),
    (dict(counts=[3, -1]), "counts"),
    (dict(counts=[3, 2.5]), "counts"),
    (dict(counts=["a", 2]), "counts"),
    (dict(counts=[3, 3], tau=0), "tau"),
    (dict(counts=[3, 3], tau=-1), "tau"),
    (dict(counts=[3, 3], tau=float("nan")), "tau"),
    (dict(counts=[3, 3], tau=float("inf")), "tau"),
    (dict(counts=[3, 3], dim=0), "dim"),
    (dict(counts=[3, 3], dim=2.5), "dim"),
    (dict(counts=[3, 3], radius=0), "radius"),
    (dict(counts=[3, 3], radius=-2), "radius"),
    (dict(counts=[3, 3], loss="mse"), "loss"),
    (dict(counts=[3, 3], constraint="cube"), "constraint"),
    (dict(counts=[3, 3], loss="ce", weight_decay=-1e-3), "weight_decay"),
    (dict(counts=[3, 3], loss="ce", feature_decay=-1.0), "feature_decay"),
    (dict(counts=[3, 3], loss="ce", weight_decay=0.0), "no minimiser"),
    (dict(counts=[3, 3], loss="ce", constraint="none"), "feature_decay"),
    (dict(counts=[3, 3], constraint="none"), "constraint"),
    (dict(counts=[3, 3], weight_decay=0.1), "weight_decay"),
    (dict(labels=[0, 1, 3]), "labels"),  # class 2 has no sample
    (dict(counts=[2, 2], labels=[0, 1, 2, 1]), "labels"),
    (dict(labels=[0, -1, 1]), "labels"),
    (dict(), "counts"),
    (dict(counts=[2, 2], batches=[[0, 1], []]), "batches"),
    (dict(counts=[2, 2], batches=[[0, 4]]), "batches"),
    (dict(counts=[2, 2], batches=[[0, 0, 1]]), "batches"),
    (dict(counts=[2, 2], batching="sideways"), "batching"),
]


@pytest.mark.parametrize("kwargs,field", BAD)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Problem(**kwargs)


def test_valid_problem_and_derived_fields():
    p = Problem(counts=(3, 1, 2), tau=0.5)
    assert (p.K, p.N, p.dim, p.balanced) == (3, 6, 3, False)
    assert p.label_array.tolist() == [0, 0, 0, 1, 2, 2]
    q = Problem(labels=[2, 0, 1, 2, 0])
    assert q.counts == (2, 1, 2) and q.label_array.tolist() == [2, 0, 1, 2, 0]
    ce = Problem(counts=[4, 4], loss="ce")
    assert ce.weight_decay == 5e-3 and ce.balanced
    assert Problem(counts=np.array([2, 2])).counts == (2, 2)
    assert Problem.from_dict(p.to_dict()) == p


def test_nonneg_with_too_few_dimensions_warns():
    with pytest.warns(UserWarning, match="orthogonal frame"):
        Problem(counts=[2, 2, 2], dim=2, nonneg=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Problem(counts=[2, 2, 2], dim=3, nonneg=True)


def test_frozen():
    p = Problem(counts=[2, 2])
    with pytest.raises(Exception):
        p.tau = 3.0
