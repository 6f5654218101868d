"""LengthBucketBatchSampler: a permutation per epoch, similar lengths per batch, reproducible."""

from __future__ import annotations

import random

import pytest
import torch

from scpt.data.sampling import (
    ClassGroupBatchSampler,
    LengthBucketBatchSampler,
    SequentialBatchSampler,
    process_share,
)


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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),  # names the option the user set
        ({"batch_size": 4, "pool_batches": 0}, r"^pool_batches must be >= 1, got 0$"),
    ],
)
def test_length_bucket_sampler_errors_name_the_setting(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LengthBucketBatchSampler([3, 5, 7], shuffle=False, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Across processes: rank r of W takes an equal part of every global batch of W·B (docs/design.md §3)


def rank_batches(sampler_class: type, *args, world: int, **kwargs) -> list[list[list[int]]]:
    """Every rank's batches of one epoch: ``[rank][step] -> indices``."""
    return [list(sampler_class(*args, num_replicas=world, rank=rank, **kwargs)) for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize(
    "kwargs", [{}, {"min_per_class": 4}, {"lengths": "lengths", "pool_batches": 5}], ids=["m2", "m4", "lengths"]
)
def test_class_groups_across_ranks_are_disjoint_equal_and_keep_the_global_guarantee(
    world: int, kwargs: dict, lengths: list[int]
) -> None:
    labels = imbalanced_labels()
    if kwargs.get("lengths"):
        kwargs = {**kwargs, "lengths": lengths[: len(labels)]}
    min_per_class = kwargs.get("min_per_class", 2)
    parts = rank_batches(ClassGroupBatchSampler, labels, 16, world=world, seed=11, **kwargs)
    steps = len(parts[0])
    assert [len(p) for p in parts] == [steps] * world  # the same number of batches on every rank ...
    assert [
        len(ClassGroupBatchSampler(labels, 16, num_replicas=world, rank=r, seed=11, **kwargs)) for r in range(world)
    ] == [steps] * world
    # ... as one process with the global batch size plans them, less a global batch too small to split
    single = list(ClassGroupBatchSampler(labels, 16 * world, seed=11, **kwargs))
    seen: list[int] = []
    position = 0
    for step in range(steps):
        assert len({len(p[step]) for p in parts}) == 1  # equal batch sizes at each step (the gather's shapes)
        union = [i for p in parts for i in p[step]]
        while not set(union) <= set(single[position]):  # skipped global batches hold fewer than W examples
            assert len(single[position]) < world
            position += 1
        assert len(single[position]) - len(union) < world  # at most the remainder mod W is dropped
        position += 1
        assert min(class_counts(union, labels).values()) >= min_per_class  # the guarantee, for the global batch
        seen += union
    assert len(seen) == len(set(seen))  # disjoint across ranks and steps
    assert len(labels) - len(seen) < world * len(single)  # nothing lost but the remainders


def test_a_global_batch_is_split_by_class_dropping_from_the_surplus() -> None:
    # classes 0 x2 and 1 x3, per-rank batch 3: one global batch of all 5; 5 mod 2 = 1 example drops, from
    # class 1 (the surplus beyond m=2); then class-sorted and dealt: each rank holds one of each class
    labels = [1, 0, 1, 0, 1]
    parts = rank_batches(ClassGroupBatchSampler, labels, 3, world=2, seed=0)
    assert [len(p) for p in parts] == [1, 1]
    assert [sorted(labels[i] for i in p[0]) for p in parts] == [[0, 1], [0, 1]]
    assert sorted(i for p in parts for i in p[0] if labels[i] == 0) == [1, 3]
    # classes 0, 1, 2 x3 each (m=3): 9 mod 2 = 1 but no class has a surplus, so the smallest class (ties:
    # the lowest label) leaves the batch whole; 6 examples remain, 3 per rank
    labels = [0, 1, 2] * 3
    parts = rank_batches(ClassGroupBatchSampler, labels, 5, min_per_class=3, world=2, seed=0)
    union = sorted(i for p in parts for i in p[0])
    assert [len(p[0]) for p in parts] == [3, 3] and union == [i for i in range(9) if labels[i] != 0]


def test_class_balanced_global_batches_split_exactly() -> None:
    labels = imbalanced_labels()
    parts = rank_batches(ClassGroupBatchSampler, labels, 16, class_balanced=True, world=2, seed=3)
    single = list(ClassGroupBatchSampler(labels, 32, class_balanced=True, seed=3))
    assert len(parts[0]) == len(parts[1]) == len(single) == len(labels) // 32
    for step, batch in enumerate(single):  # full batches of W·B: nothing dropped, the union is the global batch
        assert sorted(parts[0][step] + parts[1][step]) == sorted(batch)
        assert len(parts[0][step]) == len(parts[1][step]) == 16
        # dealt by class: each rank holds half of each class (4 groups of 2 per class in 32)
        assert class_counts(parts[0][step], labels) == class_counts(parts[1][step], labels) == {c: 4 for c in range(4)}


@pytest.mark.parametrize("sampler", ["class_groups", "length_buckets"])
def test_seeded_epochs_reproduce_and_set_epoch_reshuffles(sampler: str, lengths: list[int]) -> None:
    labels = imbalanced_labels()

    def make(seed: int, rank: int = 0):
        if sampler == "class_groups":
            return ClassGroupBatchSampler(labels, 16, num_replicas=2, rank=rank, seed=seed)
        return LengthBucketBatchSampler(lengths, 16, True, num_replicas=2, rank=rank, seed=seed)

    torch.manual_seed(0)
    first = make(5)
    epoch0, epoch1 = list(first), list(first)  # each pass is the next epoch
    torch.manual_seed(1)  # the global generator plays no part: every rank plans from seed + epoch
    again = make(5)
    assert list(again) == epoch0 and epoch1 != epoch0
    again.set_epoch(1)
    assert list(again) == epoch1
    again.set_epoch(0)
    assert len(again) == len(epoch0) and list(again) == epoch0  # len() draws the same plan iter() returns
    assert list(make(6)) != epoch0
    assert make(5, rank=1).epoch == 0 and list(make(5, rank=1)) != epoch0


def test_length_buckets_across_ranks(lengths: list[int]) -> None:
    # 1000 examples, B=16 on 3 ranks: global batches of 48 in pools of 10 (480 examples): two full pools
    # of 10 batches, and a last pool of 40 examples that drops 40 mod 3 = 1
    parts = rank_batches(LengthBucketBatchSampler, lengths, 16, True, pool_batches=10, world=3, seed=2)
    single = list(LengthBucketBatchSampler(lengths, 48, True, pool_batches=10, seed=2))
    assert [len(p) for p in parts] == [21, 21, 21] == [len(single)] * 3
    assert [len(LengthBucketBatchSampler(lengths, 16, True, 10, num_replicas=3, rank=r, seed=2)) for r in range(3)] == [
        21
    ] * 3
    covered = [i for p in parts for batch in p for i in batch]
    assert len(covered) == len(set(covered)) == 999
    for step, batch in enumerate(single):
        union = [i for p in parts for i in p[step]]
        assert set(union) <= set(batch) and len(batch) - len(union) == len(batch) % 3
        assert len({len(p[step]) for p in parts}) == 1
    # each rank's parts are still length buckets: they pad about as little as the single-process batches
    assert padded_tokens(parts[0], lengths) < 1.1 * padded_tokens(single, lengths) / 3


def test_evaluation_batches_are_the_single_process_ones_dealt_round_robin(lengths: list[int]) -> None:
    single = list(LengthBucketBatchSampler(lengths, 100, shuffle=False))
    parts = rank_batches(LengthBucketBatchSampler, lengths, 100, False, world=3)
    assert parts == [single[0::3], single[1::3], single[2::3]]  # 4, 3 and 3 batches: every example once
    assert [len(LengthBucketBatchSampler(lengths, 100, False, num_replicas=3, rank=r)) for r in range(3)] == [4, 3, 3]
    # fewer batches than ranks: smaller batches, so that every rank has one (DDP's first forward waits for all)
    assert rank_batches(LengthBucketBatchSampler, [5, 3, 9, 1, 7], 64, False, world=2) == [[[3, 1, 0]], [[4, 2]]]
    with pytest.raises(ValueError, match="1 examples to evaluate cannot give each of 2 processes a batch"):
        LengthBucketBatchSampler([4], 8, False, num_replicas=2, rank=0)


def test_sequential_batches_across_ranks() -> None:
    assert list(SequentialBatchSampler(39, 16)) == [list(range(16)), list(range(16, 32)), list(range(32, 39))]
    assert rank_batches(SequentialBatchSampler, 39, 16, world=2) == [
        [list(range(16)), list(range(32, 39))],
        [list(range(16, 32))],
    ]
    assert len(SequentialBatchSampler(39, 16, num_replicas=2, rank=1)) == 1


def test_process_share_defaults_and_errors() -> None:
    assert process_share() == (1, 0)  # no process group in the test process
    assert process_share(4, 3) == (4, 3)
    with pytest.raises(ValueError, match="got 2 and 2"):
        process_share(2, 2)
    with pytest.raises(ValueError, match="pass a seed shared by all ranks"):
        ClassGroupBatchSampler([0, 0, 1, 1], 4, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="pass a seed shared by all ranks"):
        LengthBucketBatchSampler([3, 4], 4, True, num_replicas=2, rank=1)
    assert ClassGroupBatchSampler([0, 0, 1, 1], 4, seed=None).seed is None  # one process: the global generator
