"""Fixtures for the operator-side tests: the repository root on sys.path, the worker's metrics."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `monitoring` is not an installed package
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install prometheus")
    return path
