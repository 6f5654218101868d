"""Resuming a killed run (scpt.training.resume): the samplers' state, the random state, the run folder,
and end to end — a CPU run SIGKILLed mid-epoch and resumed with ``fit --ckpt_path`` ends with exactly the
weights of the run that was never interrupted, in the same run folder, with the same logged steps."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import needs_data
from scpt.data.sampling import ClassGroupBatchSampler, LengthBucketBatchSampler, ResumableDataLoader
from scpt.training.resume import (
    checkpoint_run_folder,
    drop_rows_after,
    restore_rng_state,
    rng_state,
)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

LABELS = [i % 3 for i in range(60)]
LENGTHS = [5 + (7 * i) % 23 for i in range(60)]


def _class_group(seed: int | None) -> ClassGroupBatchSampler:
    return ClassGroupBatchSampler(LABELS, batch_size=8, min_per_class=2, lengths=LENGTHS, pool_batches=2, seed=seed)


def _length_bucket(seed: int | None) -> LengthBucketBatchSampler:
    return LengthBucketBatchSampler(LENGTHS, batch_size=8, shuffle=True, pool_batches=2, seed=seed)


# --------------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_class_group, _length_bucket])
@pytest.mark.parametrize("done", [0, 1, 3])
def test_a_restored_sampler_yields_the_rest_of_the_epoch_then_the_same_epochs(make, done: int) -> None:
    original = make(11)
    first = list(original)
    state = original.state_dict(batches_done=done)
    later = [list(original) for _ in range(2)]
    restored = make(999)  # another seed: the state carries the epoch, its generator seed and the base seed
    restored.load_state_dict(state)
    assert list(restored) == first[done:]  # none replayed, none skipped
    assert [list(restored) for _ in range(2)] == later  # the epochs after it are the original's


@pytest.mark.parametrize("make", [_class_group, _length_bucket])
def test_a_finished_epoch_resumes_with_the_next_one(make) -> None:
    original = make(5)
    epoch0 = list(original)
    state = original.state_dict(batches_done=len(epoch0))
    epoch1 = list(original)
    restored = make(5)
    restored.load_state_dict(state)
    assert restored.epoch == 1 and list(restored) == epoch1


def test_an_unseeded_sampler_resumes_within_its_epoch() -> None:
    """With seed=None each epoch's generator seed is a global draw; the state records it."""
    torch.manual_seed(0)
    original = _class_group(None)
    first = list(original)
    state = original.state_dict(batches_done=2)
    assert state["seed"] is None and state["generator_seed"] is not None
    torch.manual_seed(123)  # another global state: the restored epoch must not depend on it
    restored = _class_group(None)
    restored.load_state_dict(state)
    assert list(restored) == first[2:]


def test_the_loader_reports_its_sampler_state_with_the_batches_used() -> None:
    sampler = _length_bucket(3)
    loader = ResumableDataLoader(list(range(60)), batch_sampler=sampler)
    iterator = iter(loader)
    batches = [next(iterator).tolist() for _ in range(3)]
    assert loader.state_dict()["batch_sampler"]["batches_done"] == 3  # without a trainer: what it yielded
    loader.batches_done = lambda: 2  # the fit loop's count (Lightning fetches one batch ahead)
    state = loader.state_dict()
    assert state["batch_sampler"]["batches_done"] == 2 and state["batch_sampler"]["epoch"] == 0
    resumed = ResumableDataLoader(list(range(60)), batch_sampler=_length_bucket(77))
    resumed.load_state_dict(state)
    assert next(iter(resumed)).tolist() == batches[2]


# --------------------------------------------------------------------------------------------------
# random state, run folder, metrics
# --------------------------------------------------------------------------------------------------


def test_the_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.rand(5), np.random.rand(5), random.random()
    torch.save({"rng": rng_state()}, tmp_path / "state.pt")
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    drawn = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


def test_the_checkpoint_names_its_run_folder(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "restaurants"
    assert checkpoint_run_folder(root / "version_3" / "checkpoints" / "last.ckpt", root) == "version_3"
    assert checkpoint_run_folder(root / "abc123" / "checkpoints" / "last.ckpt", root) == "abc123"  # a W&B run id
    assert checkpoint_run_folder(tmp_path / "elsewhere" / "last.ckpt", root) is None
    assert checkpoint_run_folder(root / "last.ckpt", root) is None


def test_rows_logged_after_the_checkpoint_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,loss\n0,0,1.0\n0,1,0.9\n0,1,\n1,2,0.8\n1,3,0.7\n")
    assert drop_rows_after(path, 2) == 2
    assert path.read_text().splitlines() == ["epoch,step,loss", "0,0,1.0", "0,1,0.9", "0,1,"]
    assert drop_rows_after(path, 2) == 0


# --------------------------------------------------------------------------------------------------
# end to end: kill mid-epoch, resume, compare with the uninterrupted run
# --------------------------------------------------------------------------------------------------


def _callbacks_config(
    path: Path, every: int, kill_at: int | None, best_on_dev: bool = False, only_if_env: str | None = None
) -> Path:
    callbacks = []
    if best_on_dev:
        callbacks.append(
            {
                "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                "init_args": {"monitor": "val/acc", "mode": "max", "save_top_k": 1, "filename": "best"},
            }
        )
    callbacks.append(
        {
            "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True, "save_top_k": 0, "every_n_train_steps": every},
        }
    )
    if kill_at is not None:
        callbacks.append({"class_path": "crash.KillAtStep", "init_args": {"step": kill_at, "only_if_env": only_if_env}})
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


def _scpt(args: list[str], killed: bool = False, **env_vars: str) -> None:
    """Run ``scpt ...args`` in a fresh process, as a user does (each of the compared runs starts from the
    same process state); ``killed``: KillAtStep SIGKILLs it."""
    env = {**os.environ, **env_vars, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "-m", "scpt.cli", *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == (-signal.SIGKILL if killed else 0), completed.stderr[-3000:]


def _state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def _loader_state(checkpoint: dict) -> dict:
    """The training dataloader's state that Lightning saved in a checkpoint (ResumableDataLoader's)."""
    return checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batch_sampler"]


def _step_rows(metrics_csv: Path) -> list[dict[str, str]]:
    """The per-step rows (epoch-level means over a resumed epoch cover only the batches after the resume:
    Lightning does not checkpoint its running means)."""
    with metrics_csv.open(newline="") as file:
        return [{k: v for k, v in row.items() if not k.endswith("_epoch")} for row in csv.DictReader(file)]


def _assert_resumed_like_uninterrupted(straight: Path, resumed: Path) -> None:
    """Same final weights and buffers (bit for bit), same logged step values, one run folder."""
    assert [p.name for p in resumed.parent.iterdir()] == ["version_0"]  # no second version folder
    expected, actual = _state(straight / "checkpoints" / "last.ckpt"), _state(resumed / "checkpoints" / "last.ckpt")
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key
    assert _step_rows(resumed / "metrics.csv") == _step_rows(straight / "metrics.csv")
    assert (resumed / "config.yaml").is_file() and (resumed / "config.1.yaml").is_file()  # the first kept


PRETRAIN_ARGS = [
    "--model.decoder_layers", "1",
    "--data.in_domain", "[restaurants]",
    "--data.limit", "120",
    "--data.val_size", "40",
    "--data.batch_size", "16",   # 80 training examples: 5 batches an epoch
    "--trainer.max_epochs", "3",
    "--trainer.max_steps", "12",
    "--trainer.val_check_interval", "3",
    "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


@needs_data
def test_phase1_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Checkpoints every 6 steps; killed after step 9 (epoch 2 of 5-batch epochs): the resumed run starts
    from step 6, mid-epoch, replays nothing it had finished before step 6 and skips nothing after it."""

    def args(root: Path, *extra: str) -> list[str]:
        return [
            "pretrain", "fit",
            "--config", str(ROOT / "configs" / "pretrain" / "restaurants.yaml"),
            *extra,
            "--model.encoder", str(tiny_bert_dir),
            *PRETRAIN_ARGS,
            "--trainer.default_root_dir", str(root),
            "--trainer.logger.init_args.save_dir", str(root),
        ]  # fmt: skip

    every = ["--config", str(_callbacks_config(tmp_path / "every6.yaml", every=6, kill_at=None))]
    crash = ["--config", str(_callbacks_config(tmp_path / "crash.yaml", every=6, kill_at=9))]
    _scpt(args(tmp_path / "straight", *every))
    _scpt(args(tmp_path / "resumed", *crash), killed=True)
    run = tmp_path / "resumed" / "restaurants" / "version_0"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (6, 1)
    assert _loader_state(saved)["epoch"] == 1 and _loader_state(saved)["batches_done"] == 1  # mid-epoch 1
    _scpt([*args(tmp_path / "resumed", *every), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    _assert_resumed_like_uninterrupted(tmp_path / "straight" / "restaurants" / "version_0", run)


FINETUNE_ARGS = [
    "--data.limit", "64",
    "--data.batch_size", "16",
    "--trainer.max_epochs", "3",
    "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


@needs_data
def test_phase2_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    def args(root: Path, *extra: str) -> list[str]:
        return [
            "finetune", "fit",
            "--config", str(ROOT / "configs" / "finetune" / "restaurants.yaml"),
            *extra,
            "--model.encoder", str(tiny_bert_dir),
            *FINETUNE_ARGS,
            "--trainer.default_root_dir", str(root),
            "--trainer.logger.init_args.save_dir", str(root),
        ]  # fmt: skip

    every = ["--config", str(_callbacks_config(tmp_path / "every.yaml", every=3, kill_at=None, best_on_dev=True))]
    crash = ["--config", str(_callbacks_config(tmp_path / "crash.yaml", every=3, kill_at=5, best_on_dev=True))]
    _scpt(args(tmp_path / "straight", *every))
    _scpt(args(tmp_path / "resumed", *crash), killed=True)
    run = tmp_path / "resumed" / "restaurants" / "version_0"
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 3 and _loader_state(saved)["batches_done"] == 3  # mid-epoch 0 (4 batches)
    _scpt([*args(tmp_path / "resumed", *every), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    _assert_resumed_like_uninterrupted(tmp_path / "straight" / "restaurants" / "version_0", run)
    best = sorted((run / "checkpoints").glob("best*.ckpt"))
    straight_best = sorted((tmp_path / "straight" / "restaurants" / "version_0" / "checkpoints").glob("best*.ckpt"))
    assert [p.name for p in best] == [p.name for p in straight_best]  # the same selection on dev


@needs_data
def test_the_pipeline_resumes_a_killed_pretraining_in_its_run_folder(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Rerunning ``scpt pipeline`` after its pre-training was killed continues from the last checkpoint in
    the same version folder: no second folder, no second checkpoint, the full number of steps (the last
    save, every 2 steps, is the final step 6)."""
    crash = _callbacks_config(tmp_path / "crash.yaml", every=2, kill_at=3, only_if_env="SCPT_TEST_CRASH")
    pretrain = [arg for arg in PRETRAIN_ARGS if arg not in ("--trainer.max_steps", "12")]
    config = {
        "output_dir": str(tmp_path / "out"),
        "seeds": [1],
        "pretrain": {
            "configs": [str(ROOT / "configs" / "pretrain" / "restaurants.yaml"), str(crash)],
            "args": ["--model.encoder", str(tiny_bert_dir), *pretrain, "--trainer.max_steps", "6"],
        },
        "finetune": {
            "configs": [str(ROOT / "configs" / "finetune" / "restaurants.yaml")],
            "args": ["--model.encoder", str(tiny_bert_dir), *FINETUNE_ARGS, "--trainer.max_epochs", "1"],
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    _scpt(["pipeline", "--config", str(path)], killed=True, SCPT_TEST_CRASH="1")
    runs = tmp_path / "out" / "pretrain" / "restaurants"
    assert torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    _scpt(["pipeline", "--config", str(path)])
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    assert [p.name for p in (runs / "version_0" / "checkpoints").iterdir()] == ["last.ckpt"]
    assert torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert (tmp_path / "out" / "results.json").is_file()
