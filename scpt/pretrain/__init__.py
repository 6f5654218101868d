"""Phase 1: SCAPT-style supervised contrastive pre-training (docs/design.md §4).

- :mod:`scpt.pretrain.masking`: aspect-first token masking for masked aspect prediction.
- :mod:`scpt.pretrain.heads`: projection head, MLM head, review-reconstruction decoder.
- :mod:`scpt.pretrain.metrics`: alignment and uniformity of held-out representations.
- :mod:`scpt.pretrain.module`, :mod:`scpt.pretrain.datamodule`, :mod:`scpt.pretrain.cli`: the Lightning parts.

The corpora (JSON lines, SCAPT's Yelp/Amazon JSON, the in-domain ABSA corpus) and their encoding are
data code: :mod:`scpt.data.corpus`, :mod:`scpt.data.encoding`.
"""
