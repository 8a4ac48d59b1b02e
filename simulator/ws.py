"""The private WebSocket ``/v5/private``: auth, the ``order`` topic, ping/pong, stream faults.

Protocol, as Bybit's private stream speaks it::

    -> {"req_id": "1", "op": "auth", "args": [api_key, expires_ms, signature]}
    <- {"success": true, "ret_msg": "", "op": "auth", "conn_id": "...", "req_id": "1"}
    -> {"req_id": "2", "op": "subscribe", "args": ["order"]}
    <- {"success": true, "ret_msg": "", "op": "subscribe", "conn_id": "...", "req_id": "2"}
    -> {"req_id": "3", "op": "ping"}
    <- {"req_id": "3", "op": "pong", "args": ["<server ms>"], "conn_id": "..."}
    <- {"id": "...", "topic": "order", "creationTime": ms, "data": [{"category": ..., ...}]}

The signature is HMAC-SHA256 hex (or RSA SHA256withRSA base64) of ``"GET/realtime" + expires``;
``expires`` must lie in the future of the exchange clock. Every order state change of the
authenticated UID is pushed to connections subscribed to ``order`` (``OrderBook.listeners``).

Faults (admin API): ``drop`` aborts connections (no close frame, like a network cut); ``refuse``
closes new connections at once (stream down); ``silent`` keeps connections open but sends nothing
at all, neither order messages nor pongs (a half-dead stream). Order messages swallowed while
silent are lost, as they would be.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from cancelq.simulator.accounts import AccountStore
from cancelq.simulator.auth import signature_matches
from cancelq.simulator.orders import OrderEvent

PATH = "/v5/private"
TOPICS = frozenset({"order", "execution", "position", "wallet", "greeks"})
MSG_PARAMS = "Params Error"
MSG_KEY = "API key is invalid."
MSG_EXPIRED = "Request expired"
MSG_SIGN = "Signature mismatch"
MSG_REPEATED = "Request repeated"
MSG_NOT_AUTHED = "Request not authorized"
#: A subscribe is answered after this delay (a network round trip's worth): pybit records its
#: subscription only after sending it, and a loopback reply can beat that bookkeeping.
SUBSCRIBE_REPLY_DELAY_S = 0.02


@dataclass(eq=False)
class Connection:
    """One client connection; ``uid`` is set once authenticated."""

    conn_id: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    uid: int | None = None
    topics: set[str] = field(default_factory=set)


@dataclass
class StreamFaults:
    silent: bool = False
    refuse: bool = False


class PrivateStreams:
    """Every open private connection, and the book listener feeding them."""

    def __init__(self, accounts: AccountStore, server_ms: Any) -> None:
        self._accounts = accounts
        self._server_ms = server_ms
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connections: dict[str, Connection] = {}
        self.faults = StreamFaults()
        self.pushed = 0

    # -- book listener (may be called from any thread) -----------------------------------------

    def on_event(self, event: OrderEvent) -> None:
        if self._loop is None or self.faults.silent:
            return
        message = json.dumps(order_message(event), separators=(",", ":"))
        for conn in list(self.connections.values()):
            if conn.uid == event.uid and "order" in conn.topics:
                self._loop.call_soon_threadsafe(conn.outbox.put_nowait, message)
                self.pushed += 1

    # -- connections ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self._loop = asyncio.get_running_loop()
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 16)
        await ws.prepare(request)
        if self.faults.refuse:
            await ws.close(code=1013, message=b"try again later")
            return ws
        conn = Connection(
            uuid.uuid4().hex[:16] + "-" + str(len(self.connections)), ws, request.transport
        )
        self.connections[conn.conn_id] = conn
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                self._reply(conn, msg.data)
        finally:
            self.connections.pop(conn.conn_id, None)
            writer.cancel()
        return ws

    async def _write(self, conn: Connection) -> None:
        while True:
            message = await conn.outbox.get()
            if self.faults.silent:
                continue
            try:
                await conn.ws.send_str(message)
            except (ConnectionError, RuntimeError):
                return

    def _reply(self, conn: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            conn.outbox.put_nowait(_dump(_answer(conn, {}, "", MSG_PARAMS)))
            return
        op = str(request.get("op", ""))
        if op == "ping":
            reply: dict[str, Any] = {
                "req_id": request.get("req_id", ""),
                "op": "pong",
                "args": [str(self._server_ms())],
                "conn_id": conn.conn_id,
            }
        elif op == "auth":
            reply = _answer(conn, request, op, self._auth(conn, request.get("args")))
        elif op in ("subscribe", "unsubscribe"):
            reply = _answer(conn, request, op, _subscribe(conn, op, request.get("args")))
            loop = asyncio.get_running_loop()
            loop.call_later(SUBSCRIBE_REPLY_DELAY_S, conn.outbox.put_nowait, _dump(reply))
            return
        else:
            reply = _answer(conn, request, op, MSG_PARAMS)
        conn.outbox.put_nowait(_dump(reply))

    def _auth(self, conn: Connection, args: object) -> str:
        """Empty string when accepted, else the failure message."""
        if conn.uid is not None:
            return MSG_REPEATED
        if not isinstance(args, list) or len(args) != 3:
            return MSG_PARAMS
        api_key, expires, signature = (str(a) for a in args)
        account = self._accounts.get(api_key)
        if account is None:
            return MSG_KEY
        if not expires.isdigit() or int(expires) <= self._server_ms():
            return MSG_EXPIRED
        if not signature_matches(account, f"GET/realtime{expires}".encode(), signature):
            return MSG_SIGN
        conn.uid = account.uid
        return ""

    # -- faults --------------------------------------------------------------------------------

    def drop(self, uid: int | None = None) -> int:
        """Abort connections (all, or one UID's) without a close frame; how many."""
        dropped = 0
        for conn in list(self.connections.values()):
            if uid is None or conn.uid == uid:
                if conn.transport is not None:
                    conn.transport.abort()
                dropped += 1
        return dropped

    async def close_all(self) -> None:
        for conn in list(self.connections.values()):
            await conn.ws.close(code=1001, message=b"server shutdown")

    def snapshot(self) -> dict[str, Any]:
        return {
            "silent": self.faults.silent,
            "refuse": self.faults.refuse,
            "pushed": self.pushed,
            "connections": [
                {"conn_id": c.conn_id, "uid": c.uid, "topics": sorted(c.topics)}
                for c in self.connections.values()
            ],
        }


def _subscribe(conn: Connection, op: str, args: object) -> str:
    if conn.uid is None:
        return MSG_NOT_AUTHED
    if not isinstance(args, list) or not args or not all(a in TOPICS for a in args):
        return MSG_PARAMS
    if op == "subscribe":
        conn.topics.update(str(a) for a in args)
    else:
        conn.topics.difference_update(str(a) for a in args)
    return ""


def _answer(conn: Connection, request: dict[str, Any], op: str, failure: str) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "success": failure == "",
        "ret_msg": failure,
        "op": op,
        "conn_id": conn.conn_id,
    }
    if "req_id" in request:
        reply["req_id"] = request["req_id"]
    return reply


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def order_message(event: OrderEvent) -> dict[str, Any]:
    """An ``order`` topic push for one state change, in Bybit's shape."""
    return {
        "id": f"{event.uid}-{uuid.uuid4()}",
        "topic": "order",
        "creationTime": event.time_ms,
        "data": [{"category": event.category, **event.order}],
    }
