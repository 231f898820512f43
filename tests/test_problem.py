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


# -- the shared base: one set of checks for the sample, class-level and reduced problems ------------------------------

def _levels():
    from ufm.classlevel import ClassProblem
    from ufm.reduced import GroupProblem

    return {"sample": lambda **kw: Problem(counts=(3, 3, 2), **kw),
            "class": lambda **kw: ClassProblem(counts=(3.0, 3.0, 2.0), **kw),
            "group": lambda **kw: GroupProblem(sizes=(3.0, 2.0), classes=(2, 1), **kw)}


SHARED_BAD = [
    (dict(tau=0), "tau must be > 0, got 0.0"),
    (dict(tau=float("nan")), "tau must be a finite number, got nan"),
    (dict(dim=0), "dim must be an integer >= 1, got 0"),
    (dict(dim=2.5), "dim must be an integer >= 1, got 2.5"),
    (dict(radius=-2), "radius must be > 0, got -2.0"),
    (dict(radius=1e200), "radius must lie in"),
    (dict(loss="mse"), "loss"),
    (dict(constraint="cube"), "constraint"),
    (dict(loss="ce", weight_decay=-1e-3), "weight_decay must be >= 0, got -0.001"),
    (dict(loss="ce", feature_decay=-1.0), "feature_decay must be >= 0, got -1.0"),
    (dict(loss="ce", weight_decay=0.0), "weight_decay must be > 0 for CE"),
    (dict(weight_decay=0.1), "weight_decay applies to loss='ce' only"),
]


@pytest.mark.parametrize("kwargs,message", SHARED_BAD)
def test_the_shared_fields_give_the_same_error_at_every_level(kwargs, message):
    errors = {}
    for name, make in _levels().items():
        with pytest.raises(ValueError) as e:
            make(**kwargs)
        errors[name] = str(e.value)
    assert message in errors["sample"]
    assert len(set(errors.values())) == 1, errors


def test_every_level_shares_the_base_and_its_derived_fields():
    import dataclasses

    from ufm import ProblemBase

    for name, make in _levels().items():
        p = make(loss="ce", radius=2.0, weight_decay=0.01, feature_decay=0.5, dim=4)
        assert isinstance(p, ProblemBase)
        assert p.K == 3 and p.N == 8 and p.dim == 4
        q = p.replace(tau=0.3)
        assert type(q) is type(p) and q.tau == 0.3 and p.tau == 0.1  # a copy, p unchanged
        with pytest.raises(ValueError, match="tau"):
            p.replace(tau=-1.0)  # checked again
        unit, rho = p.at_unit_radius()
        assert rho == 2.0 and unit.radius == 1.0 and type(unit) is type(p)
        # Z = rho Z', W = W'/rho: lambda_W / rho^2 and lambda_Z rho^2
        assert unit.weight_decay == pytest.approx(0.01 / 4) and unit.feature_decay == pytest.approx(0.5 * 4)
        assert make().at_unit_radius()[1] == 1.0
        assert type(p).from_dict(p.to_dict()) == p
        assert list(p.to_dict())[:1] == [f.name for f in dataclasses.fields(p) if not f.kw_only][:1]
        assert repr(p).startswith(f"{type(p).__name__}({list(p.to_dict())[0]}=")
        with pytest.raises(Exception):
            p.tau = 3.0  # frozen
    with pytest.raises(TypeError, match="shared base"):
        ProblemBase(tau=0.5)


def test_the_sample_problem_keeps_its_field_order_and_positional_counts():
    p = Problem((2, 2), tau=0.5)
    assert list(p.to_dict()) == ["counts", "loss", "tau", "dim", "constraint", "radius", "nonneg", "weight_decay",
                                 "feature_decay", "bias", "labels", "batching", "batches", "batch_seed"]
    assert p.counts == (2, 2) and isinstance(p.N, int)
    with pytest.raises(TypeError):
        Problem((2, 2), "sc")  # the shared fields are keyword-only


def test_the_class_levels_refuse_what_they_cannot_state():
    from ufm.classlevel import ClassProblem
    from ufm.reduced import GroupProblem

    for make in (lambda **kw: ClassProblem(counts=(3.0, 2.0), **kw),
                 lambda **kw: GroupProblem(sizes=(3.0, 2.0), classes=(1, 1), **kw)):
        with pytest.raises(ValueError, match="constraint 'none': the class-level problem needs 'sphere' or 'ball'"):
            make(loss="ce", constraint="none", feature_decay=0.1)
        with pytest.raises(ValueError, match="bias: the class-level problem has no classifier bias"):
            make(loss="ce", bias=True)
