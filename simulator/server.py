"""App factory and the server's life cycle: bind, announce, serve, stop.

``build_app`` wires the V5 routes and the admin sub-app onto one :class:`SimulatorState`.
:class:`SimulatorServer` runs it on a socket it binds itself (port 0 = a free port). TCP_NODELAY
is on for every connection (aiohttp sets it); ``tcp_nodelay=False`` exists only so the
benchmark can show what Nagle's algorithm costs a keep-alive client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from cancelq.simulator.admin import PREFIX, build_admin_app
from cancelq.simulator.config import SimulatorConfig
from cancelq.simulator.handlers import V5Handlers
from cancelq.simulator.state import SimulatorState
from cancelq.simulator.ws import PATH as PRIVATE_WS_PATH

_log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 2.0


def build_app(state: SimulatorState) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    V5Handlers(state).register(app)
    app.router.add_get(PRIVATE_WS_PATH, state.streams.handle)

    async def close_streams(_: web.Application) -> None:
        await state.streams.close_all()

    app.on_shutdown.append(close_streams)
    app.add_subapp(PREFIX + "/", build_admin_app(state))
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _NagleProtocol(asyncio.Protocol):
    """Delegates to aiohttp's handler, then turns TCP_NODELAY back off (benchmark only)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _nagle_factory(runner: web.AppRunner) -> Callable[[], asyncio.Protocol]:
    server = runner.server
    assert server is not None
    return lambda: _NagleProtocol(server())


class SimulatorServer:
    """One running simulator inside the current event loop."""

    def __init__(self, config: SimulatorConfig, state: SimulatorState | None = None) -> None:
        self.config = config
        self.state = state or SimulatorState.from_config(config)
        self.app = build_app(self.state)
        self.host = config.host
        self.port = config.port
        self._runner: web.AppRunner | None = None
        self._raw_server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.config.tls_cert is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        self._runner = runner
        sock = bind_socket(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        if self.config.tls_cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
            await web.SockSite(runner, sock, ssl_context=context).start()
        elif self.config.tcp_nodelay:
            await web.SockSite(runner, sock).start()
        else:
            loop = asyncio.get_running_loop()
            self._raw_server = await loop.create_server(_nagle_factory(runner), sock=sock)

    async def close(self) -> None:
        if self._raw_server is not None:
            self._raw_server.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(config: SimulatorConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), printing the listening line first."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = SimulatorServer(config)
    await server.start()
    print(f"simulator listening on {server.base_url}", flush=True)
    _log.info("simulator listening on %s", server.base_url)
    try:
        await stop.wait()
    finally:
        await server.close()


def run(config: SimulatorConfig) -> int:
    """Blocking entry point (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
    return 0
