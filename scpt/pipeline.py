"""``scpt pipeline``: phase 1, then phase 2 with and without it on the same seeds, and a results table.

    scpt pipeline --config configs/pipeline/restaurants.yaml

Stages, each under ``output_dir`` and each skipped when already done (re-running the command resumes
a crashed or interrupted run; a finished stage is never redone):

1. ``pretrain/``: ``scpt pretrain fit`` with the pipeline's pre-training configs (resumes from its
   ``last.ckpt`` when a previous attempt stopped midway); then ``encoder/``: ``scpt export`` of the
   last checkpoint (the HF directory phase 2 loads).
2. ``finetune/pretrained/``: ``scpt finetune seeds`` with ``--model.encoder <output_dir>/encoder``.
3. ``finetune/direct/``: the same seeds from the base encoder.
4. ``variants/<name>/`` for each pre-training variant (optional ``variants``: an ablation such as
   ``lambda_scl = 0``, another pre-training seed): pre-training with the variant's extra arguments and its
   export, then ``finetune/<name>/`` on the same seeds.
5. With ``pretrain_seeds`` (optional), every pre-training (the main one and each variant's) again once per
   seed S with ``--seed_everything S``, as the variant ``<arm>.seed<S>`` (``variants/pretrained.seed8/``,
   ``finetune/pretrained.seed8/``, ...): pre-training runs vary as much as the effects they are used to
   measure, so one pre-training per arm says little.
6. ``results.md`` and ``results.json``: test accuracy, macro-F1, ISE and ESE accuracy, mean ± std
   per arm, and the paired differences per seed: pre-trained − direct and, for each variant,
   pre-trained − variant and variant − direct. With ``pretrain_seeds``, the same per pre-training run
   (``over_pretraining``: a run's mean over the fine-tuning seeds, then mean ± std and the 95% t interval
   over the runs; :func:`compare`).

A stage records the arguments it ran with; resuming with different ones is an error naming the stage
(delete its directory to redo it), so a results table never mixes two settings. Arguments that only
change what is printed (:data:`~scpt.training.files.DISPLAY_ARGS`, e.g. ``--trainer.enable_progress_bar``)
are left out of that comparison.

Progress: the work is n = 1 + 2 · len(seeds) stages (pre-training with its export, then one
fine-tuning run per arm and seed), plus 1 + len(seeds) per variant and per replicate, and each prints ``stage k/n`` with
the elapsed time and an estimate of the time left (:class:`StageProgress`: every stage still to run
costs the mean duration of the finished stages of its kind, recorded ones included when resuming).
Within a stage the trainer shows its progress bar on a terminal, or
:class:`scpt.training.progress.ProgressLog` lines when the output is a file or a pipe.

The pipeline config (YAML)::

    output_dir: runs/pipeline/restaurants
    seeds: [1, 2, 3]
    pretrain:
      configs: [configs/pretrain/restaurants.yaml]
      args: []                 # extra Lightning CLI arguments
    finetune:
      configs: [configs/finetune/restaurants.yaml]
      args: []
    variants:                  # optional: more pre-trainings (extra arguments after pretrain.args)
      no_scl: [--model.lambda_scl, "0"]
    pretrain_seeds: [8, 9]     # optional: replicate every pre-training with these seeds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scpt.errors import UserError
from scpt.finetune.seeds import TABLE_METRICS, check_seeds
from scpt.training.files import (
    format_duration,
    read_record,
    read_yaml,
    run_group,
    without_display_args,
    write_atomically,
)
from scpt.training.stats import mean_std, t_interval
from scpt.training.trial import write_trial_result

STAGE_FILE = "stage.json"
ARMS = ("pretrained", "direct")
"""The two arms every pipeline runs; a variant adds an arm named after it."""
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class PipelineConfigError(ValueError):
    """The pipeline config is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class PhaseSpec:
    """Lightning CLI config files and extra arguments of one phase."""

    configs: list[str]
    args: list[str] = field(default_factory=list)

    def cli_args(self) -> list[str]:
        return [item for path in self.configs for item in ("--config", path)] + list(self.args)


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline: where it writes, the fine-tuning seeds, both phases, and the pre-training variants
    (name -> extra pre-training arguments, appended to ``pretrain.args``)."""

    output_dir: Path
    seeds: list[int]
    pretrain: PhaseSpec
    finetune: PhaseSpec
    variants: dict[str, list[str]] = field(default_factory=dict)
    pretrain_seeds: list[int] = field(default_factory=list)
    source: str = "the pipeline config"
    """Where the config came from (its file), for error messages."""

    @property
    def replicates(self) -> dict[str, list[str]]:
        """Per pre-trained arm (``pretrained`` and each variant), its pre-training runs: the arm itself, then one
        :func:`replicate_name` per seed of ``pretrain_seeds``; empty without ``pretrain_seeds``."""
        if not self.pretrain_seeds:
            return {}
        arms = ["pretrained", *self.variants]
        return {arm: [arm, *(replicate_name(arm, seed) for seed in self.pretrain_seeds)] for arm in arms}

    @property
    def pretrainings(self) -> dict[str, list[str]]:
        """Every pre-training besides the main one, in the order they run, with its arguments after
        ``pretrain.args``: the variants, then the replicates (the main pre-training's, then each variant's), a
        replicate being its arm's arguments followed by ``--seed_everything S``."""
        runs = dict(self.variants)
        for arm, names in self.replicates.items():
            for seed, name in zip(self.pretrain_seeds, names[1:]):
                runs[name] = [*self.variants.get(arm, []), "--seed_everything", str(seed)]
        return runs

    def pretraining_args(self, variant: str | None = None) -> list[str]:
        """The extra pre-training arguments of the main pre-training or of ``variant`` (a name of
        :attr:`pretrainings`): ``pretrain.args``, then the variant's own."""
        return [*self.pretrain.args, *(self.pretrainings[variant] if variant is not None else [])]


def replicate_name(arm: str, seed: int) -> str:
    """The arm of ``arm``'s pre-training replicated with ``--seed_everything seed``: ``pretrained.seed8``."""
    return f"{arm}.seed{seed}"


def _phase(path: Path, raw: Any, name: str) -> PhaseSpec:
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: '{name}' must be a mapping with 'configs' (and optional 'args')")
    unknown = set(raw) - {"configs", "args"}
    if unknown:
        raise PipelineConfigError(
            f"{path}: unknown field(s) under '{name}': {sorted(unknown)}; expected 'configs', 'args'"
        )
    configs, args = raw.get("configs"), raw.get("args") or []
    if not isinstance(configs, list) or not configs or not all(isinstance(c, str) for c in configs):
        raise PipelineConfigError(f"{path}: '{name}.configs' must be a non-empty list of config files, got {configs!r}")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise PipelineConfigError(f"{path}: '{name}.args' must be a list of strings, got {args!r}")
    for config in configs:
        if not Path(config).is_file():
            raise PipelineConfigError(f"{path}: '{name}.configs' names {config}, which does not exist")
    return PhaseSpec(list(configs), list(args))


def _variants(path: Path, raw: Any) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: 'variants' must map a name to a list of pre-training arguments")
    for name, args in raw.items():
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name) or name in ARMS:
            raise PipelineConfigError(
                f"{path}: variant name {name!r} must be letters, digits, '_', '.', '-' and not one of {list(ARMS)}"
            )
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise PipelineConfigError(f"{path}: 'variants.{name}' must be a list of strings, got {args!r}")
    return {name: list(args) for name, args in raw.items()}


def _check_seeds(seeds: Sequence[int], where: str) -> None:
    """:func:`~scpt.finetune.seeds.check_seeds`, raising :class:`PipelineConfigError`."""
    try:
        check_seeds(seeds, where)
    except UserError as error:
        raise PipelineConfigError(str(error)) from None


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and check a pipeline config.

    Raises:
        PipelineConfigError: unknown or missing fields, wrong types, missing config files.
    """
    path = Path(path)
    try:
        raw = read_yaml(path)
    except UserError as error:
        raise PipelineConfigError(str(error)) from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: expected a mapping with output_dir, seeds, pretrain, finetune")
    unknown = set(raw) - {"output_dir", "seeds", "pretrain", "finetune", "variants", "pretrain_seeds"}
    if unknown:
        raise PipelineConfigError(
            f"{path}: unknown field(s) {sorted(unknown)}; expected output_dir, seeds, pretrain, finetune"
            " (and optional variants, pretrain_seeds)"
        )
    for key in ("output_dir", "seeds", "pretrain", "finetune"):
        if key not in raw:
            raise PipelineConfigError(f"{path}: missing field '{key}'")
    if not isinstance(raw["output_dir"], str) or not raw["output_dir"]:
        raise PipelineConfigError(f"{path}: 'output_dir' must be a directory path, got {raw['output_dir']!r}")
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise PipelineConfigError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    _check_seeds(seeds, f"{path}: 'seeds'")
    pretrain_seeds = raw.get("pretrain_seeds") or []
    if not isinstance(pretrain_seeds, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in pretrain_seeds
    ):
        raise PipelineConfigError(f"{path}: 'pretrain_seeds' must be a list of integers, got {pretrain_seeds!r}")
    if pretrain_seeds:
        _check_seeds(pretrain_seeds, f"{path}: 'pretrain_seeds'")
    config = PipelineConfig(
        Path(raw["output_dir"]),
        list(seeds),
        _phase(path, raw["pretrain"], "pretrain"),
        _phase(path, raw["finetune"], "finetune"),
        _variants(path, raw.get("variants")),
        list(pretrain_seeds),
        str(path),
    )
    taken = [name for names in config.replicates.values() for name in names[1:] if name in config.variants]
    if taken:
        raise PipelineConfigError(f"{path}: variant name {taken[0]!r} is the name of a pre-training replicate")
    return config


# --------------------------------------------------------------------------------------------------
# Stage bookkeeping
# --------------------------------------------------------------------------------------------------


def _same_plan(recorded: Any, plan: dict[str, Any]) -> bool:
    """Whether a recorded plan is ``plan``, up to :data:`DISPLAY_ARGS`."""
    if not isinstance(recorded, dict) or set(recorded) != set(plan):
        return False
    return recorded.get("configs") == plan.get("configs") and without_display_args(
        recorded.get("args") or []
    ) == without_display_args(plan.get("args") or [])


def _check_or_record(directory: Path, name: str, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The stage's record if it finished; ``None`` if it has not run, or began but left nothing to resume.

    A stage that finished, or began and left a checkpoint, with a different plan (display options aside) is
    an error: resuming would mix two settings. One that began and left no checkpoint (it failed while
    building its model or data, e.g. on a bad value) is started afresh with the new plan.
    """
    record_file = directory / STAGE_FILE
    if not record_file.exists():
        return None
    record = read_record(record_file)
    if not _same_plan(record.get("plan"), plan):
        partial = None if record.get("done") else next(iter(sorted(directory.glob("**/*.ckpt"))), None)
        if not record.get("done") and partial is None:
            return None
        what = "ran" if record.get("done") else f"began (its checkpoint {partial})"
        raise RuntimeError(
            f"stage '{name}' in {directory} {what} with different arguments:\n  recorded: {record.get('plan')}\n"
            f"  now:      {plan}\nremove {directory} to redo it, or choose another output_dir"
        )
    return record if record.get("done") else None


def _write_record(directory: Path, plan: dict[str, Any], done: bool, **extra: Any) -> None:
    record = {"plan": plan, "done": done, **extra}
    write_atomically(directory / STAGE_FILE, json.dumps(record, indent=2) + "\n", overwrite=True)


def _log(message: str, started: float) -> None:
    print(f"[pipeline {time.perf_counter() - started:7.0f} s] {message}", flush=True)


PRETRAINING, FINETUNING = "pre-training", "fine-tuning run"
"""The kinds of stage, each estimated from the finished stages of its kind."""


def pretraining_stage(variant: str | None = None) -> str:
    """The name of a pre-training stage (the main one, or a variant's)."""
    return "pre-training and export" + (f" ({variant})" if variant is not None else "")


def finetuning_stage(arm: str, seed: int) -> str:
    """The name of one fine-tuning run."""
    return f"fine-tuning ({arm}), seed {seed}"


def pipeline_stages(seeds: Sequence[int], variants: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The pipeline's stages as ``(name, kind)``, in the order they run: pre-training, a fine-tuning run
    per arm (pre-trained, direct) and seed, then per variant its pre-training and its fine-tuning runs."""
    stages = [(pretraining_stage(), PRETRAINING)]
    stages += [(finetuning_stage(arm, seed), FINETUNING) for arm in ARMS for seed in seeds]
    for variant in variants:
        stages += [(pretraining_stage(variant), PRETRAINING)]
        stages += [(finetuning_stage(variant, seed), FINETUNING) for seed in seeds]
    return stages


class StageProgress:
    """Prints ``stage k/n`` lines with the elapsed time and an estimate of the time left.

    The estimate (:meth:`remaining`) gives every stage not yet finished the mean duration of the
    finished stages of its kind (those of this session and, when resuming, the recorded ones); while a
    kind still to run has no finished stage, the time left is not estimated.

    Args:
        stages: ``(name, kind)`` per stage, in order (:func:`pipeline_stages`).
        clock: seconds (tests pass a fake clock).
        write: where a line goes (default: ``print``, flushed).
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, str]],
        clock: Callable[[], float] = time.perf_counter,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.stages = list(stages)
        self.clock = clock
        self.write = write if write is not None else (lambda line: print(line, flush=True))
        self.started = clock()
        self.stage_started = self.started
        self.durations: dict[str, list[float]] = {}

    def index(self, name: str) -> int:
        """The 0-based position of the stage called ``name``."""
        return [stage for stage, _ in self.stages].index(name)

    def remaining(self, index: int) -> float | None:
        """Estimated seconds of stages ``index`` .. n-1 (0-based); ``None`` while one has no finished kin."""
        total = 0.0
        for _, kind in self.stages[index:]:
            if not self.durations.get(kind):
                return None
            total += statistics.fmean(self.durations[kind])
        return total

    def _where(self, index: int) -> str:
        return f"[pipeline] stage {index + 1}/{len(self.stages)}: {self.stages[index][0]}"

    def _time(self, index: int) -> str:
        remaining = self.remaining(index)
        if remaining is None:
            pending = dict.fromkeys(kind for _, kind in self.stages[index:] if not self.durations.get(kind))
            left = f"time left: estimated after the first {' and first '.join(pending)}"
        else:
            left = f"about {format_duration(remaining)} left"
        return f"elapsed {format_duration(self.clock() - self.started)} | {left}"

    def start(self, index: int) -> None:
        """Stage ``index`` (0-based) begins: print where the pipeline is and how long the rest should take."""
        self.stage_started = self.clock()
        self.write(f"{self._where(index)} | {self._time(index)}")

    def finish(self, index: int, seconds: float | None = None) -> None:
        """Stage ``index`` has finished, in ``seconds`` (default: since :meth:`start`); print the new estimate."""
        seconds = self.clock() - self.stage_started if seconds is None else seconds
        self.durations.setdefault(self.stages[index][1], []).append(seconds)
        self.write(f"{self._where(index)} finished in {format_duration(seconds)} | {self._time(index + 1)}")

    def done_before(self, index: int, seconds: float) -> None:
        """Stage ``index`` finished in an earlier session, in the recorded ``seconds`` (counted for estimates)."""
        self.durations.setdefault(self.stages[index][1], []).append(seconds)
        self.write(f"{self._where(index)}: done before ({format_duration(seconds)})")


def parse_phase(phase: str, spec: PhaseSpec) -> Any:
    """The configuration of a phase (``"pretrain"`` or ``"finetune"``) as its CLI parses it: config files,
    interpolations, arguments and defaults; nothing instantiated."""
    if phase == "pretrain":
        from scpt.pretrain.cli import parse_config
    else:
        from scpt.finetune.cli import parse_config
    return parse_config(spec.cli_args())


def dev_split(phase: str, spec: PhaseSpec) -> dict[str, Any]:
    """``data.dev_fraction`` and ``data.split_seed`` of a phase, read as :func:`parse_phase` reads it."""
    return _split_of(parse_phase(phase, spec))


def _split_of(parsed: Any) -> dict[str, Any]:
    return {"dev_fraction": parsed.data.dev_fraction, "split_seed": parsed.data.split_seed}


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------


def _progress(config: PipelineConfig, progress: StageProgress | None) -> StageProgress:
    return progress if progress is not None else StageProgress(pipeline_stages(config.seeds, list(config.pretrainings)))


def pretraining_dir(config: PipelineConfig, variant: str | None = None) -> Path:
    """Where a pre-training stage keeps ``pretrain/`` and ``encoder/``: ``output_dir``, or
    ``output_dir/variants/<name>`` for a variant."""
    return config.output_dir if variant is None else config.output_dir / "variants" / variant


def run_pretraining(
    config: PipelineConfig, started: float, progress: StageProgress | None = None, variant: str | None = None
) -> Path:
    """Pre-train (resuming a partial run), export the last checkpoint; return the encoder directory.

    ``variant`` names one of ``config.variants``: its arguments follow ``pretrain.args`` and it runs under
    ``output_dir/variants/<name>``."""
    from scpt.export import export_encoder
    from scpt.pretrain.cli import build_cli
    from scpt.training.resume import continue_in_run_folder

    progress = _progress(config, progress)
    stage_index = progress.index(pretraining_stage(variant))
    root = pretraining_dir(config, variant)
    directory, encoder_dir = root / "pretrain", root / "encoder"
    args = config.pretraining_args(variant)
    plan = {"configs": config.pretrain.configs, "args": args}
    label = "pre-training" if variant is None else f"pre-training ({variant})"
    record = _check_or_record(directory, directory.relative_to(config.output_dir).as_posix(), plan)
    if record is not None and encoder_dir.is_dir():
        _log(f"{label}: done before ({record['checkpoint']}, {record['seconds'] / 60:.1f} min)", started)
        progress.done_before(stage_index, record["seconds"])
        return encoder_dir
    progress.start(stage_index)
    if record is None:
        directory.mkdir(parents=True, exist_ok=True)
        _write_record(directory, plan, done=False)
        partial = sorted(directory.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        resume = str(partial[-1]) if partial else None
        _log(f"{label} in {directory}" + (f", resuming from {resume}" if resume else ""), started)
        stage_started = time.perf_counter()
        cli = build_cli(
            [
                *PhaseSpec(config.pretrain.configs, args).cli_args(),
                f"--trainer.default_root_dir={directory}",
                f"--trainer.logger.init_args.save_dir={directory}",
            ],
            run=False,
        )
        continue_in_run_folder(cli.trainer, resume)  # the same version_N folder: no second checkpoint
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume, weights_only=True)
        callback = cli.trainer.checkpoint_callback
        checkpoint = (callback.last_model_path or callback.best_model_path) if callback is not None else ""
        if not checkpoint:
            raise RuntimeError(
                "pre-training saved no checkpoint: the pre-training config needs ModelCheckpoint(save_last=True)"
            )
        record = {"checkpoint": checkpoint, "seconds": round(time.perf_counter() - stage_started, 1)}
        _write_record(directory, plan, done=True, **record)
        _log(f"{label} finished in {record['seconds'] / 60:.1f} min: {checkpoint}", started)
    if not encoder_dir.is_dir():
        export_encoder(record["checkpoint"], encoder_dir)
        _log(f"exported the pre-trained encoder to {encoder_dir}", started)
    progress.finish(stage_index)
    return encoder_dir


def run_finetuning(
    config: PipelineConfig, arm: str, extra: list[str], started: float, progress: StageProgress | None = None
) -> dict[str, Any]:
    """``scpt finetune seeds`` for one arm (``pretrained``, ``direct`` or a variant's name), one seed at a time (it
    resumes per seed; each call names the seeds so far, so its summary covers them all); return its summary."""
    from scpt.finetune.seeds import main as seeds_main

    directory = config.output_dir / "finetune" / arm
    args = [*config.finetune.args, *extra]
    summary_file = directory / "summary.json"
    progress = _progress(config, progress)
    first_stage = progress.index(finetuning_stage(arm, config.seeds[0]))
    if summary_file.exists():
        previous = read_record(summary_file)
        if previous.get("configs") != config.finetune.configs or without_display_args(
            previous.get("extra_args") or []
        ) != without_display_args(args):
            raise RuntimeError(
                f"stage 'finetune/{arm}' in {directory} ran with different arguments:\n"
                f"  recorded: {previous.get('configs')} {previous.get('extra_args')}\n"
                f"  now:      {config.finetune.configs} {args}\nremove {directory} to redo it"
            )
        done = {run["seed"]: run for run in previous["runs"]}
        if set(done) >= set(config.seeds):
            _log(f"fine-tuning ({arm}): done before", started)
            for offset, seed in enumerate(config.seeds):
                progress.done_before(first_stage + offset, done[seed]["seconds"])
            return _summary_for_seeds(previous, config.seeds)
    _log(f"fine-tuning ({arm}) on seeds {config.seeds} in {directory}", started)
    config_argv = [item for path in config.finetune.configs for item in ("--config", path)]
    for offset, seed in enumerate(config.seeds):
        stage = first_stage + offset
        result_file = directory / f"seed{seed}" / "result.json"  # where scpt finetune seeds keeps a seed's result
        ran_before = result_file.exists()
        if ran_before:
            progress.done_before(stage, json.loads(result_file.read_text())["seconds"])
        else:
            progress.start(stage)
        seeds = [str(s) for s in config.seeds[: offset + 1]]
        seeds_main([*config_argv, "--seeds", *seeds, "--output-dir", str(directory), "--", *args])
        if not ran_before:
            progress.finish(stage)
    return _summary_for_seeds(json.loads(summary_file.read_text()), config.seeds)


def _summary_for_seeds(summary: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    by_seed = {run["seed"]: run for run in summary["runs"]}
    return {"runs": [by_seed[seed] for seed in seeds]}


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


def compared_pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """The paired differences reported, as ``(minuend, subtrahend)``: pre-trained − direct, then per variant
    pre-trained − variant and variant − direct (``arms``: the main arms and the variants, no replicates)."""
    variants = [arm for arm in arms if arm not in ARMS]
    return [("pretrained", "direct"), *(pair for v in variants for pair in (("pretrained", v), (v, "direct")))]


def _over_runs(run_means: list[float]) -> dict[str, Any]:
    """Mean ± std of one value per pre-training run, with its 95% t interval (:func:`t_interval`)."""
    return {**mean_std(run_means), "ci95": list(t_interval(run_means)), "runs": run_means}


def compare(
    arms: dict[str, dict[str, Any]], seeds: list[int], replicates: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Per arm and metric mean ± std over seeds, and the paired per-seed differences (:func:`compared_pairs`).

    ``arms`` maps an arm to its summary, whose ``runs`` are in the order of ``seeds``. ``table["difference"]``
    is pre-trained − direct; ``differences["a - b"]`` holds every pair, that one included.

    ``replicates`` (:attr:`PipelineConfig.replicates`) lists, per pre-trained arm, the arms of its R
    pre-training runs. Then ``over_pretraining`` takes the pre-training run as the unit (the fine-tuning
    seeds of one run share its encoder, so they are not replicates of pre-training): per arm, and per pair
    with run r of each side (direct has one run, shared), the run's mean over the fine-tuning seeds, and over
    the R runs their mean ± std and 95% Student t interval (``ci95``). ``differences`` stay those of the
    first run of each arm (the configs' own seed)."""
    metrics = [m for m in TABLE_METRICS if all(m in run["test"] for arm in arms.values() for run in arm["runs"])]
    table: dict[str, Any] = {
        arm: {m: mean_std([run["test"][m] for run in arms[arm]["runs"]]) for m in metrics} for arm in arms
    }

    def paired(a: str, b: str, m: str) -> list[float]:
        return [x["test"][m] - y["test"][m] for x, y in zip(arms[a]["runs"], arms[b]["runs"], strict=True)]

    replicates = replicates or {}
    copies = {name for names in replicates.values() for name in names[1:]}
    pairs = compared_pairs([arm for arm in arms if arm not in copies])
    differences = {f"{a} - {b}": {m: mean_std(paired(a, b, m)) for m in metrics} for a, b in pairs}
    table["difference"] = differences["pretrained - direct"]
    comparison = {"seeds": seeds, "metrics": metrics, "table": table, "differences": differences}
    if replicates:
        runs = len(next(iter(replicates.values())))

        def run_arm(arm: str, r: int) -> str:
            return replicates[arm][r] if arm in replicates else arm

        comparison["over_pretraining"] = {
            "runs": runs,
            "arms": {
                arm: {m: _over_runs([table[name][m]["mean"] for name in names]) for m in metrics}
                for arm, names in replicates.items()
            },
            "differences": {
                f"{a} - {b}": {
                    m: _over_runs([statistics.fmean(paired(run_arm(a, r), run_arm(b, r), m)) for r in range(runs)])
                    for m in metrics
                }
                for a, b in pairs
            },
        }
    return comparison


def _cell(entry: dict[str, Any], signed: bool = False) -> str:
    """``mean ± std`` (the mean alone for one value), and ``[low, high]`` where the entry has a ``ci95``."""
    sign = "+" if signed else ""
    cell = f"{entry['mean']:{sign}.2f}" + ("" if entry["std"] is None else f" ± {entry['std']:.2f}")
    if "ci95" in entry:
        low, high = entry["ci95"]
        cell += f" [{low:{sign}.2f}, {high:{sign}.2f}]"
    return cell


def results_markdown(comparison: dict[str, Any], arms: dict[str, dict[str, Any]], timing: dict[str, float]) -> str:
    metrics = comparison["metrics"]
    names = {"acc": "accuracy", "macro_f1": "macro-F1", "ise_acc": "ISE accuracy", "ese_acc": "ESE accuracy"}
    table, variants = comparison["table"], [arm for arm in arms if arm not in ARMS]
    pairs = [pair.split(" - ") for pair in comparison["differences"]]

    def row(label: str, entries: dict[str, Any], signed: bool = False) -> str:
        return f"| {label} | " + " | ".join(_cell(entries[m], signed) for m in metrics) + " |"

    def arm_label(arm: str) -> str:
        return {"direct": "direct fine-tuning", "pretrained": "pre-trained, then fine-tuned"}.get(
            arm, f"variant {arm}, then fine-tuned"
        )

    header = ["| encoder | " + " | ".join(names.get(m, m) for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    lines = [
        f"Test split, %, mean ± std over seeds {comparison['seeds']} (each selected on dev).",
        "",
        *header,
        *(row(arm_label(arm), table[arm]) for arm in ("direct", "pretrained", *variants)),
        row("difference (paired by seed)", table["difference"], signed=True),
        *(row(f"{a} − {b} (paired by seed)", comparison["differences"][f"{a} - {b}"], True) for a, b in pairs[1:]),
    ]
    over = comparison.get("over_pretraining")
    if over is not None:
        lines += [
            "",
            f"Over pre-training runs: each pre-trained arm was pre-trained {over['runs']} times (its own seed, then"
            " pretrain_seeds); a run counts once, as its mean over the fine-tuning seeds. Mean ± std over the runs,"
            " [95% Student t interval]; direct fine-tuning, which has no pre-training, is paired with every run.",
            "",
            *header,
            *(row(arm_label(arm), entries) for arm, entries in over["arms"].items()),
            *(row(f"{a} − {b} (paired)", over["differences"][f"{a} - {b}"], signed=True) for a, b in pairs),
        ]
    lines += [
        "",
        "Per seed:",
        "",
        "| arm | seed | " + " | ".join(names.get(m, m) for m in metrics) + " | dev score | minutes |",
        "|---|---|" + "---|" * len(metrics) + "---|---|",
    ]
    for arm in arms:
        for run in arms[arm]["runs"]:
            cells = " | ".join(f"{run['test'][m]:.2f}" for m in metrics)
            lines.append(f"| {arm} | {run['seed']} | {cells} | {run['dev_score']:.2f} | {run['seconds'] / 60:.1f} |")
    lines += ["", "Wall time: " + ", ".join(f"{stage} {seconds / 60:.1f} min" for stage, seconds in timing.items())]
    return "\n".join(lines) + "\n"


def check_before_running(config: PipelineConfig) -> None:
    """What can be checked before hours of training: the fine-tuning seeds, and every pre-training's and the
    fine-tuning's arguments as their CLIs parse them (unknown keys, wrong types), each pre-training with the
    same dev split as fine-tuning (its corpus must exclude phase 2's dev sentences).

    Raises:
        PipelineConfigError: naming the config file and the phase or variant.
    """
    _check_seeds(config.seeds, f"{config.source}: 'seeds'")

    def parsed(phase: str, spec: PhaseSpec, where: str) -> Any:
        try:
            return parse_phase(phase, spec)
        except UserError as error:
            raise PipelineConfigError(f"{config.source}: {where}: {error}") from None

    finetune_split = _split_of(parsed("finetune", config.finetune, "fine-tuning (finetune.configs and finetune.args)"))
    for variant in (None, *config.variants):
        where = "pre-training (pretrain.configs and pretrain.args)" if variant is None else f"variant '{variant}'"
        pretraining = parsed("pretrain", PhaseSpec(config.pretrain.configs, config.pretraining_args(variant)), where)
        own_seed = pretraining.seed_everything
        if config.pretrain_seeds and (not isinstance(own_seed, int) or isinstance(own_seed, bool)):
            raise PipelineConfigError(
                f"{config.source}: 'pretrain_seeds' replicates pre-trainings of a fixed seed, but {where} has "
                f"seed_everything {own_seed!r}: set it to an integer"
            )
        if own_seed in config.pretrain_seeds:
            raise PipelineConfigError(
                f"{config.source}: 'pretrain_seeds' {config.pretrain_seeds} repeats the seed of {where} "
                f"(seed_everything {own_seed}): that replicate would be the same run"
            )
        pretrain_split = _split_of(pretraining)
        if pretrain_split != finetune_split:
            raise PipelineConfigError(
                f"{config.source}: {where} and fine-tuning use different dev splits ({pretrain_split} vs "
                f"{finetune_split}): the pre-training corpus must exclude phase 2's dev sentences, so "
                "data.dev_fraction and data.split_seed must match"
            )


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """All stages; returns the comparison written to ``results.json``."""
    started = time.perf_counter()
    check_before_running(config)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    progress = StageProgress(pipeline_stages(config.seeds, list(config.pretrainings)))
    with run_group(f"pipeline-{config.output_dir.name}"):  # every stage's W&B run in one group (a sweep's wins)
        encoder_dir = run_pretraining(config, started, progress)
        arms = {
            "pretrained": run_finetuning(
                config, "pretrained", ["--model.encoder", str(encoder_dir)], started, progress
            ),
            "direct": run_finetuning(config, "direct", [], started, progress),
        }
        for variant in config.pretrainings:
            variant_encoder = run_pretraining(config, started, progress, variant)
            arms[variant] = run_finetuning(
                config, variant, ["--model.encoder", str(variant_encoder)], started, progress
            )
    comparison = compare(arms, config.seeds, config.replicates)
    records = {
        variant: json.loads((pretraining_dir(config, variant) / "pretrain" / STAGE_FILE).read_text())
        for variant in (None, *config.pretrainings)
    }
    timing = {
        "pre-training": records[None]["seconds"],
        **{f"fine-tuning ({arm})": sum(run["seconds"] for run in arms[arm]["runs"]) for arm in ARMS},
    }
    for variant in config.pretrainings:
        timing[f"pre-training ({variant})"] = records[variant]["seconds"]
        timing[f"fine-tuning ({variant})"] = sum(run["seconds"] for run in arms[variant]["runs"])
    comparison.update(
        {
            "timing_seconds": timing,
            "pretrain": {
                "configs": config.pretrain.configs,
                "args": config.pretrain.args,
                "checkpoint": records[None]["checkpoint"],
            },
            "variants": {
                variant: {"args": args, "checkpoint": records[variant]["checkpoint"]}
                for variant, args in config.pretrainings.items()
            },
            "pretrain_seeds": config.pretrain_seeds,
            "finetune": {"configs": config.finetune.configs, "args": config.finetune.args},
            "runs": arms,
        }
    )
    write_atomically(config.output_dir / "results.json", json.dumps(comparison, indent=2) + "\n", overwrite=True)
    markdown = results_markdown(comparison, arms, timing)
    write_atomically(config.output_dir / "results.md", markdown, overwrite=True)
    _log(f"results: {config.output_dir / 'results.md'}", started)
    dev = {  # each arm's dev metrics of the selected checkpoints, mean over seeds
        f"{arm}/dev_{m}": statistics.fmean(run["dev"][m] for run in arms[arm]["runs"])
        for arm in arms
        for m in TABLE_METRICS
        if all(m in run.get("dev", {}) for run in arms[arm]["runs"])
    }
    write_trial_result(dev)  # a sweep's metric (scpt.training.trial): dev means over seeds, never test
    print(markdown, end="")
    return comparison


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scpt pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="pipeline YAML (see configs/pipeline/)")
    parser.add_argument("--output-dir", type=Path, help="overrides the config's output_dir")
    parser.add_argument("--seeds", type=int, nargs="+", help="overrides the config's seeds")
    args = parser.parse_args(argv)
    config = load_pipeline_config(args.config)
    if args.output_dir is not None:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    if args.seeds is not None:
        check_seeds(args.seeds, "--seeds")
        config = dataclasses.replace(config, seeds=args.seeds)
    run_pipeline(config)
    return 0
