"""Aspect-first MAP masking (scpt.pretrain.masking, docs/design.md §4): the budget, the aspect-first rule,
the uniformity of the random part and BERT's 80/10/10 corruption, pinned with hand values and with
frequencies over fixed seeds (tolerances stated in binomial standard errors)."""

from __future__ import annotations

import math

import pytest
import torch

from scpt.pretrain.masking import IGNORE_INDEX, aspect_first_mask, mask_budget

MASK_ID = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(lengths: list[int], aspects: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS] w_1 .. w_M [SEP] pad ..`` rows: ids, maskable (the M sentence tokens) and aspect flags.

    ``aspects[i]`` lists sentence-token indices (0-based within the M tokens) of row i's aspect.
    Sentence ids are 10, 11, ... so none of them is the mask id (3); [CLS] = 1, [SEP] = 2, pad = 0.
    """
    batch = len(lengths)
    length = torch.tensor(lengths).unsqueeze(1)  # [B, 1]
    position = torch.arange(width).expand(batch, width)  # [B, T]
    maskable = (position >= 1) & (position <= length)
    ids = torch.where(maskable, position + 9, torch.zeros_like(position))
    ids = ids.masked_fill(position == 0, 1).masked_fill(position == length + 1, 2)
    aspect = torch.zeros(batch, width, dtype=torch.bool)
    rows = [row for row, tokens in enumerate(aspects) for _ in tokens]
    columns = [1 + token for tokens in aspects for token in tokens]
    aspect[rows, columns] = True
    return ids, maskable, aspect


def _within(observed: float, expected: float, trials: int, num_se: float = 4.0) -> bool:
    """|observed - expected| <= num_se binomial standard errors of a proportion over ``trials``."""
    se = math.sqrt(expected * (1 - expected) / trials)
    return abs(observed - expected) <= num_se * se


# --------------------------------------------------------------------------------------------------
# mask_budget
# --------------------------------------------------------------------------------------------------


def test_mask_budget_hand_values() -> None:
    counts = torch.tensor([0, 1, 2, 3, 10, 20, 30, 100])
    # 0 -> 0; 0.15/0.3/0.45 -> min 1; 1.5 -> 2 (half up); 3.0 -> 3; 4.5 -> 5 (half up); 15.0 -> 15
    assert mask_budget(counts, 0.15).tolist() == [0, 1, 1, 1, 2, 3, 5, 15]


def test_mask_budget_matches_exact_integer_rounding() -> None:
    """floor(15 M / 100 + 1/2) in exact integer arithmetic, min 1 for M >= 1: no float error at any half."""
    counts = torch.arange(0, 1025)
    expected = [0] + [max(1, (15 * m + 50) // 100) for m in range(1, 1025)]
    assert mask_budget(counts, 0.15).tolist() == expected


# --------------------------------------------------------------------------------------------------
# the aspect-first rule
# --------------------------------------------------------------------------------------------------

# (M, aspect token indices): budgets 3, 3, 3, 2, 1, 5, 2 -> rows 0-2, 5 under/at budget, rows 3, 4, 6 over
_ROWS = [
    (20, [4]),
    (20, [0, 1, 2]),  # exactly the budget
    (20, []),
    (10, [1, 3, 5, 7]),
    (3, [0, 2]),
    (30, [10, 11, 12]),
    (10, list(range(10))),  # every token is an aspect token
]


def test_aspect_first_rule_on_fixed_seeds() -> None:
    lengths = [m for m, _ in _ROWS]
    ids, maskable, aspect = _batch(lengths, [a for _, a in _ROWS], width=34)
    budgets = [max(1, (15 * m + 50) // 100) for m in lengths]
    for seed in range(50):
        out = aspect_first_mask(ids, maskable, aspect, MASK_ID, vocab_size=100, generator=_generator(seed))
        assert not (out.selected & ~maskable).any(), "a special/padding position was selected"
        for row, (_, aspect_tokens) in enumerate(_ROWS):
            selected = out.selected[row]
            assert int(selected.sum()) == budgets[row], (seed, row)
            if len(aspect_tokens) <= budgets[row]:
                assert bool(selected[aspect[row]].all()), (seed, row)
            else:
                assert bool((selected <= aspect[row]).all()), (seed, row)  # selected ⊆ aspect


def test_aspect_flags_outside_maskable_are_ignored() -> None:
    """Aspect bits on [CLS]/[SEP]/padding change nothing: same seed -> bit-identical output."""
    ids, maskable, aspect = _batch([m for m, _ in _ROWS], [a for _, a in _ROWS], width=34)
    for seed in range(5):
        clean = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(seed))
        noisy = aspect_first_mask(ids, maskable, aspect | ~maskable, MASK_ID, 100, generator=_generator(seed))
        for a, b in zip(clean, noisy):
            assert torch.equal(a, b)


def test_empty_row_selects_nothing() -> None:
    ids = torch.tensor([[1, 2, 0, 0], [1, 10, 2, 0]])
    maskable = torch.tensor([[False] * 4, [False, True, False, False]])
    out = aspect_first_mask(ids, maskable, torch.ones_like(maskable), MASK_ID, 100, generator=_generator(0))
    assert out.selected.tolist() == [[False] * 4, [False, True, False, False]]
    assert out.labels.tolist() == [[IGNORE_INDEX] * 4, [IGNORE_INDEX, 10, IGNORE_INDEX, IGNORE_INDEX]]


# --------------------------------------------------------------------------------------------------
# uniformity of the random part
# --------------------------------------------------------------------------------------------------


def test_random_part_is_uniform_over_non_aspect_tokens() -> None:
    """20k rows, M = 20 (budget 3), one aspect token: the aspect is always selected and each of the
    19 others with frequency (3 - 1) / 19, within 4 binomial standard errors; rows of M = 10
    (budget 2) without aspect in the same batch: 2 / 10 each."""
    rows = 20_000
    half = rows // 2
    ids, maskable, aspect = _batch([20] * half + [10] * half, [[7]] * half + [[]] * half, width=22)
    out = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(1234))
    freq = out.selected.double().mean(dim=0)
    freq_a = out.selected[:half].double().mean(dim=0)
    freq_b = out.selected[half:].double().mean(dim=0)
    assert freq_a[1 + 7] == 1.0
    for position in range(1, 21):
        if position != 1 + 7:
            assert _within(float(freq_a[position]), 2 / 19, half), (position, float(freq_a[position]))
    for position in range(1, 11):
        assert _within(float(freq_b[position]), 2 / 10, half), (position, float(freq_b[position]))
    assert float(freq[0]) == 0.0 and float(freq_a[21]) == 0.0 and float(freq_b[11:].sum()) == 0.0


def test_aspect_subset_is_uniform_when_over_budget() -> None:
    """M = 20 (budget 3), 5 aspect tokens: each aspect token selected with frequency 3/5, others never."""
    rows = 20_000
    aspect_tokens = [2, 5, 6, 11, 19]
    ids, maskable, aspect = _batch([20] * rows, [aspect_tokens] * rows, width=22)
    out = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(99))
    freq = out.selected.double().mean(dim=0)
    for token in range(20):
        if token in aspect_tokens:
            assert _within(float(freq[1 + token]), 3 / 5, rows), (token, float(freq[1 + token]))
        else:
            assert float(freq[1 + token]) == 0.0


# --------------------------------------------------------------------------------------------------
# 80/10/10
# --------------------------------------------------------------------------------------------------


def _replacement_shares(
    vocab_size: int, seed: int, rows: int = 20_000, **fractions: float
) -> tuple[float, float, float, int]:
    """(share of selected -> mask id, -> another id, unchanged) over ``rows`` rows of M = 10 (budget 2)."""
    ids, maskable, aspect = _batch([10] * rows, [[]] * rows, width=12)
    out = aspect_first_mask(ids, maskable, aspect, MASK_ID, vocab_size, generator=_generator(seed), **fractions)
    original, corrupted = ids[out.selected], out.input_ids[out.selected]
    n = original.numel()
    to_mask = float((corrupted == MASK_ID).double().mean())
    unchanged = float((corrupted == original).double().mean())
    other = float(((corrupted != MASK_ID) & (corrupted != original)).double().mean())
    assert int(corrupted.min()) >= 0 and int(corrupted.max()) < vocab_size
    return to_mask, other, unchanged, n


def test_80_10_10_shares() -> None:
    """Random replacements are uniform over [0, V) (as in BERT), so with V = 50 a 'random' draw hits the
    mask id or the original token with probability 1/V each: expected shares 0.8 + 0.1/V (mask),
    0.1 (V - 2)/V (another id), 0.1 + 0.1/V (unchanged); within 4 binomial standard errors of 40k."""
    v = 50
    to_mask, other, unchanged, n = _replacement_shares(v, seed=7)
    assert n == 40_000
    assert _within(to_mask, 0.8 + 0.1 / v, n), to_mask
    assert _within(other, 0.1 * (v - 2) / v, n), other
    assert _within(unchanged, 0.1 + 0.1 / v, n), unchanged


def test_custom_fractions_are_respected() -> None:
    v = 1000
    to_mask, other, unchanged, n = _replacement_shares(v, seed=8, mask_fraction=0.5, random_fraction=0.5)
    assert _within(to_mask, 0.5 + 0.5 / v, n), to_mask
    assert _within(other, 0.5 * (v - 2) / v, n), other
    assert unchanged < 0.003  # only random draws equal to the original: expected 0.5/V = 0.0005
    # the deterministic ends: everything masked / nothing changed
    assert _replacement_shares(v, seed=9, rows=500, mask_fraction=1.0, random_fraction=0.0)[0] == 1.0
    assert _replacement_shares(v, seed=9, rows=500, mask_fraction=0.0, random_fraction=0.0)[2] == 1.0


def test_random_replacements_cover_the_vocabulary_uniformly() -> None:
    """random_fraction = 1: each of V = 20 ids appears with frequency 1/20 among the replacements."""
    rows, v = 20_000, 20
    ids, maskable, aspect = _batch([10] * rows, [[]] * rows, width=12)
    out = aspect_first_mask(
        ids, maskable, aspect, MASK_ID, v, mask_fraction=0.0, random_fraction=1.0, generator=_generator(3)
    )
    counts = torch.bincount(out.input_ids[out.selected], minlength=v)
    n = int(out.selected.sum())
    assert counts.numel() == v
    for token in range(v):
        assert _within(int(counts[token]) / n, 1 / v, n), (token, int(counts[token]))


# --------------------------------------------------------------------------------------------------
# labels, determinism, errors
# --------------------------------------------------------------------------------------------------


def test_labels_and_unselected_positions() -> None:
    ids, maskable, aspect = _batch([m for m, _ in _ROWS], [a for _, a in _ROWS], width=34)
    out = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(5))
    assert torch.equal(out.labels[out.selected], ids[out.selected])
    assert bool((out.labels[~out.selected] == IGNORE_INDEX).all())
    assert torch.equal(out.input_ids[~out.selected], ids[~out.selected])
    assert out.input_ids.dtype == ids.dtype and out.labels.dtype == ids.dtype and out.selected.dtype == torch.bool


def test_hand_case_with_all_selected_masked() -> None:
    """p = 1, mask_fraction = 1: every maskable token becomes [MASK]; specials and padding stay."""
    ids = torch.tensor([[1, 10, 11, 12, 2, 0]])
    maskable = torch.tensor([[False, True, True, True, False, False]])
    out = aspect_first_mask(
        ids,
        maskable,
        torch.zeros_like(maskable),
        MASK_ID,
        100,
        mask_probability=1.0,
        mask_fraction=1.0,
        random_fraction=0.0,
    )
    assert out.input_ids.tolist() == [[1, 3, 3, 3, 2, 0]]
    assert out.labels.tolist() == [[IGNORE_INDEX, 10, 11, 12, IGNORE_INDEX, IGNORE_INDEX]]


def test_same_seed_same_output() -> None:
    ids, maskable, aspect = _batch([m for m, _ in _ROWS], [a for _, a in _ROWS], width=34)
    first = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(11))
    second = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(11))
    other = aspect_first_mask(ids, maskable, aspect, MASK_ID, 100, generator=_generator(12))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first.selected, other.selected)


def test_shape_mismatch_names_the_shapes() -> None:
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(2, 4\)"):
        aspect_first_mask(ids, torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.bool), MASK_ID, 100)
    with pytest.raises(ValueError, match=r"aspect \(3, 5\)"):
        aspect_first_mask(ids, torch.ones(2, 5, dtype=torch.bool), torch.zeros(3, 5, dtype=torch.bool), MASK_ID, 100)


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"mask_probability": 0.0}, "0.0"),
        ({"mask_probability": 1.5}, "1.5"),
        ({"mask_probability": float("nan")}, "nan"),
        ({"mask_fraction": -0.1}, "-0.1"),
        ({"random_fraction": -0.2}, "-0.2"),
        ({"mask_fraction": 0.6, "random_fraction": 0.5}, "0.6"),
        ({"mask_fraction": float("nan")}, "nan"),  # regression: NaN fractions used to pass silently
        ({"random_fraction": float("nan")}, "nan"),
    ],
)
def test_bad_probabilities_name_the_value(kwargs: dict[str, float], shown: str) -> None:
    ids = torch.zeros(1, 4, dtype=torch.long)
    flags = torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=shown):
        aspect_first_mask(ids, flags, flags, MASK_ID, 100, **kwargs)
