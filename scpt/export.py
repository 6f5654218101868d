"""``scpt export <checkpoint> <directory>``: an scpt checkpoint's encoder as an HF directory.

The directory holds ``save_pretrained`` weights and config, the tokenizer, and ``scpt_export.json``
(where it came from), so ``AutoModel.from_pretrained(directory)`` and ``--model.encoder directory``
both work anywhere, without the checkpoint. The directory is written under a temporary name and
renamed when complete; an existing directory is never overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from scpt.errors import UserError
from scpt.training.files import corrupt_entry

DESCRIPTION = (
    "Write the encoder of a checkpoint from 'scpt pretrain fit' (or 'scpt finetune fit') as a Hugging Face "
    "directory: weights, config, tokenizer and scpt_export.json (where it came from). The directory must "
    "not exist; it appears only when complete."
)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _apply_umask(directory: Path) -> None:
    """Give ``directory`` and its files the modes a plain ``mkdir`` / ``open`` would (0777 / 0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        os.chmod(path, 0o666 & ~umask)


def export_encoder(checkpoint: str | Path, directory: str | Path) -> Path:
    """Write the encoder (weights only) and tokenizer of ``checkpoint`` to a new ``directory``.

    Raises:
        FileExistsError: ``directory`` exists.
        UserError: ``checkpoint`` is missing, a directory or not a PyTorch checkpoint.
        EncoderLoadError: the checkpoint does not hold an scpt encoder.
    """
    from scpt.encoders import OBJECTIVE_RECORD_KEY, encoder_from_checkpoint, load_tokenizer, read_checkpoint

    checkpoint, directory = Path(checkpoint), Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists; refusing to overwrite it (remove it or choose another directory)")
    if checkpoint.is_dir():
        raise UserError(
            f"{checkpoint} is a directory, not a checkpoint file; "
            "give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'"
        )
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    if not zipfile.is_zipfile(checkpoint):  # torch.save writes a zip archive; anything else cannot be one
        raise UserError(
            f"{checkpoint} is not a checkpoint (not a file written by torch.save); "
            "give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'"
        )
    damaged = corrupt_entry(checkpoint)
    if damaged is not None:
        raise UserError(f"{checkpoint} is corrupt: its entry {damaged} fails its CRC check (copy it again)")
    model = encoder_from_checkpoint(checkpoint)
    tokenizer = load_tokenizer(str(checkpoint))
    stored = read_checkpoint(checkpoint)
    hyperparameters = stored.get("hyper_parameters", {})
    created = [path for path in directory.parents if not path.exists()]  # removed again if the export fails
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        provenance = {
            "checkpoint": str(checkpoint.resolve()),
            "checkpoint_sha256": file_sha256(checkpoint),
            "hyper_parameters": {
                k: v for k, v in hyperparameters.items() if isinstance(v, (str, int, float, bool, type(None)))
            },
            "objective": stored.get(OBJECTIVE_RECORD_KEY, {}),  # phase 1: loss class, temperature, queue, weights
        }
        (staging / "scpt_export.json").write_text(json.dumps(provenance, indent=2) + "\n")
        _apply_umask(staging)  # mkdtemp makes the directory private (0700); an exported model is meant to be shared
        os.rename(staging, directory)  # atomic on one file system; fails if directory appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for path in created:  # innermost first, while empty
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    return directory


def main(argv: list[str]) -> int:
    """``scpt export CHECKPOINT DIRECTORY``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="scpt export", description=DESCRIPTION)
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by scpt pretrain (or scpt finetune)")
    parser.add_argument("directory", type=Path, help="the HF directory to create (must not exist)")
    args = parser.parse_args(argv)
    out = export_encoder(args.checkpoint, args.directory)
    print(f"exported the encoder of {args.checkpoint} to {out}")
    return 0
