"""The console script: help lists the commands, unknown commands fail, subcommands dispatch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from scpt import __version__, cli


def test_console_script_help_lists_commands() -> None:
    result = subprocess.run(["scpt", "--help"], capture_output=True, text=True, check=True)
    assert "usage: scpt" in result.stdout
    for name in cli.COMMANDS:
        assert name in result.stdout


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "scpt.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"scpt {__version__}"


def test_unknown_command_fails_with_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err


def test_no_arguments_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: scpt" in capsys.readouterr().out


def test_subcommand_receives_remaining_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []

    def fake(argv: list[str]) -> int:
        received.append(argv)
        return 7

    monkeypatch.setitem(cli.COMMANDS, "probe", cli.Command("test probe", "scpt.cli:env_command"))
    monkeypatch.setattr(cli.Command, "load", lambda self: fake)
    assert cli.main(["probe", "fit", "--config", "x.yaml"]) == 7
    assert received == [["fit", "--config", "x.yaml"]]


def test_env_command_reports_torch(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    assert cli.main(["env"]) == 0
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert rows["torch"] == torch.__version__
    assert rows["torch threads"] == str(torch.get_num_threads())
