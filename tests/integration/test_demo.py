"""The README's main job, as a user runs it: ``cancelq demo`` in its own process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def demo(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCELQ_")}
    return subprocess.Popen(
        [sys.executable, "-m", "cancelq", "demo", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_the_demo_ends_every_request_and_prints_a_summary() -> None:
    process = demo("--cancels", "60")
    out, err = process.communicate(timeout=150)
    assert process.returncode == 0, err
    assert re.search(r"no outcome\s*│\s*0\s*│", out), out
    assert "cancelled" in out
    assert "confirmed_cancelled" in out
    assert "accept -> confirmed: p50" in out
    assert "/metrics" in out


def test_an_interrupted_demo_stops_everything_it_started() -> None:
    process = demo("--cancels", "600")
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(parent.children(recursive=True)) < 5:
        time.sleep(0.2)  # Redis, simulator, 2 workers, the confirmer
    started = parent.children(recursive=True)
    assert len(started) >= 5
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in err
    gone, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert gone
