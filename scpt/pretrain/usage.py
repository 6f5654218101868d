"""What ``scpt pretrain --help`` says: kept free of torch and Lightning, so that help is instant."""

from __future__ import annotations

PROG = "scpt pretrain"

DESCRIPTION = (
    "Phase 1: supervised contrastive pre-training of a text encoder on aspect-labelled sentences; the "
    "last checkpoint feeds 'scpt finetune' (--model.encoder CKPT) or 'scpt export'."
)

#: Subcommand -> one line of help (only those that work: pre-training has no test or predict step).
SUBCOMMANDS: dict[str, str] = {
    "fit": "pre-train; prints the last checkpoint",
    "validate": "compute the held-out metrics of a checkpoint (--ckpt_path)",
}

EPILOG = (
    "Examples:\n"
    "  scpt pretrain fit --config configs/pretrain/restaurants.yaml\n"
    "  scpt pretrain fit --config configs/pretrain/restaurants.yaml --trainer.fast_dev_run true"
)
