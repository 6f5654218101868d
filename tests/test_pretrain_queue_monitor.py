"""Phase 1's label-aware memory queue, momentum keys, the representation metrics and the collapse monitor."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import reference as ref
from scpt.losses import SupConLoss
from scpt.pretrain.metrics import centroid_probe_accuracy, effective_rank, knn_probe_accuracy, mean_cosine
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.pretrain.monitor import CollapseMonitor
from scpt.pretrain.queue import LabelQueue
from scpt.training.optim import no_decay_parameter_groups

# --------------------------------------------------------------------------------------------------
# the queue


def test_queue_is_fifo_newest_first_and_uses_only_filled_slots() -> None:
    queue = LabelQueue(size=5, dim=2)
    assert len(queue) == 0 and queue.entries()[0].shape == (0, 2)  # starts empty: no zero or random entries
    queue.enqueue(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), torch.tensor([10, 11, 12]))
    features, labels = queue.entries()
    assert len(queue) == 3
    assert features[:, 0].tolist() == [2.0, 1.0, 0.0] and labels.tolist() == [12, 11, 10]
    queue.enqueue(torch.tensor([[3.0, 3.0], [4.0, 4.0], [5.0, 5.0]]), torch.tensor([13, 14, 15]))
    features, labels = queue.entries()
    assert len(queue) == 5  # the oldest (0) dropped
    assert features[:, 0].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0] and labels.tolist() == [15, 14, 13, 12, 11]
    queue.enqueue(torch.arange(14.0).view(7, 2), torch.arange(7))  # more than K at once: the last K stay
    assert queue.entries()[1].tolist() == [6, 5, 4, 3, 2]


def test_queue_rejects_bad_shapes() -> None:
    queue = LabelQueue(size=4, dim=3)
    with pytest.raises(ValueError, match=r"features must have shape \[B, 3\], got \(2, 2\)"):
        queue.enqueue(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \[2\]"):
        queue.enqueue(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="queue size must be >= 1"):
        LabelQueue(size=0, dim=3)


def test_queue_survives_a_state_dict_round_trip() -> None:
    queue = LabelQueue(size=4, dim=2)
    queue.enqueue(torch.randn(6, 2), torch.arange(6))
    restored = LabelQueue(size=4, dim=2)
    restored.load_state_dict(queue.state_dict())
    for mine, theirs in zip(restored.entries(), queue.entries()):
        assert torch.equal(mine, theirs)
    restored.enqueue(torch.ones(1, 2), torch.tensor([99]))  # the ring position is restored too
    queue.enqueue(torch.ones(1, 2), torch.tensor([99]))
    assert torch.equal(restored.entries()[1], queue.entries()[1])


# --------------------------------------------------------------------------------------------------
# the queue inside the contrastive objective


class CapturingSupCon(SupConLoss):
    """SupCon L_out that keeps what it was called with."""

    calls: list[dict[str, torch.Tensor | None]]

    def forward(self, features, labels=None, mask=None, *, memory=None, memory_labels=None):
        self.calls = getattr(self, "calls", [])
        self.calls.append({"features": features.detach().clone(), "labels": labels, "memory": memory,
                           "memory_labels": memory_labels})  # fmt: skip
        return super().forward(features, labels, mask, memory=memory, memory_labels=memory_labels)


def _batch(minilm_tokenizer, labels: list[int]) -> dict[str, torch.Tensor]:
    words = ["pizza great", "service slow", "menu short", "wine fine", "staff rude", "decor nice", "food cold"]
    encoded = minilm_tokenizer(
        [words[i % len(words)] + f" {i}" for i in range(len(labels))], padding=True, return_tensors="pt"
    )
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "token_type_ids": encoded["token_type_ids"],
        "labels": torch.tensor(labels),
        "maskable": encoded["attention_mask"].bool(),
        "aspect": torch.zeros_like(encoded["input_ids"], dtype=torch.bool),
    }


def _scl_module(tiny_bert_dir: Path, **kwargs) -> ContrastivePretrainModule:
    torch.manual_seed(0)
    return ContrastivePretrainModule(encoder=str(tiny_bert_dir), lambda_map=0.0, lambda_rr=0.0, **kwargs)


def test_queue_entries_are_contrast_only_and_match_the_float64_reference(tiny_bert_dir: Path, minilm_tokenizer) -> None:
    loss = CapturingSupCon(temperature=0.1)
    module = _scl_module(tiny_bert_dir, loss=loss, queue_size=6)
    queue = module.objectives["scl"].queue
    first, second = _batch(minilm_tokenizer, [0, 1, 0, 1]), _batch(minilm_tokenizer, [2, 0, 2])
    module.train()
    module.compute_terms(first)
    assert loss.calls[0]["memory"] is None  # an empty queue adds nothing
    assert len(queue) == 4 and queue.entries()[1].tolist() == [1, 0, 1, 0]
    # without a momentum encoder the keys are the batch's own features (view 0), detached
    torch.testing.assert_close(queue.entries()[0], loss.calls[0]["features"][:, 0].flip(0))
    result = module.compute_terms(second)
    call = loss.calls[1]
    assert call["memory"].shape == (4, 256) and call["memory_labels"].tolist() == [1, 0, 1, 0]
    # the loss = SupCon with anchors = this batch, contrast = batch + the 4 queued entries (never anchors)
    z = F.normalize(call["features"][:, 0].double(), dim=1)
    memory = F.normalize(call["memory"].double(), dim=1)
    contrast = torch.cat([z, memory])
    contrast_labels = torch.cat([call["labels"], call["memory_labels"]])
    per_anchor = ref.supcon_anchor_losses(
        z, contrast, ref.positives_from_labels(call["labels"], contrast_labels), [0, 1, 2], 0.1, "out"
    )
    assert per_anchor[0] is not None and per_anchor[1] is not None  # label 0 finds positives in the queue only
    assert math.isclose(float(result.terms["scl"].loss), ref.batch_mean(per_anchor, 0.1, None), rel_tol=1e-5)
    assert result.terms["scl"].metrics["collapsed"] == pytest.approx(math.log(3 + 4 - 1))
    assert len(queue) == 6 and queue.entries()[1].tolist() == [2, 0, 2, 1, 0, 1]  # FIFO: oldest two dropped
    module.eval()
    module.compute_terms(second)
    assert len(queue) == 6 and queue.entries()[1].tolist() == [2, 0, 2, 1, 0, 1]  # evaluation does not enqueue


def test_with_a_queue_the_batch_alone_is_logged_beside_the_queued_loss(tiny_bert_dir: Path, minilm_tokenizer) -> None:
    """The in-batch diagnostic: SupCon of the batch without the queue (float64 reference), its collapsed value
    log(VB - 1) and its floor, hand-computed; it adds no gradient and leaves the training loss as it was."""
    loss = CapturingSupCon(temperature=0.5, base_temperature=0.07)
    module = _scl_module(tiny_bert_dir, loss=loss, queue_size=8)
    module.train()
    first = module.compute_terms(_batch(minilm_tokenizer, [0, 1, 0, 1]))
    assert "in_batch" not in first.terms["scl"].metrics  # no queue entries yet: the logged loss is in-batch already
    result = module.compute_terms(_batch(minilm_tokenizer, [2, 0, 2]))
    queued, in_batch = loss.calls[1], loss.calls[2]
    assert queued["memory"] is not None and in_batch["memory"] is None
    assert torch.equal(in_batch["features"], queued["features"].detach())
    metrics = result.terms["scl"].metrics
    assert result.terms["scl"].loss.requires_grad and not metrics["in_batch"].requires_grad
    z = F.normalize(queued["features"][:, 0].double(), dim=1)
    per_anchor = ref.supcon_anchor_losses(z, z, ref.positives_from_labels([2, 0, 2], [2, 0, 2]), [0, 1, 2], 0.5, "out")
    assert per_anchor[1] is None  # label 0 has no positive inside the batch (it had one in the queue)
    assert math.isclose(float(metrics["in_batch"]), ref.batch_mean(per_anchor, 0.5, 0.07), rel_tol=1e-5)
    # the two label-2 anchors: |A(a)| = 2 others, |P(a)| = 1, |N(a)| = 1 (equation of docs/design.md §7)
    scale = 0.5 / 0.07
    assert float(metrics["in_batch_collapsed"]) == pytest.approx(scale * math.log(2), rel=1e-6)
    assert float(metrics["in_batch_floor"]) == pytest.approx(scale * math.log(1 + math.exp(-2 / 0.5)), rel=1e-5)
    assert float(metrics["collapsed"]) == pytest.approx(scale * math.log(3 + 4 - 1))  # the queued loss's, untouched
    assert float(result.terms["scl"].loss) != pytest.approx(float(metrics["in_batch"]))


def test_momentum_keys_follow_an_exponential_moving_average(tiny_bert_dir: Path, minilm_tokenizer) -> None:
    module = _scl_module(tiny_bert_dir, queue_size=8, momentum=0.9)
    scl = module.objectives["scl"]
    key_weight = scl.key_projection.net.weight
    torch.testing.assert_close(key_weight, scl.projection.net.weight)  # the key encoder starts as a copy
    assert not any(p.requires_grad for p in scl.key_encoder.parameters())
    online_before = scl.projection.net.weight.detach().clone()
    generator = torch.Generator().manual_seed(3)
    step_projection = torch.randn(scl.projection.net.weight.shape, generator=generator)
    step_embeddings = torch.randn(module.encoder.embeddings.word_embeddings.weight.shape, generator=generator)
    with torch.no_grad():  # stands in for an optimiser step of the online encoder and projection
        scl.projection.net.weight.add_(step_projection)
        module.encoder.embeddings.word_embeddings.weight.add_(step_embeddings)
    key_embeddings_before = scl.key_encoder.embeddings.word_embeddings.weight.detach().clone()
    module.after_optimizer_step()  # what optimizer_step runs after the optimiser's step
    torch.testing.assert_close(key_weight, 0.9 * online_before + 0.1 * (online_before + step_projection))
    torch.testing.assert_close(
        scl.key_encoder.embeddings.word_embeddings.weight,
        key_embeddings_before + 0.1 * step_embeddings,
        rtol=1e-6,
        atol=1e-6,
    )
    # the optimiser never sees the key encoder
    optimised = {id(p) for group in no_decay_parameter_groups(module, 0.01) for p in group["params"]}
    assert not optimised & {id(p) for p in scl.key_encoder.parameters()}
    # its keys fill the queue: key_projection(key_encoder(batch)), not the online features
    module.train()
    for part in module.modules():  # no dropout: both passes are deterministic
        if isinstance(part, torch.nn.Dropout):
            part.p = 0.0
    batch = _batch(minilm_tokenizer, [0, 1, 0, 1])
    with torch.no_grad():
        hidden = scl.key_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        ).last_hidden_state
        expected_keys = scl.key_projection(hidden[:, 0])
    result = module.compute_terms(batch)
    assert len(scl.queue) == 4
    torch.testing.assert_close(scl.queue.entries()[0], expected_keys.flip(0))
    online = module.objectives["scl"].projection(module.hidden_states(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])[:, 0])  # fmt: skip
    assert not torch.allclose(online, expected_keys, atol=1e-3)
    assert result.terms["scl"].metrics["queue_filled"] == 0.0  # counted before this batch was enqueued


def test_queue_is_saved_and_restored_with_the_module(tiny_bert_dir: Path, minilm_tokenizer) -> None:
    module = _scl_module(tiny_bert_dir, queue_size=5)
    module.train()
    module.compute_terms(_batch(minilm_tokenizer, [0, 1, 2, 0, 1, 2, 0]))
    state = module.state_dict()
    assert {"objectives.scl.queue.features", "objectives.scl.queue.labels", "objectives.scl.queue.filled"} <= set(state)
    assert all(key.startswith(("encoder.", "objectives.")) for key in state)  # each part stored once
    restored = _scl_module(tiny_bert_dir, queue_size=5)
    restored.load_state_dict(state)
    for mine, theirs in zip(restored.objectives["scl"].queue.entries(), module.objectives["scl"].queue.entries()):
        assert torch.equal(mine, theirs)


def test_queue_settings_are_checked(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match="momentum 0.9 needs a queue"):
        _scl_module(tiny_bert_dir, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        _scl_module(tiny_bert_dir, queue_size=4, momentum=1.0)
    with pytest.raises(ValueError, match="queue_size must be >= 0"):
        _scl_module(tiny_bert_dir, queue_size=-1)


# --------------------------------------------------------------------------------------------------
# the representation metrics, on hand-computed cases


def test_mean_cosine_hand_computed() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # pairs (0,1)=0, (0,2)=1, (1,2)=0, each counted twice over ordered pairs: 2 / 6
    assert float(mean_cosine(z)) == pytest.approx(1 / 3, rel=1e-12)
    assert float(mean_cosine(torch.ones(4, 3, dtype=torch.float64) / math.sqrt(3))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        mean_cosine(z[:1])


def test_effective_rank_known_values() -> None:
    # n orthonormal points, centred: n - 1 equal singular values and a zero -> exp(log(n - 1)) = n - 1
    assert float(effective_rank(torch.eye(5, dtype=torch.float64))) == pytest.approx(4.0, rel=1e-9)
    # points on a line through the mean: one singular value
    line = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    assert float(effective_rank(line)) == pytest.approx(1.0, rel=1e-9)
    assert float(effective_rank(torch.ones(6, 4))) == 1.0  # collapsed: every point alike
    # singular values (2, 1): p = (2/3, 1/3), exp(H) = exp(-(2/3 ln 2/3 + 1/3 ln 1/3))
    scaled = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64) / math.sqrt(2)
    expected = math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert float(effective_rank(scaled)) == pytest.approx(expected, rel=1e-9)


def test_probe_accuracies_hand_computed() -> None:
    reference = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    reference_labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [0.6, 0.8]])
    query_labels = torch.tensor([0, 1, 2, 0])  # the last one sits on a class-1 reference point
    # centroids (0.9, 0.3), (0.3, 0.9), (-1, 0) (normalised): the last query is nearer class 1 (0.90 vs 0.78)
    assert float(centroid_probe_accuracy(query, query_labels, reference, reference_labels)) == 0.75
    # 1-NN: (1, 0), (0, 1), (-1, 0) and (0.6, 0.8) itself (label 1): 3 of 4
    assert float(knn_probe_accuracy(query, query_labels, reference, reference_labels, k=1)) == 0.75
    # 3-NN: (-1, 0.2) -> (-1, 0) [2], (0, 1) [1], (0.6, 0.8) [1] -> 1, wrong; (0.6, 0.8) -> 1, 0, 1 -> 1, wrong
    assert float(knn_probe_accuracy(query, query_labels, reference, reference_labels, k=3)) == 0.5
    # a 2-2 tie is broken by the summed similarity of each side: 0.995 + 0.856 against 0.677 + 0.100
    tie_labels = torch.tensor([0, 0, 1, 1, 2])
    assert float(knn_probe_accuracy(query[:1], query_labels[:1], reference, tie_labels, k=4)) == 1.0
    assert float(knn_probe_accuracy(query[1:2], query_labels[1:2], reference, tie_labels, k=4)) == 1.0


# --------------------------------------------------------------------------------------------------
# the collapse monitor


def _run_monitor(monitor: CollapseMonitor, steps: list[tuple[float, float]]) -> SimpleNamespace:
    trainer = SimpleNamespace(should_stop=False, global_step=0, sanity_checking=False, callback_metrics={})
    module = SimpleNamespace(last_step={}, log=lambda *args, **kwargs: None)
    for loss, collapsed in steps:
        module.last_step = {"scl": loss, "scl_collapsed": collapsed}
        monitor.on_train_batch_end(trainer, module, None, None, 0)
        trainer.global_step += 1
    return trainer


def test_monitor_warns_after_patience_steps_within_one_percent() -> None:
    collapsed = math.log(31)
    monitor = CollapseMonitor(patience=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _run_monitor(monitor, [(collapsed * 1.011, collapsed), (collapsed * 1.009, collapsed),
                                         (collapsed * 0.995, collapsed), (collapsed * 0.5, collapsed),  # reset
                                         (collapsed, collapsed), (collapsed, collapsed)])  # fmt: skip
    assert monitor.warnings == [] and monitor.collapsed_steps == 2 and not trainer.should_stop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run_monitor(monitor, [(collapsed * 1.001, collapsed)])
    assert len(monitor.warnings) == 1 and "for 3 steps" in monitor.warnings[0]
    assert any("[collapse]" in str(w.message) for w in caught)


def test_monitor_measures_in_the_similarity_span_when_asked() -> None:
    # tau 0.5 at batch 32: span 2 / 0.5 = 4. A learning run 0.03 below its collapsed value is within 1% of
    # that value (0.034) but not within 0.5% of the span (0.02); a collapsed one (0.002 away) is within both.
    collapsed = math.log(31)
    by_value, by_span = CollapseMonitor(patience=2), CollapseMonitor(patience=2, tolerance=0.005, tolerance_of="span")
    assert by_value.is_collapsed(collapsed - 0.03, collapsed) and not by_span.is_collapsed(
        collapsed - 0.03, collapsed, 4.0
    )
    assert by_span.is_collapsed(collapsed - 0.002, collapsed, 4.0)
    assert not by_span.is_collapsed(collapsed, collapsed)  # no span logged: never collapsed by span
    with pytest.raises(ValueError, match="tolerance_of must be"):
        CollapseMonitor(tolerance_of="loss")


def test_monitor_can_stop_and_watches_the_held_out_mean_cosine() -> None:
    monitor = CollapseMonitor(patience=2, stop=True)
    trainer = _run_monitor(monitor, [(3.43, 3.434), (3.44, 3.434)])
    assert trainer.should_stop and "stopping the run" in monitor.warnings[0]
    cosine = CollapseMonitor(max_mean_cosine=0.95)
    trainer = SimpleNamespace(should_stop=False, global_step=7, sanity_checking=False,
                              callback_metrics={"val/mean_cosine": torch.tensor(0.97)})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cosine.on_validation_end(trainer, None)
        cosine.on_validation_end(trainer, None)  # still high: the same episode, no second warning
        trainer.callback_metrics["val/mean_cosine"] = torch.tensor(0.5)
        cosine.on_validation_end(trainer, None)
        assert len(cosine.warnings) == 1 and "0.970 > 0.95" in cosine.warnings[0] and not trainer.should_stop
        trainer.callback_metrics["val/mean_cosine"] = torch.tensor(0.99)  # a new episode
        cosine.on_validation_end(trainer, None)
    assert len(cosine.warnings) == 2
    assert CollapseMonitor().state_dict() == {"collapsed_steps": 0, "cosine_alarm": False}
    assert CollapseMonitor(term="scl").state_key != CollapseMonitor(term="other").state_key
