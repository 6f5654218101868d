"""CONTRIBUTING.md's examples run as written: the loss (one file plus one config) with known numbers
and through the pre-training CLI, and the phase-1 objective through the module.

The code and the configs are read out of CONTRIBUTING.md, written to a temporary module, and used
under that module's name, so the document cannot drift from what is tested here.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from scpt.data.corpus import AspectSpan, CorpusExample
from scpt.data.encoding import collate_pretraining, encode_pretraining_example
from scpt.losses import ContrastiveLoss, SupConLoss
from scpt.pretrain.cli import build_cli
from scpt.pretrain.module import ContrastivePretrainModule

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "CONTRIBUTING.md").read_text()


def _section(title: str) -> str:
    start = GUIDE.index(f"## {title}\n")
    end = GUIDE.find("\n## ", start + 1)
    return GUIDE[start : end if end >= 0 else None]


def _block(section: str, language: str) -> str:
    """The first fenced ``language`` block of ``section``, dedented (blocks inside list items are indented)."""
    match = re.search(rf"^( *)```{language}\n(.*?)^\1```", section, flags=re.M | re.S)
    assert match, f"no {language} block"
    return textwrap.dedent(match.group(2))


@pytest.fixture()
def module_from_guide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a CONTRIBUTING code block as an importable module and import it."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def load(name: str, code: str) -> ModuleType:
        (tmp_path / f"{name}.py").write_text(code)
        monkeypatch.delitem(sys.modules, name, raising=False)
        return importlib.import_module(name)

    yield load


@pytest.fixture()
def snn(module_from_guide) -> ModuleType:
    return module_from_guide("guide_snn", _block(_section("Adding a loss"), "python"))


def test_the_loss_is_one_class_of_the_shared_interface(snn: ModuleType) -> None:
    loss = snn.SoftNearestNeighbourLoss(temperature=0.5)
    assert isinstance(loss, ContrastiveLoss)
    assert (loss.min_views, loss.uses_labels) == (1, True)
    assert loss.hparams() == {
        "loss": "guide_snn.SoftNearestNeighbourLoss",
        "loss_temperature": 0.5,
        "loss_normalize": True,
    }
    with pytest.raises(ValueError, match="needs labels"):
        loss(torch.randn(4, 8))


def test_hand_computed_value(snn: ModuleType) -> None:
    # z0 = (1, 0), z1 = (0.6, 0.8), z2 = (0, 1); tau = 1; labels 0, 0, 1. Anchor 2 has no positive.
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], requires_grad=True)
    loss_fn = snn.SoftNearestNeighbourLoss(temperature=1.0)
    loss = loss_fn(features, torch.tensor([0, 0, 1]))
    anchor0 = -math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.0)))
    anchor1 = -math.log(math.exp(0.6) / (math.exp(0.6) + math.exp(0.8)))
    assert loss.item() == pytest.approx((anchor0 + anchor1) / 2, rel=1e-6)
    stats = loss_fn.last_stats
    assert (stats.num_anchors, stats.num_valid_anchors, stats.contrast_size) == (3, 2, 2)
    assert stats.collapsed_loss == pytest.approx(math.log(2))
    loss.backward()
    assert torch.isfinite(features.grad).all()


def test_equals_supcon_l_in_minus_log_positive_count(snn: ModuleType) -> None:
    """With every anchor having |P(a)| = 3 (4 classes x 2 samples x 2 views), L = L_in - log 3; with
    8 memory entries, 2 per class, |P(a)| = 5 and L = L_in - log 5."""
    torch.manual_seed(0)
    features, labels = torch.randn(8, 2, 16, dtype=torch.float64), torch.arange(4).repeat(2)
    snn_loss, supcon_in = snn.SoftNearestNeighbourLoss(temperature=0.2), SupConLoss(temperature=0.2, variant="in")
    torch.testing.assert_close(snn_loss(features, labels), supcon_in(features, labels) - math.log(3))
    memory, memory_labels = torch.randn(8, 16, dtype=torch.float64), torch.arange(4).repeat(2)
    with_memory = snn_loss(features, labels, memory=memory, memory_labels=memory_labels)
    expected = supcon_in(features, labels, memory=memory, memory_labels=memory_labels) - math.log(5)
    torch.testing.assert_close(with_memory, expected)
    assert snn_loss.last_stats.contrast_size == 16 - 1 + 8


def test_gradient_is_exact(snn: ModuleType) -> None:
    torch.manual_seed(1)
    features = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1])  # sample 3's views have only each other
    loss_fn = snn.SoftNearestNeighbourLoss(temperature=0.3)
    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (features,))


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    texts = [("pizza was great", 0), ("service was slow", 1), ("pasta was lovely", 0), ("waiter was rude", 1)]
    encoded = []
    for text, label in texts:
        term = text.split()[0]
        example = CorpusExample(text, "x", (AspectSpan(term, 0, len(term)),), None, "guide")
        encoded.append(encode_pretraining_example(tokenizer, example, label, "sentence", 32))
    return collate_pretraining(encoded, tokenizer.pad_token_id)


def test_the_loss_config_trains_through_the_pretraining_cli(
    snn: ModuleType, tmp_path: Path, tiny_bert_dir: Path, minilm_tokenizer
) -> None:
    config = yaml.safe_load(_block(_section("Adding a loss"), "yaml"))
    assert config["class_path"] == "scpt.losses.snn.SoftNearestNeighbourLoss"
    config["class_path"] = "guide_snn.SoftNearestNeighbourLoss"  # where this test put the file
    loss_config = tmp_path / "snn.yaml"
    loss_config.write_text(yaml.safe_dump(config))
    cli = build_cli(
        [
            "--config",
            str(ROOT / "configs" / "pretrain" / "restaurants.yaml"),
            "--model.loss",
            str(loss_config),
            "--model.encoder",
            str(tiny_bert_dir),
            "--model.lambda_map=0",
            "--model.lambda_rr=0",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
        ],
        run=False,
    )
    loss = cli.model.objectives["scl"].loss
    assert isinstance(loss, snn.SoftNearestNeighbourLoss) and loss.temperature == 0.1
    assert cli.model.describe()["loss_temperature"] == 0.1
    result = cli.model.compute_terms(_batch(minilm_tokenizer))
    assert torch.isfinite(result.total) and result.total.requires_grad
    result.total.backward()


def test_the_objective_example_joins_the_objective(
    module_from_guide, tmp_path: Path, tiny_bert_dir: Path, minilm_tokenizer
) -> None:
    section = _section("Adding a phase-1 objective")
    guide = module_from_guide("guide_objective", _block(section, "python"))
    config = yaml.safe_load(_block(section, "yaml"))
    entry = config["model"]["objectives"][0]
    assert entry["class_path"] == "scpt.pretrain.label_objective.LabelObjective"
    entry["class_path"] = "guide_objective.LabelObjective"
    objective_config = tmp_path / "label.yaml"
    objective_config.write_text(yaml.safe_dump(config))
    cli = build_cli(
        [
            "--config",
            str(ROOT / "configs" / "pretrain" / "restaurants.yaml"),
            "--config",
            str(objective_config),
            "--model.encoder",
            str(tiny_bert_dir),
            "--model.decoder_layers=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
        ],
        run=False,
    )
    module: ContrastivePretrainModule = cli.model
    assert list(module.objectives) == ["scl", "map", "rr", "label"]
    assert module.objectives["scl"].loss.temperature == 0.5  # the experiment's loss is kept
    assert isinstance(module.objectives["label"], guide.LabelObjective)
    assert module.describe()["lambda_label"] == 0.5
    result = module.compute_terms(_batch(minilm_tokenizer))
    weights = {name: objective.weight for name, objective in module.objectives.items()}
    expected = sum(weights[name] * out.loss for name, out in result.terms.items())
    torch.testing.assert_close(result.total, expected)
    assert "acc" in result.terms["label"].metrics
    # a weight of 0 removes the term
    cli = build_cli(
        [
            "--config",
            str(ROOT / "configs" / "pretrain" / "restaurants.yaml"),
            "--config",
            str(objective_config),
            "--model.encoder",
            str(tiny_bert_dir),
            "--model.decoder_layers=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--model.objectives.init_args.weight=0",
        ],
        run=False,
    )
    assert "label" not in cli.model.objectives
