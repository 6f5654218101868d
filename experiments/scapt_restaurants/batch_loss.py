"""The contrastive loss of a pre-trained phase-1 checkpoint over its in-batch contrast set only (no queue).

Phase 1 trains SupCon against the batch plus a 4,096-entry queue, whose collapsed value is log 4,127
and whose floor is near log |P(a)| (docs/design.md §7). This script reads the same kind of loss the
way the issue's collapse study did: training batches of 32 from the class-group sampler (the data
seed), SupCon L_out at the run's temperature without the base-temperature factor, one view,
features from the checkpoint's encoder, pooling and projection head, and compares it with log 31 (collapsed) and
the floor of each batch:

    run=runs/pipeline/restaurants_quiet
    python experiments/scapt_restaurants/batch_loss.py $run/pretrain/restaurants/version_0/checkpoints/last.ckpt \\
        $run/encoder [--batches 100] [--eval]

Dropout is on (as in training) unless ``--eval``. Prints the mean loss, collapsed value and floor over
the batches, the ratio loss / collapsed, and the distance travelled (collapsed − loss) / (collapsed − floor).
"""

from __future__ import annotations

import argparse

import torch

from scpt.encoders import load_encoder, sentence_vector
from scpt.losses import SupConLoss
from scpt.pretrain.datamodule import ContrastivePretrainDataModule
from scpt.pretrain.heads import ProjectionHead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="phase-1 last.ckpt (its projection head is read from it)")
    parser.add_argument("encoder", help="the encoder exported from that checkpoint (scpt export)")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--eval", action="store_true", help="dropout off")
    args = parser.parse_args()
    torch.manual_seed(0)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    described = checkpoint["scpt_objective"]  # the objective's description (ContrastiveObjective.hparams)
    prefix = "objectives.scl.projection."
    weights = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    temperature = float(described["loss_temperature"])
    encoder = load_encoder(args.encoder)
    projection = ProjectionHead(
        encoder.config.hidden_size, described["projection_dim"], described["projection"], described["projection_norm"]
    )
    projection.load_state_dict(weights)
    projection.train(not args.eval)
    encoder.train(not args.eval)
    loss_fn = SupConLoss(temperature=temperature)  # scale 1: nats, comparable with log 31
    data = ContrastivePretrainDataModule(in_domain=["restaurants", "mams"], min_per_class=4, batch_size=32)
    data.setup("fit")
    losses, collapsed, floors = [], [], []
    with torch.no_grad():
        for index, batch in enumerate(data.train_dataloader()):
            if index == args.batches:
                break
            hidden = encoder(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            ).last_hidden_state
            features = projection(sentence_vector(hidden, batch["attention_mask"], described["pooling"]))  # [32, D]
            losses.append(float(loss_fn(features, batch["labels"])))
            collapsed.append(loss_fn.last_stats.collapsed_loss)
            floors.append(float(loss_fn.last_stats.floor_loss))
    n = len(losses)
    loss, top, floor = sum(losses) / n, sum(collapsed) / n, sum(floors) / n
    print(f"tau {temperature}, {n} batches of 32, dropout {'off' if args.eval else 'on'}")
    print(f"loss {loss:.4f}  collapsed {top:.4f}  floor {floor:.4f}")
    travelled = (top - loss) / (top - floor)
    print(f"loss / collapsed {loss / top:.3f}  floor / collapsed {floor / top:.3f}  travelled {travelled:.3f}")


if __name__ == "__main__":
    main()
