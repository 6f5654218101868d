"""Phase-1 heads (scpt.pretrain.heads; the MLM-head reader scpt.encoders.load_mlm_head_state) and the
alignment/uniformity metrics (scpt.pretrain.metrics): hand-computed cases, float64 references written
from the equations, and tiny known learning tasks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scpt.encoders import MLM_HEAD_KEYS, load_mlm_head_state
from scpt.pretrain.heads import MaskedTokenHead, ProjectionHead, ReviewDecoder, teacher_forcing_pairs
from scpt.pretrain.masking import IGNORE_INDEX
from scpt.pretrain.metrics import alignment, uniformity

VOCAB, HIDDEN = 12, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _decoder(seed: int = 0, num_layers: int = 2) -> tuple[ReviewDecoder, nn.Embedding]:
    torch.manual_seed(seed)
    embeddings = nn.Embedding(VOCAB, HIDDEN)
    decoder = ReviewDecoder(
        HIDDEN, VOCAB, num_layers=num_layers, num_heads=2, intermediate_size=32, max_positions=16, dropout=0.0
    )
    return decoder, embeddings


def _gelu64(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _layer_norm64(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _mlm_logits64(head: MaskedTokenHead, hidden: Tensor, embedding_weight: Tensor) -> Tensor:
    """``LayerNorm(gelu(W h + c)) · Eᵀ + b`` in float64 from the head's parameters."""
    p = {name: value.detach().double() for name, value in head.named_parameters()}
    u = hidden.double() @ p["dense.weight"].T + p["dense.bias"]
    normed = _layer_norm64(_gelu64(u), p["LayerNorm.weight"], p["LayerNorm.bias"], head.LayerNorm.eps)
    return normed @ embedding_weight.detach().double().T + p["bias"]


def _randomise_(module: nn.Module, seed: int) -> None:
    """Every parameter to N(0, 0.5²) so no LayerNorm weight is 1 and no bias is 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))


# --------------------------------------------------------------------------------------------------
# teacher_forcing_pairs
# --------------------------------------------------------------------------------------------------


def test_teacher_forcing_pairs_docstring_case() -> None:
    """``[CLS] a [MASK] c [SEP]`` (original b) + 2 pads, and an unmasked row with 3 pads."""
    cls, sep, mask, a, b, c, d, e = 101, 102, 103, 1037, 1038, 1039, 2000, 2001
    corrupted = torch.tensor([[cls, a, mask, c, sep, 0, 0], [cls, d, e, sep, 0, 0, 0]])
    original = torch.tensor([[cls, a, b, c, sep, 0, 0], [cls, d, e, sep, 0, 0, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0, 0]])
    inputs, decoder_mask, targets = teacher_forcing_pairs(corrupted, original, attention)
    assert inputs.tolist() == [[cls, a, mask, c, sep, 0], [cls, d, e, sep, 0, 0]]
    assert decoder_mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]
    assert targets.tolist() == [
        [a, b, c, sep, IGNORE_INDEX, IGNORE_INDEX],
        [d, e, sep, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert original[0, 2] == b  # the input is not modified in place
    # no padding: exactly the docstring's "inputs [CLS] a [MASK] c, targets a b c [SEP]"
    inputs, decoder_mask, targets = teacher_forcing_pairs(corrupted[:1, :5], original[:1, :5], attention[:1, :5])
    assert inputs.tolist() == [[cls, a, mask, c]] and targets.tolist() == [[a, b, c, sep]]
    assert decoder_mask.tolist() == [[1, 1, 1, 1]]


# --------------------------------------------------------------------------------------------------
# ReviewDecoder
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_decoder_is_causal(grad: bool) -> None:
    """Eval mode: changing input t leaves positions < t bit-identical and changes position t."""
    decoder, embeddings = _decoder()
    decoder.eval()
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    sentence = torch.randn(2, HIDDEN)
    with torch.set_grad_enabled(grad):
        base = decoder.hidden_states(ids, mask, sentence, embeddings)
        for t in range(6):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 1) % VOCAB
            hidden = decoder.hidden_states(changed, mask, sentence, embeddings)
            assert torch.equal(hidden[:, :t], base[:, :t]), t
            assert float((hidden[:, t] - base[:, t]).detach().abs().amax()) > 1e-3, t


def test_decoder_padding_does_not_change_real_positions() -> None:
    decoder, embeddings = _decoder()
    decoder.eval()
    torch.manual_seed(2)
    ids = torch.randint(0, VOCAB, (2, 5))
    sentence = torch.randn(2, HIDDEN)
    with torch.no_grad():
        alone = decoder.hidden_states(ids, torch.ones(2, 5, dtype=torch.bool), sentence, embeddings)
        # 3 padded positions with arbitrary ids; row 1 also loses its last 2 real tokens to padding
        padded_ids = torch.cat([ids, torch.randint(0, VOCAB, (2, 3))], dim=1)
        padded_mask = torch.tensor([[1] * 5 + [0] * 3, [1] * 3 + [0] * 5], dtype=torch.bool)
        padded = decoder.hidden_states(padded_ids, padded_mask, sentence, embeddings)
        short = decoder.hidden_states(ids[1:, :3], torch.ones(1, 3, dtype=torch.bool), sentence[1:], embeddings)
    torch.testing.assert_close(padded[0, :5], alone[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(padded[1, :3], short[0], rtol=0, atol=1e-6)
    assert torch.isfinite(padded).all()


def test_decoder_forward_loss_and_count_match_hand_computation() -> None:
    """loss = F.cross_entropy over the full logits ``output(hidden) · Eᵀ + b`` (float64 by hand) with
    IGNORE_INDEX; count = number of non-ignored targets."""
    decoder, embeddings = _decoder(seed=3)
    _randomise_(decoder.output, seed=4)
    torch.manual_seed(5)
    ids = torch.randint(0, VOCAB, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], dtype=torch.bool)
    targets = torch.randint(0, VOCAB, (3, 6)).masked_fill(~mask, IGNORE_INDEX)
    targets[0, 2] = IGNORE_INDEX  # an ignored target at a real position too
    sentence = torch.randn(3, HIDDEN)
    loss, count = decoder(ids, mask, targets, sentence, embeddings)
    assert int(count) == 6 + 4 + 2 - 1
    hidden = decoder.hidden_states(ids, mask, sentence, embeddings)  # [3, 6, H]
    logits = _mlm_logits64(decoder.output, hidden.reshape(-1, HIDDEN), embeddings.weight)  # [18, V]
    expected = F.cross_entropy(logits, targets.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)


def _fit(
    decoder: ReviewDecoder,
    embeddings: nn.Embedding,
    sentence: nn.Parameter,
    batch: tuple[Tensor, Tensor, Tensor],
    steps: int,
) -> float:
    optimiser = torch.optim.Adam([*decoder.parameters(), sentence], lr=2e-2)
    for _ in range(steps):
        loss, _ = decoder(*batch[:3], sentence, embeddings)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return loss.item()


def _predictions(
    decoder: ReviewDecoder, embeddings: nn.Embedding, ids: Tensor, mask: Tensor, sentence: Tensor
) -> Tensor:
    decoder.eval()
    with torch.no_grad():
        hidden = decoder.hidden_states(ids, mask, sentence, embeddings)
        return decoder.output(hidden, embeddings.weight).argmax(dim=-1)


def test_decoder_overfits_one_sequence() -> None:
    decoder, embeddings = _decoder(seed=6, num_layers=1)
    ids = torch.tensor([[1, 5, 3, 7, 9]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    targets = torch.tensor([[5, 8, 7, 9, 2]])
    sentence = nn.Parameter(torch.randn(1, HIDDEN))
    loss = _fit(decoder, embeddings, sentence, (ids, mask, targets), steps=60)
    assert loss < 0.05
    assert torch.equal(_predictions(decoder, embeddings, ids, mask, sentence.detach()), targets)


def test_sentence_vector_conditions_the_reconstruction() -> None:
    """Two reviews ``[CLS] a b c [SEP]`` and ``[CLS] a b' c [SEP]`` masked to the same
    ``[CLS] a [MASK] c [SEP]``: the decoder inputs are identical, so only the sentence vector can tell
    which of b (8) / b' (9) to reconstruct. Trained with the sentence vectors as free parameters, the
    decoder gets both right; swapping the two vectors swaps the reconstructions (without them the best
    possible loss would be log(2) · 1/4 ≈ 0.17: one of four targets per row a coin flip)."""
    decoder, embeddings = _decoder(seed=7, num_layers=1)
    cls, sep, mask_id, a, c = 1, 2, 3, 5, 7
    corrupted = torch.tensor([[cls, a, mask_id, c, sep]] * 2)
    original = torch.tensor([[cls, a, 8, c, sep], [cls, a, 9, c, sep]])
    ids, mask, targets = teacher_forcing_pairs(corrupted, original, torch.ones(2, 5, dtype=torch.long))
    assert torch.equal(ids[0], ids[1]) and targets[:, 1].tolist() == [8, 9]
    sentence = nn.Parameter(torch.randn(2, HIDDEN))
    loss = _fit(decoder, embeddings, sentence, (ids, mask, targets), steps=75)
    assert loss < 0.05 < math.log(2) / 4
    predicted = _predictions(decoder, embeddings, ids, mask, sentence.detach())
    assert torch.equal(predicted, targets)
    swapped = _predictions(decoder, embeddings, ids, mask, sentence.detach().flip(0))
    assert swapped[:, 1].tolist() == [9, 8]


def test_decoder_errors_name_the_values() -> None:
    with pytest.raises(ValueError, match="got 0"):
        ReviewDecoder(HIDDEN, VOCAB, num_layers=0, num_heads=2)
    decoder, embeddings = _decoder()
    ids = torch.zeros(1, 17, dtype=torch.long)
    with pytest.raises(ValueError, match="17 positions.*max_positions=16"):
        decoder.hidden_states(ids, torch.ones(1, 17, dtype=torch.bool), torch.zeros(1, HIDDEN), embeddings)


# --------------------------------------------------------------------------------------------------
# MaskedTokenHead, ProjectionHead
# --------------------------------------------------------------------------------------------------


def test_masked_token_head_equation_float64() -> None:
    head = MaskedTokenHead(6, 9, layer_norm_eps=1e-5)
    _randomise_(head, seed=8)
    generator = torch.Generator().manual_seed(9)
    hidden = torch.randn(5, 6, generator=generator)
    embedding = torch.randn(9, 6, generator=generator)
    expected = _mlm_logits64(head, hidden, embedding)
    torch.testing.assert_close(head.double()(hidden.double(), embedding.double()), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(head.float()(hidden, embedding).double(), expected, rtol=1e-5, atol=1e-5)


def test_projection_head_linear() -> None:
    head = ProjectionHead(6, out_dim=4, kind="linear")
    x = torch.randn(3, 6, dtype=torch.float64)
    head = head.double()
    linear = head.net
    assert isinstance(linear, nn.Linear) and tuple(linear.weight.shape) == (4, 6)
    out = head(x)
    assert tuple(out.shape) == (3, 4)
    torch.testing.assert_close(out, x @ linear.weight.T + linear.bias, rtol=0, atol=1e-12)
    assert tuple(ProjectionHead(6)(torch.randn(2, 6)).shape) == (2, 256)  # SCAPT's 256-d default


def test_projection_head_mlp() -> None:
    head = ProjectionHead(6, out_dim=4, kind="mlp").double()
    first, second = head.net[0], head.net[2]
    assert tuple(first.weight.shape) == (6, 6) and tuple(second.weight.shape) == (4, 6)
    x = torch.randn(3, 6, dtype=torch.float64)
    expected = (x @ first.weight.T + first.bias).clamp(min=0) @ second.weight.T + second.bias
    torch.testing.assert_close(head(x), expected, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_projection_head_errors() -> None:
    with pytest.raises(ValueError, match="'cosine'"):
        ProjectionHead(6, kind="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 0"):
        ProjectionHead(6, out_dim=0)


# --------------------------------------------------------------------------------------------------
# load_mlm_head_state
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mlm():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(10)
    config = BertConfig(
        vocab_size=40,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    model = BertForMaskedLM(config).eval()
    _randomise_(model.cls.predictions.transform, seed=11)  # LayerNorm weight != 1, biases != 0
    with torch.no_grad():
        model.cls.predictions.bias.copy_(torch.randn(40))
    return model


def _expected_head(model) -> dict[str, Tensor]:
    predictions = model.cls.predictions
    return {
        "dense.weight": predictions.transform.dense.weight,
        "dense.bias": predictions.transform.dense.bias,
        "LayerNorm.weight": predictions.transform.LayerNorm.weight,
        "LayerNorm.bias": predictions.transform.LayerNorm.bias,
        "bias": predictions.bias,
    }


def _assert_head_state(state: dict[str, Tensor] | None, model) -> None:
    assert state is not None
    expected = _expected_head(model)
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value.detach()), name
    # loaded into MaskedTokenHead with the tied embeddings, it is the checkpoint's MLM head
    head = MaskedTokenHead(8, 40, layer_norm_eps=model.config.layer_norm_eps)
    head.load_state_dict(state)
    hidden = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            head(hidden, model.get_input_embeddings().weight), model.cls(hidden), rtol=1e-5, atol=1e-5
        )


def test_load_mlm_head_from_safetensors(tiny_mlm, tmp_path: Path) -> None:
    tiny_mlm.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    _assert_head_state(load_mlm_head_state(tmp_path), tiny_mlm)


def test_load_mlm_head_from_pytorch_bin(tiny_mlm, tmp_path: Path) -> None:
    """transformers >= 5 writes safetensors even with ``safe_serialization=False``, so the legacy
    ``pytorch_model.bin`` is written as older versions did: ``torch.save`` of the state dict."""
    torch.save(tiny_mlm.state_dict(), tmp_path / "pytorch_model.bin")
    _assert_head_state(load_mlm_head_state(tmp_path), tiny_mlm)


def test_load_mlm_head_from_sharded_safetensors(tiny_mlm, tmp_path: Path) -> None:
    tiny_mlm.save_pretrained(tmp_path, max_shard_size="1KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    _assert_head_state(load_mlm_head_state(tmp_path), tiny_mlm)


@pytest.mark.parametrize("file", ["model.safetensors", "pytorch_model.bin"])
def test_load_mlm_head_with_tf_layer_norm_names(tiny_mlm, tmp_path: Path, file: str) -> None:
    """Regression: checkpoints converted from TF (the hub's bert-base-uncased, .bin and .safetensors)
    name the LayerNorm ``gamma``/``beta``; transformers renames them on load, and so must we."""
    from safetensors.torch import save_file

    state = {
        key: value.detach().clone().contiguous()
        for key, value in tiny_mlm.state_dict().items()
        if key.startswith("cls.predictions.transform") or key == "cls.predictions.bias"
    }
    state = {
        key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
        for key, value in state.items()
    }
    assert (
        "cls.predictions.transform.LayerNorm.gamma" in state
        and "cls.predictions.transform.LayerNorm.weight" not in state
    )
    if file.endswith(".safetensors"):
        save_file(state, str(tmp_path / file))
    else:
        torch.save(state, tmp_path / file)
    _assert_head_state(load_mlm_head_state(tmp_path), tiny_mlm)


def test_load_mlm_head_none_without_head(tiny_bert_dir: Path, tmp_path: Path) -> None:
    assert load_mlm_head_state(tiny_bert_dir) is None  # a BertModel: no cls.* keys
    assert load_mlm_head_state(tmp_path) is None  # no weights at all


def test_load_mlm_head_none_when_incomplete(tiny_mlm, tmp_path: Path) -> None:
    state = {k: v for k, v in tiny_mlm.state_dict().items() if k != "cls.predictions.bias"}
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert load_mlm_head_state(tmp_path) is None
    assert len(MLM_HEAD_KEYS) == 5


# --------------------------------------------------------------------------------------------------
# alignment / uniformity
# --------------------------------------------------------------------------------------------------


def _reference_metrics(z: Tensor, labels: Tensor, alpha: float, t: float) -> tuple[float, float]:
    """O(N² D) float64 reference with explicit pairwise differences (Wang & Isola, eqs. 4-5)."""
    z = z.double()
    diff = z[:, None, :] - z[None, :, :]  # [N, N, D]
    squared = (diff**2).sum(dim=-1)  # [N, N]
    n = z.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    positives = [float(squared[i, j]) ** (alpha / 2) for i, j in pairs if labels[i] == labels[j]]
    align = sum(positives) / len(positives) if positives else float("nan")
    uniform = math.log(sum(math.exp(-t * float(squared[i, j])) for i, j in pairs) / len(pairs))
    return align, uniform


def test_metrics_hand_case() -> None:
    """Unit vectors at 0°, 90°, 180°: squared distances (0,1) = 2, (0,2) = 4, (1,2) = 2."""
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    assert float(alignment(z, labels)) == pytest.approx(2.0, abs=1e-12)  # the one positive pair (0, 1)
    assert float(alignment(z, labels, alpha=1.0)) == pytest.approx(math.sqrt(2.0), abs=1e-12)
    expected = math.log((math.exp(-4.0) + math.exp(-8.0) + math.exp(-4.0)) / 3)
    assert float(uniformity(z)) == pytest.approx(expected, abs=1e-12)
    assert float(uniformity(z, t=1.0)) == pytest.approx(math.log((2 * math.exp(-2.0) + math.exp(-4.0)) / 3), abs=1e-12)
    # labels [0, 1, 0]: the positive pair is (0, 2) at squared distance 4
    assert float(alignment(z, torch.tensor([0, 1, 0]))) == pytest.approx(4.0, abs=1e-12)
    assert alignment(z, labels).dtype == torch.float64 and uniformity(z).dtype == torch.float64


def test_alignment_nan_without_positive_pairs() -> None:
    z = torch.eye(3, dtype=torch.float64)
    assert math.isnan(float(alignment(z, torch.tensor([0, 1, 2]))))
    assert math.isnan(float(alignment(z[:1], torch.tensor([0]))))


def test_uniformity_needs_two_rows() -> None:
    with pytest.raises(ValueError, match="got 1"):
        uniformity(torch.ones(1, 3))
    with pytest.raises(ValueError, match="got 0"):
        uniformity(torch.ones(0, 3))


@pytest.mark.parametrize(("alpha", "t"), [(2.0, 2.0), (1.0, 2.0), (0.5, 1.0)])
def test_metrics_match_pairwise_reference(alpha: float, t: float) -> None:
    generator = torch.Generator().manual_seed(12)
    z = F.normalize(torch.randn(9, 5, generator=generator, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, 3, (9,), generator=generator)
    align, uniform = _reference_metrics(z, labels, alpha, t)
    assert float(alignment(z, labels, alpha=alpha)) == pytest.approx(align, abs=1e-12)
    assert float(uniformity(z, t=t)) == pytest.approx(uniform, abs=1e-12)
    # float32 input: the Gram-matrix distances agree with the float64 reference to float32 precision
    assert float(alignment(z.float(), labels, alpha=alpha)) == pytest.approx(align, abs=1e-5)
    assert float(uniformity(z.float(), t=t)) == pytest.approx(uniform, abs=1e-5)


def test_alignment_of_identical_vectors_is_zero_not_nan() -> None:
    """Duplicates: the Gram form can give a tiny negative squared distance; it is clamped, so alpha = 1
    gives 0, not NaN."""
    z = F.normalize(torch.tensor([[0.3, -1.7, 0.2], [0.3, -1.7, 0.2], [1.0, 0.0, 0.0]]), dim=-1)
    value = alignment(z, torch.tensor([4, 4, 5]), alpha=1.0)
    assert math.isfinite(float(value)) and float(value) == pytest.approx(0.0, abs=1e-3)
