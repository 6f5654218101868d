"""Bad argument values are refused where they enter: the modules' constructors (before the encoder loads),
the encoder's name (a path to nothing is a missing directory, a hub id stays a hub id), and the CLI parser
(no abbreviated options). The console-script side (one line, exit 2, no traceback) is in test_cli_errors.py."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from scpt.encoders import DEFAULT_ENCODER, EncoderLoadError, load_encoder, looks_like_path, resolve_encoder
from scpt.finetune.cli import FinetuneCLI
from scpt.finetune.module import AspectSentimentModule
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.training.cli import parser_kwargs
from scpt.training.optim import check_optimizer_settings

FINETUNE_BAD = [
    ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0, got -0.1"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ({"learning_rate": math.inf}, "learning_rate must be a finite number > 0, got inf"),
    ({"learning_rate": math.nan}, "learning_rate must be a finite number > 0, got nan"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0, got -1.0"),
    ({"weight_decay": math.nan}, "weight_decay must be a finite number >= 0, got nan"),
    ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1), got 1.5"),
    ({"warmup_ratio": -0.1}, "warmup_ratio must be in [0, 1), got -0.1"),
    ({"dropout": 2.0}, "dropout must be in [0, 1), got 2.0"),
    ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ({"dropout": -0.1}, "dropout must be in [0, 1), got -0.1"),
    ({"head_dim": 0}, "head_dim must be >= 1, got 0"),
    ({"head_dim": -4}, "head_dim must be >= 1, got -4"),
]

PRETRAIN_BAD = [
    ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0, got -0.1"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0, got -1.0"),
    ({"warmup_ratio": 1.0}, "warmup_ratio must be in [0, 1), got 1.0"),
    ({"decoder_dropout": 1.5}, "decoder_dropout must be in [0, 1), got 1.5"),
    ({"probe_k": 0}, "probe_k must be >= 1, got 0"),
]


def _ids(cases: list[tuple[dict[str, Any], str]]) -> list[str]:
    return [",".join(f"{key}={value}" for key, value in kwargs.items()) for kwargs, _ in cases]


@pytest.mark.parametrize(("kwargs", "message"), FINETUNE_BAD, ids=_ids(FINETUNE_BAD))
def test_finetune_module_refuses_bad_values_before_loading_the_encoder(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    # the encoder does not exist: the value must be refused before the module tries to load it
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        AspectSentimentModule(encoder=str(tmp_path / "no-encoder"), **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), PRETRAIN_BAD, ids=_ids(PRETRAIN_BAD))
def test_pretrain_module_refuses_bad_values_before_loading_the_encoder(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ContrastivePretrainModule(encoder=str(tmp_path / "no-encoder"), **kwargs)


def test_pretrain_module_refuses_a_mask_probability_of_0_when_an_objective_masks(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"^mask_probability must be in \(0, 1\], got 0.0$"):
        ContrastivePretrainModule(encoder=str(tiny_bert_dir), lambda_map=1.0, mask_probability=0.0)


def test_optimizer_settings_in_range_pass() -> None:
    check_optimizer_settings(warmup_ratio=0.0, learning_rate=1e-4, weight_decay=0.0)
    check_optimizer_settings(warmup_ratio=0.99)  # learning rate and weight decay unchecked when not given


@pytest.mark.parametrize(
    "name", ["/tmp/a", "./a", "../a", "~/a", ".", "..", "runs/restaurants/export", "out/enc/"], ids=repr
)
def test_paths_look_like_paths(name: str) -> None:
    assert looks_like_path(name)


@pytest.mark.parametrize(
    "name", [DEFAULT_ENCODER, "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2", "phase1.ckpt"], ids=repr
)
def test_hub_ids_do_not_look_like_paths(name: str) -> None:
    assert not looks_like_path(name)


def test_a_missing_encoder_directory_says_so(tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent_dir")
    with pytest.raises(EncoderLoadError, match=f"^encoder directory {re.escape(repr(missing))} does not exist$"):
        resolve_encoder(missing)
    with pytest.raises(EncoderLoadError, match="^encoder directory './nonexistent_dir' does not exist$"):
        load_encoder("./nonexistent_dir")


def test_hub_ids_and_the_default_still_resolve() -> None:
    assert resolve_encoder("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert Path(resolve_encoder(DEFAULT_ENCODER), "config.json").is_file()


def test_an_unavailable_hub_id_is_one_encoder_error() -> None:
    # offline (conftest): neither cached nor reachable
    with pytest.raises(EncoderLoadError, match="^encoder 'scpt-tests/no-such-model' cannot be loaded: ") as error:
        load_encoder("scpt-tests/no-such-model")
    assert "\n" not in str(error.value)


def test_lightning_parsers_take_no_abbreviations() -> None:
    kwargs = parser_kwargs(FinetuneCLI)
    assert kwargs["allow_abbrev"] is False
    assert all(kwargs[name]["allow_abbrev"] is False for name in FinetuneCLI.subcommands())
