"""LengthBucketBatchSampler: a permutation per epoch, similar lengths per batch, reproducible."""

from __future__ import annotations

import random

import pytest
import torch

from scpt.data.sampling import LengthBucketBatchSampler


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
