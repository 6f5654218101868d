"""One sweep trial of the two-phase pipeline: ``scpt pipeline`` with swept Lightning options.

    python -m scpt.sweep.pipeline_trial --config configs/pipeline/restaurants_quick.yaml \\
        --model.loss configs/loss/dscl.yaml --model.loss.init_args.temperature=0.3

The pipeline config is read as ``scpt pipeline`` reads it; every other option joins phase 1's arguments
(after the config's own ``pretrain.args``), except ``--finetune.<key>[=value]``, which joins phase 2's
as ``--<key>``. The output directory is, first found: ``--trainer.default_root_dir`` (what
``scpt sweep`` appends: the trial's directory; ``--trainer.logger.init_args.save_dir`` is dropped, the
pipeline places its loggers itself), ``$SCPT_TRIAL_DIR``, ``<output_dir>/wandb-$WANDB_RUN_ID`` (under a
``wandb agent``), else ``<output_dir>/trial-<hash of the options>``. At its end ``run_pipeline`` writes
the dev metrics for the sweep (:func:`scpt.training.trial.write_trial_result`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
from pathlib import Path

from scpt.finetune.seeds import check_seeds
from scpt.pipeline import PhaseSpec, load_pipeline_config, run_pipeline

DIR_OPTION = "--trainer.default_root_dir"
DROPPED_OPTIONS = ("--trainer.logger.init_args.save_dir",)
FINETUNE_PREFIX = "--finetune."


def split_options(options: list[str]) -> tuple[list[str], list[str], str | None]:
    """Phase 1's arguments, phase 2's, and the output directory (``None`` when not given) of ``options``.

    ``["--a=1", "--finetune.b", "2", "--trainer.default_root_dir=D"]`` -> ``(["--a=1"], ["--b", "2"], "D")``.
    """
    pretrain: list[str] = []
    finetune: list[str] = []
    directory: str | None = None
    index = 0
    while index < len(options):
        option = options[index]
        name, has_value, value = option.partition("=")
        takes_next = not has_value and index + 1 < len(options) and not options[index + 1].startswith("--")
        if takes_next:
            value = options[index + 1]
        step = 2 if takes_next else 1
        if name == DIR_OPTION:
            directory = value
        elif name in DROPPED_OPTIONS:
            pass  # dropped: the pipeline sets each stage's logger save_dir under its output directory
        elif name.startswith(FINETUNE_PREFIX):
            target = "--" + name.removeprefix(FINETUNE_PREFIX)
            finetune += [f"{target}={value}"] if has_value else [target, *([value] if takes_next else [])]
        else:
            pretrain += options[index : index + step]
        index += step
    return pretrain, finetune, directory


def trial_output_dir(config_dir: Path, given: str | None, options: list[str]) -> Path:
    """Where the trial's pipeline writes (module docstring)."""
    if given:
        return Path(given)
    if os.environ.get("SCPT_TRIAL_DIR"):
        return Path(os.environ["SCPT_TRIAL_DIR"])
    if os.environ.get("WANDB_RUN_ID"):
        return config_dir / f"wandb-{os.environ['WANDB_RUN_ID']}"
    digest = hashlib.sha256("\0".join(options).encode()).hexdigest()[:10]
    return config_dir / f"trial-{digest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scpt.sweep.pipeline_trial", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--config", required=True, type=Path, help="pipeline YAML (configs/pipeline/)")
    parser.add_argument("--seeds", type=int, nargs="+", help="overrides the config's seeds")
    args, options = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    config = load_pipeline_config(args.config)
    pretrain, finetune, directory = split_options(options)
    if args.seeds is not None:
        check_seeds(args.seeds, "--seeds")
    config = dataclasses.replace(
        config,
        output_dir=trial_output_dir(config.output_dir, directory, options),
        seeds=args.seeds or config.seeds,
        pretrain=PhaseSpec(config.pretrain.configs, [*config.pretrain.args, *pretrain]),
        finetune=PhaseSpec(config.finetune.configs, [*config.finetune.args, *finetune]),
    )
    run_pipeline(config)
    return 0


if __name__ == "__main__":
    from scpt.errors import debug_requested, report

    try:
        sys.exit(main())
    except Exception as error:  # worded as the scpt console script words it: one line for a user's mistake
        code = report("scpt.sweep.pipeline_trial", error, debug_requested(sys.argv))
        if code is None:
            raise
        sys.exit(code)
