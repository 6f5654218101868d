"""What ``scpt finetune --help`` says: kept free of torch and Lightning, so that help is instant.

:mod:`scpt.cli` prints it for ``scpt finetune --help``; :mod:`scpt.finetune.cli` and
:mod:`scpt.finetune.seeds` use the same words in their own help.
"""

from __future__ import annotations

PROG = "scpt finetune"

DESCRIPTION = (
    "Phase 2: fine-tune an encoder for aspect sentiment classification (SemEval-2014 Restaurant and "
    "Laptop, MAMS), evaluate it, or apply it to your own sentences."
)

#: Subcommand -> one line of help, in the order the help lists them.
SUBCOMMANDS: dict[str, str] = {
    "fit": "fine-tune on the train split, keeping the best checkpoint on dev",
    "validate": "evaluate a checkpoint (--ckpt_path) on the dev split",
    "test": "evaluate a checkpoint (--ckpt_path) on the test split",
    "predict": "label the aspects of your own sentences (--data.predict_file, --data.predict_output)",
    "seeds": "fit and test with several seeds, and tabulate mean ± std",
}

PREDICT_INPUT = (
    "UTF-8 text, one JSON object per line: the sentence as 'text' and the aspect either as 'aspect' "
    "(a term that occurs in the text; its first occurrence is used) or as 'from'/'to' character offsets "
    "into the text. Blank lines are skipped. Example: "
    '{"text": "The staff was rude.", "aspect": "staff"}'
)

PREDICT_OUTPUT = (
    "JSON lines file that predict writes (must not exist): per input, its line number, text, aspect, "
    "offsets, predicted label and class probabilities"
)

SEEDS_OVERRIDES = (
    "Lightning CLI arguments for every seed (e.g. --trainer.max_epochs 2 --data.batch_size 16) go after "
    "scpt finetune seeds' own options, optionally after a '--' separator."
)

EPILOG = (
    f"predict input (--data.predict_file): {PREDICT_INPUT}\n\n"
    f"seeds: {SEEDS_OVERRIDES}\n\n"
    "Examples:\n"
    "  scpt finetune fit --config configs/finetune/restaurants.yaml\n"
    "  scpt finetune test --config configs/finetune/restaurants.yaml --ckpt_path BEST.ckpt\n"
    "  scpt finetune predict --config configs/finetune/restaurants.yaml --ckpt_path BEST.ckpt \\\n"
    "      --data.predict_file in.jsonl --data.predict_output out.jsonl\n"
    "  scpt finetune seeds --config configs/finetune/restaurants.yaml --seeds 1 2 3 --output-dir runs/seeds"
)
