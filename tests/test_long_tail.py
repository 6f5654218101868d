"""Long-tailed corpora (eq. 1 of scpt.data.long_tail) and the per-class probe scores that read them."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from helpers import needs_data
from scpt.data.long_tail import long_tail_sizes, long_tailed_subset
from scpt.pretrain.datamodule import ContrastivePretrainDataModule
from scpt.pretrain.metrics import (
    centroid_probe_accuracy,
    centroid_probe_predictions,
    knn_probe_accuracy,
    knn_probe_predictions,
    per_class_probe_scores,
    per_class_scores,
)


def test_long_tail_sizes_follow_the_exponential_profile() -> None:
    # equal counts: the head keeps everything, then r^(-1/2), r^(-1)
    assert long_tail_sizes([100, 100, 100], 4.0) == [100, 50, 25]
    # the middle class binds: n_0 = min(100, 30 * sqrt(10), 50 * 10) = 94.87 -> 95, 30, 9.49 -> 9
    assert long_tail_sizes([100, 30, 50], 10.0) == [95, 30, 9]
    assert long_tail_sizes([7, 3], 1.0) == [3, 3]  # ratio 1: balanced at the smallest class
    assert long_tail_sizes([10, 10], 1000.0) == [10, 1]  # every class keeps at least one example
    for bad, match in (([5, 5], 0.5), ([5], 2.0), ([5, 0], 2.0)):
        with pytest.raises(ValueError):
            long_tail_sizes(bad, match)


def test_long_tailed_subset_keeps_the_sizes_by_frequency_and_is_reproducible() -> None:
    labels = [0] * 40 + [1] * 100 + [2] * 60  # frequency order: 1, 2, 0
    kept = long_tailed_subset(labels, 10.0, seed=3)
    counts = Counter(labels[i] for i in kept)
    # n_0 = min(100, 60 * sqrt(10), 40 * 10) = 100 -> 100, 31.6 -> 32, 10
    assert (counts[1], counts[2], counts[0]) == (100, 32, 10)
    assert kept == sorted(set(kept))  # original order, no repeats
    assert kept == long_tailed_subset(labels, 10.0, seed=3)
    assert kept != long_tailed_subset(labels, 10.0, seed=4)
    # an explicit order makes class 0 the head: n_0 = min(40, 100 * sqrt(10), 60 * 10) = 40 -> 40, 12.6 -> 13, 4
    explicit = Counter(labels[i] for i in long_tailed_subset(labels, 10.0, order=[0, 1, 2]))
    assert (explicit[0], explicit[1], explicit[2]) == (40, 13, 4)
    # classes left out of the order are dropped
    assert set(labels[i] for i in long_tailed_subset(labels, 2.0, order=[2, 1])) == {1, 2}
    with pytest.raises(ValueError, match=r"without examples: \[5\]"):
        long_tailed_subset(labels, 2.0, order=[0, 5])


def test_per_class_scores_hand_computed() -> None:
    predicted = torch.tensor([0, 0, 1, 2, 1])
    labels = torch.tensor([0, 1, 1, 2, 2])
    scores = per_class_scores(predicted, labels, num_classes=4)
    # class 0: TP 1, support 1, predicted 2 -> recall 1, F1 2/3; class 1: TP 1 of 2, predicted 2 -> 1/2, 1/2;
    # class 2: TP 1 of 2, predicted 1 -> 1/2, 2/3; class 3 absent and never predicted -> nan
    assert scores.recall[:3].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert scores.f1[:3].tolist() == pytest.approx([2 / 3, 0.5, 2 / 3])
    assert math.isnan(scores.recall[3]) and math.isnan(scores.f1[3])
    assert float(scores.macro_f1) == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    # a class predicted but absent from the labels: F1 0, no recall, and outside the macro mean
    scores = per_class_scores(torch.tensor([3, 0]), torch.tensor([0, 0]), num_classes=4)
    assert math.isnan(scores.recall[3]) and float(scores.f1[3]) == 0.0
    assert float(scores.macro_f1) == pytest.approx(2 / 3)  # class 0: TP 1, support 2, predicted 1


def test_probe_predictions_are_what_the_accuracies_count() -> None:
    reference = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    reference_labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [0.6, 0.8]])
    query_labels = torch.tensor([0, 1, 2, 0])
    # centroids (0.9, 0.3), (0.3, 0.9), (-1, 0): the last query is nearer class 1
    assert centroid_probe_predictions(query, reference, reference_labels).tolist() == [0, 1, 2, 1]
    assert knn_probe_predictions(query, reference, reference_labels, k=1).tolist() == [0, 1, 2, 1]
    # 3-NN of (-1, 0.2): (-1, 0) [2], (0, 1) [1], (0.6, 0.8) [1] -> 1
    assert knn_probe_predictions(query, reference, reference_labels, k=3).tolist() == [0, 1, 1, 1]
    assert float(centroid_probe_accuracy(query, query_labels, reference, reference_labels)) == 0.75
    assert float(knn_probe_accuracy(query, query_labels, reference, reference_labels, k=3)) == 0.5


def test_per_class_probe_scores_name_each_class_and_leave_out_absent_ones() -> None:
    reference = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    reference_labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [0.6, 0.8]])
    query_labels = torch.tensor([0, 1, 2, 0])
    scores = per_class_probe_scores(
        query, query_labels, reference, reference_labels, k=3, class_names=("a", "b", "c", "d")
    )
    # centroid predicts 0, 1, 2, 1: a 1 of 2 (F1 2/3), b 1 of 1 predicted twice (F1 2/3), c 1 of 1 (F1 1)
    assert float(scores["probe_centroid_recall/a"]) == 0.5 and float(scores["probe_centroid_recall/b"]) == 1.0
    assert float(scores["probe_centroid_f1/a"]) == pytest.approx(2 / 3)
    assert float(scores["probe_centroid_f1/b"]) == pytest.approx(2 / 3)
    assert float(scores["probe_centroid_f1/c"]) == 1.0
    assert float(scores["probe_centroid_macro_f1"]) == pytest.approx(7 / 9)
    # 3-NN predicts 0, 1, 1, 1: c is never found (recall 0, F1 0); b: 1 of 1 predicted 3 times (F1 1/2)
    assert float(scores["probe_knn_recall/c"]) == 0.0 and float(scores["probe_knn_f1/b"]) == pytest.approx(0.5)
    assert float(scores["probe_knn_macro_f1"]) == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)
    assert not any(key.endswith("/d") for key in scores)  # no held-out example of class d
    unnamed = per_class_probe_scores(query, query_labels, reference, reference_labels, k=3)
    assert float(unnamed["probe_centroid_recall/2"]) == 1.0


def _corpus(tmp_path: Path, counts: dict[str, int]) -> Path:
    rows = [
        {"text": f"{label} review number {i} about the food", "label": label}
        for label, count in counts.items()
        for i in range(count)
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_datamodule_subsamples_only_the_training_split(tmp_path: Path, minilm_tokenizer) -> None:
    path = _corpus(tmp_path, {"positive": 120, "negative": 80, "neutral": 100})
    common = dict(in_domain=None, files=[str(path)], input_format="sentence", dedup_against=[], val_size=60,
                  probe_size=50, batch_size=8, min_per_class=2)  # fmt: skip
    full = ContrastivePretrainDataModule(**common)
    full.setup("fit")
    tail = ContrastivePretrainDataModule(
        **common, imbalance_ratio=10.0, imbalance_order=["neutral", "positive", "negative"]
    )
    tail.setup("fit")
    names = tail.class_names
    assert [e.input_ids for e in tail.encoded["val"]] == [e.input_ids for e in full.encoded["val"]]
    available = Counter(names[e.label] for e in full.encoded["train"])
    kept = Counter(names[e.label] for e in tail.encoded["train"])
    expected = long_tail_sizes([available["neutral"], available["positive"], available["negative"]], 10.0)
    assert [kept["neutral"], kept["positive"], kept["negative"]] == expected
    assert expected[0] / expected[2] == pytest.approx(10.0, rel=0.1)
    train_ids = {tuple(e.input_ids) for e in tail.encoded["train"]}
    assert all(tuple(e.input_ids) in train_ids for e in tail.encoded["probe"])  # the probe samples the tail
    assert len(tail.encoded["probe"]) == 50
    with pytest.raises(ValueError, match=r"imbalance_order \['neutral', 'good'\]: unknown classes \['good'\]"):
        ContrastivePretrainDataModule(**common, imbalance_ratio=2.0, imbalance_order=["neutral", "good"]).setup("fit")
    with pytest.raises(ValueError, match="imbalance_ratio must be >= 1"):
        ContrastivePretrainDataModule(**common, imbalance_ratio=0.5)
    with pytest.raises(ValueError, match="imbalance_order is set but data.imbalance_ratio is not"):
        ContrastivePretrainDataModule(**common, imbalance_order=["neutral"])


@needs_data
def test_in_domain_corpus_at_a_10_to_1_tail_keeps_every_class_in_each_batch(minilm_tokenizer) -> None:
    data = ContrastivePretrainDataModule(
        in_domain=["restaurants"], min_per_class=3, batch_size=24, val_size=100, imbalance_ratio=10.0
    )
    data.setup("fit")
    counts = Counter(data.class_names[e.label] for e in data.encoded["train"])
    head, middle, tail = sorted(counts.values(), reverse=True)
    assert head / tail == pytest.approx(10.0, rel=0.05) and middle / tail == pytest.approx(math.sqrt(10), rel=0.05)
    torch.manual_seed(0)
    seen = 0
    for batch in data.train_dataloader():
        per_class = torch.bincount(batch["labels"], minlength=3)
        assert bool(((per_class == 0) | (per_class >= 3)).all()), per_class
        seen += batch["labels"].shape[0]
    assert seen == len(data.encoded["train"])
