"""Sweep files (scpt.sweep.spec): every distribution read to known values, W&B's macros expanded to the
exact strings W&B's agent builds, and bad files rejected in one line naming the file and the key."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from scpt.errors import UserError
from scpt.sweep.spec import Parameter, build_command, load_sweep, macro_values

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_every_distribution(tmp_path: Path) -> None:
    spec = load_sweep(
        write(
            tmp_path,
            """
program: train.py
method: random
metric: {name: val/acc, goal: maximize}
parameters:
  fixed: {value: 3}
  choice: {values: [a, 2, 0.5, true, null]}
  u: {min: 0.0, max: 1.0}
  i: {min: 1, max: 4}
  q: {distribution: q_uniform, min: 0, max: 1, q: 0.25}
  lv: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}
  le: {distribution: log_uniform, min: -2, max: 0}
""",
        )
    )
    assert spec.name == "sweep" and spec.method == "random" and spec.metric == "val/acc" and spec.goal == "maximize"
    by_name = {p.name: p for p in spec.parameters}
    assert by_name["fixed"] == Parameter("fixed", "constant", (3,))
    assert by_name["choice"] == Parameter("choice", "categorical", ("a", 2, 0.5, True, None))
    assert by_name["u"] == Parameter("u", "uniform", (), 0.0, 1.0)
    assert by_name["i"] == Parameter("i", "int_uniform", (), 1, 4)
    assert by_name["q"] == Parameter("q", "q_uniform", (), 0, 1, 0.25)
    assert by_name["lv"] == Parameter("lv", "log_uniform_values", (), 1e-5, 1e-3)
    assert by_name["le"] == Parameter("le", "log_uniform", (), -2, 0)
    assert [p.name for p in spec.swept] == ["choice", "u", "i", "q", "lv", "le"]
    assert spec.constants() == {"fixed": 3}
    assert by_name["i"].grid_values() == (1, 2, 3, 4)
    assert by_name["q"].grid_values() == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert by_name["u"].grid_values() is None
    assert spec.command == ("${env}", "${interpreter}", "${program}", "${args}")  # W&B's default


def test_macros_expand_as_wandb_agent_does(tmp_path: Path) -> None:
    spec = load_sweep(
        write(
            tmp_path,
            """
program: train.py
method: grid
metric: {name: loss}
parameters:
  model.loss.init_args.temperature: {values: [0.5]}
  flag: {values: [true, false]}
  name: {value: x}
command: ["${env}", "${interpreter}", "${program}", "-b", "${envvar:SWEEP_TEST_VAR}", "${args}"]
""",
        )
    )
    assert spec.goal == "minimize"  # W&B's default goal
    args = {"model.loss.init_args.temperature": 0.5, "flag": False, "name": "x"}
    macros = macro_values(args)
    assert macros["args"] == ["--model.loss.init_args.temperature=0.5", "--flag=False", "--name=x"]
    assert macros["args_no_hyphens"] == ["model.loss.init_args.temperature=0.5", "flag=False", "name=x"]
    assert macros["args_no_equals"] == ["--model.loss.init_args.temperature", "0.5", "--flag", "False", "--name", "x"]
    assert macros["args_no_boolean_flags"] == ["--model.loss.init_args.temperature=0.5", "--name=x"]
    assert macros["args_json"] == ['{"model.loss.init_args.temperature": 0.5, "flag": false, "name": "x"}']
    assert macros["args_append_hydra"][0] == "+model.loss.init_args.temperature=0.5"
    assert macros["args_override_hydra"][1] == "++flag=False"
    assert macro_values({"flag": True})["args_no_boolean_flags"] == ["--flag"]
    line = build_command(spec, args, interpreter="python3", environ={"SWEEP_TEST_VAR": "cfg.yaml"})
    assert line == [
        "/usr/bin/env",
        "python3",
        "train.py",
        "-b",
        "cfg.yaml",
        "--model.loss.init_args.temperature=0.5",
        "--flag=False",
        "--name=x",
    ]
    assert build_command(spec, args)[1] == sys.executable


def test_args_no_hyphens_and_json_file(tmp_path: Path) -> None:
    spec = load_sweep(
        write(
            tmp_path,
            """
method: grid
metric: {name: m, goal: maximize}
parameters:
  a: {values: [1, 2]}
command: [prog, "${args_no_hyphens}", --json, "${args_json_file}"]
""",
        )
    )
    target = tmp_path / "trial" / "args.json"
    assert build_command(spec, {"a": 2}, args_json_file=target) == ["prog", "a=2", "--json", str(target)]
    assert json.loads(target.read_text()) == {"a": 2}


def test_shipped_sweep_files() -> None:
    for name, metric in (
        ("pretrain_dscl_tau_alpha", "val/probe_knn"),
        ("pipeline_dscl_tau_alpha", "pretrained/dev_macro_f1"),
    ):
        spec = load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml")
        assert (spec.name, spec.method, spec.metric, spec.goal) == (name, "grid", metric, "maximize")
        grid = spec.grid()
        assert list(grid) == ["model.loss.init_args.temperature", "model.loss.init_args.alpha"]
        assert math.prod(len(values) for values in grid.values()) == 9
        line = build_command(spec, {"model.loss.init_args.temperature": 0.3, "model.loss.init_args.alpha": 0.05})
        assert line[-4:] == [
            "--model.loss",
            "configs/loss/dscl.yaml",
            "--model.loss.init_args.temperature=0.3",
            "--model.loss.init_args.alpha=0.05",
        ]
        assert "test" not in spec.metric


GOOD = """
program: train.py
method: grid
metric: {name: m, goal: maximize}
parameters:
  a: {values: [1, 2]}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2", "line 1, column 6: not valid YAML: expected ',' or ']', but got '<stream end>'"),
        (GOOD.replace("method: grid", "method: hyperband"), "method: must be one of grid, random, bayes"),
        (GOOD.replace("goal: maximize", "goal: up"), "metric.goal: must be maximize or minimize"),
        (GOOD + "early_stop: 3\n", "unknown key(s) ['early_stop']"),
        (GOOD.replace("{values: [1, 2]}", "{values: []}"), "parameters.a.values: must be a non-empty list"),
        (GOOD.replace("{values: [1, 2]}", "{min: 0.0, max: 1.0}"), "parameters.a: a grid needs 'values'"),
        (GOOD.replace("{values: [1, 2]}", "{min: 2, max: 1}"), "parameters.a: min must be below max"),
        (
            GOOD.replace("{values: [1, 2]}", "{distribution: normal, min: 0.0, max: 1.0}"),
            "parameters.a.distribution: 'normal' is not supported",
        ),
        (GOOD.replace("{values: [1, 2]}", "{valuez: [1]}"), "parameters.a: unknown key(s) ['valuez']"),
        (GOOD.replace("{values: [1, 2]}", "{values: [1, 1]}"), "parameters.a.values: repeats a value"),
        (GOOD.replace("program: train.py", ""), "needs 'program' (a script) or 'command'"),
        (GOOD + "command: [python, '${argz}']\n", "command: unknown macro '${argz}'"),
        (GOOD + "command: [python, run.py]\n", "command: has no ${args}"),
        (GOOD.replace("{values: [1, 2]}", "{value: 1}"), "parameters: every parameter is a constant"),
        (GOOD.replace("{values: [1, 2]}", "{parameters: {b: {value: 1}}}"), "nested parameters are not supported"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_sweep(path)
    message = str(caught.value)
    assert message.startswith((f"{path}: ", f"{path}, line ")) and expected in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such sweep file"):
        load_sweep(tmp_path / "none.yaml")


def test_pipeline_trial_splits_phase_options() -> None:
    from scpt.sweep.pipeline_trial import split_options

    options = [
        "--model.loss",
        "configs/loss/dscl.yaml",
        "--model.loss.init_args.alpha=0.11",
        "--finetune.model.learning_rate=3e-5",
        "--finetune.trainer.max_epochs",
        "2",
        "--trainer.default_root_dir=/runs/trial_3",
        "--trainer.logger.init_args.save_dir=/runs/trial_3",
    ]
    assert split_options(options) == (
        ["--model.loss", "configs/loss/dscl.yaml", "--model.loss.init_args.alpha=0.11"],
        ["--model.learning_rate=3e-5", "--trainer.max_epochs", "2"],
        "/runs/trial_3",
    )


def test_a_storage_that_cannot_be_opened_leaves_no_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scpt import cli

    spec = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "pretrain_dscl_tau_alpha.yaml"
    output_dir = tmp_path / "new" / "sweep"
    assert cli.main(["sweep", str(spec), "--output-dir", str(output_dir), "--storage", "bogus://x"]) == 2
    assert capsys.readouterr().err.startswith("scpt sweep: error: --storage bogus://x: cannot open it")
    assert list(tmp_path.iterdir()) == []  # neither the output directory nor the parent it would have made
