"""Progress reporting: the :class:`ProgressLog` callback's lines and ETA arithmetic on a fake clock, when
it prints instead of the progress bar, and the pipeline's ``stage k/n`` lines and estimates."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch

from scpt.pipeline import StageProgress, pipeline_stages, without_display_args
from scpt.training.progress import ProgressLog, format_duration, progress_line, remaining_seconds


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeBar:
    def __init__(self) -> None:
        self.disabled = False

    def disable(self) -> None:
        self.disabled = True


def fake_trainer(**overrides: object) -> SimpleNamespace:
    fields = dict(global_step=0, estimated_stepping_batches=1000, current_epoch=0, max_epochs=2, world_size=1,
                  is_global_zero=True, progress_bar_callback=FakeBar())  # fmt: skip
    return SimpleNamespace(**{**fields, **overrides})


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"), (252, "4m12s"), (3599.6, "1h00m00s"),
    (3723, "1h02m03s"), (90061, "25h01m01s"), (-3, "0s"),
])  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_remaining_seconds_is_the_steps_left_at_the_mean_rate() -> None:
    assert remaining_seconds(30, 120, 60.0) == 180.0  # 2 s a step, 90 steps left
    assert remaining_seconds(250, 1000, 100.0) == 300.0  # 0.4 s a step, 750 left
    assert remaining_seconds(1000, 1000, 400.0) == 0.0
    assert remaining_seconds(0, 1000, 10.0) is None  # no rate yet
    assert remaining_seconds(10, float("inf"), 10.0) is None  # max_steps -1 and no epoch limit
    assert remaining_seconds(10, None, 10.0) is None


def test_progress_line_leaves_out_what_is_unknown() -> None:
    line = progress_line(120, 1000, 0, 1, 2.34564, 42.66, 252.0, 1848.0)
    assert (
        line
        == "[progress] step 120/1000 (12.0%) | epoch 1/1 | loss 2.3456 | 42.7 samples/s | elapsed 4m12s | ETA 30m48s"
    )
    assert progress_line(7, float("inf"), 2, -1, None, None, 5.0, None) == "[progress] step 7 | epoch 3 | elapsed 5s"
    assert progress_line(9, 9, 3, 3, None, None, 5.0, 0.0).startswith("[progress] step 9/9 (100.0%) | epoch 3/3 |")


def _run_steps(callback: ProgressLog, trainer: SimpleNamespace, clock: FakeClock, steps: list[tuple[float, float]]):
    """One batch of 8 samples per step; ``steps`` holds (seconds the step takes, its loss)."""
    batch = {"input_ids": torch.zeros(8, 5, dtype=torch.long), "labels": torch.zeros(8, dtype=torch.long)}
    for seconds, loss in steps:
        clock.now += seconds
        trainer.global_step += 1
        callback.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, batch, trainer.global_step - 1)


def test_progress_log_prints_every_interval_with_mean_loss_rate_and_eta() -> None:
    clock, lines = FakeClock(), []
    callback = ProgressLog(every_seconds=30, clock=clock, write=lines.append, stream=io.StringIO())
    trainer = fake_trainer(estimated_stepping_batches=100)
    callback.setup(trainer, None, "fit")
    assert callback.active and trainer.progress_bar_callback.disabled  # stdout is a file: lines replace the bar
    callback.on_train_start(trainer, None)
    _run_steps(callback, trainer, clock, [(10.0, 3.0), (10.0, 2.0)])  # 20 s: not yet due
    assert lines == []
    _run_steps(callback, trainer, clock, [(10.0, 1.0)])  # 30 s, 3 steps, 24 samples: due
    # 10 s a step, 97 steps left -> 970 s; loss the mean of 3, 2, 1; 24 samples in 30 s
    assert lines == [
        "[progress] step 3/100 (3.0%) | epoch 1/2 | loss 2.0000 | 0.8 samples/s | elapsed 30s | ETA 16m10s"
    ]
    _run_steps(callback, trainer, clock, [(5.0, 0.5)] * 6)  # 6 steps in 30 s: 48 samples, mean loss 0.5
    # 9 steps in 60 s overall (6.667 s a step), 91 left -> 606.7 s
    assert lines[1] == (
        "[progress] step 9/100 (9.0%) | epoch 1/2 | loss 0.5000 | 1.6 samples/s | elapsed 1m00s | ETA 10m07s"
    )
    clock.now += 3.0
    trainer.current_epoch = 1
    callback.on_train_end(trainer, None)  # a final line only when steps were taken since the last one
    assert len(lines) == 2
    _run_steps(callback, trainer, clock, [(1.0, 0.25)])
    callback.on_train_end(trainer, None)
    # 10 steps in 64 s, 90 left -> 576 s; 8 samples in 4 s
    assert lines[2] == (
        "[progress] step 10/100 (10.0%) | epoch 2/2 | loss 0.2500 | 2.0 samples/s | elapsed 1m04s | ETA 9m36s"
    )


def test_the_final_line_names_the_epoch_of_the_last_batch() -> None:
    clock, lines = FakeClock(), []
    callback = ProgressLog(every_seconds=30, clock=clock, write=lines.append, stream=io.StringIO())
    trainer = fake_trainer(estimated_stepping_batches=1, max_epochs=4)
    callback.setup(trainer, None, "fit")
    callback.on_train_start(trainer, None)
    _run_steps(callback, trainer, clock, [(2.0, 1.0)])  # max_steps 1: one batch, in the first epoch
    trainer.current_epoch = 1  # Lightning has counted the next epoch by the time training ends
    callback.on_train_end(trainer, None)
    assert lines == ["[progress] step 1/1 (100.0%) | epoch 1/4 | loss 1.0000 | 4.0 samples/s | elapsed 2s | ETA 0s"]


def test_progress_log_by_steps_after_a_resume_and_with_several_processes() -> None:
    clock, lines = FakeClock(), []
    callback = ProgressLog(every_n_steps=2, every_seconds=0, mode="always", clock=clock, write=lines.append)
    trainer = fake_trainer(global_step=50, estimated_stepping_batches=250, world_size=4)
    callback.setup(trainer, None, "fit")
    assert not trainer.progress_bar_callback.disabled  # "always" leaves the bar as configured
    callback.on_train_start(trainer, None)  # resumed at step 50: the rate counts the steps of this session
    _run_steps(callback, trainer, clock, [(2.0, 1.0), (2.0, 1.0)])
    # 2 steps in 4 s, 198 left -> 396 s; 2 x 8 samples x 4 processes in 4 s
    assert lines == [
        "[progress] step 52/250 (20.8%) | epoch 1/2 | loss 1.0000 | 16.0 samples/s | elapsed 4s | ETA 6m36s"
    ]
    trainer.is_global_zero = False  # the other processes keep count but never print
    _run_steps(callback, trainer, clock, [(2.0, 1.0), (2.0, 1.0)])
    assert len(lines) == 1


def test_progress_log_stays_silent_on_a_terminal_with_a_bar() -> None:
    trainer = fake_trainer()
    callback = ProgressLog(stream=Terminal())
    callback.setup(trainer, None, "fit")
    assert not callback.active and not trainer.progress_bar_callback.disabled
    no_bar = fake_trainer(progress_bar_callback=None)  # enable_progress_bar: false on a terminal: lines instead
    callback.setup(no_bar, None, "fit")
    assert callback.active
    callback.setup(fake_trainer(), None, "validate")  # only fit is followed
    assert not callback.active
    never = ProgressLog(mode="never", stream=io.StringIO())
    never.setup(trainer, None, "fit")
    assert not never.active
    with pytest.raises(ValueError, match="every_n_steps > 0 or every_seconds > 0"):
        ProgressLog(every_n_steps=0, every_seconds=0)
    with pytest.raises(ValueError, match="'auto', 'always' or 'never'"):
        ProgressLog(mode="sometimes")  # type: ignore[arg-type]


def test_pipeline_stage_lines_estimate_from_finished_stages_of_each_kind() -> None:
    clock, lines = FakeClock(0.0), []
    stages = pipeline_stages([1, 2])
    assert [name for name, _ in stages] == [
        "pre-training and export",
        "fine-tuning (pretrained), seed 1",
        "fine-tuning (pretrained), seed 2",
        "fine-tuning (direct), seed 1",
        "fine-tuning (direct), seed 2",
    ]
    progress = StageProgress(stages, clock=clock, write=lines.append)
    progress.start(0)
    clock.now = 1200.0
    progress.finish(0)
    progress.start(1)
    clock.now = 1500.0
    progress.finish(1)  # one fine-tuning run took 300 s: the 3 left take 900 s
    progress.start(2)
    clock.now = 1900.0
    progress.finish(2)  # the mean run is now 350 s
    assert lines == [
        "[pipeline] stage 1/5: pre-training and export | elapsed 0s | time left: estimated after the first "
        "pre-training and first fine-tuning run",
        "[pipeline] stage 1/5: pre-training and export finished in 20m00s | elapsed 20m00s | time left: estimated "
        "after the first fine-tuning run",
        "[pipeline] stage 2/5: fine-tuning (pretrained), seed 1 | elapsed 20m00s | time left: estimated after the "
        "first fine-tuning run",
        "[pipeline] stage 2/5: fine-tuning (pretrained), seed 1 finished in 5m00s | elapsed 25m00s | about 15m00s left",
        "[pipeline] stage 3/5: fine-tuning (pretrained), seed 2 | elapsed 25m00s | about 15m00s left",
        "[pipeline] stage 3/5: fine-tuning (pretrained), seed 2 finished in 6m40s | elapsed 31m40s | about 11m40s left",
    ]
    assert progress.remaining(3) == 700.0 and progress.remaining(5) == 0.0


def test_variants_add_their_pre_training_and_fine_tuning_after_the_main_arms() -> None:
    stages = pipeline_stages([1, 2], ["no_scl"])
    assert stages[5:] == [
        ("pre-training and export (no_scl)", "pre-training"),
        ("fine-tuning (no_scl), seed 1", "fine-tuning run"),
        ("fine-tuning (no_scl), seed 2", "fine-tuning run"),
    ]
    assert stages[:5] == pipeline_stages([1, 2])
    progress = StageProgress(stages, clock=FakeClock(0.0), write=lambda line: None)
    assert progress.index("fine-tuning (no_scl), seed 1") == 6
    progress.done_before(0, 1200.0)
    progress.done_before(1, 300.0)
    assert progress.remaining(2) == 3 * 300.0 + 1200.0 + 2 * 300.0  # a variant's pre-training costs a pre-training's


def test_resumed_stages_count_for_the_estimate() -> None:
    clock, lines = FakeClock(0.0), []
    progress = StageProgress(pipeline_stages([7]), clock=clock, write=lines.append)
    progress.done_before(0, 1500.0)
    progress.done_before(1, 420.0)
    progress.start(2)
    assert lines == [
        "[pipeline] stage 1/3: pre-training and export: done before (25m00s)",
        "[pipeline] stage 2/3: fine-tuning (pretrained), seed 7: done before (7m00s)",
        "[pipeline] stage 3/3: fine-tuning (direct), seed 7 | elapsed 0s | about 7m00s left",
    ]


def test_display_arguments_do_not_count_as_a_change_of_plan() -> None:
    args = ["--trainer.max_steps", "40", "--trainer.enable_progress_bar", "false", "--data.limit=5"]
    assert without_display_args(args) == ["--trainer.max_steps", "40", "--data.limit=5"]
    assert without_display_args(["--trainer.enable_progress_bar=false", "--x", "1"]) == ["--x", "1"]
