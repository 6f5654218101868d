"""Both phases on two CPU processes (gloo DDP) through the real CLI, and their evaluation equal to one
process's on the same weights (docs/design.md §3, "Splitting the data").

The two-process runs are subprocesses (``python -m scpt.cli ... --trainer.devices 2 --trainer.strategy
ddp``: Lightning relaunches the command for rank 1), killed whole when they outlive a timeout, so a
hang fails the test instead of stalling the suite. The held-out sets have odd sizes and several
batches, so the ranks hold shards of different sizes: a sampler that padded them by repeating
examples (Lightning's ``DistributedSampler``) would change every metric.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import needs_data
from scpt.finetune.cli import build_cli as build_finetune_cli
from scpt.pretrain.cli import build_cli as build_pretrain_cli
from scpt.training.sharding import gather_rows, pad_rows, process_split, shared_seed, unpad_rows

ROOT = Path(__file__).resolve().parents[1]
TWO_PROCESSES = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
TIMEOUT_S = 240


def run_two_processes(args: list[str]) -> None:
    """``scpt <args>`` on two gloo processes; both are killed (their process group) after ``TIMEOUT_S``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread each, as the one-process runs here (one_thread)
    process = subprocess.Popen(
        [sys.executable, "-m", "scpt.cli", *args, *TWO_PROCESSES],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # rank 1, which Lightning launches, joins this process group
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"scpt {' '.join(args[:2])} on 2 processes did not finish in {TIMEOUT_S} s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]


def logged(run_dir: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every ``prefix``* column of a CSV logger's ``metrics.csv`` (rank 0 writes it)."""
    values: dict[str, float] = {}
    with (run_dir / "metrics.csv").open() as rows:
        for row in csv.DictReader(rows):
            values.update({key: float(value) for key, value in row.items() if key.startswith(prefix) and value})
    return values


def evaluated_in_process(build_cli, args: list[str], prefix: str) -> dict[str, float]:
    """One process: run ``args`` through the CLI here and return the ``prefix``* metrics."""
    cli = build_cli(args)
    return {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith(prefix)}


def assert_same_metrics(two: dict[str, float], one: dict[str, float]) -> None:
    assert two.keys() == one.keys() and len(one) >= 8
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def pretrain_args(encoder: Path, root: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "pretrain" / "restaurants.yaml"),
        "--model.encoder", str(encoder),
        "--model.decoder_layers", "1",
        "--data.in_domain", "[restaurants]",
        "--data.limit", "120",
        "--data.val_size", "39",        # held out 39: ranks evaluate 23 and 16 (batches of 16)
        "--data.batch_size", "16",      # per process: global batches of 32
        "--data.eval_batch_size", "16",  # the probe's 81 training examples: 48 and 33
        "--model.probe_per_class", "true",  # per-class probe scores over the gathered held-out rows too
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
    ]  # fmt: skip


@needs_data
@pytest.mark.slow
def test_pretraining_on_two_processes_validates_as_one(tiny_bert_dir: Path, tmp_path: Path, one_thread: None) -> None:
    # gradient caching on: DDP's gradient hooks meet each chunk's recomputation in one backward
    fit = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--model.grad_cache_chunk", "8"]
    run_two_processes(["pretrain", "fit", *pretrain_args(tiny_bert_dir, tmp_path / "two"), *fit])
    run = tmp_path / "two" / "restaurants" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2
    # the validation after step 2 (two processes) and a validation of the saved weights on one process
    one = evaluated_in_process(
        build_pretrain_cli,
        ["validate", *pretrain_args(tiny_bert_dir, tmp_path / "one"), "--ckpt_path", str(last)],
        "val/",
    )
    assert_same_metrics(logged(run, "val/"), one)
    assert one["val/probe_knn"] * 39 == pytest.approx(round(one["val/probe_knn"] * 39), abs=1e-4)  # 39 queries


def finetune_args(encoder: Path, root: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "finetune" / "restaurants.yaml"),
        "--model.encoder", str(encoder),
        "--data.limit", "47",            # 47 per split: ranks evaluate 31 and 16 (batches of 16)
        "--data.batch_size", "8",        # per process: global batches of 16
        "--data.eval_batch_size", "16",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
    ]  # fmt: skip


@needs_data
@pytest.mark.slow
def test_finetuning_on_two_processes_evaluates_as_one(tiny_bert_dir: Path, tmp_path: Path, one_thread: None) -> None:
    fit = ["--trainer.max_epochs", "1", "--trainer.val_check_interval", "1.0"]
    run_two_processes(["finetune", "fit", *finetune_args(tiny_bert_dir, tmp_path / "fit"), *fit])
    run = tmp_path / "fit" / "restaurants" / "version_0"
    (best,) = run.glob("checkpoints/best-*.ckpt")
    assert (
        torch.load(best, map_location="cpu", weights_only=True)["global_step"] == 3
    )  # 47: 32 + 32 + 14, one example dropped
    two_val = logged(run, "val/")
    one_val = evaluated_in_process(
        build_finetune_cli,
        ["validate", *finetune_args(tiny_bert_dir, tmp_path / "val1"), "--ckpt_path", str(best)],
        "val/",
    )
    assert_same_metrics(two_val, one_val)
    assert {"val/acc", "val/macro_f1", "val/ise_acc", "val/ese_acc", "val/loss"} <= one_val.keys()
    assert two_val["val/acc"] * 0.47 == pytest.approx(round(two_val["val/acc"] * 0.47), abs=1e-4)  # k of 47

    run_two_processes(["finetune", "test", *finetune_args(tiny_bert_dir, tmp_path / "test2"), "--ckpt_path", str(best)])
    two_test = logged(tmp_path / "test2" / "restaurants" / "version_0", "test/")
    one_test = evaluated_in_process(
        build_finetune_cli,
        ["test", *finetune_args(tiny_bert_dir, tmp_path / "test1"), "--ckpt_path", str(best)],
        "test/",
    )
    assert_same_metrics(two_test, one_test)
    assert two_test["test/acc"] * 0.47 == pytest.approx(round(two_test["test/acc"] * 0.47), abs=1e-4)


# ---------------------------------------------------------------------------------------------------
# The pieces, on one process


def test_padded_rows_are_gathered_without_the_padding() -> None:
    rank0, rank1 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), torch.tensor([[7.0, 8.0]])
    padded = torch.stack([pad_rows(rank0, 3), pad_rows(rank1, 3)])  # what all_gather returns: [W, L, D]
    assert padded[1].tolist() == [[7.0, 8.0], [0.0, 0.0], [0.0, 0.0]]
    assert unpad_rows(padded, torch.tensor([3, 1])).tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert unpad_rows(torch.stack([pad_rows(rank1, 1), pad_rows(rank1[:0], 1)]), torch.tensor([1, 0])).tolist() == [
        [7.0, 8.0]
    ]
    assert gather_rows(rank0) is rank0  # no process group: the rows themselves


def test_process_split_refuses_a_trainer_that_would_rewrap_the_samplers() -> None:
    def trainer(world_size: int, use_distributed_sampler: bool) -> SimpleNamespace:
        connector = SimpleNamespace(use_distributed_sampler=use_distributed_sampler)
        strategy = SimpleNamespace(broadcast=lambda value, src: 1234)  # rank 0's draw
        return SimpleNamespace(
            world_size=world_size, global_rank=1, _accelerator_connector=connector, strategy=strategy
        )

    assert process_split(None) == (1, 0) and process_split(trainer(1, True)) == (1, 0)
    assert process_split(trainer(2, False)) == (2, 1)
    with pytest.raises(ValueError, match="set trainer.use_distributed_sampler: false"):
        process_split(trainer(2, True))
    state = torch.get_rng_state()
    assert shared_seed(None) is None and torch.equal(torch.get_rng_state(), state)  # no trainer: no draw
    torch.manual_seed(5)
    expected = int(torch.randint(2**62, ()).item())
    torch.manual_seed(5)
    assert shared_seed(trainer(1, False)) == expected  # one process: one draw, reproduced by seed_everything
    assert shared_seed(trainer(2, False)) == 1234  # W > 1: rank 0's draw, broadcast
