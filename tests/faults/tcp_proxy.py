"""A TCP proxy between one worker pod and Redis that a test can cut, as a network partition
would: nothing passes either way while cut (bytes already read are held, the kernel buffers
fill, the sender's writes stall), connections stay open, and new ones are accepted but carry
nothing. ``heal`` lets the held bytes through, as TCP retransmits them after a partition ends.

Written here rather than taken from a library: toxiproxy is a Go binary that none of this
machine's registries carries, and a partition (hold, then deliver) is all the test needs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from cancelq.harness.embedded_redis import free_port

CHUNK = 65536


class TcpProxy:
    """``127.0.0.1:<port>`` forwarded to ``upstream``; :meth:`cut` and :meth:`heal`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def cut(self) -> None:
        """Nothing passes until :meth:`heal` (both directions, every connection)."""
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self._acceptor.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy ``src`` to ``dst``; while cut, hold what was read until healed."""
        try:
            while chunk := src.recv(CHUNK):
                self._flowing.wait()
                if self._closed.is_set():
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
