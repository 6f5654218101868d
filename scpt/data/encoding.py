"""The one encoding path of both phases: text -> token ids with per-token masks -> padded batches.

The aspect is located by its character span through the fast tokenizer's offset mapping, so any HF
fast tokenizer works (WordPiece, BPE, SentencePiece) and sub-word or multi-word aspects are marked
exactly. Two input formats:

- ``"sentence"`` (SCAPT): ``[CLS] sentence [SEP]``; the aspect is known only through its token mask.
- ``"pair"``: ``[CLS] sentence [SEP] aspect [SEP]``; the mask still marks the aspect inside the sentence.

A sentence longer than ``max_length`` is cut to a character window around the aspect (at token
boundaries) and re-tokenised, so the aspect always stays inside the model's input.

- Phase 2 encodes an aspect instance with :func:`encode_aspect` (:class:`EncodedAspect`) and pads
  with :func:`pad_batch`.
- Phase 1 encodes a corpus example with :func:`encode_pretraining_example` (:class:`PretrainEncoding`:
  which tokens masked aspect prediction may mask, and which it masks first) and pads with
  :func:`collate_pretraining`.

Both build on :func:`tokenize`, :func:`aspect_tokens` and :func:`window_around_aspect`, and both
pad through :func:`pad_encodings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from scpt.data.corpus import CorpusExample

InputFormat = Literal["sentence", "pair"]
INPUT_FORMATS: tuple[str, ...] = ("sentence", "pair")


@dataclass(frozen=True)
class EncodedAspect:
    """One tokenised instance.

    Attributes:
        input_ids: token ids with special tokens.
        token_type_ids: segment ids (all 0 for ``"sentence"``).
        aspect_mask: 1 on the sentence tokens that overlap the aspect's character span.
        truncated: whether the sentence was cut to fit ``max_length``.
    """

    input_ids: list[int]
    token_type_ids: list[int]
    aspect_mask: list[int]
    truncated: bool


def tokenize(
    tokenizer: PreTrainedTokenizerBase, text: str, second: str | None = None
) -> tuple[list[int], list[int], list[tuple[int, int]], list[int | None]]:
    """Tokenise ``text`` (and the optional second segment ``second``) without truncation.

    Returns:
        ``(input_ids, token_type_ids, offsets, sequence_ids)``, one entry per token, special tokens
        included: ``offsets`` are character spans into their own segment (``(0, 0)`` for special
        tokens), ``sequence_ids`` is 0 for the sentence, 1 for the second segment and ``None`` for
        special tokens. ``token_type_ids`` is all 0 for tokenizers that have none.
    """
    encoding = tokenizer(text, second, return_offsets_mapping=True, return_token_type_ids=True, truncation=False)
    token_type_ids = encoding.get("token_type_ids") or [0] * len(encoding["input_ids"])
    return encoding["input_ids"], token_type_ids, encoding["offset_mapping"], encoding.sequence_ids()


def aspect_tokens(offsets: list[tuple[int, int]], sequence_ids: list[int | None], start: int, end: int) -> list[int]:
    """Positions of sentence tokens (sequence 0) whose character span overlaps ``[start, end)``.

    ``offsets`` and ``sequence_ids`` are those :func:`tokenize` returns; tokens of the second segment
    and special tokens are never counted, so in ``pair`` format only the aspect inside the sentence is.
    """
    return [
        i
        for i, ((lo, hi), seq) in enumerate(zip(offsets, sequence_ids))
        if seq == 0 and hi > lo and lo < end and hi > start
    ]


def encode_aspect(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    term: str,
    start: int,
    end: int,
    input_format: InputFormat = "sentence",
    max_length: int = 128,
) -> EncodedAspect:
    """Tokenise ``text`` and mark the tokens of the aspect ``text[start:end]``.

    Raises:
        ValueError: unknown format, a span outside the text, an aspect that covers no token, or an
            aspect (plus special tokens and the pair segment) longer than ``max_length``.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if not (0 <= start < end <= len(text)):
        raise ValueError(f"aspect span [{start}, {end}) is outside the text of length {len(text)}: {text!r}")
    second = term if input_format == "pair" else None
    input_ids, token_type_ids, offsets, sequence_ids = tokenize(tokenizer, text, second)
    aspect = aspect_tokens(offsets, sequence_ids, start, end)
    if not aspect:
        raise ValueError(f"aspect {text[start:end]!r} at [{start}, {end}) covers no token of {text!r}")
    truncated = False
    if len(input_ids) > max_length:
        truncated = True
        text, start, end = window_around_aspect(
            tokenizer, text, second, start, end, max_length, offsets, sequence_ids, aspect
        )
        input_ids, token_type_ids, offsets, sequence_ids = tokenize(tokenizer, text, second)
        aspect = aspect_tokens(offsets, sequence_ids, start, end)
    aspect_set = set(aspect)
    aspect_mask = [1 if i in aspect_set else 0 for i in range(len(input_ids))]
    return EncodedAspect(input_ids, token_type_ids, aspect_mask, truncated)


def window_around_aspect(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    second: str | None,
    start: int,
    end: int,
    max_length: int,
    offsets: list[tuple[int, int]],
    sequence_ids: list[int | None],
    aspect: list[int],
) -> tuple[str, int, int]:
    """Cut ``text`` to a window of whole tokens around ``[start, end)`` that tokenises to ``max_length``.

    Args:
        tokenizer, text, second: as for :func:`tokenize` (``second`` is kept whole in every window).
        start, end: the aspect's character span in ``text``.
        max_length: the token budget, special tokens and ``second`` included.
        offsets, sequence_ids: the full text's :func:`tokenize` output (from the caller, not recomputed).
        aspect: the aspect's token positions, :func:`aspect_tokens` of that tokenisation.

    Returns:
        ``(window, start, end)``: the window's text and the aspect span within it. The window starts as
        the largest token range centred on the aspect that fits, and shrinks one token from the longer
        side until the re-tokenised window fits (re-tokenising a cut text can change a token at the cut).

    Raises:
        ValueError: the aspect alone (with special tokens and ``second``) is longer than ``max_length``.
    """
    sentence = [i for i, seq in enumerate(sequence_ids) if seq == 0 and offsets[i][1] > offsets[i][0]]
    overhead = len(offsets) - len(sentence)  # special tokens and the pair segment
    first, last = sentence.index(aspect[0]), sentence.index(aspect[-1])
    budget = max_length - overhead
    if last - first + 1 > budget:
        raise ValueError(
            f"aspect {text[start:end]!r} needs {last - first + 1} tokens plus {overhead} special/pair tokens, "
            f"more than max_length={max_length}"
        )
    spare = budget - (last - first + 1)
    lo = max(0, first - spare // 2)
    hi = min(len(sentence) - 1, lo + budget - 1)
    lo = max(0, hi - budget + 1)
    while True:
        char_lo, char_hi = offsets[sentence[lo]][0], offsets[sentence[hi]][1]
        window = text[char_lo:char_hi]
        if len(tokenize(tokenizer, window, second)[0]) <= max_length:
            return window, start - char_lo, end - char_lo
        if first - lo >= hi - last and lo < first:
            lo += 1
        elif hi > last:
            hi -= 1
        else:  # only the aspect itself is left and it still does not fit
            raise ValueError(f"aspect {text[start:end]!r} does not fit in max_length={max_length} tokens")


class _Encoding(Protocol):
    """What :func:`pad_encodings` reads: token ids and segment ids of one sequence."""

    input_ids: list[int]
    token_type_ids: list[int]


def pad_encodings(
    encodings: Sequence[_Encoding], pad_token_id: int, masks: Mapping[str, torch.dtype] | None = None
) -> dict[str, Tensor]:
    """Right-pad a list of encodings to the longest one; both phases pad through this function.

    Args:
        encodings: objects with ``input_ids`` and ``token_type_ids`` (lists of ints), and every
            per-token field named in ``masks``.
        pad_token_id: the id written past the end of shorter sequences.
        masks: per-token fields to pad with 0 (``False``), each with the dtype of its tensor.

    Returns:
        ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 on real tokens; all int64), then the
        ``masks`` fields in their order: each ``[B, T]``.
    """
    width = max(len(e.input_ids) for e in encodings)
    size = len(encodings)
    batch = {
        "input_ids": torch.full((size, width), pad_token_id, dtype=torch.long),
        "token_type_ids": torch.zeros(size, width, dtype=torch.long),
        "attention_mask": torch.zeros(size, width, dtype=torch.long),
    }
    for name, dtype in (masks or {}).items():
        batch[name] = torch.zeros(size, width, dtype=dtype)
    for row, e in enumerate(encodings):
        n = len(e.input_ids)
        batch["input_ids"][row, :n] = torch.tensor(e.input_ids)
        batch["token_type_ids"][row, :n] = torch.tensor(e.token_type_ids)
        batch["attention_mask"][row, :n] = 1
        for name, dtype in (masks or {}).items():
            batch[name][row, :n] = torch.tensor(getattr(e, name), dtype=dtype)
    return batch


def pad_batch(encoded: list[EncodedAspect], pad_token_id: int) -> dict[str, Tensor]:
    """Right-pad phase 2 encodings to the longest one.

    Returns:
        ``input_ids``, ``token_type_ids``, ``attention_mask``, ``aspect_mask``: each ``[B, T]`` int64.
    """
    return pad_encodings(encoded, pad_token_id, {"aspect_mask": torch.long})


# --------------------------------------------------------------------------------------------------
# Phase 1: corpus examples for masked aspect prediction
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainEncoding:
    """One tokenised pre-training example.

    Attributes:
        input_ids, token_type_ids: as in :class:`EncodedAspect`.
        maskable: 1 on the tokens masked aspect prediction may mask (real sentence tokens; in ``pair``
            format not the target aspect's own tokens, which the second segment spells out).
        aspect: 1 on the maskable tokens of the sentence's aspect terms (masked first).
        label: the class index.
    """

    input_ids: list[int]
    token_type_ids: list[int]
    maskable: list[int]
    aspect: list[int]
    label: int


def encode_pretraining_example(
    tokenizer: PreTrainedTokenizerBase, example: CorpusExample, label: int, input_format: InputFormat, max_length: int
) -> PretrainEncoding:
    """Tokenise ``example`` and mark its maskable and aspect tokens.

    ``pair`` needs a target aspect (per-aspect examples); ``sentence`` encodes the sentence alone.
    A sentence longer than ``max_length`` is cut: around the target aspect (pair), or at its end.

    Raises:
        ValueError: ``pair`` input for an example without a target aspect, or a sentence that cannot fit.
    """
    text = example.text
    target = example.target if input_format == "pair" else None
    if input_format == "pair" and target is None:
        raise ValueError(f"{example.source}: input_format 'pair' needs per-aspect examples (label_mode 'aspect')")
    second = target.term if target is not None else None
    spans = [(span.start, span.end) for span in example.aspects]
    target_span = (target.start, target.end) if target is not None else None
    input_ids, token_type_ids, offsets, sequence_ids = tokenize(tokenizer, text, second)
    if len(input_ids) > max_length:
        if target_span is not None:
            target_tokens = aspect_tokens(offsets, sequence_ids, *target_span)
            window, start, end = window_around_aspect(
                tokenizer, text, second, *target_span, max_length, offsets, sequence_ids, target_tokens
            )
            shift = target_span[0] - start
            target_span = (start, end)
        else:
            window, shift = _truncate_end(tokenizer, text, max_length, offsets, sequence_ids), 0
        spans = [(lo - shift, hi - shift) for lo, hi in spans if lo - shift >= 0 and hi - shift <= len(window)]
        text = window
        input_ids, token_type_ids, offsets, sequence_ids = tokenize(tokenizer, text, second)
    maskable = {i for i, ((lo, hi), seq) in enumerate(zip(offsets, sequence_ids)) if seq == 0 and hi > lo}
    if target_span is not None:
        maskable -= set(aspect_tokens(offsets, sequence_ids, *target_span))
    aspect = {i for lo, hi in spans for i in aspect_tokens(offsets, sequence_ids, lo, hi)} & maskable
    n = len(input_ids)
    return PretrainEncoding(
        input_ids,
        token_type_ids,
        [1 if i in maskable else 0 for i in range(n)],
        [1 if i in aspect else 0 for i in range(n)],
        label,
    )


def _truncate_end(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    max_length: int,
    offsets: list[tuple[int, int]],
    sequence_ids: list[int | None],
) -> str:
    """The longest prefix of ``text`` (whole tokens) that tokenises to at most ``max_length`` ids."""
    sentence = [i for i, seq in enumerate(sequence_ids) if seq == 0 and offsets[i][1] > offsets[i][0]]
    keep = max_length - (len(offsets) - len(sentence))
    while keep > 0:
        prefix = text[: offsets[sentence[keep - 1]][1]]
        if len(tokenize(tokenizer, prefix, None)[0]) <= max_length:
            return prefix
        keep -= 1
    raise ValueError(f"no prefix of {text[:60]!r}... fits in max_length={max_length}")


def collate_pretraining(examples: list[PretrainEncoding], pad_token_id: int) -> dict[str, Tensor]:
    """Right-pad phase 1 encodings to the longest one.

    Returns:
        ``input_ids``, ``token_type_ids``, ``attention_mask`` (int64), ``maskable``, ``aspect`` (bool),
        each ``[B, T]``, and ``labels`` [B].
    """
    batch = pad_encodings(examples, pad_token_id, {"maskable": torch.bool, "aspect": torch.bool})
    batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
    return batch


__all__ = [
    "INPUT_FORMATS",
    "EncodedAspect",
    "InputFormat",
    "PretrainEncoding",
    "aspect_tokens",
    "collate_pretraining",
    "encode_aspect",
    "encode_pretraining_example",
    "pad_batch",
    "pad_encodings",
    "tokenize",
    "window_around_aspect",
]
