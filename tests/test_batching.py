import numpy as np
import pytest

from ufm import Problem, batching

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
