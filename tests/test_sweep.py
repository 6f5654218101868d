"""``scpt sweep`` on a fast fake trial program whose metric is a known function of its arguments,
score = -(x - 0.3)^2 (+ 0.1 when y is "b"), written through scpt.training.trial: grid = the cartesian
product exactly once, resuming, a killed trial retried, a failed trial recorded with its error, two
processes sharing one SQLite study, the console entry, and the report's files."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scpt.cli import main as scpt_main
from scpt.sweep.report import heatmap_matrix, trial_rows, write_report
from scpt.sweep.runner import SweepOptions, SweepRunner, default_storage, metrics_from_csv, open_study
from scpt.sweep.spec import load_sweep
from scpt.training.trial import RESULT_ENV, read_trial_result, write_trial_result

ROOT = Path(__file__).resolve().parents[1]

FAKE = """
import argparse, os, sys, time
from scpt.training.trial import write_trial_result
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--y", default="a")
args, unknown = parser.parse_known_args()
print("unknown:", unknown)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
if args.y == "boom":
    print("exploding on purpose")
    sys.exit(3)
if args.y == "nan":
    write_trial_result({"score": float("nan")})
    sys.exit(0)
write_trial_result({"score": -(args.x - 0.3) ** 2 + (0.1 if args.y == "b" else 0.0), "other": 1.0})
"""


def score(x: float, y: str) -> float:
    return -((x - 0.3) ** 2) + (0.1 if y == "b" else 0.0)


def sweep_file(tmp_path: Path, ys: str = "[a, b]", method: str = "grid", extra: str = "") -> Path:
    program = tmp_path / "fake.py"
    program.write_text(FAKE)
    path = tmp_path / "fake_sweep.yaml"
    path.write_text(
        f"""
name: fake
method: {method}
metric: {{name: score, goal: maximize}}
program: {program}
parameters:
  x: {{values: [0.1, 0.3, 0.5]}}
  y: {{values: {ys}}}
{extra}"""
    )
    return path


def run(path: Path, out: Path, lines: list[str] | None = None, **kwargs) -> optuna.Study:
    spec = load_sweep(path)
    options = SweepOptions(out, spec.name, default_storage(out), **kwargs)
    study = open_study(spec, options)
    SweepRunner(spec, study, options, write=(lines.append if lines is not None else lambda line: None)).run()
    return study


def completed(study: optuna.Study) -> list[tuple[float, str]]:
    return sorted((t.params["x"], t.params["y"]) for t in study.get_trials(states=(TrialState.COMPLETE,)))


GRID = sorted(itertools.product([0.1, 0.3, 0.5], ["a", "b"]))


def test_trial_result_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r" / "result.json"
    monkeypatch.delenv(RESULT_ENV, raising=False)
    write_trial_result({"a": 1.0})  # no variable: nothing written
    assert not target.exists()
    monkeypatch.setenv(RESULT_ENV, str(target))
    write_trial_result({"a": 0.25, "b": float("nan"), "c": 3, "flag": True})
    assert read_trial_result(target) == {"a": 0.25, "b": None, "c": 3.0}


def test_grid_is_the_product_once_and_best_is_known(tmp_path: Path) -> None:
    lines: list[str] = []
    study = run(sweep_file(tmp_path), tmp_path / "out", lines, workers=2)
    trials = study.get_trials()
    assert completed(study) == GRID and len(trials) == 6
    for trial in trials:
        assert trial.value == score(trial.params["x"], trial.params["y"])
        assert Path(trial.user_attrs["trial_dir"]) == (tmp_path / "out" / f"trial_{trial.number}").absolute()
        log = (Path(trial.user_attrs["trial_dir"]) / "trial.log").read_text()
        run_dir = trial.user_attrs["trial_dir"]
        assert (
            f"unknown: ['--trainer.default_root_dir={run_dir}', '--trainer.logger.init_args.save_dir={run_dir}']" in log
        )
    assert study.best_trial.params == {"x": 0.3, "y": "b"} and study.best_value == 0.1
    assert sum("done in" in line for line in lines) == 6


def test_resume_runs_only_the_rest(tmp_path: Path) -> None:
    path, out = sweep_file(tmp_path, ys="[a]", extra="  z: {values: [1]}\n"), tmp_path / "out"
    path.write_text(path.read_text().replace("[0.1, 0.3, 0.5]", "[0.1, 0.3, 0.5, 0.7]"))
    first = run(path, out, max_trials=2)
    assert len(first.get_trials()) == 2
    done_first = completed(first)
    second = run(path, out)
    assert len(second.get_trials()) == 4 and len(completed(second)) == 4
    assert sorted(x for x, _ in completed(second)) == [0.1, 0.3, 0.5, 0.7]
    assert set(done_first) <= set(completed(second))
    third = run(path, out)  # nothing left
    assert len(third.get_trials()) == 4


def test_failed_trial_recorded_while_others_finish(tmp_path: Path) -> None:
    lines: list[str] = []
    study = run(sweep_file(tmp_path, ys="[a, boom, nan]"), tmp_path / "out", lines)
    by_state: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials():
        by_state.setdefault(trial.state.name, []).append(trial)
    assert sorted(t.params["x"] for t in by_state["COMPLETE"]) == [0.1, 0.3, 0.5]
    assert len(by_state["FAIL"]) == 6
    for trial in by_state["FAIL"]:
        error = trial.user_attrs["error"]
        if trial.params["y"] == "boom":
            assert error.startswith("exit status 3\n") and error.endswith("exploding on purpose")
        else:
            assert error.startswith("metric 'score' not finite (None) in ") and "(metrics there: score)" in error
    assert sum("FAILED" in line for line in lines) == 6
    rerun = run(sweep_file(tmp_path, ys="[a, boom, nan]"), tmp_path / "out")  # failed points are not retried ...
    assert len(rerun.get_trials()) == 9
    again = run(sweep_file(tmp_path, ys="[a, boom, nan]"), tmp_path / "out", retry_failed=True)  # ... unless asked
    assert len(again.get_trials()) == 15


def test_killed_trial_is_retried(tmp_path: Path) -> None:
    path, out = sweep_file(tmp_path, ys="[a]"), tmp_path / "out"
    env = {**os.environ, "FAKE_SLEEP": "60"}
    command = [sys.executable, "-m", "scpt.cli", "sweep", str(path), "--output-dir", str(out), "--heartbeat", "1"]
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (out / "trial_0" / "trial.log").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the trial has recorded its first heartbeat
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and its trial, as a crash would
        process.wait()
    spec = load_sweep(path)
    study = optuna.load_study(study_name="fake", storage=default_storage(out))
    killed = study.get_trials()[0]
    assert killed.state == TrialState.RUNNING
    time.sleep(2.5)  # past the grace period (2 heartbeats)
    study = run(path, out, heartbeat=1)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retry = trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.system_attrs["failed_trial"] == 0
    assert completed(study) == [(0.1, "a"), (0.3, "a"), (0.5, "a")] and len(trials) == 4
    assert spec.metric == "score"


def test_two_processes_share_one_study(tmp_path: Path) -> None:
    path, out = sweep_file(tmp_path), tmp_path / "out"
    env = {**os.environ, "FAKE_SLEEP": "0.3"}
    command = [sys.executable, "-m", "scpt.cli", "sweep", str(path), "--output-dir", str(out)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert all("done in" in output for output in outputs)  # both processes ran trials
    study = optuna.load_study(study_name="fake", storage=default_storage(out))
    assert completed(study) == GRID  # every point once: no duplicate finished
    assert {t.state for t in study.get_trials()} <= {TrialState.COMPLETE, TrialState.PRUNED}


def test_random_and_bayes_stay_in_bounds(tmp_path: Path) -> None:
    program = tmp_path / "fake.py"
    program.write_text(FAKE)
    for method in ("random", "bayes"):
        path = tmp_path / f"{method}.yaml"
        path.write_text(
            f"""
name: {method}
method: {method}
metric: {{name: score, goal: maximize}}
program: {program}
parameters:
  x: {{distribution: log_uniform_values, min: 0.01, max: 1.0}}
  y: {{values: [a, b]}}
  n: {{min: 1, max: 3}}
"""
        )
        study = run(path, tmp_path / method, max_trials=4, seed=0, run_dir_args=False)
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials) == 4
        for trial in trials:
            assert 0.01 <= trial.params["x"] <= 1.0 and trial.params["y"] in ("a", "b")
            assert trial.params["n"] in (1, 2, 3) and isinstance(trial.params["n"], int)
            assert trial.value == score(trial.params["x"], trial.params["y"])
            assert trial.distributions["x"].log


def test_console_entry_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    path, out = sweep_file(tmp_path, ys="[a, boom]"), tmp_path / "out"
    assert scpt_main(["sweep", str(path), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[sweep] best: trial" in printed and "x=0.3 y=a" in printed
    assert scpt_main(["sweep", "report", str(out)]) == 0
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    study = optuna.load_study(study_name="fake", storage=default_storage(out))
    assert [int(row["number"]) for row in rows] == [t.number for t in study.get_trials()]
    for row, trial in zip(rows, study.get_trials()):
        assert row["state"] == trial.state.name
        assert (float(row["x"]), row["y"]) == (trial.params["x"], trial.params["y"])
        if trial.state == TrialState.COMPLETE:
            assert float(row["score"]) == score(trial.params["x"], "a") and row["error"] == ""
        else:
            assert row["score"] == "" and row["error"] == trial.user_attrs["error"]
    markdown = (out / "trials.md").read_text()
    for trial in study.get_trials():
        value = "" if trial.value is None else repr(trial.value)
        state = trial.state.name
        assert f"| {trial.number} | {state} | {trial.params['x']!r} | {trial.params['y']} | {value} |" in markdown
    best = study.best_trial
    assert f"Best: trial {best.number}, score = 0.0: `x` = 0.3, `y` = a." in markdown
    assert json.loads((out / "best.json").read_text())["params"] == {"x": 0.3, "y": "a"}
    png = (out / "heatmap.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_bad_sweep_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sweep_file(tmp_path)
    path.write_text(path.read_text().replace("method: grid", "method: hyperband"))
    assert scpt_main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"scpt sweep: error: {path}: method: must be one of grid, random, bayes, got 'hyperband'"
    unbounded = sweep_file(tmp_path, method="random")
    assert scpt_main(["sweep", str(unbounded)]) == 2
    assert "give --max-trials or --timeout" in capsys.readouterr().err


def test_heatmap_matrix_known_values() -> None:
    rows = [
        {"number": 0, "state": "COMPLETE", "t": 0.1, "a": 1, "m": 0.5},
        {"number": 1, "state": "COMPLETE", "t": 0.3, "a": 1, "m": 0.7},
        {"number": 2, "state": "COMPLETE", "t": 0.3, "a": 1, "m": 0.6},  # a second trial there: the best counts
        {"number": 3, "state": "FAIL", "t": 0.1, "a": 2, "m": None},
        {"number": 4, "state": "FAIL", "t": 0.3, "a": 2, "m": None},
        {"number": 5, "state": "COMPLETE", "t": 0.3, "a": 2, "m": 0.9},
    ]
    heatmap = heatmap_matrix(rows, "t", "a", "m", "maximize", x_values=[0.1, 0.3, 0.5])
    assert heatmap.x_values == [0.1, 0.3, 0.5] and heatmap.y_values == [1, 2]
    assert heatmap.values[0][:2] == [0.5, 0.7] and heatmap.values[1][1] == 0.9
    assert math.isnan(heatmap.values[0][2]) and math.isnan(heatmap.values[1][0])
    assert heatmap.failed == [[False, False, False], [True, False, False]]
    assert heatmap_matrix(rows, "t", "a", "m", "minimize").values[0] == [0.5, 0.6]


def test_report_of_a_sweep_file_and_png_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.image

    monkeypatch.chdir(tmp_path)  # the file's default directory: runs/sweeps/fake
    path = sweep_file(tmp_path)
    study = run(path, Path("runs/sweeps/fake"))
    paths = write_report(path, use_wandb=False)
    assert [p.name for p in paths] == ["trials.csv", "trials.md", "best.json", "heatmap.png"]
    assert matplotlib.image.imread(paths[3]).ndim == 3
    rows = trial_rows(study, ["x", "y"], "score")
    heatmap = heatmap_matrix(rows, "x", "y", "score", x_values=[0.1, 0.3, 0.5], y_values=["a", "b"])
    assert heatmap.values == [[score(x, y) for x in (0.1, 0.3, 0.5)] for y in ("a", "b")]


def test_metrics_from_csv_takes_each_last_value(tmp_path: Path) -> None:
    folder = tmp_path / "restaurants" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train/loss,val/probe_knn\n0,9,2.5,\n0,19,,0.61\n0,29,2.1,\n")
    assert metrics_from_csv(tmp_path) == {"epoch": 0.0, "step": 29.0, "train/loss": 2.1, "val/probe_knn": 0.61}
