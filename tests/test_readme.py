"""The README's promises: its Python examples run, and its first two commands are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(index: int) -> None:
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index}", "exec"), {})


def test_readme_opens_with_the_commands_ci_runs() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    install, test = [line.split("#")[0].strip() for line in first_block.strip().splitlines()[:2]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install in ci
    assert test in ci
