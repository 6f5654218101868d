"""Aspect-sentiment metrics: accuracy, macro-F1, per-class F1, and accuracy on implicit (ISE) and
explicit (ESE) sentiment instances, as SCAPT reports them; and the confusion matrix behind them.

All are torchmetrics states, so they accumulate over an epoch and reduce correctly across processes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score


class MaskedAccuracy(Metric):
    """Accuracy over the instances selected by a boolean mask; NaN when none was selected."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, selected: Tensor) -> None:
        """``preds``, ``target``: [B] class ids; ``selected``: [B] bool."""
        self.correct += ((preds == target) & selected).sum()
        self.total += selected.sum()

    def compute(self) -> Tensor:
        if self.total == 0:
            return torch.tensor(math.nan)
        return self.correct.float() / self.total


class AspectSentimentMetrics(nn.Module):
    """The metric set of one split.

    ``implicit`` is an int tensor: 1 implicit, 0 explicit, -1 unknown (datasets without the label,
    such as MAMS); ISE/ESE are NaN when no instance of that kind was seen, and are then not logged.
    """

    def __init__(self, class_names: tuple[str, ...]) -> None:
        super().__init__()
        self.class_names = class_names
        num_classes = len(class_names)
        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.macro_f1 = MulticlassF1Score(num_classes=num_classes, average="macro")
        self.class_f1 = MulticlassF1Score(num_classes=num_classes, average=None)
        self.ise_accuracy = MaskedAccuracy()
        self.ese_accuracy = MaskedAccuracy()
        self.confusion = MulticlassConfusionMatrix(num_classes=num_classes)

    def update(self, preds: Tensor, target: Tensor, implicit: Tensor) -> None:
        self.accuracy.update(preds, target)
        self.macro_f1.update(preds, target)
        self.class_f1.update(preds, target)
        self.ise_accuracy.update(preds, target, implicit == 1)
        self.ese_accuracy.update(preds, target, implicit == 0)
        self.confusion.update(preds, target)

    def compute(self) -> dict[str, float]:
        """Percentages, keyed ``acc``, ``macro_f1``, ``f1_<class>``, and ``ise_acc``/``ese_acc`` if defined."""
        values = {"acc": self.accuracy.compute().item() * 100, "macro_f1": self.macro_f1.compute().item() * 100}
        for name, f1 in zip(self.class_names, self.class_f1.compute().tolist()):
            values[f"f1_{name}"] = f1 * 100
        for key, metric in (("ise_acc", self.ise_accuracy), ("ese_acc", self.ese_accuracy)):
            value = metric.compute().item()
            if not math.isnan(value):
                values[key] = value * 100
        return values

    def confusion_matrix(self) -> Tensor:
        """Counts ``[C, C]`` (int64): row = true class, column = predicted, in ``class_names`` order; summed
        over processes under DDP (a collective: every process must call it)."""
        return self.confusion.compute()

    def reset(self) -> None:
        metrics = (self.accuracy, self.macro_f1, self.class_f1, self.ise_accuracy, self.ese_accuracy, self.confusion)
        for metric in metrics:
            metric.reset()
