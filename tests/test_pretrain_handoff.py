"""Phase 1 -> phase 2: the pre-training CLI, the encoder hand-off through ``--model.encoder <ckpt>``,
``scpt export``, and the two-phase pipeline, end to end on a tiny random BERT and slices of the data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from helpers import needs_data
from scpt import cli
from scpt.encoders import EncoderLoadError, encoder_from_checkpoint, load_encoder, load_tokenizer
from scpt.errors import UserError
from scpt.export import export_encoder
from scpt.finetune.module import AspectSentimentModule
from scpt.pipeline import (
    STAGE_FILE,
    PipelineConfigError,
    _check_or_record,
    compare,
    load_pipeline_config,
    results_markdown,
    run_pipeline,
)

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_CONFIG = ROOT / "configs" / "pretrain" / "restaurants.yaml"
FINETUNE_CONFIG = ROOT / "configs" / "finetune" / "restaurants.yaml"


def pretrain_args(encoder: Path, root: Path) -> list[str]:
    return [
        "--config", str(PRETRAIN_CONFIG),
        "--model.encoder", str(encoder),
        "--model.decoder_layers", "1",
        "--data.in_domain", "[restaurants]",
        "--data.limit", "120",
        "--data.val_size", "40",
        "--data.batch_size", "16",
        "--trainer.max_steps", "3",
        "--trainer.val_check_interval", "3",
        "--model.probe_per_class", "true",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained_checkpoint(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrain")
    assert cli.main(["pretrain", "fit", *pretrain_args(tiny_bert_dir, root)]) == 0
    checkpoints = list(root.glob("restaurants/version_0/checkpoints/last.ckpt"))
    assert len(checkpoints) == 1
    return checkpoints[0]


def _encoder_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@needs_data
def test_pretraining_logs_every_term_and_the_held_out_geometry(pretrained_checkpoint: Path) -> None:
    run = pretrained_checkpoint.parents[1]
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    for column in ("train/loss_step", "train/scl_step", "train/map_step", "train/rr_step",
                   "train/scl_valid_anchor_fraction_step", "train/scl_collapsed_step", "train/map_acc_step",
                   "train/scl_floor_step", "val/scl_floor",
                   "val/alignment", "val/uniformity", "val/scl", "val/scl_collapsed", "val/mean_cosine",
                   "val/effective_rank", "val/probe_centroid", "val/probe_knn", "val/encoder_probe_knn",
                   "val/probe_knn_macro_f1", "val/probe_centroid_recall/negative",
                   "val/probe_knn_f1/neutral"):  # fmt: skip
        assert column in header, column
    logged = yaml.safe_load((run / "hparams.yaml").read_text())
    assert logged["loss"] == "scpt.losses.SupConLoss" and logged["loss_temperature"] == 0.5  # the shipped preset
    assert logged["loss_base_temperature"] == 0.07 and logged["queue_size"] == 4096 and logged["momentum"] == 0.99
    assert logged["lambda_scl"] == 2.0 and logged["seed_everything"] == 7 and logged["min_per_class"] == 4
    fractions = [float(r.split(",")[header.index("train/scl_valid_anchor_fraction_step")]) for r in rows[1:]
                 if r.split(",")[header.index("train/scl_valid_anchor_fraction_step")]]  # fmt: skip
    assert len(fractions) == 3 and all(
        f == 1.0 for f in fractions
    )  # the class-group sampler: every anchor has a positive
    uniformity = [
        float(r.split(",")[header.index("val/uniformity")])
        for r in rows[1:]
        if r.split(",")[header.index("val/uniformity")]
    ]
    assert uniformity and all(-4.0 <= u <= 0.0 for u in uniformity)  # log E exp(-2 d^2) lies in [-4, 0] on the sphere
    columns = [header.index(c) for c in ("train/scl_floor_step", "train/scl_step", "train/scl_collapsed_step")]
    steps = [[float(r.split(",")[i]) for i in columns] for r in rows[1:] if r.split(",")[columns[0]]]
    assert len(steps) == 3 and all(floor < loss and floor < collapsed for floor, loss, collapsed in steps)
    # with the queue filled by the first step, the batch alone is logged beside it, on its own smaller scale
    names = ("train/scl_in_batch_floor_step", "train/scl_in_batch_step", "train/scl_in_batch_collapsed_step")
    columns = [header.index(c) for c in names]
    in_batch = [[float(r.split(",")[i]) for i in columns] for r in rows[1:] if r.split(",")[columns[0]]]
    assert len(in_batch) == 2 and all(floor < loss for floor, loss, _ in in_batch)
    # every anchor has a positive (class-group sampler): collapsed = scale · log(B - 1), B = 16, scale = 0.5 / 0.07
    assert all(collapsed == pytest.approx(0.5 / 0.07 * math.log(15), rel=1e-5) for _, _, collapsed in in_batch)
    assert all(collapsed < queued for (_, _, collapsed), (_, _, queued) in zip(in_batch, steps[1:]))


@needs_data
def test_checkpoint_loads_with_weights_only_and_hands_over_the_encoder_exactly(pretrained_checkpoint: Path) -> None:
    checkpoint = torch.load(pretrained_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["scpt_encoder"]["config"]["hidden_size"] == 32
    assert checkpoint["global_step"] == 3  # last.ckpt is the end of training (max_steps), not an earlier save
    expected = _encoder_state(pretrained_checkpoint)
    loaded = encoder_from_checkpoint(pretrained_checkpoint).state_dict()
    assert set(expected) <= set(loaded)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    # phase 2 through its --model.encoder argument: encoder weights only, no pre-training heads
    module = AspectSentimentModule(encoder=str(pretrained_checkpoint))
    for key, value in expected.items():
        assert torch.equal(module.encoder.state_dict()[key], value), key
    assert not any(k.startswith("objectives.") for k in module.state_dict())
    # the checkpoint also holds the momentum (key) encoder; only the online encoder is handed over
    state = checkpoint["state_dict"]
    key_encoder = {k.removeprefix("objectives.scl.key_encoder."): v for k, v in state.items() if "key_encoder." in k}
    assert set(key_encoder) == set(expected)
    assert any(not torch.equal(key_encoder[k], expected[k]) for k in expected)  # it lags behind: EMA 0.99
    assert checkpoint["scpt_objective"]["loss_temperature"] == 0.5  # what the objective was, beside the weights
    assert load_tokenizer(str(pretrained_checkpoint)).vocab_size == 30522


@needs_data
def test_mismatched_encoder_weights_name_missing_and_unexpected_keys(
    pretrained_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(pretrained_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    del state["encoder.encoder.layer.1.output.dense.weight"]
    state["encoder.encoder.layer.2.output.dense.weight"] = torch.zeros(32, 64)
    broken = tmp_path / "broken.ckpt"
    torch.save(checkpoint, broken)
    with pytest.raises(EncoderLoadError) as error:
        load_encoder(str(broken))
    message = str(error.value)
    assert str(broken) in message
    assert "missing keys (1): encoder.layer.1.output.dense.weight" in message
    assert "unexpected keys (1): encoder.layer.2.output.dense.weight" in message
    no_encoder = tmp_path / "none.ckpt"
    torch.save({"state_dict": {"head.weight": torch.zeros(2)}, "hyper_parameters": {"encoder": "x"}}, no_encoder)
    with pytest.raises(EncoderLoadError, match="no 'encoder.\\*' weights"):
        load_encoder(str(no_encoder))


@needs_data
def test_export_round_trip(pretrained_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "exported"
    assert cli.main(["export", str(pretrained_checkpoint), str(target)]) == 0
    model = AutoModel.from_pretrained(target)
    expected = _encoder_state(pretrained_checkpoint)
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key
    tokenizer = AutoTokenizer.from_pretrained(target)
    assert (
        tokenizer("great pasta")["input_ids"] == load_tokenizer(str(pretrained_checkpoint))("great pasta")["input_ids"]
    )
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (target / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    provenance = json.loads((target / "scpt_export.json").read_text())
    assert (
        provenance["checkpoint"] == str(pretrained_checkpoint.resolve()) and len(provenance["checkpoint_sha256"]) == 64
    )
    assert provenance["objective"]["loss"] == "scpt.losses.SupConLoss" and provenance["objective"]["lambda_scl"] == 2.0
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        export_encoder(pretrained_checkpoint, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert not list(tmp_path.glob(".exported.*"))  # no staging directory left behind


@needs_data
def test_a_failed_export_leaves_no_directories(
    pretrained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(path: Path) -> str:
        raise PermissionError(f"{path}: permission denied")

    monkeypatch.setattr("scpt.export.file_sha256", unreadable)  # fails after the staging directory was made
    (tmp_path / "kept").mkdir()
    with pytest.raises(PermissionError, match="permission denied"):
        export_encoder(pretrained_checkpoint, tmp_path / "kept" / "new" / "deeper" / "encoder")
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]  # the parents it made are gone, not the one it found


def _pipeline_yaml(tmp_path: Path, tiny_bert_dir: Path, **overrides: object) -> Path:
    config = {
        "output_dir": str(tmp_path / "out"),
        "seeds": [1, 2],
        "pretrain": {
            "configs": [str(PRETRAIN_CONFIG)],
            "args": pretrain_args(tiny_bert_dir, tmp_path / "unused")[2:-4],
        },
        "finetune": {
            "configs": [str(FINETUNE_CONFIG)],
            "args": [
                "--model.encoder",
                str(tiny_bert_dir),
                "--data.limit",
                "48",
                "--data.batch_size",
                "16",
                "--trainer.max_epochs",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.enable_model_summary",
                "false",
            ],  # fmt: skip
        },
    }
    config.update(overrides)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@needs_data
def test_pipeline_end_to_end_resumes_and_pairs_seeds(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _pipeline_yaml(tmp_path, tiny_bert_dir, variants={"no_rr": ["--model.lambda_rr", "0"]})
    assert cli.main(["pipeline", "--config", str(path)]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    table = results["table"]
    assert results["metrics"] == ["acc", "macro_f1", "ise_acc", "ese_acc"] and results["seeds"] == [1, 2]
    runs = results["runs"]
    for metric in results["metrics"]:
        differences = [
            p["test"][metric] - d["test"][metric] for p, d in zip(runs["pretrained"]["runs"], runs["direct"]["runs"])
        ]
        assert table["difference"][metric]["mean"] == pytest.approx(sum(differences) / 2)
        direct = [run["test"][metric] for run in runs["direct"]["runs"]]
        assert table["direct"][metric]["mean"] == pytest.approx(sum(direct) / 2)
    assert [run["seed"] for run in runs["pretrained"]["runs"]] == [1, 2]
    # the variant: its own pre-training (MAP + SCL, no RR), its encoder fine-tuned on the same seeds, paired
    assert [run["seed"] for run in runs["no_rr"]["runs"]] == [1, 2]
    assert list(results["differences"]) == ["pretrained - direct", "pretrained - no_rr", "no_rr - direct"]
    for metric in results["metrics"]:
        differences = [
            p["test"][metric] - v["test"][metric] for p, v in zip(runs["pretrained"]["runs"], runs["no_rr"]["runs"])
        ]
        assert results["differences"]["pretrained - no_rr"][metric]["mean"] == pytest.approx(sum(differences) / 2)
    variant_hparams = yaml.safe_load(next((out / "variants/no_rr/pretrain").glob("**/hparams.yaml")).read_text())
    assert variant_hparams["lambda_rr"] == 0 and variant_hparams["lambda_scl"] == 2.0
    variant_config = yaml.safe_load(next((out / "finetune/no_rr/seed1").glob("**/config.yaml")).read_text())
    assert variant_config["model"]["encoder"] == str(out / "variants/no_rr/encoder")
    assert results["variants"]["no_rr"]["args"] == ["--model.lambda_rr", "0"]
    assert set(results["timing_seconds"]) >= {"pre-training (no_rr)", "fine-tuning (no_rr)"}
    markdown = (out / "results.md").read_text()
    assert "| pre-trained, then fine-tuned |" in markdown and "difference (paired by seed)" in markdown
    assert "| variant no_rr, then fine-tuned |" in markdown and "| no_rr − direct (paired by seed) |" in markdown
    # the pre-trained arm fine-tuned the exported encoder, the direct arm the base one
    pretrained_config = yaml.safe_load(next((out / "finetune/pretrained/seed1").glob("**/config.yaml")).read_text())
    direct_config = yaml.safe_load(next((out / "finetune/direct/seed1").glob("**/config.yaml")).read_text())
    assert pretrained_config["model"]["encoder"] == str(out / "encoder")
    assert direct_config["model"]["encoder"] == str(tiny_bert_dir)
    exported = AutoModel.from_pretrained(out / "encoder").state_dict()
    record = json.loads((out / "pretrain/stage.json").read_text())
    for key, value in _encoder_state(Path(record["checkpoint"])).items():
        assert torch.equal(exported[key], value)
    variant_exported = AutoModel.from_pretrained(out / "variants/no_rr/encoder").state_dict()
    variant_record = json.loads((out / "variants/no_rr/pretrain/stage.json").read_text())
    variant_state = _encoder_state(Path(variant_record["checkpoint"]))
    assert all(torch.equal(variant_exported[key], value) for key, value in variant_state.items())
    assert not all(torch.equal(exported[key], value) for key, value in variant_state.items())  # it trained apart

    # a second run redoes nothing
    stamps = {
        p: p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and p.suffix in (".ckpt", ".json") and "results" not in p.name
    }
    capsys.readouterr()
    assert cli.main(["pipeline", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "pre-training: done before" in printed and "pre-training (no_rr): done before" in printed
    assert printed.count("done before") >= 5
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "results.json").read_text())["table"] == table

    # resuming with other arguments is refused, naming the stage
    changed = _pipeline_yaml(
        tmp_path, tiny_bert_dir, pretrain={"configs": [str(PRETRAIN_CONFIG)], "args": ["--model.lambda_rr", "0"]}
    )
    with pytest.raises(RuntimeError, match="stage 'pretrain' .* ran with different arguments"):
        run_pipeline(load_pipeline_config(changed))
    changed_variant = _pipeline_yaml(tmp_path, tiny_bert_dir, variants={"no_rr": ["--model.lambda_rr", "0.5"]})
    with pytest.raises(RuntimeError, match="stage 'variants/no_rr/pretrain' .* ran with different arguments"):
        run_pipeline(load_pipeline_config(changed_variant))


@needs_data
def test_pipeline_replicates_the_pretraining_with_pretrain_seeds(tiny_bert_dir: Path, tmp_path: Path) -> None:
    path = _pipeline_yaml(tmp_path, tiny_bert_dir, seeds=[1], pretrain_seeds=[8])
    assert cli.main(["pipeline", "--config", str(path)]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert list(results["runs"]) == ["pretrained", "direct", "pretrained.seed8"] and results["pretrain_seeds"] == [8]
    assert results["variants"]["pretrained.seed8"]["args"] == ["--seed_everything", "8"]
    main, replicate = (
        yaml.safe_load(next(d.glob("**/config.yaml")).read_text())
        for d in (out / "pretrain", out / "variants/pretrained.seed8/pretrain")
    )
    assert (main["seed_everything"], replicate["seed_everything"]) == (7, 8)
    assert {k: v for k, v in main.items() if k not in ("seed_everything", "trainer")} == {
        k: v for k, v in replicate.items() if k not in ("seed_everything", "trainer")
    }  # the same pre-training but for its seed (and the trainer's output directories)
    tuned = yaml.safe_load(next((out / "finetune/pretrained.seed8/seed1").glob("**/config.yaml")).read_text())
    assert tuned["model"]["encoder"] == str(out / "variants/pretrained.seed8/encoder")
    first, second = (
        AutoModel.from_pretrained(d).state_dict() for d in (out / "encoder", out / "variants/pretrained.seed8/encoder")
    )
    assert any(not torch.equal(first[key], second[key]) for key in first)
    over = results["over_pretraining"]
    for metric in results["metrics"]:
        runs = [results["runs"][arm]["runs"][0]["test"][metric] for arm in ("pretrained", "pretrained.seed8")]
        direct = results["runs"]["direct"]["runs"][0]["test"][metric]
        assert over["arms"]["pretrained"][metric]["runs"] == pytest.approx(runs)
        assert over["differences"]["pretrained - direct"][metric]["runs"] == pytest.approx([r - direct for r in runs])
    assert "Over pre-training runs: each pre-trained arm was pre-trained 2 times" in (out / "results.md").read_text()


def test_pipeline_config_errors_name_the_field(tmp_path: Path, tiny_bert_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"output_dir": "x", "seeds": [1], "pretrain": {"configs": [str(PRETRAIN_CONFIG)]}, "finetun": {}}
        )
    )
    with pytest.raises(PipelineConfigError, match="unknown field.*finetun"):
        load_pipeline_config(bad)
    bad.write_text(yaml.safe_dump({"output_dir": "x", "seeds": [1, 1], "pretrain": {}, "finetune": {}}))
    with pytest.raises(PipelineConfigError, match="bad.yaml: 'seeds': seed 1 is repeated"):
        load_pipeline_config(bad)
    missing = _pipeline_yaml(tmp_path, tiny_bert_dir, finetune={"configs": ["nope.yaml"]})
    with pytest.raises(PipelineConfigError, match="finetune.configs' names nope.yaml"):
        load_pipeline_config(missing)
    split = _pipeline_yaml(
        tmp_path, tiny_bert_dir, finetune={"configs": [str(FINETUNE_CONFIG)], "args": ["--data.split_seed", "14"]}
    )
    with pytest.raises(PipelineConfigError, match="different dev splits"):
        run_pipeline(load_pipeline_config(split))


def test_pipeline_file_errors_are_one_line(tmp_path: Path, tiny_bert_dir: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfeoutput_dir: x\n")
    with pytest.raises(PipelineConfigError, match=r"binary.yaml: not UTF-8 text \(invalid start byte at byte 0\)"):
        load_pipeline_config(binary)
    with pytest.raises(PipelineConfigError, match=r"'output_dir' must be a directory path, got \[1, 2\]"):
        load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, output_dir=[1, 2]))
    with pytest.raises(PipelineConfigError, match=r"pipeline.yaml: .seeds.: seed -1 is out of range \[0, 2"):
        load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, seeds=[1, -1]))


def test_every_pretraining_is_checked_before_anything_runs(
    tmp_path: Path, tiny_bert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for variants, message in (
        ({"typo": ["--model.lambda_sc", "0"]}, r"pipeline.yaml: variant 'typo': .*lambda_sc"),
        ({"split": ["--data.split_seed", "14"]}, r"pipeline.yaml: variant 'split' and fine-tuning use different dev"),
    ):
        with pytest.raises(PipelineConfigError, match=message):
            run_pipeline(load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, variants=variants)))
        assert not (tmp_path / "out").exists()  # refused before the main pre-training, which comes first
    assert cli.main(["pipeline", "--config", str(_pipeline_yaml(tmp_path, tiny_bert_dir)), "--seeds", "1", "1"]) == 2
    assert capsys.readouterr().err.strip() == "scpt pipeline: error: --seeds: seed 1 is repeated (each seed runs once)"
    assert not (tmp_path / "out").exists()


def test_a_stage_that_failed_before_its_first_checkpoint_reruns_with_new_arguments(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    bad = _pipeline_yaml(
        tmp_path, tiny_bert_dir, pretrain={"configs": [str(PRETRAIN_CONFIG)], "args": ["--model.lambda_scl", "-1"]}
    )
    with pytest.raises(ValueError, match="lambda_scl must be >= 0, got -1"):
        run_pipeline(load_pipeline_config(bad))
    stage = tmp_path / "out" / "pretrain"
    assert json.loads((stage / STAGE_FILE).read_text())["done"] is False and not list(stage.rglob("*.ckpt"))
    fixed = {"configs": [str(PRETRAIN_CONFIG)], "args": ["--model.lambda_scl", "0.5"]}
    assert _check_or_record(stage, "pretrain", fixed) is None  # nothing to resume: it starts afresh
    # a checkpoint from the first plan is kept and the new plan refused; a finished stage likewise
    (stage / "version_0" / "checkpoints").mkdir(parents=True)
    (stage / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"stage 'pretrain' .* began \(its checkpoint .*last.ckpt\) with different"):
        _check_or_record(stage, "pretrain", fixed)
    (stage / STAGE_FILE).write_text(json.dumps({"plan": fixed, "done": True, "seconds": 1.0, "checkpoint": "c"}))
    assert _check_or_record(stage, "pretrain", fixed)["checkpoint"] == "c"
    with pytest.raises(RuntimeError, match="stage 'pretrain' .* ran with different arguments"):
        _check_or_record(stage, "pretrain", {"configs": fixed["configs"], "args": []})
    (stage / STAGE_FILE).write_text('{"plan": {"configs"')  # truncated by a full disk
    with pytest.raises(UserError, match=r"pretrain/stage.json: not a record scpt wrote \(.*remove it to redo its run"):
        _check_or_record(stage, "pretrain", fixed)


def _arm(scores: list[tuple[float, float]]) -> dict:
    """A fine-tuning summary with test (accuracy, macro-F1) per seed."""
    return {"runs": [{"seed": seed, "test": {"acc": acc, "macro_f1": f1}, "dev_score": 0.0, "seconds": 60.0}
                     for seed, (acc, f1) in enumerate(scores, start=1)]}  # fmt: skip


def test_variants_are_compared_paired_by_seed_with_both_main_arms() -> None:
    arms = {
        "pretrained": _arm([(84.0, 76.0), (83.0, 75.0), (85.0, 78.0)]),
        "direct": _arm([(82.0, 72.0), (83.0, 71.0), (81.0, 70.0)]),
        "no_scl": _arm([(83.0, 74.0), (83.5, 75.5), (83.5, 75.0)]),
    }
    comparison = compare(arms, [1, 2, 3])
    assert comparison["metrics"] == ["acc", "macro_f1"]
    assert list(comparison["differences"]) == ["pretrained - direct", "pretrained - no_scl", "no_scl - direct"]
    # by hand: pretrained - no_scl on macro-F1 per seed +2.0, -0.5, +3.0 -> mean 1.5, std sqrt(3.25) (n - 1)
    f1 = comparison["differences"]["pretrained - no_scl"]["macro_f1"]
    assert f1["mean"] == pytest.approx(1.5) and f1["std"] == pytest.approx(math.sqrt(3.25)) and f1["n"] == 3
    # no_scl - direct on accuracy per seed +1.0, +0.5, +2.5 -> mean 4/3
    assert comparison["differences"]["no_scl - direct"]["acc"]["mean"] == pytest.approx(4 / 3)
    assert comparison["table"]["difference"] == comparison["differences"]["pretrained - direct"]
    assert comparison["table"]["no_scl"]["acc"]["mean"] == pytest.approx(250 / 3)
    markdown = results_markdown(comparison, arms, {"pre-training": 60.0})
    assert "| variant no_scl, then fine-tuned | 83.33 ± 0.29 | 74.83 ± 0.76 |" in markdown
    assert "| pretrained − no_scl (paired by seed) | +0.67 ± 1.04 | +1.50 ± 1.80 |" in markdown
    assert "| no_scl | 3 | 83.50 | 75.00 | 0.00 | 1.0 |" in markdown
    with pytest.raises(ValueError):  # arms run on different seed lists are never paired silently
        compare({**arms, "no_scl": _arm([(83.0, 74.0)])}, [1, 2, 3])


def test_pretraining_replicates_are_compared_with_the_run_as_the_unit() -> None:
    arms = {
        "pretrained": _arm([(84.0, 76.0), (83.0, 75.0)]),
        "direct": _arm([(82.0, 72.0), (83.0, 71.0)]),
        "no_scl": _arm([(83.0, 74.0), (83.0, 75.0)]),
        "pretrained.seed8": _arm([(86.0, 78.0), (85.0, 77.0)]),
        "no_scl.seed8": _arm([(84.0, 74.0), (82.0, 73.0)]),
    }
    replicates = {"pretrained": ["pretrained", "pretrained.seed8"], "no_scl": ["no_scl", "no_scl.seed8"]}
    comparison = compare(arms, [1, 2], replicates)
    # seed-level pairs only between the first runs; replicates are not paired with their own arm
    assert list(comparison["differences"]) == ["pretrained - direct", "pretrained - no_scl", "no_scl - direct"]
    over = comparison["over_pretraining"]
    assert over["runs"] == 2 and list(over["arms"]) == ["pretrained", "no_scl"]
    # by hand: pretrained's run means of accuracy 83.5 and 85.5 -> 84.5 ± sqrt(2), t(0.975, 1) = 12.706205
    accuracy = over["arms"]["pretrained"]["acc"]
    assert accuracy["runs"] == [83.5, 85.5] and accuracy["mean"] == pytest.approx(84.5)
    assert accuracy["std"] == pytest.approx(math.sqrt(2)) and accuracy["n"] == 2
    assert accuracy["ci95"] == pytest.approx([84.5 - 12.706205, 84.5 + 12.706205], abs=1e-6)
    # pretrained − no_scl, accuracy: run 0 83.5 − 83.0, run 1 85.5 − 83.0
    assert over["differences"]["pretrained - no_scl"]["acc"]["runs"] == pytest.approx([0.5, 2.5])
    # no_scl − direct, macro-F1: 74.5 − 71.5 and 73.5 − 71.5 (direct, unreplicated, pairs with every run)
    f1 = over["differences"]["no_scl - direct"]["macro_f1"]
    assert f1["runs"] == pytest.approx([3.0, 2.0]) and f1["std"] == pytest.approx(math.sqrt(0.5))
    assert f1["ci95"] == pytest.approx([2.5 - 12.706205 / 2, 2.5 + 12.706205 / 2], abs=1e-6)
    markdown = results_markdown(comparison, arms, {"pre-training": 60.0})
    assert "each pre-trained arm was pre-trained 2 times" in markdown
    assert "| pre-trained, then fine-tuned | 84.50 ± 1.41 [71.79, 97.21] | 76.50 ± 1.41 [63.79, 89.21] |" in markdown
    assert "| no_scl − direct (paired) | +0.50 ± 0.00 [+0.50, +0.50] | +2.50 ± 0.71 [-3.85, +8.85] |" in markdown
    assert "| variant pretrained.seed8, then fine-tuned | 85.50 ± 0.71 | 77.50 ± 0.71 |" in markdown
    assert "Over pre-training runs" not in results_markdown(compare(arms, [1, 2]), arms, {})


def test_pretrain_seeds_replicate_every_pretraining(tmp_path: Path, tiny_bert_dir: Path) -> None:
    variants = {"no_scl": ["--model.lambda_scl", "0"]}
    config = load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, variants=variants, pretrain_seeds=[8, 9]))
    assert config.replicates == {
        "pretrained": ["pretrained", "pretrained.seed8", "pretrained.seed9"],
        "no_scl": ["no_scl", "no_scl.seed8", "no_scl.seed9"],
    }
    assert config.pretrainings == {
        "no_scl": ["--model.lambda_scl", "0"],
        "pretrained.seed8": ["--seed_everything", "8"],
        "pretrained.seed9": ["--seed_everything", "9"],
        "no_scl.seed8": ["--model.lambda_scl", "0", "--seed_everything", "8"],
        "no_scl.seed9": ["--model.lambda_scl", "0", "--seed_everything", "9"],
    }
    assert config.pretraining_args("no_scl.seed9")[-4:] == ["--model.lambda_scl", "0", "--seed_everything", "9"]
    assert load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir)).replicates == {}
    for overrides, message in (
        ({"pretrain_seeds": [8, "9"]}, r"'pretrain_seeds' must be a list of integers, got \[8, '9'\]"),
        ({"pretrain_seeds": [8, 8]}, "'pretrain_seeds'.*8"),
        ({"pretrain_seeds": [8], "variants": {"pretrained.seed8": []}}, "variant name 'pretrained.seed8' is the name"),
    ):
        with pytest.raises(PipelineConfigError, match=message):
            load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, **overrides))
    # a replicate of the configs' own seed would be the same run
    own_seed = ["--seed_everything", "8"]
    same = _pipeline_yaml(
        tmp_path, tiny_bert_dir, pretrain={"configs": [str(PRETRAIN_CONFIG)], "args": own_seed}, pretrain_seeds=[8]
    )
    with pytest.raises(PipelineConfigError, match=r"'pretrain_seeds' \[8\] repeats the seed of pre-training"):
        run_pipeline(load_pipeline_config(same))
    assert not (tmp_path / "out").exists()


def test_variant_errors_name_the_variant(tmp_path: Path, tiny_bert_dir: Path) -> None:
    for variants, message in (
        ({"direct": ["--seed_everything", "8"]}, "variant name 'direct'"),
        ({"no scl": ["--model.lambda_scl", "0"]}, "variant name 'no scl'"),
        ({"no_scl": ["--model.lambda_scl", 0]}, "'variants.no_scl' must be a list of strings"),
        (["--model.lambda_scl", "0"], "'variants' must map a name"),
    ):
        with pytest.raises(PipelineConfigError, match=message):
            load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, variants=variants))
    config = load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir, variants={"s8": ["--seed_everything", "8"]}))
    assert config.variants == {"s8": ["--seed_everything", "8"]}
    assert load_pipeline_config(_pipeline_yaml(tmp_path, tiny_bert_dir)).variants == {}


def test_shipped_pipeline_configs_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the shipped configs name their phase configs relative to the repository
    for name in ("restaurants", "restaurants_quick"):
        config = load_pipeline_config(ROOT / "configs" / "pipeline" / f"{name}.yaml")
        assert config.pretrain.configs == ["configs/pretrain/restaurants.yaml"]
        assert config.finetune.configs == ["configs/finetune/restaurants.yaml"]
    assert load_pipeline_config(ROOT / "configs/pipeline/restaurants.yaml").seeds == [1, 2, 3]
