"""Developer tooling that runs from a cancelq checkout, never from the wheel.

The wheel holds runtime code only; ``bench/`` and ``monitoring/`` stay in the repository. The
``cancelq bench`` command finds them in the checkout it is run from (the current directory or
one above it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cancelq.errors import ConfigError


def find_checkout(start: Path | None = None) -> Path | None:
    """The cancelq checkout that holds ``start`` (default: the current directory), if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "bench" / "__init__.py").is_file():
            return folder
    return None


def import_checkout_tool(module: str, name: str) -> Callable[..., Any]:
    """``name`` from ``module`` of the checkout's tooling, or a clear error outside a checkout."""
    root = find_checkout()
    if root is None:
        raise ConfigError(
            f"{module.partition('.')[0]}/ is developer tooling that is not installed with cancelq: "
            "run this command inside a cancelq checkout (git clone, then ./scripts/bootstrap)"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    tool: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return tool
