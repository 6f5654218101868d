"""Tokenisation of aspect instances: token ids plus a mask of the aspect's tokens.

The aspect is located by its character span through the fast tokenizer's offset mapping, so any HF
fast tokenizer works (WordPiece, BPE, SentencePiece) and sub-word or multi-word aspects are marked
exactly. Two input formats:

- ``"sentence"`` (SCAPT): ``[CLS] sentence [SEP]``; the aspect is known only through its token mask.
- ``"pair"``: ``[CLS] sentence [SEP] aspect [SEP]``; the mask still marks the aspect inside the sentence.

A sentence longer than ``max_length`` is cut to a character window around the aspect (at token
boundaries) and re-tokenised, so the aspect always stays inside the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

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


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, text: str, term: str | None
) -> tuple[list[int], list[int], list[tuple[int, int]], list[int | None]]:
    encoding = tokenizer(text, term, return_offsets_mapping=True, return_token_type_ids=True, truncation=False)
    token_type_ids = encoding.get("token_type_ids") or [0] * len(encoding["input_ids"])
    return encoding["input_ids"], token_type_ids, encoding["offset_mapping"], encoding.sequence_ids()


def _aspect_tokens(offsets: list[tuple[int, int]], sequence_ids: list[int | None], start: int, end: int) -> list[int]:
    """Positions of sentence tokens (sequence 0) whose character span overlaps ``[start, end)``."""
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
    input_ids, token_type_ids, offsets, sequence_ids = _tokenize(tokenizer, text, second)
    aspect = _aspect_tokens(offsets, sequence_ids, start, end)
    if not aspect:
        raise ValueError(f"aspect {text[start:end]!r} at [{start}, {end}) covers no token of {text!r}")
    truncated = False
    if len(input_ids) > max_length:
        truncated = True
        text, start, end = _window_around_aspect(
            tokenizer, text, second, start, end, max_length, offsets, sequence_ids, aspect
        )
        input_ids, token_type_ids, offsets, sequence_ids = _tokenize(tokenizer, text, second)
        aspect = _aspect_tokens(offsets, sequence_ids, start, end)
    aspect_set = set(aspect)
    aspect_mask = [1 if i in aspect_set else 0 for i in range(len(input_ids))]
    return EncodedAspect(input_ids, token_type_ids, aspect_mask, truncated)


def _window_around_aspect(
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

    ``offsets``, ``sequence_ids`` and ``aspect`` are the full text's tokenisation (from the caller).
    Returns the window's text and the aspect span within it. The window starts as the largest token
    range centred on the aspect that fits, and shrinks one token from the longer side until the
    re-tokenised window fits (re-tokenising a cut text can change a token at the cut).
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
        if len(_tokenize(tokenizer, window, second)[0]) <= max_length:
            return window, start - char_lo, end - char_lo
        if first - lo >= hi - last and lo < first:
            lo += 1
        elif hi > last:
            hi -= 1
        else:  # only the aspect itself is left and it still does not fit
            raise ValueError(f"aspect {text[start:end]!r} does not fit in max_length={max_length} tokens")


def pad_batch(encoded: list[EncodedAspect], pad_token_id: int) -> dict[str, Tensor]:
    """Right-pad a list of encodings to the longest one.

    Returns:
        ``input_ids``, ``token_type_ids``, ``attention_mask``, ``aspect_mask``: each ``[B, T]`` int64.
    """
    width = max(len(e.input_ids) for e in encoded)
    batch = {
        "input_ids": torch.full((len(encoded), width), pad_token_id, dtype=torch.long),
        "token_type_ids": torch.zeros(len(encoded), width, dtype=torch.long),
        "attention_mask": torch.zeros(len(encoded), width, dtype=torch.long),
        "aspect_mask": torch.zeros(len(encoded), width, dtype=torch.long),
    }
    for row, e in enumerate(encoded):
        n = len(e.input_ids)
        batch["input_ids"][row, :n] = torch.tensor(e.input_ids)
        batch["token_type_ids"][row, :n] = torch.tensor(e.token_type_ids)
        batch["attention_mask"][row, :n] = 1
        batch["aspect_mask"][row, :n] = torch.tensor(e.aspect_mask)
    return batch
