"""One account's private order stream, in its own thread (websocket-client).

connect -> ``op: auth`` (signature over ``GET/realtime{expires}``, HMAC or RSA) -> subscribe
``order`` -> read, sending ``{"op":"ping"}`` every ``ping_interval_s``. Silence longer than
``ping_interval_s + pong_timeout_s`` (no pong, no push) means a dead stream: reconnect. Every loss
reconnects with exponential backoff and full jitter, and re-authenticates.

websocket-client's exceptions (and socket errors) become ours here, at one boundary:
:class:`~cancelq.errors.ExchangeUnavailableError` for a lost or silent connection,
:class:`~cancelq.errors.ExchangeError` for a refused auth or subscribe. Neither carries a secret:
the auth message is never logged.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

import websocket

from cancelq.accounts import Account
from cancelq.bybit.signing import Signer
from cancelq.confirmer.config import ConfirmerConfig
from cancelq.errors import ExchangeError, ExchangeUnavailableError

log = logging.getLogger(__name__)
READ_TICK_S = 0.25


class StreamListener(Protocol):
    def on_orders(self, account: str, orders: list[dict[str, Any]]) -> None: ...

    def on_stream_state(self, account: str, up: bool) -> None: ...


def auth_message(api_key: str, signer: Signer, expires_ms: int, req_id: str) -> str:
    """Bybit's private-stream auth: ``[api_key, expires, sign("GET/realtime" + expires)]``."""
    signature = signer.sign(f"GET/realtime{expires_ms}".encode())
    return json.dumps({"req_id": req_id, "op": "auth", "args": [api_key, expires_ms, signature]})


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff for the ``attempt``-th consecutive failure (1-based)."""
    return random.uniform(0, min(max_s, base_s * 2 ** max(attempt - 1, 0)))


class OrderStream:
    """``start()`` runs the connection loop in a daemon thread until ``stop()``."""

    def __init__(
        self,
        *,
        account: Account,
        signer: Signer,
        url: str,
        config: ConfirmerConfig,
        listener: StreamListener,
        on_reconnect: Callable[[str], None],
        ca_bundle: Path | None = None,
    ) -> None:
        self.account = account
        self._signer = signer
        self._url = url
        self._sslopt = {"ca_certs": str(ca_bundle)} if ca_bundle is not None else None
        self._config = config
        self._listener = listener
        self._on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"stream-{account.alias}", daemon=True
        )
        self.up = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            _abort(ws)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._session()
                failures = 0
            except ExchangeError as exc:
                failures += 1
                if not self._stop.is_set():
                    log.warning("order stream of %s lost: %s", self.account.alias, exc)
            except Exception:  # a listener bug must not end the stream for good
                failures += 1
                log.exception("order stream of %s failed", self.account.alias)
            self._set_up(False)
            if self._stop.wait(
                backoff_s(failures, self._config.backoff_base_s, self._config.backoff_max_s)
            ):
                break
            self._on_reconnect(self.account.alias)

    def _session(self) -> None:
        ws = self._connect()
        self._ws = ws
        try:
            self._handshake(ws)
            self._set_up(True)
            self._read(ws)
        finally:
            self._ws = None
            _abort(ws)
            ws.close(timeout=0.1)

    def _connect(self) -> websocket.WebSocket:
        try:
            return websocket.create_connection(
                self._url,
                timeout=self._config.auth_timeout_s,
                enable_multithread=True,
                sslopt=self._sslopt,
            )
        except (websocket.WebSocketException, OSError) as exc:
            raise ExchangeUnavailableError(
                "stream", f"connect failed ({type(exc).__name__})"
            ) from None

    def _handshake(self, ws: websocket.WebSocket) -> None:
        expires = int((time.time() + self._config.auth_expires_s) * 1000)
        self._send(ws, auth_message(self.account.api_key, self._signer, expires, "auth"))
        self._expect(ws, "auth")
        self._send(ws, json.dumps({"req_id": "sub", "op": "subscribe", "args": ["order"]}))
        self._expect(ws, "subscribe")

    def _expect(self, ws: websocket.WebSocket, op: str) -> None:
        deadline = time.monotonic() + self._config.auth_timeout_s
        while time.monotonic() < deadline:
            message = self._recv(ws)
            if message is None or message.get("op") != op:
                if message is not None:
                    self._dispatch(message)
                continue
            if message.get("success") is not True:
                raise ExchangeError(f"{op} refused: {str(message.get('ret_msg', ''))[:200]}")
            return
        raise ExchangeUnavailableError("stream", f"no {op} reply in {self._config.auth_timeout_s}s")

    def _read(self, ws: websocket.WebSocket) -> None:
        ping_every = self._config.ping_interval_s
        silence_limit = ping_every + self._config.pong_timeout_s
        last_rx = last_ping = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_ping >= ping_every:
                self._send(ws, json.dumps({"req_id": str(uuid.uuid4())[:8], "op": "ping"}))
                last_ping = now
            if now - last_rx > silence_limit:
                raise ExchangeUnavailableError("stream", f"silent for {now - last_rx:.1f}s")
            message = self._recv(ws)
            if message is not None:
                last_rx = time.monotonic()
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("topic") != "order":
            return
        data = message.get("data")
        if isinstance(data, list):
            orders = [item for item in data if isinstance(item, dict)]
            self._listener.on_orders(self.account.alias, orders)

    # -- websocket-client boundary -------------------------------------------------------------

    def _recv(self, ws: websocket.WebSocket) -> dict[str, Any] | None:
        """One JSON object, or None on a read tick without data (or a non-object frame)."""
        ws.settimeout(READ_TICK_S)
        try:
            text = ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as exc:
            raise ExchangeUnavailableError(
                "stream", f"connection lost ({type(exc).__name__})"
            ) from None
        if not text:
            raise ExchangeUnavailableError("stream", "closed by the exchange")
        try:
            message = json.loads(text)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    @staticmethod
    def _send(ws: websocket.WebSocket, text: str) -> None:
        try:
            ws.send(text)
        except (websocket.WebSocketException, OSError) as exc:
            raise ExchangeUnavailableError(
                "stream", f"send failed ({type(exc).__name__})"
            ) from None

    def _set_up(self, up: bool) -> None:
        if self.up != up:
            self.up = up
            self._listener.on_stream_state(self.account.alias, up)


def _abort(ws: websocket.WebSocket) -> None:
    """Wake a thread blocked in ``recv`` (websocket-client's ``abort`` is untyped)."""
    cast(Any, ws).abort()
