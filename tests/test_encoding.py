"""Aspect spans -> token masks through offset mappings; truncation keeps the aspect; padding, shared by
both phases."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from scpt.data.corpus import AspectSpan, CorpusExample
from scpt.data.encoding import (
    aspect_tokens,
    collate_pretraining,
    encode_aspect,
    encode_pretraining_example,
    pad_batch,
    pad_encodings,
    tokenize,
)


def marked(tokenizer, encoded) -> list[str]:
    return tokenizer.convert_ids_to_tokens([i for i, m in zip(encoded.input_ids, encoded.aspect_mask) if m])


def span(text: str, term: str) -> tuple[int, int]:
    start = text.index(term)
    return start, start + len(term)


@pytest.mark.parametrize("input_format", ["sentence", "pair"])
def test_multi_word_aspect(minilm_tokenizer, input_format: str) -> None:
    text = "The fish and chips were cold but the wine list was long."
    start, end = span(text, "wine list")
    encoded = encode_aspect(minilm_tokenizer, text, "wine list", start, end, input_format)
    assert marked(minilm_tokenizer, encoded) == ["wine", "list"]
    assert encoded.truncated is False


def test_sub_word_aspect_marks_every_piece(minilm_tokenizer) -> None:
    text = "Their margherita is fine."
    start, end = span(text, "margherita")
    encoded = encode_aspect(minilm_tokenizer, text, "margherita", start, end)
    pieces = minilm_tokenizer.tokenize("margherita")
    assert len(pieces) > 1  # the case is only meaningful if the word splits
    assert marked(minilm_tokenizer, encoded) == pieces


def test_aspect_inside_a_longer_token_marks_that_token(minilm_tokenizer) -> None:
    # SemEval spans can cut into a hyphenated word: "pizza" inside "pizza-lover" marks only "pizza".
    text = "A pizza-lover's dream."
    start, end = span(text, "pizza")
    assert marked(minilm_tokenizer, encode_aspect(minilm_tokenizer, text, "pizza", start, end)) == ["pizza"]


def test_sentence_format_is_single_segment_and_pair_appends_the_term(minilm_tokenizer) -> None:
    text = "Great staff."
    start, end = span(text, "staff")
    single = encode_aspect(minilm_tokenizer, text, "staff", start, end, "sentence")
    pair = encode_aspect(minilm_tokenizer, text, "staff", start, end, "pair")
    assert minilm_tokenizer.convert_ids_to_tokens(single.input_ids) == ["[CLS]", "great", "staff", ".", "[SEP]"]
    assert minilm_tokenizer.convert_ids_to_tokens(pair.input_ids) == [
        "[CLS]",
        "great",
        "staff",
        ".",
        "[SEP]",
        "staff",
        "[SEP]",
    ]
    assert pair.token_type_ids == [0, 0, 0, 0, 0, 1, 1]
    # the mask marks the aspect in the sentence, not the appended term
    assert pair.aspect_mask == [0, 0, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("position", ["start", "middle", "end"])
@pytest.mark.parametrize("input_format", ["sentence", "pair"])
def test_truncation_keeps_the_aspect_and_respects_max_length(
    minilm_tokenizer, position: str, input_format: str
) -> None:
    filler = " ".join(f"word{i}" for i in range(60))
    text = {
        "start": f"waiters were rude {filler}",
        "middle": f"{filler} waiters were rude {filler}",
        "end": f"{filler} waiters were rude",
    }[position]
    start, end = span(text, "waiters")
    encoded = encode_aspect(minilm_tokenizer, text, "waiters", start, end, input_format, max_length=24)
    assert encoded.truncated is True
    assert len(encoded.input_ids) <= 24
    assert marked(minilm_tokenizer, encoded) == minilm_tokenizer.tokenize("waiters")
    tokens = minilm_tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


def test_aspect_longer_than_budget_is_an_error(minilm_tokenizer) -> None:
    term = " ".join(["delicious"] * 20)
    text = f"The {term} was here."
    start, end = span(text, term)
    with pytest.raises(ValueError, match="more than max_length=8"):
        encode_aspect(minilm_tokenizer, text, term, start, end, max_length=8)


@pytest.mark.parametrize(
    "start, end, message",
    [(5, 3, r"span \[5, 3\) is outside"), (0, 99, r"span \[0, 99\) is outside"), (4, 5, "covers no token")],
)
def test_bad_spans_are_errors(minilm_tokenizer, start: int, end: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_aspect(minilm_tokenizer, "Good food", "x", start, end)


def test_unknown_format_is_an_error(minilm_tokenizer) -> None:
    with pytest.raises(ValueError, match="input_format must be one of .* got 'triple'"):
        encode_aspect(minilm_tokenizer, "Good food", "food", 5, 9, "triple")


def test_pad_batch_pads_to_longest(minilm_tokenizer) -> None:
    short = encode_aspect(minilm_tokenizer, "Good food.", "food", 5, 9)
    long = encode_aspect(minilm_tokenizer, "The food was very good indeed.", "food", 4, 8)
    batch = pad_batch([short, long], minilm_tokenizer.pad_token_id)
    width = len(long.input_ids)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].tolist() == [
        [1] * len(short.input_ids) + [0] * (width - len(short.input_ids)),
        [1] * width,
    ]
    assert batch["input_ids"][0, len(short.input_ids) :].eq(minilm_tokenizer.pad_token_id).all()
    assert torch.equal(batch["aspect_mask"][1, :width], torch.tensor(long.aspect_mask))


def test_aspect_tokens_count_only_the_sentence_segment(minilm_tokenizer) -> None:
    text = "Great staff."
    start, end = span(text, "staff")
    input_ids, token_type_ids, offsets, sequence_ids = tokenize(minilm_tokenizer, text, "staff")
    tokens = minilm_tokenizer.convert_ids_to_tokens(input_ids)
    assert tokens == ["[CLS]", "great", "staff", ".", "[SEP]", "staff", "[SEP]"]
    assert token_type_ids == [0, 0, 0, 0, 0, 1, 1]
    assert sequence_ids == [None, 0, 0, 0, None, 1, None]
    assert aspect_tokens(offsets, sequence_ids, start, end) == [2]  # not position 5, the pair segment


@dataclass(frozen=True)
class _Row:
    input_ids: list[int]
    token_type_ids: list[int]
    flags: list[int]


def test_pad_encodings_pads_ids_segments_and_named_masks() -> None:
    rows = [_Row([5, 6, 7], [0, 0, 1], [0, 1, 1]), _Row([8], [0], [1])]
    batch = pad_encodings(rows, pad_token_id=9, masks={"flags": torch.bool})
    assert list(batch) == ["input_ids", "token_type_ids", "attention_mask", "flags"]
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["flags"].dtype == torch.bool and batch["flags"].tolist() == [[False, True, True], [True, False, False]]
    assert all(batch[key].dtype == torch.long for key in ("input_ids", "token_type_ids", "attention_mask"))


def test_both_phases_encode_and_pad_a_sentence_alike(minilm_tokenizer) -> None:
    """Phase 1's and phase 2's encodings of the same (sentence, aspect) pair give the same ids, segments
    and attention mask; each phase adds its own masks."""
    texts = ["The fish was dry.", "Friendly staff but the wine list is short."]
    terms = ["fish", "wine list"]
    phase2, phase1 = [], []
    for label, (text, term) in enumerate(zip(texts, terms)):
        start, end = span(text, term)
        phase2.append(encode_aspect(minilm_tokenizer, text, term, start, end, "pair"))
        aspect = AspectSpan(term, start, end, "negative")
        example = CorpusExample(text, "negative", (aspect,), aspect, f"t:{label}")
        phase1.append(encode_pretraining_example(minilm_tokenizer, example, label, "pair", 128))
    padded2 = pad_batch(phase2, minilm_tokenizer.pad_token_id)
    padded1 = collate_pretraining(phase1, minilm_tokenizer.pad_token_id)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(padded1[key], padded2[key]), key
    assert list(padded1) == ["input_ids", "token_type_ids", "attention_mask", "maskable", "aspect", "labels"]
    assert padded1["maskable"].dtype == torch.bool and padded1["labels"].tolist() == [0, 1]
    # the target aspect is not maskable in pair format (its second segment spells it out) ...
    assert not (padded1["maskable"] & padded2["aspect_mask"].bool()).any()
    # ... and every other sentence token is: segment 0 minus [CLS] and [SEP] minus the target's tokens
    segment0 = (padded2["token_type_ids"].eq(0) & padded2["attention_mask"].bool()).sum()
    assert padded1["maskable"].sum() == segment0 - 2 * len(texts) - padded2["aspect_mask"].sum()
