"""Phase 1 module: the objective is the stated weighted sum, heads come and go with their weights,
views, losses by class path, logging, and the batch encoding of the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import TEXTS, needs_data
from scpt.data.corpus import AspectSpan, CorpusExample
from scpt.losses import DSCLLoss, SimCSELoss, SupConLoss
from scpt.pretrain.datamodule import ContrastivePretrainDataModule, collate_pretraining, encode_pretraining_example
from scpt.pretrain.module import ContrastivePretrainModule


def _batch(tokenizer, texts_labels: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Sentence-format batch; the first word of each text is its aspect."""
    encoded = []
    for text, label in texts_labels:
        term = text.split()[0]
        example = CorpusExample(text, "x", (AspectSpan(term, 0, len(term)),), None, "test")
        encoded.append(encode_pretraining_example(tokenizer, example, label, "sentence", 32))
    return collate_pretraining(encoded, tokenizer.pad_token_id)


@pytest.fixture()
def batch(minilm_tokenizer) -> dict[str, torch.Tensor]:
    return _batch(minilm_tokenizer, TEXTS)


def _module(tiny_bert_dir: Path, **kwargs) -> ContrastivePretrainModule:
    torch.manual_seed(0)
    kwargs.setdefault("decoder_layers", 1)
    return ContrastivePretrainModule(encoder=str(tiny_bert_dir), **kwargs)


def test_total_is_the_weighted_sum_of_the_terms(tiny_bert_dir: Path, batch) -> None:
    module = _module(tiny_bert_dir, lambda_scl=2.0, lambda_map=0.5, lambda_rr=3.0)
    result = module.compute_terms(batch)
    scl, map_loss, rr = (result.terms[name].loss for name in ("scl", "map", "rr"))
    torch.testing.assert_close(result.total, 2.0 * scl + 0.5 * map_loss + 3.0 * rr)
    # MAP and RR start near log(vocab): the heads predict over the whole vocabulary
    vocab = module.encoder.config.vocab_size
    assert abs(map_loss.item() - torch.log(torch.tensor(float(vocab))).item()) < 1.5
    assert abs(rr.item() - torch.log(torch.tensor(float(vocab))).item()) < 1.5


def test_scl_term_is_the_loss_on_the_projected_cls_vector(tiny_bert_dir: Path, batch) -> None:
    module = _module(tiny_bert_dir, lambda_map=0.0, lambda_rr=0.0).eval()  # eval: no dropout, no masking
    result = module.compute_terms(batch)
    hidden = module.encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).last_hidden_state
    features = module.objectives["scl"].projection(hidden[:, 0]).unsqueeze(1)  # [B, 1, D]
    expected = SupConLoss(temperature=0.07)(features, batch["labels"])
    torch.testing.assert_close(result.terms["scl"].loss, expected)
    torch.testing.assert_close(result.total, 2.0 * expected)
    # labels 0,1,0,1,2,0: the one example of class 2 has no positive
    assert result.terms["scl"].metrics["valid_anchor_fraction"] == pytest.approx(5 / 6)
    assert result.terms["scl"].metrics["collapsed"] == pytest.approx(torch.log(torch.tensor(5.0)).item())


def test_a_zero_weight_removes_its_head(tiny_bert_dir: Path, batch) -> None:
    module = _module(tiny_bert_dir, lambda_map=0.0, lambda_rr=0.0)
    assert list(module.objectives) == ["scl"]
    assert not any(key.startswith(("objectives.map.", "objectives.rr.")) for key in module.state_dict())
    assert list(module.compute_terms(batch).terms) == ["scl"]
    only_rr = _module(tiny_bert_dir, lambda_scl=0.0, lambda_map=0.0)
    assert list(only_rr.objectives) == ["rr"] and only_rr.contrastive is None
    assert list(only_rr.compute_terms(batch).terms) == ["rr"]
    with pytest.raises(ValueError, match="weight 0"):
        _module(tiny_bert_dir, lambda_scl=0.0, lambda_map=0.0, lambda_rr=0.0)
    with pytest.raises(ValueError, match="lambda_map must be >= 0"):
        _module(tiny_bert_dir, lambda_map=-1.0)


def test_map_and_rr_gradients_reach_the_tied_input_embeddings(tiny_bert_dir: Path, batch) -> None:
    for weights in ({"lambda_scl": 0.0, "lambda_rr": 0.0}, {"lambda_scl": 0.0, "lambda_map": 0.0}):
        module = _module(tiny_bert_dir, **weights)
        module.compute_terms(batch).total.backward()
        grad = module.encoder.get_input_embeddings().weight.grad
        assert grad is not None and grad.abs().sum() > 0
        # the vocabulary rows of words that never occur get gradient only through the tied output layer
        unused = torch.ones(grad.shape[0], dtype=torch.bool)
        unused[batch["input_ids"].unique()] = False
        assert grad[unused].abs().sum() > 0


def test_views_differ_by_dropout_only(tiny_bert_dir: Path, batch) -> None:
    captured = {}

    class Capture(SimCSELoss):
        def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None, **extras) -> torch.Tensor:
            captured["features"] = features
            return features.sum()

    module = _module(tiny_bert_dir, lambda_map=0.0, lambda_rr=0.0, num_views=2, loss=Capture(temperature=0.05))
    module.train()
    module.compute_terms(batch)
    features = captured["features"]
    assert features.shape == (6, 2, 256)
    assert not torch.allclose(features[:, 0], features[:, 1])  # dropout noise
    module.eval()
    module.compute_terms(batch)
    torch.testing.assert_close(captured["features"][:, 0], captured["features"][:, 1])


def test_simcse_needs_two_views_and_gets_them(tiny_bert_dir: Path, batch) -> None:
    with pytest.raises(ValueError, match="num_views >= 2"):
        _module(tiny_bert_dir, loss=SimCSELoss())
    module = _module(
        tiny_bert_dir, lambda_map=0.0, lambda_rr=0.0, num_views=2, loss=SimCSELoss(temperature=0.05)
    ).eval()
    result = module.compute_terms(batch)
    hidden = module.encoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).last_hidden_state
    z = module.objectives["scl"].projection(hidden[:, 0])
    torch.testing.assert_close(result.terms["scl"].loss, SimCSELoss(temperature=0.05)(torch.stack([z, z], dim=1)))


def test_loss_settings_become_flat_hyperparameters(tiny_bert_dir: Path) -> None:
    module = _module(tiny_bert_dir, loss=DSCLLoss(temperature=0.1, alpha=0.25), queue_size=64)
    described = module.describe()
    assert described["loss"] == "scpt.losses.DSCLLoss"
    assert described["loss_temperature"] == 0.1 and described["loss_alpha"] == 0.25
    assert described["lambda_scl"] == 2.0 and described["queue_size"] == 64 and described["decoder_layers"] == 1
    default = _module(tiny_bert_dir)  # SCAPT's loss when none is given
    assert default.describe()["loss"] == "scpt.losses.SupConLoss" and default.describe()["loss_temperature"] == 0.07
    assert default.describe()["loss_variant"] == "out"
    # the checkpoint's hyperparameters are the constructor's primitives: no loss object, no derived keys
    assert "loss" not in module.hparams and "loss_temperature" not in module.hparams
    assert all(isinstance(v, (str, int, float, bool, type(None), list)) for v in module.hparams.values())


def test_map_head_starts_from_a_checkpoint_mlm_head(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    config = BertConfig.from_pretrained(tiny_bert_dir)
    torch.manual_seed(1)
    mlm = BertForMaskedLM(config)
    mlm.save_pretrained(tmp_path / "mlm")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp_path / "mlm")
    module = ContrastivePretrainModule(encoder=str(tmp_path / "mlm"), decoder_layers=1)
    head = module.objectives["map"]
    assert head.head_source == "checkpoint MLM head"
    torch.testing.assert_close(head.head.dense.weight, mlm.cls.predictions.transform.dense.weight)
    torch.testing.assert_close(head.head.bias, mlm.cls.predictions.bias)
    assert _module(tiny_bert_dir).objectives["map"].head_source.startswith("random")


def test_pair_encoding_marks_maskable_and_aspect_tokens(minilm_tokenizer) -> None:
    text = "the fish was great but the service slow"
    fish, service = AspectSpan("fish", 4, 8, "positive"), AspectSpan("service", 27, 34, "negative")
    example = CorpusExample(text, "positive", (fish, service), fish, "test:1")
    encoded = encode_pretraining_example(minilm_tokenizer, example, 0, "pair", 64)
    tokens = minilm_tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert tokens == ["[CLS]", "the", "fish", "was", "great", "but", "the", "service", "slow", "[SEP]", "fish", "[SEP]"]
    # maskable: sentence tokens except the target aspect (spelled out in the second segment)
    assert encoded.maskable == [0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert encoded.aspect == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]  # the other aspect goes first
    assert encoded.token_type_ids == [0] * 10 + [1] * 2
    sentence = encode_pretraining_example(minilm_tokenizer, example, 0, "sentence", 64)
    assert sentence.maskable == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert sentence.aspect == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="needs per-aspect examples"):
        encode_pretraining_example(
            minilm_tokenizer, CorpusExample(text, "positive", (fish,), None, "f:3"), 0, "pair", 64
        )


def test_long_sentences_are_cut_around_the_target(minilm_tokenizer) -> None:
    text = " ".join(f"w{i}" for i in range(80)) + " the curry was superb " + " ".join(f"v{i}" for i in range(80))
    start = text.index("curry")
    curry = AspectSpan("curry", start, start + 5)
    encoded = encode_pretraining_example(
        minilm_tokenizer, CorpusExample(text, "positive", (curry,), curry, "t"), 0, "pair", 48
    )
    assert len(encoded.input_ids) <= 48
    tokens = minilm_tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert tokens[-3:] == ["[SEP]", "curry", "[SEP]"] and tokens.count("curry") == 2
    sentence = encode_pretraining_example(
        minilm_tokenizer, CorpusExample(text, "positive", (curry,), None, "t"), 0, "sentence", 48
    )
    assert len(sentence.input_ids) <= 48 and sum(sentence.aspect) == 0  # the aspect fell outside the kept prefix


@needs_data
def test_datamodule_batches_hold_every_present_class_at_least_m_times(minilm_tokenizer) -> None:
    data = ContrastivePretrainDataModule(in_domain=["restaurants"], min_per_class=3, batch_size=24, val_size=100)
    data.setup("fit")
    assert data.class_names == ("positive", "negative", "neutral")
    assert len(data.encoded["val"]) == 100 and len(data.encoded["train"]) == 2749 - 100
    torch.manual_seed(0)
    seen = 0
    real = padded = 0
    for b in data.train_dataloader():
        counts = torch.bincount(b["labels"], minlength=3)
        assert bool(((counts == 0) | (counts >= 3)).all()), counts
        assert b["input_ids"].shape[0] <= 24
        seen += b["input_ids"].shape[0]
        real += int(b["attention_mask"].sum())
        padded += b["attention_mask"].numel()
    assert seen == len(data.encoded["train"])  # every training example once per epoch
    assert padded / real < 1.15  # length-aware grouping keeps padding small


def test_datamodule_reads_user_files_with_a_label_map_and_skips_bad_lines(tmp_path: Path, minilm_tokenizer) -> None:
    import json

    lines = [
        {"text": "loved the tacos", "label": 5, "aspects": [{"term": "tacos", "from": 10, "to": 15}]},
        {"text": "cold fries", "label": 1},
        {"text": "", "label": 5},  # malformed: empty text
        {"text": "great view", "label": 5},
        {"text": "bad wine", "label": 1},
        "not json",
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    common = dict(
        in_domain=None, files=[str(path)], label_map={"1": "negative", "5": "positive"}, input_format="sentence",
        label_mode="sentence", val_size=0, batch_size=4, min_per_class=2, dedup_against=[],
    )  # fmt: skip
    with pytest.raises(ValueError, match="corpus.jsonl:3"):
        ContrastivePretrainDataModule(**common).setup("fit")
    data = ContrastivePretrainDataModule(**common, on_error="skip")
    data.setup("fit")
    assert data.report.skipped_malformed == 2
    assert data.class_names == ("positive", "negative")
    assert [e.label for e in data.encoded["train"]] == [0, 1, 0, 1]
    first = data.encoded["train"][0]
    assert minilm_tokenizer.convert_ids_to_tokens(first.input_ids) == ["[CLS]", "loved", "the", "ta", "##cos", "[SEP]"]
    assert first.aspect == [0, 0, 0, 1, 1, 0] and first.maskable == [0, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="no corpus"):
        ContrastivePretrainDataModule(in_domain=None, files=None)


def test_sentence_level_files_under_pair_input_fail_once_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text('{"text": "The fish was dry.", "label": "negative"}\n')
    with pytest.raises(ValueError) as raised:
        ContrastivePretrainDataModule(in_domain=["restaurants"], files=[str(path)], input_format="pair")
    assert str(raised.value) == (
        f"data.files ({path}) hold sentence-level examples, but data.input_format 'pair' encodes (sentence, aspect) "
        "and needs one labelled target aspect per example (data.in_domain with data.label_mode 'aspect'); "
        "use --data.input_format sentence"
    )
    with pytest.raises(ValueError, match=r"^data.label_mode 'sentence' gives sentence-level examples, .*"):
        ContrastivePretrainDataModule(in_domain=["restaurants"], label_mode="sentence", input_format="pair")


def test_file_labels_are_checked_against_the_declared_classes(tmp_path: Path, minilm_tokenizer) -> None:
    import json

    rows = [
        {"text": "loved the tacos", "label": "positive"},
        {"text": "cold fries", "label": "negative"},
        {"text": "great view", "label": "positve"},
        {"text": "bad wine", "label": "Negative"},
        {"text": "nice patio", "label": "positive"},
        {"text": "rude staff", "label": "negative"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    common = dict(in_domain=None, files=[str(path)], input_format="sentence", val_size=0, dedup_against=[],
                  batch_size=4, min_per_class=2)  # fmt: skip
    with pytest.raises(ValueError) as raised:  # default classes: the ABSA polarities, never a fourth class
        ContrastivePretrainDataModule(**common).setup("fit")
    assert str(raised.value) == (
        f"{path}:3: field 'label' value \"positve\" is not a known class (known classes: 'positive', 'negative', "
        "'neutral'); did you mean 'positive'?"
    )
    data = ContrastivePretrainDataModule(**common, on_error="skip")
    data.setup("fit")
    assert (data.report.skipped_unknown_label, data.report.unknown_labels) == (2, {"positve": 1, "Negative": 1})
    assert data.class_names == ("positive", "negative") and [e.label for e in data.encoded["train"]] == [0, 1, 0, 1]
    with pytest.raises(
        ValueError, match=rf"{path}:1: .*\"positive\" is not a known class \(known classes: 'good', 'bad'\)"
    ):
        ContrastivePretrainDataModule(**common, classes=["good", "bad"]).setup("fit")
    assert ContrastivePretrainDataModule(**common, file_format="scapt").file_classes == ("negative", "positive")
    with pytest.raises(ValueError, match=r"data.classes \['positive', 'negative'\] lacks \['neutral'\]"):
        ContrastivePretrainDataModule(in_domain=["restaurants"], classes=["positive", "negative"])


@needs_data
def test_user_files_are_deduplicated_against_evaluation_sentences(tmp_path: Path) -> None:
    import json

    from scpt.data.absa import load_splits

    test_sentence = load_splits("restaurants")["test"][0].text
    path = tmp_path / "corpus.jsonl"
    rows = [
        {"text": "  " + test_sentence.upper() + " ", "label": "positive"},
        {"text": "fine food", "label": "positive"},
        {"text": "awful food", "label": "negative"},
        {"text": "awful staff", "label": "negative"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = ContrastivePretrainDataModule(in_domain=None, files=[str(path)], input_format="sentence", val_size=0)
    data.setup("fit")
    assert len(data.encoded["train"]) == 3 and data.report.removed_eval_overlap == 1
    kept = ContrastivePretrainDataModule(
        in_domain=None, files=[str(path)], input_format="sentence", val_size=0, dedup_against=[]
    )
    kept.setup("fit")
    assert len(kept.encoded["train"]) == 4
