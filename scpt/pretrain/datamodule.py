"""Phase 1 data: a labelled sentence corpus, tokenised for SCL + masked aspect prediction + reconstruction.

Sources (any combination, concatenated in this order):

- ``in_domain``: the train splits of SemEval-2014 / MAMS (:func:`scpt.data.corpus.in_domain_corpus`),
  de-duplicated against every dev and test split; no file to prepare.
- ``files``: JSON lines (``text``, ``label``, optional ``aspects``) or SCAPT's Yelp/Amazon JSON
  (``file_format: scapt``), with an optional ``label_map``. Their lines are sentence-level examples,
  so they need ``input_format: sentence``.

Labels are checked against a declared class set, ``classes``: given, or the label map's values, or
(JSON lines without a map) :data:`scpt.data.absa.POLARITIES`. A label outside it is an error naming
file, line and the known classes (``on_error: skip``: skipped and counted in the printed corpus
summary), compared case-sensitively (:mod:`scpt.data.corpus`, "Labels and the class set").

A seeded ``val_size`` of the corpus is held out (never trained on) for the representation metrics,
and a seeded ``probe_size`` sample of the training examples is the probe's labelled reference (the
second validation dataloader; :data:`scpt.pretrain.module.PROBE_REFERENCE`).
Training batches come from :class:`~scpt.data.sampling.ClassGroupBatchSampler`: every class in a
batch has at least ``min_per_class`` examples, so every anchor has a positive. Under W processes (DDP)
``batch_size`` is per process: each step's global batch of W · ``batch_size`` has the guarantee, and
each rank holds an equal part of it (docs/design.md §3).

Per example the tokens that masked aspect prediction may mask (``maskable``: real sentence tokens)
and those it masks first (``aspect``: the tokens of the sentence's aspect terms) are marked by
:func:`scpt.data.encoding.encode_pretraining_example`, phase 2's encoding path. With
``input_format: pair`` (per-aspect labels: ``[CLS] sentence [SEP] aspect [SEP]``, phase 2's input)
the target aspect's own tokens in the sentence are not maskable: the second segment spells them out,
so predicting them would be copying.
"""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from scpt.data.absa import DATASETS, DEV_FRACTION, POLARITIES, SPLIT_SEED, DataDirError
from scpt.data.corpus import (
    LABEL_MODES,
    SCAPT_LABEL_MAP,
    CorpusExample,
    CorpusReport,
    deduplicate,
    eval_sentences,
    in_domain_corpus,
    read_jsonl_corpus,
    read_scapt_json,
    resolve_classes,
)
from scpt.data.encoding import (
    INPUT_FORMATS,
    InputFormat,
    PretrainEncoding,
    collate_pretraining,
    encode_pretraining_example,
)
from scpt.data.long_tail import long_tailed_subset
from scpt.data.sampling import ClassGroupBatchSampler, SequentialBatchSampler
from scpt.encoders import DEFAULT_ENCODER, load_tokenizer
from scpt.training.sharding import process_split, shared_seed, training_loader


def file_classes(
    file_format: Literal["jsonl", "scapt"], label_map: dict[str, str] | None, classes: list[str] | None
) -> tuple[str, ...]:
    """The declared class set of ``data.files``: ``classes``, else the label map's values (SCAPT's default
    map for ``file_format: scapt``), else :data:`~scpt.data.absa.POLARITIES`.

    Raises:
        ValueError: invalid ``classes``, or a label map renaming to a name outside them.
    """
    if label_map is None and file_format == "scapt":
        label_map = dict(SCAPT_LABEL_MAP)
    resolved = resolve_classes(classes, label_map)
    return POLARITIES if resolved is None else resolved


class ContrastivePretrainDataModule(pl.LightningDataModule):
    """Train and held-out loaders for phase 1.

    Args:
        encoder: whose tokenizer to use; the CLI links it to ``--model.encoder``.
        in_domain: datasets whose train splits form the in-domain corpus (``[]`` or ``null``: none).
        files: corpus files (JSON lines or SCAPT JSON, see ``file_format``).
        file_format: ``"jsonl"`` or ``"scapt"``.
        label_map: raw label -> class name, for ``files`` (SCAPT's default maps 1/5 to negative/positive).
        classes: the class names every label of ``files`` (after ``label_map``) must be, case-sensitively.
            ``null``: the label map's values, or :data:`~scpt.data.absa.POLARITIES` for JSON lines without one.
        on_error: a malformed line, or one whose label is not in ``classes``, is an error (``"raise"``) or is
            skipped and counted (``"skip"``).
        label_mode: in-domain labels per aspect (``"aspect"``) or per sentence where all aspects agree.
        input_format: ``"pair"`` (sentence, aspect: phase 2's input; needs per-aspect examples) or ``"sentence"``.
        data_dir, dev_fraction, split_seed: where the ABSA data lies and phase 2's dev split (the
            in-domain corpus excludes every dev and test sentence, so these must match phase 2's).
        dedup_against: datasets whose dev and test sentences are removed from the corpus, in-domain
            and files alike (``null``: all of them; ``[]``: no de-duplication).
        max_length: token budget.
        batch_size: training batch size per process (``eval_batch_size`` for the held-out set).
        min_per_class: m, the fewest examples of a class present in a training batch (under W processes:
            in the global batch, whose features the contrastive loss gathers).
        class_balanced: draw classes equally often (re-drawing small classes).
        val_size: held-out examples for the representation metrics (drawn with ``split_seed``); 0 for none.
        probe_size: training examples the held-out probe compares against (drawn with ``split_seed``;
            0: no probe).
        imbalance_ratio: subsample the training split to a long tail with this head-to-tail ratio
            (exponential profile, :mod:`scpt.data.long_tail`; drawn with ``split_seed``); the held-out
            slice keeps the corpus's own distribution, so per-class probe scores stay comparable. ``None``: all.
        imbalance_order: the classes from head to tail (``None``: by decreasing frequency in the training split).
        limit: use only the first ``limit`` corpus examples (smoke tests, quick runs).
    """

    def __init__(
        self,
        encoder: str = DEFAULT_ENCODER,
        in_domain: list[str] | None = None,
        files: list[str] | None = None,
        file_format: Literal["jsonl", "scapt"] = "jsonl",
        label_map: dict[str, str] | None = None,
        classes: list[str] | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        label_mode: Literal["aspect", "sentence"] = "aspect",
        input_format: InputFormat = "pair",
        data_dir: str | None = None,
        dev_fraction: float = DEV_FRACTION,
        split_seed: int = SPLIT_SEED,
        dedup_against: list[str] | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        min_per_class: int = 2,
        class_balanced: bool = False,
        val_size: int = 512,
        probe_size: int = 2048,
        imbalance_ratio: float | None = None,
        imbalance_order: list[str] | None = None,
        limit: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not in_domain and not files:
            raise ValueError("no corpus: set data.in_domain (e.g. [restaurants, mams]) and/or data.files")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
        for name in in_domain or []:
            if name not in DATASETS:
                raise ValueError(f"data.in_domain: unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        if input_format == "pair" and (files or label_mode == "sentence"):
            what = (
                f"data.files ({', '.join(files)}) hold" if files else "data.label_mode 'sentence' gives"
            ) + " sentence-level examples"
            raise ValueError(
                f"{what}, but data.input_format 'pair' encodes (sentence, aspect) and needs one labelled target "
                "aspect per example (data.in_domain with data.label_mode 'aspect'); "
                "use --data.input_format sentence"
            )
        if imbalance_ratio is not None and not imbalance_ratio >= 1:
            raise ValueError(f"data.imbalance_ratio must be >= 1 (head size / tail size), got {imbalance_ratio}")
        if imbalance_order is not None and imbalance_ratio is None:
            raise ValueError("data.imbalance_order is set but data.imbalance_ratio is not: set both, or neither")
        self.file_classes = file_classes(file_format, label_map, classes)
        if in_domain and classes is not None and set(POLARITIES) - set(self.file_classes):
            raise ValueError(
                f"data.classes {classes} lacks {sorted(set(POLARITIES) - set(self.file_classes))}, which "
                f"data.in_domain labels carry (polarities {list(POLARITIES)})"
            )
        self.save_hyperparameters()
        self.tokenizer = None
        self.class_names: tuple[str, ...] = ()
        self.report = CorpusReport()
        self.encoded: dict[str, list[PretrainEncoding]] = {}

    def read_corpus(self) -> list[CorpusExample]:
        """The corpus examples, in source order, before the held-out split."""
        hp = self.hparams
        examples: list[CorpusExample] = []
        if hp.in_domain:
            examples += in_domain_corpus(
                hp.in_domain,
                data_dir=hp.data_dir,
                label_mode=hp.label_mode,
                dedup_against=hp.dedup_against,
                dev_fraction=hp.dev_fraction,
                split_seed=hp.split_seed,
                report=self.report,
            )
        reader = read_scapt_json if hp.file_format == "scapt" else read_jsonl_corpus
        from_files: list[CorpusExample] = []
        for path in hp.files or []:
            from_files += reader(
                path, label_map=hp.label_map, on_error=hp.on_error, report=self.report, classes=self.file_classes
            )
        if from_files and hp.dedup_against != []:
            try:
                held_out = eval_sentences(hp.dedup_against, hp.data_dir, hp.dev_fraction, hp.split_seed)
            except (DataDirError, FileNotFoundError) as error:
                raise ValueError(
                    f"data.files are de-duplicated against the ABSA dev/test splits, which cannot be read: {error}\n"
                    "Point data.data_dir (or SCPT_DATA_DIR) at them, or set data.dedup_against: [] to skip this."
                ) from error
            from_files = deduplicate(from_files, held_out, self.report)
        examples += from_files
        return examples[: hp.limit] if hp.limit else examples

    def setup(self, stage: str | None = None) -> None:
        if self.encoded:
            return
        hp = self.hparams
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(hp.encoder)
        corpus = self.read_corpus()
        names = sorted({e.label for e in corpus})
        # ABSA polarities keep their phase 2 order; other label sets are sorted
        self.class_names = tuple(p for p in POLARITIES if p in names) + tuple(n for n in names if n not in POLARITIES)
        index = {name: i for i, name in enumerate(self.class_names)}
        encoded = []
        for example in corpus:
            try:
                encoded.append(
                    encode_pretraining_example(
                        self.tokenizer, example, index[example.label], hp.input_format, hp.max_length
                    )
                )
            except ValueError as error:
                message = str(error)
                raise ValueError(
                    message if message.startswith(example.source) else f"{example.source}: {message}"
                ) from None
        generator = torch.Generator().manual_seed(hp.split_seed)
        order = torch.randperm(len(encoded), generator=generator).tolist()
        held_out = set(order[: min(hp.val_size, len(encoded) // 2)])
        self.encoded = {
            "train": [e for i, e in enumerate(encoded) if i not in held_out],
            "val": [e for i, e in enumerate(encoded) if i in held_out],
        }
        if hp.imbalance_ratio is not None:
            self.encoded["train"] = self._long_tailed(self.encoded["train"])
        train = self.encoded["train"]
        probe = torch.randperm(len(train), generator=generator)[: hp.probe_size if held_out else 0]
        self.encoded["probe"] = [train[i] for i in sorted(probe.tolist())]
        counts = {name: sum(e.label == i for e in self.encoded["train"]) for i, name in enumerate(self.class_names)}
        print(
            f"[pretrain] corpus: {self.report.summary()}; train {len(self.encoded['train'])} "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}), held out {len(self.encoded['val'])}"
        )

    def _long_tailed(self, train: list[PretrainEncoding]) -> list[PretrainEncoding]:
        """``train`` subsampled to ``imbalance_ratio`` over ``imbalance_order`` (head first)."""
        hp = self.hparams
        order = None
        if hp.imbalance_order is not None:
            unknown = [name for name in hp.imbalance_order if name not in self.class_names]
            if unknown or len(set(hp.imbalance_order)) != len(hp.imbalance_order):
                raise ValueError(
                    f"data.imbalance_order {list(hp.imbalance_order)}: "
                    + (f"unknown classes {unknown}" if unknown else "a class is named twice")
                    + f"; the corpus's classes are {list(self.class_names)}"
                )
            order = [self.class_names.index(name) for name in hp.imbalance_order]
        kept = long_tailed_subset([e.label for e in train], hp.imbalance_ratio, order, seed=hp.split_seed)
        return [train[i] for i in kept]

    def _collate(self, examples: list[PretrainEncoding]) -> dict[str, Tensor]:
        return collate_pretraining(examples, self.tokenizer.pad_token_id)

    def _collate_indexed(self, pairs: list[tuple[int, PretrainEncoding]]) -> dict[str, Tensor]:
        """A held-out batch with each example's position in its split (``index`` [B]), by which the
        validation puts the rows gathered from every process back in the single-process order."""
        batch = self._collate([example for _, example in pairs])
        batch["index"] = torch.tensor([index for index, _ in pairs], dtype=torch.long)
        return batch

    def train_dataloader(self) -> DataLoader:
        """Class-group batches; under W processes each rank takes its equal part of every global batch of
        W · ``batch_size`` (:class:`~scpt.data.sampling.ClassGroupBatchSampler`), from a seed they share."""
        trainer = getattr(self, "trainer", None)
        num_replicas, rank = process_split(trainer)
        train = self.encoded["train"]
        seed = shared_seed(trainer)
        sampler = ClassGroupBatchSampler(
            [e.label for e in train],
            self.hparams.batch_size,
            self.hparams.min_per_class,
            self.hparams.class_balanced,
            lengths=[len(e.input_ids) for e in train],
            num_replicas=num_replicas,
            rank=rank,
            seed=seed,
        )
        return training_loader(train, sampler, self._collate, self.hparams.num_workers, trainer, seed)

    def val_dataloader(self) -> list[DataLoader]:
        """The held-out slice and, when ``probe_size > 0``, the probe's reference sample of training examples;
        under W processes rank r takes batches r, r + W, ... of each (every example once)."""
        num_replicas, rank = process_split(getattr(self, "trainer", None))
        splits = ["val", "probe"] if self.encoded["probe"] else ["val"]
        loaders = []
        for split in splits:
            examples = list(enumerate(self.encoded[split]))
            sampler = SequentialBatchSampler(
                len(examples), self.hparams.eval_batch_size, num_replicas=num_replicas, rank=rank
            )
            loaders.append(
                DataLoader(
                    examples,
                    batch_sampler=sampler,
                    collate_fn=self._collate_indexed,
                    num_workers=self.hparams.num_workers,
                )
            )
        return loaders


__all__ = ["ContrastivePretrainDataModule", "PretrainEncoding", "collate_pretraining", "encode_pretraining_example"]
