"""bf16 mixed precision on the CPU, end to end: ``scpt pretrain fit`` and ``scpt finetune fit`` with
``--trainer.precision bf16-mixed`` against the same runs in fp32, on a tiny random BERT.

What is pinned, per phase:

- the bf16 run's logged values (losses, metrics) are finite;
- its first logged training loss is not the fp32 run's (autocast was in effect) but equals it within
  ``rtol = 5e-3``. Step 0 sees the same weights, batch and dropout draws in both runs (same seed),
  so the only difference is autocast rounding matmul inputs to bf16: 8 significant bits, unit
  roundoff 2^-9 ~ 2e-3 per rounding. The loss is a batch mean of log-probabilities computed in fp32
  (the contrastive loss disables autocast), so it moves by a fraction of one roundoff: measured 1e-5
  (pre-training, whose MAP and RR terms sit near log |vocab| at random init) and 1e-3 (fine-tuning).
  5e-3 is 2.5 roundoffs; fine-tuning with another seed moves that loss by 4-11% (measured), so the
  comparison also shows that both runs saw the same data and dropout draws;
- the parameters stay fp32: every floating tensor of the saved checkpoint (encoder, heads, the
  momentum encoder) and of the optimizer state is float32.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from helpers import needs_data
from scpt import cli

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_CONFIG = ROOT / "configs" / "pretrain" / "restaurants.yaml"
FINETUNE_CONFIG = ROOT / "configs" / "finetune" / "restaurants.yaml"
RTOL = 5e-3  # see the module docstring
COMMON = [
    "--trainer.max_steps", "1",
    "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def _pretrain(encoder: Path, root: Path, precision: str) -> None:
    args = [
        "--config", str(PRETRAIN_CONFIG),
        "--model.encoder", str(encoder),
        "--model.decoder_layers", "1",
        "--data.in_domain", "[restaurants]",
        "--data.limit", "120",
        "--data.val_size", "40",
        "--data.batch_size", "16",
        "--trainer.val_check_interval", "1",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.precision", precision,
        *COMMON,
    ]  # fmt: skip
    assert cli.main(["pretrain", "fit", *args]) == 0


def _finetune(encoder: Path, root: Path, precision: str) -> None:
    args = [
        "--config", str(FINETUNE_CONFIG),
        "--model.encoder", str(encoder),
        "--data.limit", "48",
        "--data.batch_size", "16",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.precision", precision,
        *COMMON,
    ]  # fmt: skip
    assert cli.main(["finetune", "fit", *args]) == 0


def _metrics(run: Path) -> list[dict[str, float]]:
    """The rows of ``metrics.csv``, with only the columns that have a value."""
    with (run / "metrics.csv").open() as handle:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _first(rows: list[dict[str, float]], column: str) -> float:
    return next(row[column] for row in rows if column in row)


def _assert_fp32_checkpoint(checkpoint: Path) -> None:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    dtypes = {key: value.dtype for key, value in saved["state_dict"].items() if value.is_floating_point()}
    assert any(key.startswith("encoder.") for key in dtypes)
    assert set(dtypes.values()) == {torch.float32}, {k: d for k, d in dtypes.items() if d != torch.float32}
    moments = [t for state in saved["optimizer_states"][0]["state"].values() for t in state.values() if t.dim() > 0]
    assert moments and {t.dtype for t in moments} == {torch.float32}


def _assert_close_but_not_equal(bf16: float, fp32: float, what: str) -> None:
    assert math.isfinite(bf16), what
    assert bf16 != fp32, f"{what}: bf16 run gave exactly the fp32 value; was autocast in effect?"
    assert bf16 == pytest.approx(fp32, rel=RTOL), what


@needs_data
def test_pretrain_bf16_mixed_matches_fp32_and_keeps_fp32_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    runs = {}
    for precision in ("32-true", "bf16-mixed"):
        _pretrain(tiny_bert_dir, tmp_path / precision, precision)
        runs[precision] = tmp_path / precision / "restaurants" / "version_0"
    fp32, bf16 = _metrics(runs["32-true"]), _metrics(runs["bf16-mixed"])
    assert all(math.isfinite(v) for row in bf16 for k, v in row.items() if k.startswith(("train/", "val/")))
    for column in ("train/loss_step", "train/scl_step"):
        _assert_close_but_not_equal(_first(bf16, column), _first(fp32, column), column)
    assert "val/scl" in {k for row in bf16 for k in row}  # the held-out pass ran under bf16 too
    _assert_fp32_checkpoint(runs["bf16-mixed"] / "checkpoints" / "last.ckpt")


@needs_data
def test_finetune_bf16_mixed_matches_fp32_and_keeps_fp32_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    runs = {}
    for precision in ("32-true", "bf16-mixed"):
        _finetune(tiny_bert_dir, tmp_path / precision, precision)
        runs[precision] = tmp_path / precision / "restaurants" / "version_0"
    fp32, bf16 = _metrics(runs["32-true"]), _metrics(runs["bf16-mixed"])
    assert all(math.isfinite(v) for row in bf16 for k, v in row.items() if k.startswith(("train/", "val/")))
    _assert_close_but_not_equal(_first(bf16, "train/loss"), _first(fp32, "train/loss"), "train/loss")
    _assert_close_but_not_equal(_first(bf16, "val/loss"), _first(fp32, "val/loss"), "val/loss")
    checkpoints = sorted((runs["bf16-mixed"] / "checkpoints").glob("best-*.ckpt"))
    assert len(checkpoints) == 1
    _assert_fp32_checkpoint(checkpoints[0])
