"""Exact DDP gradients: one step on 2 gloo processes equals one step on the concatenated batch.

The two processes run in a subprocess (tests/distributed_steps.py); every loss (SupCon L_out and L_in,
DSCL, SimCSE with hard negatives), with and without a label-aware memory, a loss that does not split
anchors, and the phase-1 module (contrastive term with queue and momentum encoder; all three terms
with masked tokens unevenly spread over the processes; the same with gradient caching). Compared: the
loss (mean over processes) and every parameter and buffer after one SGD step, to 1e-6.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import distributed_steps as steps

WORLD = 2


@pytest.fixture(scope="module")
def two_process_results(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    script = Path(steps.__file__)
    completed = subprocess.run(
        [sys.executable, str(script), str(out), str(tiny_bert_dir), str(WORLD)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", list(steps.loss_cases()))
def test_loss_step_on_two_processes_equals_one_process(two_process_results, name: str) -> None:
    single = steps.loss_step(name, slice(None), WORLD)
    for rank_results in two_process_results:
        _assert_same(rank_results[name], single)


@pytest.mark.parametrize("name", list(steps.MODULE_CASES))
def test_pretrain_module_step_on_two_processes_equals_one_process(
    two_process_results, tiny_bert_dir: Path, name: str
) -> None:
    single = steps.module_step(name, slice(None), WORLD, str(tiny_bert_dir))
    assert any(key.startswith("state.objectives.scl.queue.features") for key in single)
    for rank_results in two_process_results:
        _assert_same(rank_results[name], single)


def test_a_gradient_gathered_without_the_cross_process_sum_is_wrong(two_process_results) -> None:
    """The test can fail: a step with the other process's rows detached (what a gather without
    gradients does) moves the weights differently from the concatenated batch."""
    from scpt.losses import SupConLoss

    data = steps.loss_inputs(WORLD)
    torch.manual_seed(0)
    encoder = torch.nn.Linear(8, 6)
    loss = SupConLoss(0.3, base_temperature=0.07)
    grads = []
    for rank in range(WORLD):
        encoder.zero_grad()
        features = encoder(data["inputs"][:, :2])
        rows = slice(rank * steps.PER_RANK, (rank + 1) * steps.PER_RANK)
        others = torch.ones(features.shape[0], dtype=torch.bool)
        others[rows] = False
        features = torch.where(others[:, None, None], features.detach(), features)  # local rows on the graph only
        loss(features, data["labels"], anchor_samples=rows).backward()
        grads.append(encoder.weight.grad.clone())
    naive_weight = encoder.weight.detach() - steps.LEARNING_RATE * sum(grads) / WORLD
    exact = two_process_results[0]["supcon_out"]["param.weight"]
    assert (naive_weight - exact).abs().max() > 1e-3
