"""Test-suite settings: nothing reaches a hub, W&B stays local, data comes from SCPT_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

# Set before anything imports transformers / huggingface_hub / wandb.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The product reads its data location from configuration or SCPT_DATA_DIR; the tests default it to
# the shared copy that sits beside the checkout on the project's machines and in CI.
_shared_data = REPO_ROOT.parent / "shared" / "data"
if "SCPT_DATA_DIR" not in os.environ and _shared_data.is_dir():
    os.environ["SCPT_DATA_DIR"] = str(_shared_data)
