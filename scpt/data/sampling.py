"""Batch samplers, for one process or for W processes (DDP; docs/design.md §3, "Splitting the data").

Across W processes both training samplers plan an epoch exactly as one process would with the *global*
batch size W·B (``batch_size`` B is per process), from a seed every rank shares, and split each global
batch into W equal parts, one per rank: disjoint across ranks, the same number of batches on every rank,
and batches of equal size at each step (the feature gather needs equal shapes; DDP's gradient average
is then the mean over the global batch). A global batch whose size is not a multiple of W drops its
remainder (fewer than W examples); nothing is repeated. Evaluation batches are not split: rank r takes
batches r, r + W, ... of the single-process order, so every example is evaluated exactly once and
with the same batch as on one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


def process_share(num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """``(num_replicas, rank)``: the values given, else those of torch.distributed's default process group
    when it is initialised, else ``(1, 0)``.

    Raises:
        ValueError: ``num_replicas < 1`` or ``rank`` outside ``[0, num_replicas)``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas} and {rank}")
    return num_replicas, rank


def deal(members: Sequence[int], num_replicas: int) -> list[list[int]]:
    """``members`` dealt round-robin into W parts: part p holds members p, p + W, p + 2W, ...

    When W divides ``len(members)`` the parts are of equal size, and each holds every W-th member of
    the order given (of a length- or class-sorted batch: about 1/W of each length or class).
    """
    return [list(members[part::num_replicas]) for part in range(num_replicas)]


def evaluation_batch_size(num_examples: int, batch_size: int, num_replicas: int) -> int:
    """The evaluation batch size: ``batch_size``, or smaller when the set has fewer than W batches of it,
    so that every rank gets a batch (``ceil(N / W)``).

    A rank without a batch would skip the first forward pass, in which DDP synchronises buffers, and
    the other ranks would wait for it.

    Raises:
        ValueError: ``0 < N < W``: some process would have nothing to evaluate.
    """
    if 0 < num_examples < num_replicas:
        raise ValueError(
            f"{num_examples} examples to evaluate cannot give each of {num_replicas} processes a batch; "
            "use fewer processes or a larger evaluation set"
        )
    return min(batch_size, max(1, -(-num_examples // num_replicas)))


def evaluation_share(order: Sequence[int], batch_size: int, num_replicas: int, rank: int) -> list[list[int]]:
    """``order`` cut into consecutive batches of :func:`evaluation_batch_size`; batch k goes to rank k mod W.

    Every index is evaluated once over all ranks; ranks differ by at most one batch (evaluation has no
    collective per batch, so they need not be equal). With W = 1: all batches, in order.
    """
    size = evaluation_batch_size(len(order), batch_size, num_replicas)
    batches = [list(order[i : i + size]) for i in range(0, len(order), size)]
    return batches[rank::num_replicas]


class _EpochBatchSampler(Sampler[list[int]]):
    """What both samplers share: this process's share, the epoch's random generator, the epoch's plan.

    Randomness: with ``seed=None`` (one process only) each epoch draws its generator's seed from torch's
    global generator, as ``RandomSampler`` does, so ``seed_everything`` reproduces the batches. With a
    ``seed``, epoch e uses ``seed + e`` on every rank: ranks plan the same epoch without communicating.
    The epoch advances by one with each pass over the sampler; :meth:`set_epoch` sets it (Lightning 2.6
    calls ``set_epoch`` on a DataLoader's ``sampler`` and ``batch_sampler.sampler``, never on a batch
    sampler itself, so the passes count the epochs).

    Resuming: :meth:`state_dict` records the pass under way (its epoch and generator seed) and how many
    of its batches were used; :meth:`load_state_dict` makes the next pass the rest of that one, batch
    for batch, then later epochs follow as before. With a ``seed`` this is exact at every point; with
    ``seed=None`` it is exact within an epoch, while the epoch after a finished one draws its seed from
    the global generator when it is planned. :class:`ResumableDataLoader` gives Lightning this state.
    """

    def __init__(self, num_replicas: int | None, rank: int | None, seed: int | None, needs_seed: bool) -> None:
        self.num_replicas, self.rank = process_share(num_replicas, rank)
        if needs_seed and self.num_replicas > 1 and seed is None:
            raise ValueError(
                f"{type(self).__name__}: with num_replicas={self.num_replicas} every rank must plan the same "
                "epoch, so pass a seed shared by all ranks (torch's global generator may differ between them)"
            )
        self.seed = seed
        self.shuffles = needs_seed  # whether the plan is random at all (evaluation orders are not)
        self.epoch = 0
        # (epoch, generator seed, this rank's batches) of the plan drawn for the next pass, once drawn
        self._planned: tuple[int, int, list[list[int]]] | None = None
        # (epoch, generator seed) of the pass under way, for state_dict
        self._current: tuple[int, int] | None = None
        # (generator seed, batches to skip) of a pass restored by load_state_dict
        self._restored: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Plan epoch ``epoch`` next (with a ``seed``: its batches are a function of seed and epoch)."""
        self.epoch = epoch

    def _generator_seed(self) -> int:
        """The seed of the next pass's generator: ``seed + epoch``, or a draw from torch's global generator."""
        if self._restored is not None:
            return self._restored[0]
        if not self.shuffles:
            return 0  # unused: a fixed order draws nothing from the global generator
        if self.seed is None:
            return int(torch.empty((), dtype=torch.int64).random_().item())
        return self.seed + self.epoch

    def _batches(self, generator: torch.Generator) -> list[list[int]]:
        """This rank's batches of one epoch, drawn from ``generator``."""
        raise NotImplementedError

    def _plan(self) -> list[list[int]]:
        """The next epoch's batches, drawn once: ``len()`` before ``iter()`` consumes no extra randomness."""
        if self._planned is None or (self.seed is not None and self._planned[0] != self.epoch):
            generator_seed = self._generator_seed()
            self._planned = (self.epoch, generator_seed, self._batches(torch.Generator().manual_seed(generator_seed)))
        return self._planned[2]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan()
        assert self._planned is not None
        epoch, generator_seed, _ = self._planned
        skip = self._restored[1] if self._restored is not None else 0
        self._planned, self._restored, self._current = None, None, (epoch, generator_seed)
        self.epoch += 1
        return iter(batches[skip:])

    def state_dict(self, batches_done: int) -> dict[str, int | None]:
        """Where the pass under way stands, after its first ``batches_done`` batches were used: enough for
        :meth:`load_state_dict` to replay the rest of it exactly (its epoch, its generator's seed) and to
        plan the later epochs as this sampler would (the base ``seed``)."""
        if self._current is None:  # no pass yet: the next one starts from its beginning
            return {"epoch": self.epoch, "generator_seed": None, "batches_done": 0, "seed": self.seed}
        epoch, generator_seed = self._current
        return {"epoch": epoch, "generator_seed": generator_seed, "batches_done": batches_done, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        """Continue from :meth:`state_dict`'s point: the next pass is the rest of the recorded one (the same
        batches, less the first ``batches_done``); a recorded pass that was finished moves on to the next
        epoch. The sampler's base seed becomes the recorded one, so later epochs are planned as before."""
        self.seed = state["seed"]
        self.epoch = int(state["epoch"])
        self._planned, self._current, self._restored = None, None, None
        if state["generator_seed"] is None:
            return
        done = int(state["batches_done"])
        self._restored = (int(state["generator_seed"]), done)
        if done >= len(self._plan()):  # the recorded pass was complete: the next is a new epoch
            self._planned, self._restored = None, None
            self.epoch += 1


class LengthBucketBatchSampler(_EpochBatchSampler):
    """Batches of similar length, so per-batch padding is small.

    With ``shuffle``: permute the indices, cut the permutation into pools of ``pool_batches`` batches,
    sort each pool by length, cut it into batches, and shuffle the batch order. Every index appears
    once per epoch; batches stay random in content and order but hold sentences of similar length.
    Without ``shuffle``: all indices sorted by length, for evaluation.

    **Across processes** (``num_replicas`` W > 1): training plans the epoch as one process does with
    batch size W·B (pools of ``pool_batches`` global batches), from ``seed + epoch``, and deals each
    global batch round-robin in length order, so every rank's part holds B examples of similar length.
    The last global batch of a pool is usually short: it drops ``size mod W`` examples drawn at random
    (fewer than W per pool; a global batch of fewer than W examples is dropped whole), so every rank has
    the same number of batches and, at each step, the same batch size. Evaluation gives rank r batches
    r, r + W, ... of the single-process order (:func:`evaluation_share`): each example once.

    Args:
        lengths: token count of each example.
        batch_size: B, examples per batch and per process (the last batch of a pool may be smaller).
        shuffle: randomise as above, or sort deterministically.
        pool_batches: batches per sorting pool; larger pools pad less and randomise less.
        num_replicas, rank: W and this process's rank (default: torch.distributed's, else 1 and 0).
        seed: the shared seed of the epochs (required for training with W > 1); ``None``: torch's global
            generator (see :class:`_EpochBatchSampler`).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        pool_batches: int = 50,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        super().__init__(num_replicas, rank, seed, needs_seed=shuffle)
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.global_batch_size = batch_size * self.num_replicas
        self.pool_size = pool_batches * self.global_batch_size
        if not shuffle:
            evaluation_batch_size(len(self.lengths), batch_size, self.num_replicas)  # fail early if N < W

    def _batches(self, generator: torch.Generator) -> list[list[int]]:
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True).tolist()
            return evaluation_share(order, self.batch_size, self.num_replicas, self.rank)
        permutation = torch.randperm(len(self.lengths), generator=generator)
        size = self.global_batch_size
        batches = []
        for start in range(0, len(permutation), self.pool_size):
            pool = permutation[start : start + self.pool_size]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)].tolist()
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if self.num_replicas == 1:
            return batches
        parts = [deal(self._divisible(batch, generator), self.num_replicas)[self.rank] for batch in batches]
        return [part for part in parts if part]

    def _divisible(self, batch: list[int], generator: torch.Generator) -> list[int]:
        """``batch`` without ``len mod W`` of its examples, drawn at random; the order is kept."""
        excess = len(batch) % self.num_replicas
        if not excess:
            return batch
        dropped = set(torch.randperm(len(batch), generator=generator)[:excess].tolist())
        return [index for position, index in enumerate(batch) if position not in dropped]

    def _training_batches(self, num_examples: int) -> int:
        full, rest = divmod(num_examples, self.global_batch_size)
        return full + (rest >= self.num_replicas)

    def __len__(self) -> int:
        if not self.shuffle:
            size = evaluation_batch_size(len(self.lengths), self.batch_size, self.num_replicas)
            return len(range(self.rank, -(-len(self.lengths) // size), self.num_replicas))
        pools, remainder = divmod(len(self.lengths), self.pool_size)
        return pools * self._training_batches(self.pool_size) + self._training_batches(remainder)


class SequentialBatchSampler(Sampler[list[int]]):
    """Consecutive batches in index order (a ``DataLoader(batch_size, shuffle=False)``'s), for evaluation,
    shared across processes: rank r takes batches r, r + W, ... (:func:`evaluation_share`).

    Args:
        num_examples: N, the size of the dataset.
        batch_size: examples per batch.
        num_replicas, rank: W and this process's rank (default: torch.distributed's, else 1 and 0).
    """

    def __init__(
        self, num_examples: int, batch_size: int, *, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_replicas, self.rank = process_share(num_replicas, rank)
        self.batches = evaluation_share(range(num_examples), batch_size, self.num_replicas, self.rank)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ClassGroupBatchSampler(_EpochBatchSampler):
    """Batches in which every class present has at least ``min_per_class`` examples.

    A contrastive batch where a class appears once gives that anchor no positive: it teaches nothing
    (and is left out of the SupCon mean). This sampler builds batches from *groups*: each class's
    shuffled indices are cut into groups of ``min_per_class`` (a short remainder joins the class's
    last group), and whole groups are packed into batches of at most ``batch_size``, so every class in
    a batch brings at least ``min_per_class`` examples.

    - ``class_balanced=False``: one pass over the data per epoch, every index exactly once; batches
      follow the data's class frequencies (a batch may be a little short when a group does not fit).
    - ``class_balanced=True``: each batch draws ``batch_size // min_per_class`` groups with classes in
      a shuffled round-robin, so every class is equally frequent; small classes are re-drawn (their
      streams reshuffle when used up). An epoch is ``len(labels) // batch_size`` batches.

    With ``lengths`` (non-balanced mode), batches also hold examples of similar length, as
    :class:`LengthBucketBatchSampler`'s do: each class's shuffled indices are sorted by length within
    pools before they are cut into groups, and the shuffled groups are sorted by length within pools
    of ``pool_batches`` batches before packing; the batch order is then shuffled. The guarantee is the
    same; padding drops (on the SemEval/MAMS corpus from ~2.2x the real tokens to ~1.1x).

    **Across processes** (``num_replicas`` W > 1, ``batch_size`` B per process): the epoch is planned
    as one process plans it with batch size W·B, from ``seed + epoch``, and each of these *global*
    batches is split into W equal parts, one per rank: its examples sorted by class and dealt
    round-robin, so each rank holds ⌊n_c / W⌋ or ⌈n_c / W⌉ of a class with n_c examples in the global
    batch. The guarantee holds for the global batch, the contrast set of the contrastive loss, which
    gathers the features of every rank (docs/design.md §3); a rank's part alone keeps it for the
    classes with n_c >= W·m. A global batch whose size is not a multiple of W drops the remainder
    (fewer than W examples, drawn at random from the classes with the most examples beyond m; if those
    do not suffice, the smallest classes leave that batch whole), so every rank has the same number of
    batches and the same batch size at each step. The union over ranks of step k is global batch k
    less that remainder. (In ``class_balanced`` mode a global batch holds m·⌊W·B / m⌋ examples, split
    exactly when m divides B; re-drawn small classes can repeat an example within a global batch, as on
    one process, and then possibly on two ranks.)

    Args:
        labels: ``[N]`` integer class of each example.
        batch_size: the largest batch (per process).
        min_per_class: m >= 2 (1 would guarantee nothing).
        class_balanced: see above.
        lengths: ``[N]`` token count of each example, to batch similar lengths together (optional).
        pool_batches: batches per sorting pool when ``lengths`` is given.
        num_replicas, rank: W and this process's rank (default: torch.distributed's, else 1 and 0).
        seed: the shared seed of the epochs (required with W > 1); ``None``: each epoch draws from
            torch's global generator, so ``seed_everything`` reproduces the batches.

    Raises:
        ValueError: ``min_per_class < 2``, ``batch_size < min_per_class`` (balanced: ``< 2 m``), a
            class with fewer than ``min_per_class`` examples (named with its count), or W > 1 without
            a seed.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        min_per_class: int = 2,
        class_balanced: bool = False,
        lengths: Sequence[int] | None = None,
        pool_batches: int = 50,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int | None = None,
    ) -> None:
        if min_per_class < 2:
            raise ValueError(f"min_per_class must be >= 2 (a positive needs a second example), got {min_per_class}")
        smallest_batch = 2 * min_per_class if class_balanced else min_per_class
        if batch_size < smallest_batch:
            raise ValueError(
                f"batch_size must be >= {smallest_batch} for min_per_class={min_per_class}, got {batch_size}"
            )
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        classes, counts = torch.unique(self.labels, return_counts=True)
        small = {int(c): int(n) for c, n in zip(classes, counts) if n < min_per_class}
        if small:
            raise ValueError(f"classes with fewer than min_per_class={min_per_class} examples (class: count): {small}")
        if lengths is not None and len(lengths) != len(self.labels):
            raise ValueError(f"lengths has {len(lengths)} entries but labels has {len(self.labels)}")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        super().__init__(num_replicas, rank, seed, needs_seed=True)
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.long)
        self.classes = classes.tolist()
        self.batch_size = batch_size
        self.global_batch_size = batch_size * self.num_replicas
        self.pool_size = pool_batches * self.global_batch_size
        self.min_per_class = min_per_class
        self.class_balanced = class_balanced

    def _class_groups(self, label: int, generator: torch.Generator) -> list[list[int]]:
        members = (self.labels == label).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        if self.lengths is not None and not self.class_balanced:
            members = torch.cat(
                [pool[torch.argsort(self.lengths[pool], stable=True)] for pool in members.split(self.pool_size)]
            )
        members = members.tolist()
        groups = [members[i : i + self.min_per_class] for i in range(0, len(members), self.min_per_class)]
        if len(groups[-1]) < self.min_per_class:  # the remainder joins the previous group
            remainder = groups.pop()
            groups[-1].extend(remainder)
        return groups

    def _pack(self, groups: list[list[int]]) -> list[list[int]]:
        batches, current = [], []
        for group in groups:
            if current and len(current) + len(group) > self.global_batch_size:
                batches.append(current)
                current = []
            current = current + group
        return batches + ([current] if current else [])

    def _balanced_batches(self) -> int:
        return max(1, len(self.labels) // self.global_batch_size)

    def _balanced(self, generator: torch.Generator) -> list[list[int]]:
        streams: dict[int, list[list[int]]] = {label: [] for label in self.classes}
        groups_per_batch = self.global_batch_size // self.min_per_class
        order: list[int] = []
        batches = []
        for _ in range(self._balanced_batches()):
            groups = []
            for _ in range(groups_per_batch):
                if not order:
                    order = [self.classes[i] for i in torch.randperm(len(self.classes), generator=generator).tolist()]
                label = order.pop()
                if not streams[label]:
                    streams[label] = self._class_groups(label, generator)
                groups.append(streams[label].pop()[: self.min_per_class])
            batches.append([i for group in groups for i in group])
        return batches

    def _global_batches(self, generator: torch.Generator) -> list[list[int]]:
        """The epoch's batches of size at most W·B, as one process with that batch size draws them."""
        if self.class_balanced:
            return self._balanced(generator)
        groups = [group for label in self.classes for group in self._class_groups(label, generator)]
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        if self.lengths is None:
            return self._pack(groups)
        groups_per_pool = max(1, self.pool_size // self.min_per_class)
        batches = []
        for start in range(0, len(groups), groups_per_pool):
            pool = groups[start : start + groups_per_pool]
            pool.sort(key=lambda group: int(self.lengths[group].max()))  # stable: ties keep the random order
            batches += self._pack(pool)
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _divisible(self, batch: list[int], generator: torch.Generator) -> list[int]:
        """``batch`` sorted by class (batch order within a class), less the fewest examples that make its
        size a multiple of W while every class left keeps at least m (see the class docstring)."""
        by_class: dict[int, list[int]] = {}
        for index in batch:
            by_class.setdefault(int(self.labels[index]), []).append(index)
        smallest_first = sorted(by_class, key=lambda label: (len(by_class[label]), label))
        for leaving in range(len(smallest_first) + 1):  # 0 almost always: the surplus beyond m suffices
            kept = {label: by_class[label] for label in smallest_first[leaving:]}
            excess = sum(len(members) for members in kept.values()) % self.num_replicas
            if sum(len(members) - self.min_per_class for members in kept.values()) >= excess:
                break
        for _ in range(excess):  # the class with the most examples has some beyond m while any class has
            label = max(kept, key=lambda c: (len(kept[c]), -c))
            kept[label].pop(int(torch.randint(len(kept[label]), (), generator=generator)))
        return [index for label in sorted(kept) for index in kept[label]]

    def _batches(self, generator: torch.Generator) -> list[list[int]]:
        global_batches = self._global_batches(generator)
        if self.num_replicas == 1:
            return global_batches
        parts = [deal(self._divisible(batch, generator), self.num_replicas)[self.rank] for batch in global_batches]
        return [part for part in parts if part]

    def __len__(self) -> int:
        if self.class_balanced and self.num_replicas == 1:
            return self._balanced_batches()
        return len(self._plan())  # packing depends on the draw: the planned epoch's exact count


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a resumable batch sampler (:class:`LengthBucketBatchSampler`,
    :class:`ClassGroupBatchSampler`) that Lightning can save and restore mid-epoch.

    Lightning saves the ``state_dict`` of each training dataloader that has one in its checkpoints
    (``loops.fit_loop.state_dict.combined_loader``) and hands it back before the resumed run draws its
    first batch, so a run killed mid-epoch continues with exactly the batches it had not trained on.

    ``batches_done`` says how many batches of the pass under way were used. Lightning fetches one batch
    ahead of the training step, so the loader's own count overstates it; the datamodules set it to the
    fit loop's count (:func:`scpt.training.resume.batches_trained`). Without it, the batches this loader
    yielded are counted.
    """

    batches_done: Callable[[], int] | None = None
    _yielded = 0

    def __iter__(self) -> Iterator[Any]:
        self._yielded = 0
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        done = self.batches_done() if self.batches_done is not None else self._yielded
        return {"batch_sampler": self.batch_sampler.state_dict(batches_done=done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state["batch_sampler"])
