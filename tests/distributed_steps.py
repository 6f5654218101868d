"""One optimiser step under W processes vs one process on the concatenated batch (tests/test_distributed.py).

Run as a script, it starts W gloo processes on this machine; each takes its rows of the same global
batch, computes its share of the loss (scpt.training.distributed), backpropagates, averages the
gradients over processes exactly as DDP does (all-reduce, divide by W), takes one SGD step and
writes what it saw to ``OUT/rank<r>.pt``. The test computes the single-process step in its own
process with the same builders and compares. SGD, not Adam: Adam's first step is ~lr·sign(grad) and
would hide a gradient off by a constant factor such as 1/W.

    python tests/distributed_steps.py OUT TINY_BERT_DIR [WORLD_SIZE]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

LEARNING_RATE = 0.5
PER_RANK = 4  # samples per process


# --------------------------------------------------------------------------------------------------
# Loss-level cases: a linear "encoder" and each scpt loss
# --------------------------------------------------------------------------------------------------


def loss_cases() -> dict[str, dict[str, Any]]:
    """name -> the loss, views and options of one case."""
    from scpt.losses import DSCLLoss, SimCSELoss, SupConLoss

    class GatherEverywhereSupCon(SupConLoss):
        """A loss that does not take anchor_samples: every process computes all anchors."""

        accepts_anchor_samples = False

    return {
        "supcon_out": {"loss": SupConLoss(0.3, base_temperature=0.07), "views": 2},
        # one view: classes 2 and 3 are singletons, so process 0 has 2 valid anchors and process 1 has 4
        "supcon_out_uneven_anchors": {"loss": SupConLoss(0.3), "views": 1},
        "dscl_uneven_anchors": {"loss": DSCLLoss(0.3, alpha=0.4), "views": 1},
        "supcon_in": {"loss": SupConLoss(0.5, variant="in"), "views": 2},
        "dscl": {"loss": DSCLLoss(0.3, alpha=0.25), "views": 2},
        "simcse_hard_negatives": {"loss": SimCSELoss(0.1, hard_negative_weight=0.4), "views": 2, "hard": True},
        "supcon_out_queue": {"loss": SupConLoss(0.2), "views": 1, "memory": True},
        "dscl_queue": {"loss": DSCLLoss(0.2, alpha=0.6), "views": 2, "memory": True},
        "simcse_queue": {"loss": SimCSELoss(0.1, hard_negative_weight=0.2), "views": 2, "hard": True, "memory": True},
        "supcon_without_anchor_samples": {"loss": GatherEverywhereSupCon(0.3), "views": 2},
    }


def loss_inputs(world: int) -> dict[str, torch.Tensor]:
    """The global batch: inputs ``[W·B, V, 8]``, labels (uneven valid anchors per process), a memory."""
    generator = torch.Generator().manual_seed(11)
    labels = torch.tensor([0, 0, 2, 3, 1, 1, 1, 0, 2, 4, 4, 0, 1, 3, 3, 5])[: world * PER_RANK]
    return {
        "inputs": torch.randn(world * PER_RANK, 2, 8, generator=generator),
        "hard_inputs": torch.randn(world * PER_RANK, 8, generator=generator),
        "labels": labels,
        "memory": torch.randn(5, 6, generator=generator),
        "memory_labels": torch.tensor([1, 3, 0, 5, 2]),
    }


def loss_step(name: str, rows: slice, world: int) -> dict[str, torch.Tensor]:
    """One SGD step of a linear encoder on ``rows`` of the global batch; returns the loss and weights."""
    from scpt.training.distributed import all_reduce_sum, distributed_contrastive_loss

    case = loss_cases()[name]
    data = loss_inputs(world)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(8, 6)
    features = encoder(data["inputs"][rows, : case["views"]])  # [B, V, 6]
    extras = {"hard_negatives": encoder(data["hard_inputs"][rows])} if case.get("hard") else {}
    if case.get("memory"):
        extras["memory"] = data["memory"]
        extras["memory_labels"] = data["memory_labels"]
    loss = distributed_contrastive_loss(case["loss"], features, data["labels"][rows], **extras)
    loss.backward()
    average_gradients(encoder)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter -= LEARNING_RATE * parameter.grad
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    return {
        "loss": all_reduce_sum(loss.detach()) / world_size,  # the logged value: the mean over processes
        **{f"param.{key}": value.detach().clone() for key, value in encoder.state_dict().items()},
    }


def average_gradients(model: torch.nn.Module) -> None:
    """What DDP does after backward: every gradient averaged over the processes."""
    if not dist.is_initialized():
        return
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= dist.get_world_size()


# --------------------------------------------------------------------------------------------------
# Module-level cases: ContrastivePretrainModule on a tiny BERT without dropout
# --------------------------------------------------------------------------------------------------

TEXTS = [
    "pizza was great and cheap",
    "service was slow and rude",
    "pasta was lovely",
    "waiter ignored us for an hour",
    "menu is short but good",
    "decor was nice",
    "the wine list is long",
    "dessert came cold",
]
TEXT_LABELS = [0, 1, 0, 1, 2, 0, 2, 1]

MODULE_CASES: dict[str, dict[str, Any]] = {
    "module_supcon_queue_momentum": {"lambda_map": 0.0, "lambda_rr": 0.0, "queue_size": 16, "momentum": 0.9},
    "module_all_terms_queue": {"queue_size": 16, "momentum": 0.0, "num_views": 2},
    # gradient caching: each process encodes its 4 samples in chunks of 3 and 1
    "module_all_terms_grad_cache": {"queue_size": 16, "momentum": 0.9, "num_views": 2, "grad_cache_chunk": 3},
}


def deterministic_mask(input_ids, maskable, aspect, *, mask_token_id, vocab_size, mask_probability):
    """Masking that does not depend on the random state: the first maskable token of each row,
    plus the second one in odd rows (so processes hold different numbers of masked tokens)."""
    from scpt.pretrain.masking import IGNORE_INDEX, MaskedTokens

    order = maskable.long().cumsum(dim=1)
    odd = (torch.arange(input_ids.shape[0]) % 2 == 1)[:, None]
    selected = maskable & ((order == 1) | ((order == 2) & odd))
    corrupted = input_ids.masked_fill(selected, mask_token_id)
    return MaskedTokens(corrupted, input_ids.masked_fill(~selected, IGNORE_INDEX), selected)


def module_batch(tiny_bert_dir: str, world: int) -> dict[str, torch.Tensor]:
    """The global batch, collated once (one padding length for every process's rows)."""
    from scpt.data.corpus import AspectSpan, CorpusExample
    from scpt.encoders import load_tokenizer
    from scpt.pretrain.datamodule import collate_pretraining, encode_pretraining_example

    tokenizer = load_tokenizer(tiny_bert_dir)
    encoded = []
    for text, label in list(zip(TEXTS, TEXT_LABELS))[: world * PER_RANK]:
        term = text.split()[1]
        start = text.index(term)
        example = CorpusExample(text, "x", (AspectSpan(term, start, start + len(term)),), None, "test")
        encoded.append(encode_pretraining_example(tokenizer, example, label, "sentence", 32))
    return collate_pretraining(encoded, tokenizer.pad_token_id)


def module_step(name: str, rows: slice, world: int, tiny_bert_dir: str) -> dict[str, torch.Tensor]:
    """One SGD step of the phase-1 module on ``rows`` of the global batch; returns the loss and state."""
    import scpt.pretrain.module as pretrain_module
    from scpt.losses import SupConLoss
    from scpt.training.distributed import all_reduce_sum

    pretrain_module.aspect_first_mask = deterministic_mask
    torch.manual_seed(0)
    module = pretrain_module.ContrastivePretrainModule(
        encoder=tiny_bert_dir, loss=SupConLoss(0.5), decoder_layers=1, decoder_dropout=0.0, **MODULE_CASES[name]
    ).train()
    for layer in module.modules():  # no dropout: the processes' random streams differ from the single process's
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    queue = module.objectives["scl"].queue
    generator = torch.Generator().manual_seed(3)
    queue.enqueue(torch.randn(6, queue.features.shape[1], generator=generator), torch.tensor([0, 1, 2, 0, 1, 2]))
    batch = {key: value[rows] for key, value in module_batch(tiny_bert_dir, world).items()}
    result = module.compute_terms(batch)
    result.total.backward()
    average_gradients(module)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter -= LEARNING_RATE * parameter.grad
    module.after_optimizer_step()
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    logged = {f"loss.{key}": all_reduce_sum(out.loss.detach()) / world_size for key, out in result.terms.items()}
    # the queue is not empty, so the batch alone is logged too: over the gathered batch, the same on every process
    scl_metrics = result.terms["scl"].metrics
    logged.update(
        {f"metric.scl_{key}": torch.tensor(float(scl_metrics[key])) for key in ("in_batch", "in_batch_collapsed")}
    )
    return {**logged, **{f"state.{key}": value.detach().clone() for key, value in module.state_dict().items()}}


# --------------------------------------------------------------------------------------------------
# The multi-process run
# --------------------------------------------------------------------------------------------------


def _worker(rank: int, world: int, out: str, tiny_bert_dir: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        results = {name: loss_step(name, rows, world) for name in loss_cases()}
        results.update({name: module_step(name, rows, world, tiny_bert_dir) for name in MODULE_CASES})
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def main(out: str, tiny_bert_dir: str, world: int = 2) -> None:
    import socket

    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_worker, args=(world, out, tiny_bert_dir, port), nprocs=world, join=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
