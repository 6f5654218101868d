"""Shared test helpers (importable from test modules; conftest.py holds fixtures and settings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Where the datasets are: ``$SCPT_DATA_DIR``.
DATA_DIR = Path(os.environ.get("SCPT_DATA_DIR", "/nonexistent"))

#: Skip a test that reads the real datasets when they are absent (never in CI: conftest fails then).
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="SCPT_DATA_DIR does not point at the data")
