"""Help names its command, lists only working subcommands, explains the predict input and the seeds
overrides in plain words, and (but for a Lightning subcommand's own) imports neither torch nor Lightning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scpt import cli
from scpt.finetune import usage as finetune_usage
from scpt.pretrain import usage as pretrain_usage

HEAVY = ("torch", "pytorch_lightning", "transformers")


def _help_in_fresh_python(argv: list[str]) -> tuple[str, list[str]]:
    """The help ``scpt ARGV`` prints, and which of :data:`HEAVY` it imported to print it."""
    code = (
        "import contextlib, io, sys\nfrom scpt.cli import main\nout = io.StringIO()\n"
        f"with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n    main({argv!r})\n"
        f"print(out.getvalue())\nprint([name for name in {HEAVY!r} if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *text, imported = result.stdout.rstrip("\n").split("\n")
    return "\n".join(text), eval(imported)  # noqa: S307 - a list of names printed by the child above


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["--help"], "usage: scpt [-h] [--version] COMMAND"),
        (["finetune", "--help"], "usage: scpt finetune {fit,validate,test,predict,seeds} [options]"),
        (["pretrain", "--help"], "usage: scpt pretrain {fit,validate} [options]"),
        (
            ["finetune", "seeds", "--help"],
            "usage: scpt finetune seeds [-h] --config CONFIG [--seeds SEEDS [SEEDS ...]]",
        ),
        (["export", "--help"], "usage: scpt export [-h] checkpoint directory"),
        (["data", "--help"], "usage: scpt data [-h] SUBCOMMAND ..."),
        (["env", "--help"], "usage: scpt env [-h]"),
    ],
)
def test_help_names_its_command_without_heavy_imports(argv: list[str], first_line: str) -> None:
    text, imported = _help_in_fresh_python(argv)
    assert text.splitlines()[0] == first_line
    assert "Lightning Trainer command line tool" not in text and ":func:" not in text and "``" not in text
    assert imported == []


def test_finetune_help_lists_subcommands_predict_format_and_seeds_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["finetune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for name, line in finetune_usage.SUBCOMMANDS.items():
        assert f"{name} {line}" in text
    assert "one JSON object per line: the sentence as 'text' and the aspect either as 'aspect'" in text
    assert "or as 'from'/'to' character offsets into the text" in text
    assert "go after scpt finetune seeds' own options, optionally after a '--' separator" in text


def test_phase_without_subcommand_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pretrain"]) == 2
    assert capsys.readouterr().out.startswith("usage: scpt pretrain {fit,validate} [options]\n\nPhase 1:")


def test_listed_subcommands_are_the_lightning_clis() -> None:
    from scpt.finetune.cli import FinetuneCLI
    from scpt.pretrain.cli import PretrainCLI

    assert list(PretrainCLI.subcommands()) == list(pretrain_usage.SUBCOMMANDS) == ["fit", "validate"]
    assert [*FinetuneCLI.subcommands(), "seeds"] == list(finetune_usage.SUBCOMMANDS)


def test_lightning_subcommand_help_is_scpts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["finetune", "predict", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scpt finetune [options] predict [-c CONFIG]")
    text = " ".join(out.split())
    assert f"--data.predict_file PREDICT_FILE predict input: {finetune_usage.PREDICT_INPUT}" in text
    assert ":func:" not in out and "Lightning Trainer command line tool" not in out


def test_seeds_passes_unknown_options_to_lightning(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from scpt.finetune import seeds

    calls: list[list[str]] = []

    def fake_run_seed(config_args: list[str], seed: int, run_dir) -> dict:
        calls.append(config_args)
        return {"seed": seed, "test": {"acc": 50.0}, "dev_score": 1.0, "seconds": 6.0}

    monkeypatch.setattr(seeds, "run_seed", fake_run_seed)
    argv = ["--config", "a.yaml", "--seeds", "1", "--output-dir", str(tmp_path), "--trainer.max_epochs", "2"]
    assert seeds.main([*argv, "--", "--data.limit", "8"]) == 0
    assert calls == [["--config", "a.yaml", "--trainer.max_epochs", "2", "--data.limit", "8"]]
