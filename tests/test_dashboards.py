"""Dashboards: the confusion matrix's counts, the 2-D projection, and what each logger receives (PNG files
beside the run without W&B; images and tables in an offline W&B run), on tiny random BERTs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader
from torchmetrics.utilities.data import dim_zero_sum

from helpers import TEXTS
from scpt.data.corpus import AspectSpan, CorpusExample
from scpt.finetune.metrics import AspectSentimentMetrics
from scpt.finetune.module import AspectSentimentModule
from scpt.pretrain.datamodule import collate_pretraining, encode_pretraining_example
from scpt.pretrain.module import ContrastivePretrainModule
from scpt.training.dashboards import (
    TSNE_MAX_POINTS,
    confusion_matrix_figure,
    confusion_table,
    figure_image,
    flatten,
    log_figure,
    project_2d,
    projection_method,
    scatter_figure,
)

CLASSES = ("positive", "negative", "neutral")

# --------------------------------------------------------------------------------------------------
# The confusion matrix
# --------------------------------------------------------------------------------------------------

# target:  pos pos pos neg neg neu neu
# pred:    pos pos neg neg pos neu pos
TARGET = torch.tensor([0, 0, 0, 1, 1, 2, 2])
PREDS = torch.tensor([0, 0, 1, 1, 0, 2, 0])
IMPLICIT = torch.tensor([1, 0, 1, 0, -1, 1, 0])
#: rows = true (pos, neg, neu), columns = predicted
KNOWN_COUNTS = [[2, 1, 0], [1, 1, 0], [1, 0, 1]]


def test_confusion_matrix_counts_a_hand_made_batch() -> None:
    metrics = AspectSentimentMetrics(CLASSES)
    metrics.update(PREDS[:4], TARGET[:4], IMPLICIT[:4])  # two batches accumulate
    metrics.update(PREDS[4:], TARGET[4:], IMPLICIT[4:])
    confusion = metrics.confusion_matrix()
    assert confusion.tolist() == KNOWN_COUNTS
    assert metrics.compute()["acc"] == pytest.approx(100 * 4 / 7)  # the diagonal: the same predictions
    assert "confusion" not in " ".join(metrics.compute())  # the matrix is no scalar to log
    metrics.reset()
    assert metrics.confusion.confmat.sum() == 0


def test_confusion_matrix_of_a_two_process_split_is_the_sum() -> None:
    """Under DDP torchmetrics sums the per-process states (``dist_reduce_fx="sum"``); merging the states
    of two halves the same way gives the one-process matrix."""
    first, second = AspectSentimentMetrics(CLASSES), AspectSentimentMetrics(CLASSES)
    first.update(PREDS[::2], TARGET[::2], IMPLICIT[::2])  # a disjoint, uneven split: 4 and 3 examples
    second.update(PREDS[1::2], TARGET[1::2], IMPLICIT[1::2])
    assert first.confusion._reductions["confmat"] is dim_zero_sum  # what DDP's sync applies
    first.confusion.merge_state(second.confusion)
    assert first.confusion_matrix().tolist() == KNOWN_COUNTS


def test_confusion_table_and_figure() -> None:
    columns, rows = confusion_table(torch.tensor(KNOWN_COUNTS), CLASSES)
    assert columns == ["true", "predicted_positive", "predicted_negative", "predicted_neutral"]
    assert rows == [["positive", 2, 1, 0], ["negative", 1, 1, 0], ["neutral", 1, 0, 1]]
    image = figure_image(confusion_matrix_figure(torch.tensor(KNOWN_COUNTS), CLASSES, "val"))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 0
    with pytest.raises(ValueError, match="does not match 2 class names"):
        confusion_matrix_figure(torch.tensor(KNOWN_COUNTS), CLASSES[:2])


# --------------------------------------------------------------------------------------------------
# The projection
# --------------------------------------------------------------------------------------------------


def _blobs(per_class: int = 30, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs (unit spread) whose centres are 20 apart in ``dim`` dimensions."""
    rng = np.random.default_rng(seed)
    centres = 20.0 * np.eye(3, dim)
    labels = np.repeat(np.arange(3), per_class)
    return centres[labels] + rng.normal(size=(labels.size, dim)), labels


def _centroid_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose nearest class centroid (in 2-D) is their own class's."""
    centroids = np.stack([points[labels == c].mean(axis=0) for c in np.unique(labels)])
    nearest = np.linalg.norm(points[:, None] - centroids[None], axis=-1).argmin(axis=1)
    return float((nearest == labels).mean())


def test_projection_leaves_the_global_random_state_alone() -> None:
    """An exact resume restores the global generators: drawing a projection (and importing scikit-learn,
    which draws from Python's ``random`` on its first import) must not move them."""
    import random

    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    features, labels = _blobs(per_class=10)
    figure_image(scatter_figure(project_2d(features, seed=3), labels, CLASSES, "blobs"))
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_projection_keeps_well_separated_clusters_apart(method: str) -> None:
    features, labels = _blobs()
    points = project_2d(torch.from_numpy(features).float(), seed=0, method=method)
    assert points.shape == (90, 2) and np.isfinite(points).all()
    assert _centroid_accuracy(points, labels) == 1.0
    np.testing.assert_array_equal(points, project_2d(features, seed=0, method=method))  # deterministic


def test_projection_method_and_degenerate_inputs() -> None:
    assert projection_method(512) == "tsne" and projection_method(TSNE_MAX_POINTS + 1) == "pca"
    assert projection_method(3, "tsne") == "pca"  # t-SNE needs 4 points
    with pytest.raises(ValueError, match="projection method"):
        projection_method(10, "umap")
    collapsed = project_2d(torch.ones(6, 8))  # every feature equal: nothing to spread
    assert collapsed.shape == (6, 2) and not collapsed.any()
    line = project_2d(torch.tensor([[0.0], [1.0], [3.0]]))  # D = 1: the second coordinate is 0
    assert np.isfinite(line).all() and not line[:, 1].any() and np.ptp(line[:, 0]) == pytest.approx(3.0)
    assert project_2d(torch.zeros(0, 4)).shape == (0, 2)
    with pytest.raises(ValueError, match="NaN"):
        project_2d(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def test_log_figure_writes_a_png_without_w_and_b(tmp_path: Path) -> None:
    figure = scatter_figure(np.zeros((2, 2)), np.array([0, 5]), CLASSES, "two points")  # 5: no name, shown as 5
    logger = CSVLogger(tmp_path, name="run")
    path = log_figure([logger], "val/projection", figure, step=7, png_name="projections/step_7.png")
    assert path == Path(logger.log_dir) / "projections" / "step_7.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    default = log_figure([logger], "val/projection", figure, step=8)
    assert default == Path(logger.log_dir) / "val_projection" / "step_8.png" and default.is_file()


def test_log_figure_gives_tensorboard_an_image_and_writes_no_png(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import TensorBoardLogger

    class Writer:  # the SummaryWriter calls log_figure makes (tensorboard is not installed here)
        def __init__(self) -> None:
            self.images: list[tuple[str, np.ndarray, int, str]] = []

        def add_image(self, tag: str, image: np.ndarray, global_step: int, dataformats: str) -> None:
            self.images.append((tag, image, global_step, dataformats))

    class FakeTensorBoard(TensorBoardLogger):
        def __init__(self) -> None:  # no tensorboard import
            self.writer = Writer()

        @property
        def experiment(self) -> Writer:
            return self.writer

    logger = FakeTensorBoard()
    figure = scatter_figure(np.zeros((2, 2)), np.array([0, 1]), CLASSES, "two points")
    assert log_figure([logger], "val/projection", figure, step=3) is None  # TensorBoard has it: no PNG
    [(tag, image, step, dataformats)] = logger.writer.images
    assert (tag, step, dataformats) == ("val/projection", 3, "HWC")
    assert image.dtype == np.uint8 and image.shape == (550, 600, 3)  # 6 x 5.5 inches at 100 dpi
    both = log_figure([logger, CSVLogger(tmp_path, name="run")], "val/projection", figure, step=4)
    assert both is not None and both.is_file() and len(logger.writer.images) == 2  # and a CSV run gets the PNG


def test_flatten_gives_flat_keys() -> None:
    nested = {"a": 1, "label_map": {"pos": "positive"}, "classes": ("x", "y"), "_class_path": "m.C", "none": {}}
    assert flatten(nested) == {"a": 1, "label_map.pos": "positive", "classes": ["x", "y"], "none": {}}


# --------------------------------------------------------------------------------------------------
# Tiny end-to-end runs
# --------------------------------------------------------------------------------------------------


class TinyData(pl.LightningDataModule):
    """Two training batches and one validation / test batch (and, for phase 1, the probe's reference
    batch), with the hyperparameters and class names of scpt's datamodules."""

    def __init__(self, batch: dict[str, torch.Tensor], val_loaders: int, in_domain: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters({"in_domain": in_domain, "batch_size": 6, "label_map": {"good": "positive"}})
        self.batch, self.val_loaders, self.class_names = batch, val_loaders, CLASSES

    def _loader(self, copies: int) -> DataLoader:
        return DataLoader([self.batch] * copies, batch_size=None)  # batch_size=None: each item is a batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(2)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(1) for _ in range(self.val_loaders)]

    def test_dataloader(self) -> DataLoader:
        return self._loader(1)


def _pretrain_batch(tokenizer) -> dict[str, torch.Tensor]:
    encoded = []
    for text, label in TEXTS:
        term = text.split()[0]
        example = CorpusExample(text, "x", (AspectSpan(term, 0, len(term)),), None, "test")
        encoded.append(encode_pretraining_example(tokenizer, example, label, "sentence", 32))
    return collate_pretraining(encoded, tokenizer.pad_token_id)


def _finetune_batch(tokenizer) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer([text for text, _ in TEXTS], padding=True, return_tensors="pt"))
    aspect_mask = torch.zeros_like(batch["attention_mask"])
    aspect_mask[:, 1] = 1  # the first word is the aspect
    labels = torch.tensor([label for _, label in TEXTS])
    return {**batch, "aspect_mask": aspect_mask, "labels": labels, "implicit": torch.tensor([1, 0, 1, 0, -1, 0])}


def _trainer(root: Path, logger, val_check_interval: int = 1) -> pl.Trainer:
    return pl.Trainer(
        max_steps=2,
        val_check_interval=val_check_interval,
        num_sanity_val_steps=1,  # the sanity check draws nothing
        logger=logger,
        default_root_dir=root,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        log_every_n_steps=1,
    )


def _pretrain_module(tiny_bert_dir: Path, **kwargs) -> ContrastivePretrainModule:
    torch.manual_seed(0)
    return ContrastivePretrainModule(
        encoder=str(tiny_bert_dir), lambda_map=0.0, lambda_rr=0.0, decoder_layers=1, **kwargs
    )


def test_phase_1_writes_projections_beside_the_run_and_flat_hyperparameters(
    tiny_bert_dir: Path, minilm_tokenizer, tmp_path: Path, one_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # seed_everything sets it; restored after the test
    pl.seed_everything(7)
    data = TinyData(_pretrain_batch(minilm_tokenizer), val_loaders=2, in_domain=["restaurants", "mams"])
    logger = CSVLogger(tmp_path, name="pretrain")
    # validations after steps 1 and 2; every 2nd from the first: only step 1's is drawn
    _trainer(tmp_path, logger).fit(_pretrain_module(tiny_bert_dir, projection_every=2), datamodule=data)
    run = Path(logger.log_dir)
    assert sorted(p.name for p in (run / "projections").iterdir()) == ["step_1.png"]
    assert (run / "projections" / "step_1.png").read_bytes().startswith(b"\x89PNG")

    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    expected = {
        "phase": "pretrain",
        "loss": "scpt.losses.SupConLoss",
        "loss_temperature": 0.07,
        "lambda_scl": 2.0,
        "lambda_map": 0.0,
        "queue_size": 0,
        "projection_every": 2,
        "batch_size": 6,
        "world_size": 1,
        "global_batch_size": 6,
        "seed": 7,
        "dataset": "restaurants+mams",
        "encoder": str(tiny_bert_dir),
    }
    assert {key: hparams.get(key) for key in expected} == expected
    assert hparams["label_map.good"] == "positive" and hparams["class_names"] == list(CLASSES)
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/alignment", "val/effective_rank", "val/mean_cosine", "train/scl_collapsed_step"} <= set(header)

    off = CSVLogger(tmp_path, name="off")  # projection_every 0: none
    _trainer(tmp_path, off).fit(_pretrain_module(tiny_bert_dir, projection_every=0), datamodule=data)
    assert not (Path(off.log_dir) / "projections").exists()
    with pytest.raises(ValueError, match="projection_every must be >= 0"):
        _pretrain_module(tiny_bert_dir, projection_every=-1)


def test_phase_2_writes_confusion_matrices_beside_the_run(
    tiny_bert_dir: Path, minilm_tokenizer, tmp_path: Path, one_thread
) -> None:
    torch.manual_seed(0)
    data = TinyData(_finetune_batch(minilm_tokenizer), val_loaders=1, in_domain=["restaurants"])
    data.save_hyperparameters({"dataset": "restaurants", "batch_size": 6})
    logger = CSVLogger(tmp_path, name="finetune")
    trainer = _trainer(tmp_path, logger)
    module = AspectSentimentModule(encoder=str(tiny_bert_dir), head_dim=8)
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data)
    run = Path(logger.log_dir)
    written = sorted(p.name for p in (run / "confusion").iterdir())
    assert written == ["test_step_2.png", "val_step_1.png", "val_step_2.png"]  # no sanity-check figure
    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["phase"] == "finetune" and hparams["dataset"] == "restaurants" and hparams["head_dim"] == 8
    assert hparams["class_names"] == list(CLASSES) and hparams["global_batch_size"] == 6


def test_offline_w_and_b_run_gets_images_tables_tags(
    tiny_bert_dir: Path, minilm_tokenizer, tmp_path: Path, one_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # the suite disables W&B; this test runs it, locally
    monkeypatch.setenv("WANDB_RUN_GROUP", "dashboards-test")  # runners group runs this way
    monkeypatch.setenv("WANDB_SILENT", "true")
    torch.manual_seed(0)
    pretrain_data = TinyData(_pretrain_batch(minilm_tokenizer), val_loaders=2, in_domain=["restaurants"])
    finetune_data = TinyData(_finetune_batch(minilm_tokenizer), val_loaders=1, in_domain=["restaurants"])
    finetune_data.save_hyperparameters({"dataset": "restaurants", "batch_size": 6})
    logger = WandbLogger(save_dir=tmp_path, offline=True, project="scpt-test")
    try:
        trainer = _trainer(tmp_path, logger, val_check_interval=2)  # one validation, after step 2
        trainer.fit(_pretrain_module(tiny_bert_dir), datamodule=pretrain_data)
        module = AspectSentimentModule(encoder=str(tiny_bert_dir), head_dim=8)
        trainer = _trainer(tmp_path, logger, val_check_interval=2)
        trainer.fit(module, datamodule=finetune_data)
        trainer.test(module, datamodule=finetune_data)
        run = logger.experiment
        assert run.settings.mode in ("offline", "dryrun")  # nothing sent anywhere
        assert run.group == "dashboards-test" and {"pretrain", "finetune"} <= set(run.tags)
        assert run.config["phase"] == "finetune" and run.config["loss"] == "scpt.losses.SupConLoss"
        images = ("val/projection", "val/confusion_matrix", "test/confusion_matrix")
        tables = ("val/projection_table", "val/confusion_matrix_table", "test/confusion_matrix_table", "test/results")
        summary = {key: run.summary[key] for key in (*images, *tables, "test/acc")}  # offline: no summary file
        assert {summary[key]["_type"] for key in images} == {"images/separated"}
        assert {summary[key]["_type"] for key in tables} == {"table-file"}
        run_dir = Path(run.dir)
    finally:
        wandb.finish()
    media = run_dir / "media"
    assert list(media.glob("images/val/projection_*.png")) and list(media.glob("images/test/confusion_matrix_*.png"))
    results = json.loads(next(media.glob("table/test/results_*.table.json")).read_text())
    assert results["columns"] == ["acc", "macro_f1", "ise_acc", "ese_acc", "f1_positive", "f1_negative", "f1_neutral"]
    assert len(results["data"]) == 1 and results["data"][0][0] == pytest.approx(summary["test/acc"])
    projection = json.loads(next(media.glob("table/val/projection_table_*.table.json")).read_text())
    assert projection["columns"] == ["x", "y", "label"] and len(projection["data"]) == len(TEXTS)
    assert {row[2] for row in projection["data"]} == set(CLASSES)
    assert not list(tmp_path.rglob("projections/*.png")) and not list(tmp_path.rglob("confusion/*.png"))  # W&B has them
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))  # what `wandb sync` uploads


def test_runners_group_their_runs_unless_a_group_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """scpt pipeline and scpt finetune seeds group their W&B runs; a sweep's group (already set) wins."""
    from scpt.training.files import RUN_GROUP_ENV, run_group

    monkeypatch.delenv(RUN_GROUP_ENV, raising=False)
    with run_group("seeds-restaurants") as group:
        assert group == os.environ[RUN_GROUP_ENV] == "seeds-restaurants"
        with run_group("pipeline-inner") as inner:  # the pipeline's seeds stay in the pipeline's group
            assert inner == "seeds-restaurants"
    assert RUN_GROUP_ENV not in os.environ
    monkeypatch.setenv(RUN_GROUP_ENV, "sweep-7")
    with run_group("pipeline-restaurants") as group:
        assert group == "sweep-7"
    assert os.environ[RUN_GROUP_ENV] == "sweep-7"
