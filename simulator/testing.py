"""Helpers for tests anywhere in the project: start a simulator, sign requests.

* :class:`SimulatorProcess` runs ``python -m cancelq.simulator --port 0 ...`` as a subprocess.
* :class:`InProcessSimulator` runs it in a thread of the current process (fast; the test can
  reach ``.state`` directly).
* :func:`signed_request` signs by hand (an accounts file: ``cancelq.harness.accounts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from cancelq.simulator.admin_client import AdminClient
from cancelq.simulator.config import SimulatorConfig
from cancelq.simulator.server import SimulatorServer
from cancelq.simulator.state import SimulatorState

READY_RE = re.compile(r"simulator listening on (https?://\S+)")
DEFAULT_STARTUP_TIMEOUT_S = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (racy by nature; prefer ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SimulatorStartError(RuntimeError):
    """The simulator did not come up."""


class SimulatorProcess:
    """``with SimulatorProcess(accounts_file=p) as sim: sim.base_url, sim.admin ...``"""

    def __init__(
        self,
        accounts_file: Path | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
        python: str = sys.executable,
        admin_token: str | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``tls`` = (CA cert, server cert, server key): serve HTTPS with that certificate; the
        admin client verifies it against the CA."""
        self.args = [python, "-m", "cancelq.simulator", "--port", "0"]
        self.ca_file: str | None = None
        if tls is not None:
            ca_cert, cert, key = tls
            self.args += ["--tls-cert", str(cert), "--tls-key", str(key)]
            self.ca_file = str(ca_cert)
        if accounts_file is not None:
            self.args += ["--accounts", str(accounts_file)]
        self.args += list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.admin_token = admin_token
        self.base_url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: str | None = None
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise SimulatorStartError("simulator not started")
        return self._admin

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        """The private WebSocket, ``ws://HOST:PORT/v5/private``."""
        return private_ws_url(self.base_url)

    def start(self) -> Self:
        fd, self._stderr_path = tempfile.mkstemp(prefix="simulator-", suffix=".stderr")
        try:
            # its own session: a Ctrl-C meant for the parent must not kill it under the parent
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=fd, env=self.env, start_new_session=True
            )
        finally:
            os.close(fd)
        try:
            self.base_url = self._wait_for_port()
            self._admin = AdminClient(self.base_url, self.admin_token, verify=self.ca_file)
            self._wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def _stderr_text(self) -> str:
        if self._stderr_path is None:
            return ""
        return Path(self._stderr_path).read_bytes().decode("utf-8", "replace")[-4000:]

    def _fail(self, why: str) -> SimulatorStartError:
        return SimulatorStartError(f"{why}; command {self.args}; stderr:\n{self._stderr_text()}")

    def _wait_for_port(self) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        buffered = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=0.1):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buffered += chunk
                    match = READY_RE.search(buffered.decode("utf-8", "replace"))
                    if match:
                        return match.group(1)
                if self.proc.poll() is not None:
                    break
        if self.proc.poll() is not None:
            raise self._fail(f"simulator exited with status {self.proc.returncode}")
        raise self._fail(f"simulator did not announce its port within {self.startup_timeout}s")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                self.admin.health()
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise self._fail("simulator admin API not answering") from None
                time.sleep(0.05)
            else:
                return

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._stderr_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._stderr_path)
            self._stderr_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class InProcessSimulator:
    """The simulator on a loopback port, served by a background thread of this process."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        base = config or SimulatorConfig()
        self.config = SimulatorConfig(**{**_fields(base), "port": 0, "host": "127.0.0.1"})
        self.state = SimulatorState.from_config(self.config)
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: SimulatorServer | None = None
        self._admin: AdminClient | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise SimulatorStartError("simulator not started")
        return self._admin

    @property
    def ws_url(self) -> str:
        return private_ws_url(self.base_url)

    def start(self) -> Self:
        self._thread.start()
        server = SimulatorServer(self.config, self.state)
        asyncio.run_coroutine_threadsafe(server.start(), self._loop).result(10)
        self._server = server
        self.base_url = server.base_url
        self._admin = AdminClient(self.base_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(10)
            self._server = None
        if self._admin is not None:
            self._admin.close()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _fields(config: SimulatorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def private_ws_url(base_url: str) -> str:
    """``http://h:p`` -> ``ws://h:p/v5/private`` (``https`` -> ``wss``)."""
    return "ws" + base_url.removeprefix("http") + "/v5/private"


def sign_hmac(secret: str, timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """Bybit V5 HMAC signature over ``timestamp + api_key + recv_window + payload``."""
    origin = (timestamp + api_key + recv_window + payload).encode()
    return hmac.new(secret.encode(), origin, hashlib.sha256).hexdigest()


def signed_headers(
    api_key: str,
    secret: str,
    payload: str,
    *,
    timestamp_ms: int | None = None,
    recv_window: int = 5000,
) -> dict[str, str]:
    """The five V5 auth headers for ``payload`` (raw body or query string)."""
    ts = str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms)
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": str(recv_window),
        "X-BAPI-SIGN": sign_hmac(secret, ts, api_key, str(recv_window), payload),
        "Content-Type": "application/json",
    }


def signed_request(
    session: requests.Session,
    base_url: str,
    method: str,
    path: str,
    *,
    api_key: str,
    secret: str,
    payload: str = "",
    **header_args: Any,
) -> requests.Response:
    """Send one HMAC-signed V5 request: ``payload`` is the JSON body (POST) or query (GET)."""
    headers = signed_headers(api_key, secret, payload, **header_args)
    if method == "GET":
        url = f"{base_url}{path}" + (f"?{payload}" if payload else "")
        return session.get(url, headers=headers, timeout=10)
    return session.post(f"{base_url}{path}", data=payload.encode(), headers=headers, timeout=10)
