"""``anchor_samples``: a loss over a subset of anchors, with every sample in the contrast set.

Identity pinned: splitting the samples into parts and weighting each part's mean by its number of
valid anchors gives the full loss and the full gradient (float64), for every scpt loss; this is what
a process computes under DDP (scpt.training.distributed).
"""

from __future__ import annotations

import pytest
import torch

from scpt.losses import ContrastiveLoss, DSCLLoss, SimCSELoss, SupConLoss

PARTS = [slice(0, 3), slice(3, 4), slice(4, 8)]  # uneven parts; the middle one holds one sample


def _inputs(num_views: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(8, num_views, 5, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0, 0, 2, 1, 1, 3, 0, 1])  # class 2 and 3 have one sample each
    memory = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    memory_labels = torch.tensor([1, 3, 0, 4, 1, 0])
    hard_negatives = torch.randn(8, 5, dtype=torch.float64, generator=generator)
    return features, labels, memory, memory_labels, hard_negatives


CASES = [
    ("supcon out, labels", SupConLoss(0.3, base_temperature=0.07), 1, {"labels": True}),
    ("supcon in, labels, 2 views", SupConLoss(0.5, variant="in"), 2, {"labels": True}),
    ("supcon out, labels, memory", SupConLoss(0.2), 2, {"labels": True, "memory": True}),
    ("supcon in, labels, memory", SupConLoss(0.2, variant="in"), 1, {"labels": True, "memory": True}),
    ("supcon out, unsupervised", SupConLoss(0.4), 3, {}),
    ("supcon out, mask", SupConLoss(0.4), 2, {"mask": True}),
    ("dscl, memory", DSCLLoss(0.3, alpha=0.25), 2, {"labels": True, "memory": True}),
    ("dscl, 1 view", DSCLLoss(0.3, alpha=0.7, base_temperature=0.1), 1, {"labels": True}),
    ("simcse, hard negatives", SimCSELoss(0.1, hard_negative_weight=0.4), 2, {"hard": True}),
    ("simcse, hard negatives, memory", SimCSELoss(0.1, hard_negative_weight=-0.3), 2, {"hard": True, "memory": True}),
    ("supcon out, chunked", SupConLoss(0.3, chunk_size=2), 2, {"labels": True, "memory": True}),
]


def _call(loss: ContrastiveLoss, features, labels, memory, memory_labels, hard, options, anchor_samples=None):
    kwargs = {}
    if options.get("memory"):
        kwargs["memory"] = memory
        if loss.uses_labels and options.get("labels"):
            kwargs["memory_labels"] = memory_labels
    if options.get("hard"):
        kwargs["hard_negatives"] = hard
    if options.get("mask"):
        kwargs["mask"] = labels[:, None] == labels[None, :]
    if anchor_samples is not None:
        kwargs["anchor_samples"] = anchor_samples
    return loss(features, labels if options.get("labels") else None, **kwargs)


@pytest.mark.parametrize(("name", "loss", "num_views", "options"), CASES, ids=[c[0] for c in CASES])
def test_parts_weighted_by_valid_anchors_give_the_full_loss_and_gradient(name, loss, num_views, options) -> None:
    features, labels, memory, memory_labels, hard = _inputs(num_views)
    features.requires_grad_(True)
    hard.requires_grad_(True)
    full = _call(loss, features, labels, memory, memory_labels, hard, options)
    full_valid = loss.last_stats.num_valid_anchors
    full_grads = torch.autograd.grad(full, [features, hard] if options.get("hard") else [features])

    total = torch.zeros((), dtype=torch.float64)
    valid_counts = []
    for part in PARTS:
        part_mean = _call(loss, features, labels, memory, memory_labels, hard, options, anchor_samples=part)
        stats = loss.last_stats
        assert stats.num_anchors == (part.stop - part.start) * (1 if isinstance(loss, SimCSELoss) else num_views)
        valid_counts.append(stats.num_valid_anchors)
        total = total + part_mean * stats.num_valid_anchors
    assert sum(valid_counts) == full_valid
    combined = total / full_valid
    combined_grads = torch.autograd.grad(combined, [features, hard] if options.get("hard") else [features])
    torch.testing.assert_close(combined, full, rtol=1e-12, atol=1e-12)
    for got, expected in zip(combined_grads, full_grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_the_default_is_every_sample() -> None:
    features, labels, *_ = _inputs(2)
    loss = SupConLoss(0.3)
    torch.testing.assert_close(loss(features, labels, anchor_samples=slice(0, 8)), loss(features, labels))
    torch.testing.assert_close(loss(features, labels, anchor_samples=slice(None)), loss(features, labels))


@pytest.mark.parametrize("bad", [slice(3, 3), slice(-2, 8), slice(0, 9), slice(0, 8, 2), (0, 4), slice(1.0, 3)])
def test_a_bad_anchor_slice_is_one_clear_error(bad) -> None:
    features, labels, *_ = _inputs(1)
    with pytest.raises(ValueError, match="anchor_samples"):
        SupConLoss(0.3)(features, labels, anchor_samples=bad)


def test_every_scpt_loss_accepts_anchor_samples_and_the_base_does_not_promise_it() -> None:
    assert ContrastiveLoss.accepts_anchor_samples is False
    assert all(cls.accepts_anchor_samples for cls in (SupConLoss, DSCLLoss, SimCSELoss))
