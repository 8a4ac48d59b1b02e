"""Ending child processes: a signal, a bounded wait, then SIGKILL. Used for every process
cancelq starts (Redis, workers, confirmers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def end_process(
    process: subprocess.Popen[bytes],
    sig: signal.Signals,
    timeout_s: float,
    *,
    group: bool = False,
) -> int:
    """Send ``sig``; after ``timeout_s`` SIGKILL (the whole process group with ``group``)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_process(process, group=group)
    return process.wait()


def kill_process(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """SIGKILL now; with ``group``, everything the process started too."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.wait()
