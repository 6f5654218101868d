"""Phase 2 end to end through the real CLI, on a tiny random BERT and a slice of SemEval Restaurant."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from helpers import needs_data
from scpt import cli
from scpt.finetune.datamodule import read_prediction_inputs
from scpt.finetune.module import AspectSentimentModule
from scpt.finetune.seeds import markdown_table, summarize
from scpt.training.optim import linear_warmup_decay, no_decay_parameter_groups

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "restaurants.yaml"


def small_run_args(tiny_bert_dir: Path, root: Path) -> list[str]:
    return [
        "--config", str(CONFIG),
        "--model.encoder", str(tiny_bert_dir),
        "--data.limit", "48",
        "--data.batch_size", "16",
        "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
    ]  # fmt: skip


@needs_data
def test_fit_test_predict_through_the_cli(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["finetune", "fit", *small_run_args(tiny_bert_dir, tmp_path)]) == 0
    checkpoints = sorted(tmp_path.glob("restaurants/version_0/checkpoints/best-*.ckpt"))
    assert len(checkpoints) == 1
    saved = (tmp_path / "restaurants/version_0/config.yaml").read_text()
    assert "learning_rate: 0.0001" in saved and str(tiny_bert_dir) in saved  # the run's config is recorded
    logged = yaml.safe_load((tmp_path / "restaurants/version_0/hparams.yaml").read_text())
    assert logged["seed_everything"] == 42 and logged["learning_rate"] == 1e-4 and logged["dataset"] == "restaurants"

    # metrics.csv holds the dev metrics of both epochs, on a 0-100 scale
    rows = (tmp_path / "restaurants/version_0/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    dev_acc = [float(r.split(",")[header.index("val/acc")]) for r in rows[1:] if r.split(",")[header.index("val/acc")]]
    # 48 instances / batch 16 = 3 batches; val_check_interval 0.5 -> every int(3 * 0.5) = 1 batch; 2 epochs
    assert len(dev_acc) == 6 and all(0.0 <= a <= 100.0 for a in dev_acc)

    capsys.readouterr()
    assert cli.main(["finetune", "test", *small_run_args(tiny_bert_dir, tmp_path / "untrained")]) == 2
    assert "scpt finetune test: error: --ckpt_path is required: the fine-tuned checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "untrained").exists()  # the failed command left no run folder
    test_args = [*small_run_args(tiny_bert_dir, tmp_path / "test"), "--ckpt_path", str(checkpoints[0])]
    assert cli.main(["finetune", "test", *test_args]) == 0

    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        json.dumps({"text": "The staff was rude.", "aspect": "staff"}) + "\n"
        + json.dumps({"text": "Great pizza, slow service.", "from": 6, "to": 11}) + "\n"
    )  # fmt: skip
    output = tmp_path / "out.jsonl"
    predict_args = [
        *small_run_args(tiny_bert_dir, tmp_path / "predict"),
        "--ckpt_path", str(checkpoints[0]),
        "--data.predict_file", str(inputs),
        "--data.predict_output", str(output),
    ]  # fmt: skip
    assert cli.main(["finetune", "predict", *predict_args]) == 0
    assert f"wrote 2 predictions to {output}" in capsys.readouterr().out
    assert not (tmp_path / "predict").exists()  # predict writes its output file and no run folder
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["line"], r["aspect"], r["from"], r["to"]) for r in records] == [(1, "staff", 4, 9), (2, "pizza", 6, 11)]
    for record in records:
        assert set(record["probs"]) == {"positive", "negative", "neutral"}
        assert math.isclose(sum(record["probs"].values()), 1.0, rel_tol=1e-5)
        assert record["label"] == max(record["probs"], key=record["probs"].get)

    # a second predict to the same file is refused rather than overwriting it
    before = output.read_text()
    assert cli.main(["finetune", "predict", *predict_args]) == 2
    assert f"error: prediction output {output} exists; refusing to overwrite it" in capsys.readouterr().err
    assert output.read_text() == before


@needs_data
def test_wandb_preset_logs_offline_with_flat_hyperparameters(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")  # the suite disables W&B; this test runs it, locally
    wandb_preset = CONFIG.parents[1] / "logger" / "wandb.yaml"
    args = small_run_args(tiny_bert_dir, tmp_path)
    args[2:2] = ["--config", str(wandb_preset)]  # after the experiment config, as the README says
    args[args.index("--trainer.max_epochs") + 1] = "1"
    try:
        assert cli.main(["finetune", "fit", *args]) == 0
        run = wandb.run
        assert run is not None and run.settings.mode in ("offline", "dryrun")  # nothing sent anywhere
        config = dict(run.config)
        assert config["learning_rate"] == pytest.approx(1e-4) and config["seed_everything"] == 42
        assert config["dataset"] == "restaurants" and config["input_format"] == "pair"  # flat keys, data too
        assert 0.0 <= run.summary["val/acc"] <= 100.0
    finally:
        wandb.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


@needs_data
def test_seeds_runner_resumes_and_summarizes(tiny_bert_dir: Path, tmp_path: Path) -> None:
    extra = small_run_args(tiny_bert_dir, tmp_path)[2:]  # drop --config
    extra = [a for a in extra if "default_root_dir" not in a and "save_dir" not in a and a != str(tmp_path)]
    extra[extra.index("--trainer.max_epochs") + 1] = "1"
    argv = [
        "finetune",
        "seeds",
        "--config",
        str(CONFIG),
        "--seeds",
        "3",
        "4",
        "--output-dir",
        str(tmp_path / "s"),
        "--",
        *extra,
    ]
    assert cli.main(argv) == 0
    results = [json.loads((tmp_path / f"s/seed{k}/result.json").read_text()) for k in (3, 4)]
    summary = json.loads((tmp_path / "s/summary.json").read_text())["summary"]
    accs = [r["test"]["acc"] for r in results]
    assert summary["acc"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert summary["acc"]["std"] == pytest.approx(statistics.stdev(accs))
    assert all(r["selected_on"] == "val/acc" for r in results)
    # a rerun reads the finished seeds instead of training again
    stamp = (tmp_path / "s/seed3/result.json").stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert (tmp_path / "s/seed3/result.json").stat().st_mtime_ns == stamp
    # each result records its settings; a rerun with others is refused, and the results stay as they were
    assert [(r["configs"], r["extra_args"]) for r in results] == [([str(CONFIG)], extra)] * 2
    assert not list((tmp_path / "s").glob("seed*/settings.json"))  # kept only while a seed runs
    assert cli.main([*argv, "--model.learning_rate", "0.5"]) == 2
    assert (tmp_path / "s/seed3/result.json").stat().st_mtime_ns == stamp


def test_summarize_uses_sample_std() -> None:
    runs = [{"test": {"acc": 80.0, "ise_acc": 60.0}}, {"test": {"acc": 82.0, "ise_acc": 64.0}}, {"test": {"acc": 84.0}}]
    summary = summarize(runs)
    assert summary["acc"] == {"mean": 82.0, "std": 2.0, "n": 3}
    assert summary["ise_acc"]["mean"] == 62.0 and summary["ise_acc"]["n"] == 2
    single = summarize(runs[:1])
    assert single["acc"] == {"mean": 80.0, "std": None, "n": 1}  # no NaN in the JSON
    assert "| mean ± std | **80.00** |" in markdown_table(
        [{**runs[0], "seed": 1, "dev_score": 1.0, "seconds": 60}], single
    )


def test_head_matches_its_equation(tiny_bert_dir: Path) -> None:
    module = AspectSentimentModule(encoder=str(tiny_bert_dir), head_dim=8, dropout=0.0)
    head = module.head
    hidden = torch.randn(2, 5, 32)
    aspect = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 1, 0]])
    cls = head.cls_projection(hidden[:, 0])
    mean = torch.stack([hidden[0, 1:3].mean(0), hidden[1, 3]])
    expected = head.classifier(torch.cat([cls, head.aspect_projection(mean)], dim=-1))
    torch.testing.assert_close(head(hidden, aspect), expected)
    assert module.encoder.training  # dropout active in fine-tuning (from_pretrained returns eval mode)


def test_no_weight_decay_on_biases_and_layer_norms(tiny_bert_dir: Path) -> None:
    module = AspectSentimentModule(encoder=str(tiny_bert_dir))
    decay, no_decay = no_decay_parameter_groups(module, 0.015)
    names = {id(p): n for n, p in module.named_parameters()}
    assert decay["weight_decay"] == 0.015 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("weight") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("LayerNorm.weight" in names[id(p)] for p in no_decay["params"])
    assert any(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.parameters()))


def test_linear_warmup_then_decay() -> None:
    factor = linear_warmup_decay(total_steps=10, warmup_steps=4)
    assert [round(factor(s), 4) for s in range(11)] == [
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
        0.8333,
        0.6667,
        0.5,
        0.3333,
        0.1667,
        0.0,
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"in.jsonl:1: not valid JSON"),
        ('{"aspect": "x"}', r"in.jsonl:1: expected an object with a string field 'text'"),
        ('{"text": "good food", "aspect": "wine"}', r"in.jsonl:1: aspect 'wine' does not occur"),
        ('{"text": "good food", "from": 5, "to": 40}', r"in.jsonl:1: span from=5 to=40 is not inside"),
        ('{"text": "good food"}', r"in.jsonl:1: give the aspect"),
    ],
)
def test_prediction_input_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_prediction_inputs(path)
