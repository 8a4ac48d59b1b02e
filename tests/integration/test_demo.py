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


#: The long-lived services a demo starts, by a word of their command line, and how many.
SERVICES = {"redis-server": 1, "simulator": 1, "worker": 2, "confirmer": 1}


def services(parent: psutil.Process) -> dict[psutil.Process, str]:
    """The demo's long-lived services running now, with their command lines (short-lived
    helpers, e.g. a readiness probe, are not counted)."""
    found = {}
    for child in parent.children(recursive=True):
        try:
            words = " ".join(child.cmdline())
        except psutil.Error:  # gone meanwhile
            continue
        if any(role in words for role in SERVICES):
            found[child] = words
    return found


def all_started(found: dict[psutil.Process, str]) -> bool:
    lines = list(found.values())
    return all(sum(role in line for line in lines) >= n for role, n in SERVICES.items())


def test_an_interrupted_demo_stops_everything_it_started() -> None:
    process = demo("--cancels", "600")
    try:
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 90
        started = services(parent)
        while time.monotonic() < deadline and not all_started(started):
            time.sleep(0.2)
            started = services(parent)
        assert all_started(started), list(started.values())
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130
        assert "interrupted" in err
        gone, alive = psutil.wait_procs(list(started), timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        assert gone
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
