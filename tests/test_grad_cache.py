"""Gradient caching (``model.grad_cache_chunk``): encoding the batch in chunks whose activations are
recomputed in backward gives the full batch's loss and gradient.

Pinned in fp32 to 1e-5, every loss, with masked aspect prediction and reconstruction on:
- without dropout, against the module without caching (one pass over the whole batch);
- with dropout, against the same chunked pass kept on the graph (no recomputation): backward must
  replay each chunk's dropout exactly, or the gradients differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import scpt.pretrain.module as pretrain_module
from distributed_steps import module_batch
from scpt.losses import DSCLLoss, SimCSELoss, SupConLoss
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.pretrain.objectives import Objective, ObjectiveOutput

LOSSES = {
    "supcon_out": (SupConLoss(0.3, base_temperature=0.07), 1),
    "supcon_in": (SupConLoss(0.5, variant="in"), 2),
    "dscl": (DSCLLoss(0.3, alpha=0.25), 2),
    "simcse": (SimCSELoss(0.1), 2),
}


def _module(tiny_bert_dir: Path, loss, num_views: int, dropout: bool, **kwargs) -> ContrastivePretrainModule:
    torch.manual_seed(0)
    module = ContrastivePretrainModule(
        encoder=str(tiny_bert_dir),
        loss=loss,
        num_views=num_views,
        decoder_layers=1,
        decoder_dropout=0.1 if dropout else 0.0,  # also the decoder's attention dropout
        **kwargs,
    ).train()
    if not dropout:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    return module


def _step(module: ContrastivePretrainModule, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Loss terms and every gradient of one step from a fixed random state."""
    torch.manual_seed(123)
    module.zero_grad()
    result = module.compute_terms(batch)
    result.total.backward()
    grads = {f"grad.{n}": p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return {"total": result.total.detach(), **{n: o.loss.detach() for n, o in result.terms.items()}, **grads}


def _assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", list(LOSSES))
def test_chunks_give_the_full_batch_gradient_without_dropout(tiny_bert_dir: Path, name: str) -> None:
    loss, views = LOSSES[name]
    batch = module_batch(str(tiny_bert_dir), 2)  # 8 sentences
    full = _step(_module(tiny_bert_dir, loss, views, dropout=False), batch)
    cached = _step(_module(tiny_bert_dir, loss, views, dropout=False, grad_cache_chunk=3), batch)  # 3 + 3 + 2
    assert {"scl", "map", "rr"} <= cached.keys()
    _assert_close(cached, full)


@pytest.mark.parametrize("name", list(LOSSES))
def test_backward_replays_each_chunks_dropout(tiny_bert_dir: Path, name: str, monkeypatch) -> None:
    loss, views = LOSSES[name]
    batch = module_batch(str(tiny_bert_dir), 2)
    cached = _step(_module(tiny_bert_dir, loss, views, dropout=True, grad_cache_chunk=3), batch)
    # the reference: the same chunked pass with its activations kept (no recomputation in backward)
    monkeypatch.setattr(pretrain_module, "checkpoint", lambda fn, *args, use_reentrant: fn(*args))
    kept = _step(_module(tiny_bert_dir, loss, views, dropout=True, grad_cache_chunk=3), batch)
    _assert_close(cached, kept)
    # dropout is on: a different random state gives a different gradient
    monkeypatch.undo()
    module = _module(tiny_bert_dir, loss, views, dropout=True, grad_cache_chunk=3)
    torch.manual_seed(999)
    module.compute_terms(batch).total.backward()
    encoder_grad = module.encoder.embeddings.word_embeddings.weight.grad
    assert not torch.allclose(encoder_grad, cached["grad.encoder.embeddings.word_embeddings.weight"], atol=1e-5)


def test_queue_keys_from_the_momentum_encoder_are_the_same_in_chunks(tiny_bert_dir: Path) -> None:
    batch = module_batch(str(tiny_bert_dir), 2)
    kwargs = {"lambda_map": 0.0, "lambda_rr": 0.0, "queue_size": 32, "momentum": 0.9}
    modules = [
        _module(tiny_bert_dir, SupConLoss(0.5), 1, dropout=False, **kwargs),
        _module(tiny_bert_dir, SupConLoss(0.5), 1, dropout=False, grad_cache_chunk=3, **kwargs),
    ]
    for module in modules:
        _step(module, batch)
    queues = [module.objectives["scl"].queue for module in modules]
    assert len(queues[0]) == len(queues[1]) == 8
    torch.testing.assert_close(queues[1].entries()[0], queues[0].entries()[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(queues[1].entries()[1], queues[0].entries()[1])


def test_an_objective_without_parts_is_refused_with_caching(tiny_bert_dir: Path) -> None:
    class WholeBatchOnly(Objective):
        name = "whole"

        def forward(self, encoded):
            return ObjectiveOutput(encoded.hidden.sum() * 0.0, {})

    with pytest.raises(ValueError, match=r"grad_cache_chunk: the objectives \['WholeBatchOnly'\]"):
        ContrastivePretrainModule(encoder=str(tiny_bert_dir), objectives=[WholeBatchOnly()], grad_cache_chunk=4)
    with pytest.raises(ValueError, match="grad_cache_chunk must be a positive"):
        ContrastivePretrainModule(encoder=str(tiny_bert_dir), grad_cache_chunk=0)
