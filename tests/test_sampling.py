"""LengthBucketBatchSampler: a permutation per epoch, similar lengths per batch, reproducible."""

from __future__ import annotations

import random

import pytest
import torch

from scpt.data.sampling import ClassGroupBatchSampler, LengthBucketBatchSampler


@pytest.fixture()
def lengths() -> list[int]:
    rng = random.Random(0)
    return [rng.randint(5, 90) for _ in range(1000)]


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_every_index_once_and_len_matches(lengths: list[int]) -> None:
    sampler = LengthBucketBatchSampler(lengths, batch_size=32, shuffle=True, pool_batches=10)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(sampler) == 32  # 3 pools of 320 -> 30 batches; the last 40 -> 2 batches
    assert all(len(b) <= 32 for b in batches)


def test_bucketing_pads_much_less_than_random_batches(lengths: list[int]) -> None:
    torch.manual_seed(0)
    bucketed = list(LengthBucketBatchSampler(lengths, batch_size=32, shuffle=True, pool_batches=10))
    order = torch.randperm(1000).tolist()
    random_batches = [order[i : i + 32] for i in range(0, 1000, 32)]
    assert padded_tokens(bucketed, lengths) < 0.65 * padded_tokens(random_batches, lengths)


def test_same_global_seed_same_batches_new_epoch_new_order(lengths: list[int]) -> None:
    sampler = LengthBucketBatchSampler(lengths, batch_size=16, shuffle=True)
    torch.manual_seed(7)
    first, second = list(sampler), list(sampler)
    torch.manual_seed(7)
    assert list(sampler) == first
    assert second != first


def test_evaluation_order_is_sorted_by_length(lengths: list[int]) -> None:
    batches = list(LengthBucketBatchSampler(lengths, batch_size=100, shuffle=False))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert len(batches) == 10


def test_bad_sizes_are_errors() -> None:
    with pytest.raises(ValueError, match="got 0 and 50"):
        LengthBucketBatchSampler([1, 2], batch_size=0, shuffle=True)


# ---------------------------------------------------------------------------------------------------
# ClassGroupBatchSampler: every class present in a batch has >= m examples


def imbalanced_labels() -> list[int]:
    rng = random.Random(1)
    labels = [0] * 500 + [1] * 120 + [2] * 37 + [3] * 5
    rng.shuffle(labels)
    return labels


def class_counts(batch: list[int], labels: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for i in batch:
        counts[labels[i]] = counts.get(labels[i], 0) + 1
    return counts


@pytest.mark.parametrize("min_per_class", [2, 3, 4])
def test_every_class_in_a_batch_has_min_per_class_and_every_index_once(min_per_class: int) -> None:
    labels = imbalanced_labels()
    torch.manual_seed(0)
    sampler = ClassGroupBatchSampler(labels, batch_size=32, min_per_class=min_per_class)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(labels)))
    for batch in batches:
        assert len(batch) <= 32
        assert min(class_counts(batch, labels).values()) >= min_per_class
    # batches are nearly full: at most one partial group is left out of each
    assert sum(len(b) for b in batches) / len(batches) > 32 - 2 * min_per_class


def test_len_draws_no_extra_randomness() -> None:
    labels = imbalanced_labels()
    torch.manual_seed(3)
    sampler = ClassGroupBatchSampler(labels, batch_size=32)
    length = len(sampler)  # draws the epoch's plan ...
    first_epoch = list(iter(sampler))  # ... which iter() then consumes, drawing nothing more
    torch.manual_seed(3)
    without_len = list(iter(ClassGroupBatchSampler(labels, batch_size=32)))
    assert first_epoch == without_len and length == len(without_len)


def test_class_balanced_batches_are_uniform_over_classes() -> None:
    labels = imbalanced_labels()
    torch.manual_seed(0)
    sampler = ClassGroupBatchSampler(labels, batch_size=32, min_per_class=2, class_balanced=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 32
    totals: dict[int, int] = {}
    for batch in batches:
        assert len(batch) == 32
        counts = class_counts(batch, labels)
        assert all(n % 2 == 0 and n >= 2 for n in counts.values())  # whole groups of exactly m
        for label, n in counts.items():
            totals[label] = totals.get(label, 0) + n
    # 16 groups per batch in a shuffled round-robin over 4 classes: exactly 4 groups of each per batch
    assert totals == {label: 8 * len(batches) for label in range(4)}


@pytest.mark.parametrize("min_per_class", [2, 4])
def test_length_aware_class_groups_keep_the_guarantee_and_pad_little(min_per_class: int, lengths: list[int]) -> None:
    labels = [0] * 500 + [1] * 300 + [2] * 200
    random.Random(2).shuffle(labels)
    torch.manual_seed(0)
    aware = list(
        ClassGroupBatchSampler(labels, batch_size=32, min_per_class=min_per_class, lengths=lengths, pool_batches=10)
    )
    torch.manual_seed(0)
    plain = list(ClassGroupBatchSampler(labels, batch_size=32, min_per_class=min_per_class))
    assert sorted(i for b in aware for i in b) == list(range(1000))  # one pass, every index once
    for batch in aware:
        assert len(batch) <= 32 and min(class_counts(batch, labels).values()) >= min_per_class
    real = sum(lengths)
    # lengths uniform on 5..90: random batches pad to ~1.9x the real tokens; pooled sorting to ~1.1x
    assert padded_tokens(plain, lengths) / real > 1.6
    assert padded_tokens(aware, lengths) / real < 1.2
    assert len(aware) <= len(plain) + 2  # packing stays nearly as tight
    torch.manual_seed(0)
    again = list(
        ClassGroupBatchSampler(labels, batch_size=32, min_per_class=min_per_class, lengths=lengths, pool_batches=10)
    )
    assert again == aware  # reproducible from the global seed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": [0, 0], "batch_size": 4, "lengths": [3]}, "lengths has 1 entries but labels has 2"),
        ({"labels": [0, 0, 1], "batch_size": 4}, r"fewer than min_per_class=2 examples \(class: count\): \{1: 1\}"),
        ({"labels": [0, 0], "batch_size": 4, "min_per_class": 1}, "min_per_class must be >= 2"),
        ({"labels": [0, 0], "batch_size": 3, "min_per_class": 4}, "batch_size must be >= 4"),
        ({"labels": [0, 0], "batch_size": 3, "class_balanced": True}, "batch_size must be >= 4"),
    ],
)
def test_class_group_sampler_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassGroupBatchSampler(**kwargs)
