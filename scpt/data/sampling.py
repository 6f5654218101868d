"""Batch samplers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so per-batch padding is small.

    With ``shuffle``: permute the indices, cut the permutation into pools of ``pool_batches`` batches,
    sort each pool by length, cut it into batches, and shuffle the batch order. Every index appears
    once per epoch; batches stay random in content and order but hold sentences of similar length.
    Randomness comes from torch's global generator (as ``RandomSampler``'s does), so
    ``seed_everything`` makes the order reproducible. Without ``shuffle``: all indices sorted by
    length, for evaluation.

    Args:
        lengths: token count of each example.
        batch_size: examples per batch (the last batch of a pool may be smaller).
        shuffle: randomise as above, or sort deterministically.
        pool_batches: batches per sorting pool; larger pools pad less and randomise less.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, pool_batches: int = 50) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pool_size = pool_batches * batch_size

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True).tolist()
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        permutation = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for start in range(0, len(permutation), self.pool_size):
            pool = permutation[start : start + self.pool_size]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)].tolist()
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        pools, remainder = divmod(len(self.lengths), self.pool_size)
        full = -(-self.pool_size // self.batch_size) * pools
        return full + -(-remainder // self.batch_size) if self.shuffle else -(-len(self.lengths) // self.batch_size)
