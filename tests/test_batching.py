import numpy as np
import pytest

from ufm import Problem, batching, theory

LABELS = np.repeat([0, 1, 2], [10, 10, 2])


@pytest.mark.parametrize("scheme", ["fixed:4", "shuffled:4", "shuffled:22", "fixed:5"])
def test_partitions_cover_every_sample_once_and_keep_the_last_partial_batch(scheme):
    for epoch in range(3):
        bs = batching.epoch_batches(scheme, LABELS, epoch, batch_seed=5)
        b = batching.parse_scheme(scheme).b
        assert sorted(np.concatenate(bs).tolist()) == list(range(22))
        assert [len(x) for x in bs[:-1]] == [b] * (len(bs) - 1) and 1 <= len(bs[-1]) <= b


def test_fixed_is_fixed_shuffled_is_not_and_seeds_matter():
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b))  # noqa: E731
    f0, f1 = (batching.epoch_batches("fixed:4", LABELS, e, 5) for e in (0, 1))
    assert same(f0, f1)
    s0, s1 = (batching.epoch_batches("shuffled:4", LABELS, e, 5) for e in (0, 1))
    assert not same(s0, s1)
    assert same(s0, batching.epoch_batches("shuffled:4", LABELS, 0, 5))
    assert not same(f0, batching.epoch_batches("fixed:4", LABELS, 0, 6))


def test_binding_appends_first_example_of_every_class_to_every_batch():
    bound = batching.binding_examples(LABELS)
    assert bound.tolist() == [0, 10, 20]
    bs = batching.epoch_batches("binding:6", LABELS, 2, 0)
    rest = sorted(np.concatenate([b[:-3] for b in bs]).tolist())
    assert rest == sorted(set(range(22)) - {0, 10, 20})
    for b in bs:
        assert b[-3:].tolist() == [0, 10, 20] and len(set(b.tolist())) == len(b)


@pytest.mark.parametrize("text,word", [("fixed:0", ">= 1"), ("fixed:23", "larger"), ("fixed", "batch size"),
                                       ("chunks:3", "unknown"), ("full:3", "no batch size"),
                                       ("fixed:x", "batch size")])
def test_bad_schemes(text, word):
    with pytest.raises(ValueError, match=word):
        Problem(counts=[10, 10, 2], batching=text)


def test_fixed_scheme_defines_the_problems_batches():
    p = Problem(counts=[10, 10, 2], batching="fixed:4", batch_seed=5)
    bl = batching.batch_list(p)
    assert [len(b) for b in bl] == [4, 4, 4, 4, 4, 2]
    assert bl == [b.tolist() for b in batching.epoch_batches("fixed:4", p.label_array, 0, 5)]
    assert batching.batch_list(Problem(counts=[2, 2])) is None
    with pytest.raises(ValueError, match="every epoch"):
        batching.batch_list(Problem(counts=[10, 10, 2], batching="shuffled:4"))
    assert batching.pad([np.array([1, 2, 3]), np.array([4])]).tolist() == [[1, 2, 3], [4, -1, -1]]


def test_subsets_enumerate_or_sample_and_the_expectation_formula():
    p = Problem(counts=(4, 3, 2), batching="subsets:4", tau=0.4)
    bl = batching.batch_list(p)
    assert len(bl) == 126 and len({tuple(b) for b in bl}) == 126
    exact = theory.sc_of_loss_subsets(p.counts, 4, 0.4)
    assert exact == pytest.approx(theory.sc_of_loss(p.counts, 0.4, batches=bl, labels=p.label_array), rel=1e-12)
    big = Problem(counts=(40, 30, 20), batching="subsets:6", tau=0.4, batch_seed=1)
    sample = batching.batch_list(big)
    assert len(sample) == batching.subsets_sample_size(6) == 2000 and "sample" in batching.describe(big)
    assert all(len(set(b)) == 6 and 0 <= min(b) and max(b) < 90 for b in sample)
    est = theory.sc_of_loss(big.counts, 0.4, batches=sample, labels=big.label_array)
    assert est == pytest.approx(theory.sc_of_loss_subsets(big.counts, 6, 0.4), rel=0.05)
    assert sample != batching.batch_list(big.replace(batch_seed=2))


def test_explicit_batches_from_text_and_files(tmp_path):
    assert batching.parse_batches("0,1,3;2,4,5") == ((0, 1, 3), (2, 4, 5))
    assert batching.parse_batches("0 1 3\n2, 4,5  # a comment\n\n") == ((0, 1, 3), (2, 4, 5))
    (tmp_path / "b.txt").write_text("0,1,3\n2,4,5\n")
    (tmp_path / "b.json").write_text("[[0, 1, 3], [2, 4, 5]]")
    for name in ("b.txt", "b.json"):
        assert batching.batches_from_text(str(tmp_path / name)) == ((0, 1, 3), (2, 4, 5))
    assert batching.batches_from_text("0,1;2") == ((0, 1), (2,))


@pytest.mark.parametrize("text,word", [("0,1;;2", "batch 1 is empty"), ("0,1;x", "'x'"), ("", "no batch"),
                                       ("0,1.5", "'1.5'"), ("missing.txt", "neither")])
def test_bad_explicit_batch_text(text, word):
    with pytest.raises(ValueError, match=word) as e:
        batching.batches_from_text(text)
    assert str(e.value).startswith("batches")


def test_bad_batch_files(tmp_path):
    (tmp_path / "bad.json").write_text("{\"a\": 1}")
    (tmp_path / "broken.json").write_text("[[0, 1]")
    for name, word in [("bad.json", "list of index lists"), ("broken.json", "not valid JSON")]:
        with pytest.raises(ValueError, match=word):
            batching.read_batches(tmp_path / name)
    with pytest.raises(ValueError, match="cannot read"):
        batching.read_batches(tmp_path / "absent.txt")


@pytest.mark.parametrize("batches,word", [(((0, 1), (2, 9)), "outside 0..5"), (((0, 1), ()), "batch 1 is empty"),
                                          (((0, -1),), "outside"), (((0, 0, 1),), "repeats")])
def test_explicit_batches_are_validated_by_the_problem(batches, word):
    with pytest.raises(ValueError, match=word):
        Problem(counts=[3, 3], batches=batches)


def test_union_of_epochs_and_descriptions():
    p = Problem(counts=[10, 10, 2], batching="shuffled:4", batch_seed=1)
    assert batching.is_epoch_scheme(p) and not batching.is_epoch_scheme(p.replace(batching="fixed:4"))
    u = batching.union_batches(p, 3)
    assert len(u) == 18 and u[6:12] == batching.epoch_batch_list(p, 1)
    assert "3 epochs" in batching.describe(p, 3)
    f = p.replace(batching="fixed:4")
    assert batching.union_batches(f, 3) == batching.batch_list(f) == batching.epoch_batch_list(f, 7)
    assert batching.union_batches(p.replace(batching="full"), 2) == [list(range(22))]
