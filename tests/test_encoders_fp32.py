"""Every encoder load gives fp32 parameters, whatever dtype the weights are stored in: an HF directory
saved in fp16 / bf16, a phase-1 checkpoint holding half-precision weights (``--model.encoder x.ckpt``),
``scpt export`` of such a checkpoint, and the MLM head read from a directory (docs/design.md §8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer, BertForMaskedLM

from scpt.encoders import (
    ENCODER_RECORD_KEY,
    PARAMETER_DTYPE,
    encoder_record,
    load_encoder,
    load_mlm_head_state,
)
from scpt.export import export_encoder
from scpt.training.module import EncoderModule


def _save_in(dtype: torch.dtype, source: Path, target: Path) -> dict[str, torch.Tensor]:
    """Save the tiny BERT of ``source`` with its weights cast to ``dtype``; return the stored weights."""
    model = AutoModel.from_pretrained(source).to(dtype)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.fixture(scope="module", params=[torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def half_bert(request: pytest.FixtureRequest, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(f"tiny-bert-{str(request.param).removeprefix('torch.')}")
    return request.param, directory, _save_in(request.param, tiny_bert_dir, directory)


def _assert_fp32_upcast(model: torch.nn.Module, stored: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    state = model.state_dict()
    for name, value in stored.items():
        if not value.is_floating_point():
            continue
        assert value.dtype == dtype, name  # the stored weights really are in half precision
        assert state[name].dtype == torch.float32, name
        assert torch.equal(state[name], value.float()), name  # the exact upcast: half -> fp32 is lossless
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_transformers_keeps_the_stored_half_dtype(half_bert) -> None:
    """The behaviour scpt guards against: a plain ``from_pretrained`` keeps fp16 / bf16 parameters."""
    dtype, directory, _ = half_bert
    assert json.loads((directory / "config.json").read_text())["dtype"] == str(dtype).removeprefix("torch.")
    assert next(AutoModel.from_pretrained(directory).parameters()).dtype == dtype


def test_load_encoder_upcasts_a_half_precision_directory(half_bert) -> None:
    dtype, directory, stored = half_bert
    model = load_encoder(str(directory))
    _assert_fp32_upcast(model, stored, dtype)
    assert PARAMETER_DTYPE == torch.float32 and model.config.dtype == torch.float32
    assert encoder_record(model, str(directory))["config"]["dtype"] == "float32"  # what checkpoints record


def test_a_module_from_a_half_precision_encoder_trains_and_saves_fp32(half_bert) -> None:
    dtype, directory, stored = half_bert
    module = EncoderModule(str(directory), warmup_ratio=0.0)
    _assert_fp32_upcast(module.encoder, stored, dtype)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[ENCODER_RECORD_KEY]["config"]["dtype"] == "float32"


def _half_checkpoint(dtype: torch.dtype, directory: Path, stored: dict[str, torch.Tensor], path: Path) -> Path:
    """A phase-1 style checkpoint whose encoder weights and recorded config are in half precision (as a run
    that trained half-precision parameters would have saved)."""
    config = json.loads((directory / "config.json").read_text())
    torch.save(
        {
            "state_dict": {f"encoder.{name}": value for name, value in stored.items()},
            ENCODER_RECORD_KEY: {"config": config, "tokenizer": str(directory)},
            "hyper_parameters": {"encoder": str(directory)},
        },
        path,
    )
    return path


def test_hand_off_and_export_of_a_half_precision_checkpoint_are_fp32(half_bert, tmp_path: Path) -> None:
    dtype, directory, stored = half_bert
    checkpoint = _half_checkpoint(dtype, directory, stored, tmp_path / "phase1.ckpt")
    # --model.encoder x.ckpt (AutoModel.from_config would follow the recorded config.dtype)
    _assert_fp32_upcast(load_encoder(str(checkpoint)), stored, dtype)
    # scpt export: fp32 weights on disk and a config that says so; a plain from_pretrained then gives fp32
    exported = export_encoder(checkpoint, tmp_path / "exported")
    assert json.loads((exported / "config.json").read_text())["dtype"] == "float32"
    with safe_open(str(exported / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(name).dtype for name in handle.keys()} == {torch.float32}
    _assert_fp32_upcast(AutoModel.from_pretrained(exported), stored, dtype)


def test_mlm_head_weights_stored_in_half_precision_load_as_fp32(tiny_bert_dir: Path, tmp_path: Path) -> None:
    config = AutoModel.from_pretrained(tiny_bert_dir).config
    torch.manual_seed(0)
    BertForMaskedLM(config).half().save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        stored_bias = handle.get_tensor("cls.predictions.bias")
        stored_dense = handle.get_tensor("cls.predictions.transform.dense.weight")
    assert stored_bias.dtype == torch.float16
    head = load_mlm_head_state(tmp_path)
    assert head is not None and {value.dtype for value in head.values()} == {torch.float32}
    assert torch.equal(head["bias"], stored_bias.float()) and torch.equal(head["dense.weight"], stored_dense.float())
