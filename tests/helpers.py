"""Shared test helpers (importable from test modules; conftest.py holds fixtures and settings)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

#: The repository root.
REPO = Path(__file__).resolve().parents[1]

#: Where the datasets are: ``$SCPT_DATA_DIR``.
DATA_DIR = Path(os.environ.get("SCPT_DATA_DIR", "/nonexistent"))

#: Skip a test that reads the real datasets when they are absent (never in CI: conftest fails then).
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="SCPT_DATA_DIR does not point at the data")

#: Six labelled toy sentences (3 classes) for the tiny phase-1 module and dashboard tests.
TEXTS = [
    ("pizza was great and cheap", 0),
    ("service was slow and rude", 1),
    ("pasta was lovely", 0),
    ("waiter ignored us for an hour", 1),
    ("menu is short", 2),
    ("decor was nice", 0),
]


def load_script(relative: str) -> ModuleType:
    """A script under the repository root (e.g. in experiments/) as a module, by its relative path."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem + "_under_test", REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
