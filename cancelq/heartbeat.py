"""The heartbeat file a worker or confirmer refreshes and ``cancelq health`` reads.

One line: ``<epoch seconds> <ready|starting>``. Standard library only: the health probe runs
every few seconds and must start fast.
"""

from __future__ import annotations

import time
from pathlib import Path


def write_heartbeat(health_file: Path, *, ready: bool) -> None:
    health_file.write_text(
        f"{time.time():.3f} {'ready' if ready else 'starting'}\n", encoding="utf-8"
    )


def read_heartbeat(health_file: Path) -> tuple[float, bool] | None:
    """(seconds since the last heartbeat, ready?), or None when there is none."""
    try:
        stamp, state = health_file.read_text(encoding="utf-8").split()
        return time.time() - float(stamp), state == "ready"
    except (OSError, ValueError):
        return None
