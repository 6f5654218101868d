"""Aspect-sentiment metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from scpt.finetune.metrics import AspectSentimentMetrics, MaskedAccuracy

CLASSES = ("positive", "negative", "neutral")


def test_metrics_match_hand_computed_values() -> None:
    # target:   pos pos pos neg neg neu
    # pred:     pos pos neg neg pos neu
    # implicit:  1   0   1   0  -1   1
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 0, 2])
    implicit = torch.tensor([1, 0, 1, 0, -1, 1])
    metrics = AspectSentimentMetrics(CLASSES)
    metrics.update(preds[:3], target[:3], implicit[:3])  # two batches accumulate
    metrics.update(preds[3:], target[3:], implicit[3:])
    values = metrics.compute()
    # accuracy 4/6; F1 pos: P=2/3 R=2/3 -> 2/3; neg: P=1/2 R=1/2 -> 1/2; neu: 1
    assert values["acc"] == pytest.approx(400 / 6)
    assert values["f1_positive"] == pytest.approx(200 / 3, rel=1e-5)
    assert values["f1_negative"] == pytest.approx(50.0)
    assert values["f1_neutral"] == pytest.approx(100.0)
    assert values["macro_f1"] == pytest.approx((200 / 3 + 50 + 100) / 3, rel=1e-5)
    # implicit: items 0 (ok), 2 (wrong), 5 (ok) -> 2/3; explicit: items 1 (ok), 3 (ok) -> 1; item 4 unknown
    assert values["ise_acc"] == pytest.approx(200 / 3, rel=1e-5)
    assert values["ese_acc"] == pytest.approx(100.0)


def test_ise_ese_absent_without_implicit_labels() -> None:
    metrics = AspectSentimentMetrics(CLASSES)
    metrics.update(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([-1, -1]))
    values = metrics.compute()
    assert "ise_acc" not in values and "ese_acc" not in values
    assert values["acc"] == pytest.approx(50.0)


def test_reset_starts_a_new_epoch() -> None:
    metrics = AspectSentimentMetrics(CLASSES)
    metrics.update(torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
    metrics.reset()
    metrics.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    assert metrics.compute()["acc"] == pytest.approx(100.0)
    assert metrics.compute()["ise_acc"] == pytest.approx(100.0)


def test_masked_accuracy_is_nan_when_nothing_selected() -> None:
    metric = MaskedAccuracy()
    metric.update(torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert math.isnan(metric.compute().item())
