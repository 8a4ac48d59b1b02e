"""Processes the harness starts, and how every one of them ends.

* :func:`end_process`, :func:`kill_process`: a signal, a bounded wait, then SIGKILL; used for
  every process cancelq starts (Redis, workers, confirmers).
* :class:`ServiceProcess` (:class:`WorkerProcess`, :class:`ConfirmerProcess`): a cancelq
  service started from Python for the demo, tests and benchmarks. Each is ``python -m cancelq
  <command>`` with its own environment, which must name its ``CANCELQ_HEALTH_FILE``: the service
  marks itself ready there (see ``worker/observability.py``). Its log goes to a file, which
  tests scan for secrets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from cancelq.heartbeat import read_heartbeat


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


class ServiceProcess:
    """``python -m cancelq <command> <args>``: start (until ready), stop, kill, logs."""

    command = "worker"
    #: The variable that names the port of the service's /metrics.
    metrics_port_var = "CANCELQ_METRICS_PORT"

    def __init__(
        self,
        env: Mapping[str, str],
        log_file: Path,
        args: Sequence[str] = (),
    ) -> None:
        self.env = {**os.environ, **env}
        self.log_file = log_file
        self.args = list(args)
        self.health_file = Path(self.env["CANCELQ_HEALTH_FILE"])
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def metrics_port(self) -> int:
        """The port of its /metrics on 127.0.0.1 (0: none)."""
        return int(self.env.get(self.metrics_port_var) or 0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30.0) -> Self:
        self.health_file.unlink(missing_ok=True)
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cancelq", self.command, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()  # never leave a half-started service behind
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            beat = read_heartbeat(self.health_file)
            if beat is not None and beat[1] and beat[0] < 5:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited at start:\n{self.log_text(since_start=True)}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.command} not ready in {timeout_s}s:\n{self.log_text(since_start=True)}"
        )

    def log_text(self, *, since_start: bool = False) -> str:
        try:
            data = self.log_file.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_offset if since_start else 0 :].decode(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (warm shutdown), then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process is None:
            return None
        return end_process(self.process, signal.SIGTERM, timeout_s, group=True)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (its process group)."""
        if self.process is not None:
            kill_process(self.process, group=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerProcess(ServiceProcess):
    """``cancelq worker``; ``args`` go to ``celery worker``."""

    command = "worker"


class ConfirmerProcess(ServiceProcess):
    """``cancelq confirmer``."""

    command = "confirmer"
    metrics_port_var = "CANCELQ_CONFIRMER_METRICS_PORT"
