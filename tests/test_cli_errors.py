"""Expected failures through the real ``scpt`` entry point: one line naming the culprit, exit 2, no
traceback, nothing left behind; bugs keep their traceback; ``--traceback`` / ``SCPT_DEBUG=1`` show it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import needs_data
from scpt import cli
from scpt.errors import UserError, expected_cause
from scpt.training.cli import NewPaths, did_you_mean, explain_argument_error, plain_text

REPO = Path(__file__).resolve().parents[1]
FINETUNE = str(REPO / "configs" / "finetune" / "restaurants.yaml")
PRETRAIN = str(REPO / "configs" / "pretrain" / "restaurants.yaml")
DSCL = str(REPO / "configs" / "loss" / "dscl.yaml")


@dataclass(frozen=True)
class Case:
    """A bad command line; ``{tmp}`` and ``{tiny}`` are replaced by the test's directory and the tiny BERT."""

    name: str
    argv: tuple[str, ...]
    error: str  # the whole first line of stderr
    setup: Callable[[Path], None] = lambda tmp: None


def _write(relative: str, content: bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / relative).write_bytes(content)

    return setup


def _make_dir(relative_file: str) -> Callable[[Path], None]:
    """A setup that creates ``relative_file`` (empty) and the directories above it."""

    def setup(tmp: Path) -> None:
        (tmp / relative_file).parent.mkdir(parents=True)
        (tmp / relative_file).write_bytes(b"")

    return setup


def _tiny_checkpoint_and_input(tmp: Path) -> None:
    torch.save({"state_dict": {}}, tmp / "model.ckpt")  # a torch file; predict fails before loading it
    (tmp / "in.jsonl").write_bytes(b'{"text": "The staff was rude.", "aspect": "staff"}\n{"text": "caf\xe9"}\n')


def _existing_run(tmp: Path) -> None:
    (tmp / "runs" / "restaurants" / "version_0").mkdir(parents=True)
    (tmp / "runs" / "restaurants" / "version_0" / "notes.txt").write_text("a user's earlier run")


def _damaged_checkpoints(tmp: Path) -> None:
    """``corrupt.ckpt``: a checkpoint with one byte of its tensor flipped (its zip CRC no longer matches, which
    torch never checks); ``unpicklable.ckpt``: a well-formed zip whose ``data.pkl`` is not a pickle."""
    import zipfile

    torch.save({"state_dict": {"w": torch.arange(1000.0)}}, tmp / "good.ckpt")
    data = bytearray((tmp / "good.ckpt").read_bytes())
    data[data.find(torch.arange(1000.0).numpy().tobytes()[400:408])] ^= 0xFF
    (tmp / "corrupt.ckpt").write_bytes(bytes(data))
    with zipfile.ZipFile(tmp / "good.ckpt") as good, zipfile.ZipFile(tmp / "unpicklable.ckpt", "w") as bad:
        for name in good.namelist():
            bad.writestr(name, b"\xff\xfe not a pickle" if name.endswith("data.pkl") else good.read(name))


RUN = ("--trainer.default_root_dir", "{tmp}/runs", "--trainer.logger.init_args.save_dir", "{tmp}/runs")

CASES = [
    Case(
        "missing data dir: a fit that fails before training leaves no version_N",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tiny}", "--data.data_dir", "{tmp}/absa", *RUN),
        "scpt finetune fit: error: dataset 'restaurants': 2 of 2 files missing under {tmp}/absa:",
        _existing_run,
    ),
    Case(
        "unknown option, with a suggestion",
        ("finetune", "fit", "--config", FINETUNE, "--data.batch_sise", "3"),
        "scpt finetune fit: error: unknown option --data.batch_sise (did you mean 'data.batch_size'?)",
    ),
    Case(
        "unknown key in a config file: file and line",
        ("finetune", "fit", "--config", FINETUNE, "--config", "{tmp}/mine.yaml"),
        "scpt finetune fit: error: {tmp}/mine.yaml, line 3: unknown config key 'data.batch_sise' "
        "(did you mean 'data.batch_size'?)",
        _write("mine.yaml", b"# my settings\ndata:\n  batch_sise: 3\n"),
    ),
    Case(
        "a config file that is not valid YAML: file, line, column",
        ("finetune", "fit", "--config", FINETUNE, "--config", "{tmp}/mine.yaml"),
        "scpt finetune fit: error: {tmp}/mine.yaml, line 3, column 1: not valid YAML: expected ',' or ']', but got "
        "'<stream end>'",
        _write("mine.yaml", b"data:\n  dataset: [restaurants\n"),
    ),
    Case(
        "an empty config file",
        ("finetune", "fit", "--config", FINETUNE, "--config", "{tmp}/mine.yaml"),
        "scpt finetune fit: error: {tmp}/mine.yaml: expected a mapping of config keys, got nothing (an empty file)",
        _write("mine.yaml", b""),
    ),
    Case(
        "a config file that is a list",
        ("finetune", "fit", "--config", FINETUNE, "--config", "{tmp}/mine.yaml"),
        "scpt finetune fit: error: {tmp}/mine.yaml: expected a mapping of config keys, got a list",
        _write("mine.yaml", b"- a\n- b\n"),
    ),
    Case(
        "a loss file that exists but is not valid YAML: not 'neither a file nor a class path'",
        ("pretrain", "fit", "--config", PRETRAIN, "--model.loss", "{tmp}/loss.yaml"),
        "scpt pretrain fit: error: model.loss: {tmp}/loss.yaml, line 2, column 1: not valid YAML: expected ',' or "
        "']', but got '<stream end>'",
        _write("loss.yaml", b"temperature: [0.1\n"),
    ),
    Case(
        "bad value type",
        ("finetune", "fit", "--config", FINETUNE, "--data.batch_size", "abc"),
        "scpt finetune fit: error: data.batch_size: expected int, got 'abc'",
    ),
    Case(
        "missing config file",
        ("finetune", "fit", "--config", "{tmp}/nope.yaml"),
        "scpt finetune fit: error: config: File does not exist: '{tmp}/nope.yaml'",
    ),
    Case(
        "a loss's own argument check, not jsonargparse's union listing",
        ("pretrain", "fit", "--config", PRETRAIN, "--model.loss", DSCL, "--model.loss.init_args.alpha", "1.5", *RUN),
        "scpt pretrain fit: error: DSCLLoss: alpha must be in [0, 1], got 1.5",
    ),
    Case(
        "a loss argument that does not exist",
        ("pretrain", "fit", "--config", PRETRAIN, "--model.loss", DSCL, "--model.loss.init_args.alpah", "0.5"),
        "scpt pretrain fit: error: model.loss: DSCLLoss has no argument 'alpah' (did you mean 'alpha'?)",
    ),
    Case(
        "pretrain has no test",
        ("pretrain", "test", "--config", PRETRAIN),
        "scpt pretrain: error: unknown subcommand 'test' (choose from fit, validate)",
    ),
    Case(
        "--ckpt_path that is not a checkpoint",
        ("finetune", "test", "--config", FINETUNE, "--ckpt_path", "{tmp}/notes.txt", *RUN),
        "scpt finetune test: error: --ckpt_path {tmp}/notes.txt is not a checkpoint (not a file written by torch.save)",
        _write("notes.txt", b"hello\n"),
    ),
    Case(
        "predict input that is not UTF-8: file, line, column",
        (
            "finetune",
            "predict",
            "--config",
            FINETUNE,
            "--model.encoder",
            "{tiny}",
            "--ckpt_path",
            "{tmp}/model.ckpt",
            "--data.predict_file",
            "{tmp}/in.jsonl",
            "--data.predict_output",
            "{tmp}/out.jsonl",
            *RUN,
        ),
        "scpt finetune predict: error: {tmp}/in.jsonl, line 2: not UTF-8 text (byte 0xe9 at column 14); "
        "save the file as UTF-8",
        _tiny_checkpoint_and_input,
    ),  # fmt: skip
    Case(
        "export of a file that is not a checkpoint",
        ("export", "{tmp}/notes.txt", "{tmp}/encoder"),
        "scpt export: error: {tmp}/notes.txt is not a checkpoint (not a file written by torch.save); "
        "give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'",
        _write("notes.txt", b"hello\n"),
    ),
    Case(
        "export of a checkpoint damaged on disk: named, not exported",
        ("export", "{tmp}/corrupt.ckpt", "{tmp}/encoder"),
        "scpt export: error: {tmp}/corrupt.ckpt is corrupt: its entry good/data/0 fails its CRC check (copy it again)",
        _damaged_checkpoints,
    ),
    Case(
        "--ckpt_path damaged on disk",
        ("finetune", "test", "--config", FINETUNE, "--ckpt_path", "{tmp}/corrupt.ckpt", *RUN),
        "scpt finetune test: error: --ckpt_path {tmp}/corrupt.ckpt is corrupt: its entry good/data/0 fails its CRC "
        "check",
        _damaged_checkpoints,
    ),
    Case(
        "--ckpt_path whose pickle cannot be read: one line, not torch's traceback",
        ("finetune", "test", "--config", FINETUNE, "--ckpt_path", "{tmp}/unpicklable.ckpt", *RUN),
        "scpt finetune test: error: --ckpt_path {tmp}/unpicklable.ckpt: cannot be read as a checkpoint with "
        "weights_only=True (UnpicklingError); give a .ckpt written by scpt",
        _damaged_checkpoints,
    ),
    Case(
        "export of a missing checkpoint",
        ("export", "{tmp}/missing.ckpt", "{tmp}/encoder"),
        "scpt export: error: checkpoint {tmp}/missing.ckpt does not exist",
    ),
    Case(
        "export of a directory: not a checkpoint file, rather than 'does not exist'",
        ("export", "{tmp}/checkpoints", "{tmp}/encoder"),
        "scpt export: error: {tmp}/checkpoints is a directory, not a checkpoint file; "
        "give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'",
        _make_dir("checkpoints/last.ckpt"),
    ),
    Case(
        "a negative learning rate, refused by the module rather than by torch's AdamW at fit time",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tiny}", "--model.learning_rate", "-0.1", *RUN),
        "scpt finetune fit: error: learning_rate must be a finite number > 0, got -0.1",
    ),
    Case(
        "phase 1 refuses a learning rate of 0 too",
        ("pretrain", "fit", "--config", PRETRAIN, "--model.encoder", "{tiny}", "--model.learning_rate", "0", *RUN),
        "scpt pretrain fit: error: learning_rate must be a finite number > 0, got 0.0",
    ),
    Case(
        "a dropout probability above 1, refused by the module rather than by torch",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tiny}", "--model.dropout", "2", *RUN),
        "scpt finetune fit: error: dropout must be in [0, 1), got 2.0",
    ),
    Case(
        "a negative weight decay",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tiny}", "--model.weight_decay", "-1", *RUN),
        "scpt finetune fit: error: weight_decay must be a finite number >= 0, got -1.0",
    ),
    Case(
        "a classifier head of width 0",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tiny}", "--model.head_dim", "0", *RUN),
        "scpt finetune fit: error: head_dim must be >= 1, got 0",
    ),
    Case(
        "an encoder path to nothing: a missing directory, not an invalid hub id",
        ("finetune", "fit", "--config", FINETUNE, "--model.encoder", "{tmp}/nonexistent_dir", *RUN),
        "scpt finetune fit: error: encoder directory '{tmp}/nonexistent_dir' does not exist",
    ),
    Case(
        "an abbreviated option is unknown, not expanded",
        ("finetune", "fit", "--config", FINETUNE, "--model.learning_rat", "0.1", *RUN),
        "scpt finetune fit: error: unknown option --model.learning_rat (did you mean 'model.learning_rate'?)",
    ),
    Case(
        "a failed download leaves no empty folders",
        ("data", "download", "--data-dir", "{tmp}/absa", "--datasets", "mams", "--base-url", "http://127.0.0.1:9/x"),
        "scpt data download: error: 3 of 3 files failed:",
    ),
    Case(
        "seeds: a stray positional argument",
        ("finetune", "seeds", "--config", FINETUNE, "--output-dir", "{tmp}/seeds", "extra"),
        "scpt finetune seeds: error: unexpected argument 'extra' (Lightning CLI options start with --)",
    ),
]


def _files(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_expected_failure_is_one_line_exit_2_and_leaves_nothing(
    case: Case,
    tmp_path: Path,
    tiny_bert_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCPT_DEBUG", raising=False)
    case.setup(tmp_path)
    before = _files(tmp_path)
    argv = [arg.format(tmp=tmp_path, tiny=tiny_bert_dir) for arg in case.argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    error_line = next(index for index, line in enumerate(lines) if ": error: " in line)
    assert lines[error_line] == case.error.format(tmp=tmp_path)
    assert "Traceback" not in err
    assert _files(tmp_path) == before  # nothing created, nothing removed


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    result = subprocess.run(
        [sys.executable, "-m", "scpt.cli", "export", str(tmp_path / "notes.txt"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"scpt export: error: {tmp_path}/notes.txt is not a checkpoint (not a file written by torch.save); "
        "give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'"
    ]
    shown = subprocess.run(
        [sys.executable, "-m", "scpt.cli", "export", str(tmp_path / "notes.txt"), str(tmp_path / "out"), "--traceback"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 1
    assert "Traceback (most recent call last)" in shown.stderr
    assert shown.stderr.rstrip().endswith("give a .ckpt written by 'scpt pretrain fit' or 'scpt finetune fit'")


def test_traceback_flag_and_debug_env_reraise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "out")]
    with pytest.raises(UserError, match="does not exist"):
        cli.main([*argv, "--traceback"])
    monkeypatch.setenv("SCPT_DEBUG", "1")
    with pytest.raises(UserError, match="does not exist"):
        cli.main(argv)
    monkeypatch.setenv("SCPT_DEBUG", "0")
    assert cli.main(argv) == 2


def _command_raising(error: Exception) -> Callable[[list[str]], int]:
    def command(argv: list[str]) -> int:
        raise error

    return command


@pytest.mark.parametrize("error", [KeyError("state_dict"), AssertionError("shape"), ValueError("inside a library")])
def test_bugs_keep_their_traceback(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    # raised here, in a test file and not by scpt's code: a bug, whatever its type
    monkeypatch.setattr(cli.Command, "load", lambda self: _command_raising(error))
    with pytest.raises(type(error)):
        cli.main(["env"])


def test_expected_cause_is_the_innermost_error_raised_by_scpt() -> None:
    from scpt.losses import DSCLLoss

    try:
        try:
            DSCLLoss(alpha=1.5)
        except ValueError as inner:
            raise ValueError("Does not validate against any of the Union subtypes") from inner
    except ValueError as outer:
        cause = expected_cause(outer)
    assert str(cause) == "DSCLLoss: alpha must be in [0, 1], got 1.5"
    assert expected_cause(ValueError("raised in a test")) is None  # not by a raise statement in scpt
    assert expected_cause(FileNotFoundError(2, "No such file or directory", "x.yaml")) is not None  # names a file


def test_explain_argument_error_drops_union_noise() -> None:
    union = (
        'Parser key "model.loss":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'scpt.losses.base.ContrastiveLoss'>, <class 'NoneType'>]\n  Errors:\n"
        "    - Problem with given class_path 'scpt.losses.DSCLLoss':\n        Option 'alpah' is not accepted\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'jsonargparse._util.NestedArg'>\n"
    )
    assert (
        explain_argument_error(union, [], []) == "model.loss: DSCLLoss has no argument 'alpah' (did you mean 'alpha'?)"
    )
    not_a_class = (
        'Parser key "model.loss":\n\n  - Expected a path but DSCLLos either not accessible or invalid\n'
        "  - Does not validate against any of the Union subtypes\n"
    )
    assert explain_argument_error(not_a_class, [], []) == (
        "model.loss: 'DSCLLos' is neither a config file that exists nor an importable class path"
    )
    keys = ["data.batch_size", "trainer.max_epochs"]
    assert explain_argument_error("unrecognized arguments: --trainer.max_epohcs 2", keys, []) == (
        "unknown option --trainer.max_epohcs (did you mean 'trainer.max_epochs'?)"
    )
    assert did_you_mean("data.zzz", keys) == ""


def test_plain_text_drops_docstring_markup() -> None:
    assert plain_text("JSON lines (see :func:`read_prediction_inputs`), ``None`` reads :mod:`~scpt.data.absa`") == (
        "JSON lines (see read_prediction_inputs), None reads absa"
    )


def test_new_paths_removes_only_what_did_not_exist(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    new = NewPaths([tmp_path / "runs" / "a" / "version_0", tmp_path / "runs", tmp_path / "other" / "x"])
    assert new.roots == [tmp_path / "runs" / "a", tmp_path / "other"]
    (tmp_path / "runs" / "a" / "version_0").mkdir(parents=True)
    (tmp_path / "other" / "x" / "checkpoints").mkdir(parents=True)
    (tmp_path / "other" / "x" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert new.remove(keep_if_holds="*.ckpt") == [tmp_path / "runs" / "a"]
    assert _files(tmp_path) == {Path(p) for p in ("runs", "other", "other/x", "other/x/checkpoints")} | {
        Path("other/x/checkpoints/last.ckpt")
    }


@needs_data
def test_fast_dev_run_writes_no_checkpoint_and_no_run_folder(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "fit", "--config", FINETUNE, "--model.encoder", str(tiny_bert_dir), "--data.limit", "16"]
    argv += ["--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"]
    argv += [arg.format(tmp=tmp_path) for arg in RUN]
    assert cli.main(argv) == 0
    assert _files(tmp_path) == set()
