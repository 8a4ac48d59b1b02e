"""The private WebSocket ``/v5/private``: auth (HMAC, RSA, bad signature, expired), the ``order``
topic on every state change in Bybit's shape, the cancel/fill race, ping/pong, faults, and pybit's
``WebSocket(channel_type="private")`` against it (fidelity)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pybit.unified_trading
import pytest
import websocket
from pybit.unified_trading import WebSocket
from sim_helpers import HMAC_KEY, HMAC_SECRET, HMAC_UID, RSA_KEY, V5

from cancelq.bybit.signing import RsaSigner
from cancelq.harness.accounts import RsaPair
from cancelq.simulator.testing import InProcessSimulator


def _hmac_auth(key: str, secret: str, expires: int) -> dict[str, Any]:
    sign = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
    return {"req_id": "a", "op": "auth", "args": [key, expires, sign.hexdigest()]}


def _future(ms: int = 5000) -> int:
    return int(time.time() * 1000) + ms


@pytest.fixture
def ws(sim: InProcessSimulator) -> Iterator[websocket.WebSocket]:
    conn = websocket.create_connection(sim.ws_url, timeout=5)
    try:
        yield conn
    finally:
        _close(conn)


def _close(conn: websocket.WebSocket) -> None:
    conn.close(timeout=0.5)
    conn.shutdown()  # type: ignore[no-untyped-call]  # a dropped socket is closed too


def _ask(conn: websocket.WebSocket, message: dict[str, Any]) -> dict[str, Any]:
    conn.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(conn.recv())
    return reply


def _subscribed(conn: websocket.WebSocket) -> None:
    assert _ask(conn, _hmac_auth(HMAC_KEY, HMAC_SECRET, _future()))["success"] is True
    reply = _ask(conn, {"req_id": "s", "op": "subscribe", "args": ["order"]})
    assert reply["success"] is True
    assert reply["req_id"] == "s"


def _orders(conn: websocket.WebSocket, count: int) -> list[dict[str, Any]]:
    pushes = [json.loads(conn.recv()) for _ in range(count)]
    assert all(p["topic"] == "order" for p in pushes)
    return [item for p in pushes for item in p["data"]]


@pytest.mark.timeout(15)
def test_hmac_auth_reply_has_bybits_shape(ws: websocket.WebSocket) -> None:
    reply = _ask(ws, _hmac_auth(HMAC_KEY, HMAC_SECRET, _future()))
    assert reply == {
        "success": True,
        "ret_msg": "",
        "op": "auth",
        "conn_id": reply["conn_id"],
        "req_id": "a",
    }


@pytest.mark.timeout(15)
def test_rsa_auth_is_accepted(ws: websocket.WebSocket, rsa_pair: RsaPair) -> None:
    expires = _future()
    sign = RsaSigner(rsa_pair.private_pem).sign(f"GET/realtime{expires}".encode())
    reply = _ask(ws, {"op": "auth", "args": [RSA_KEY, expires, sign]})
    assert reply["success"] is True


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    ("key", "secret", "expires_in_ms", "message"),
    [
        (HMAC_KEY, "wrong-secret", 5000, "Signature mismatch"),
        (HMAC_KEY, HMAC_SECRET, -1000, "Request expired"),
        ("NOPE", HMAC_SECRET, 5000, "API key is invalid."),
    ],
)
def test_bad_auth_is_refused_without_the_secret(
    ws: websocket.WebSocket, key: str, secret: str, expires_in_ms: int, message: str
) -> None:
    reply = _ask(ws, _hmac_auth(key, secret, _future(expires_in_ms)))
    assert reply["success"] is False
    assert reply["ret_msg"] == message
    assert secret not in json.dumps(reply)
    assert _ask(ws, {"op": "subscribe", "args": ["order"]})["ret_msg"] == "Request not authorized"


@pytest.mark.timeout(15)
def test_ping_gets_a_private_pong(ws: websocket.WebSocket) -> None:
    reply = _ask(ws, {"req_id": "p1", "op": "ping"})
    assert reply["op"] == "pong"
    assert reply["req_id"] == "p1"
    assert int(reply["args"][0]) > 0
    assert reply["conn_id"]


@pytest.mark.timeout(15)
def test_order_pushes_on_every_change_in_bybits_shape(
    ws: websocket.WebSocket, sim: InProcessSimulator, v5: V5
) -> None:
    _subscribed(ws)
    oid = sim.admin.place_order(uid=HMAC_UID, category="linear", symbol="BTCUSDT", price="5")
    push = json.loads(ws.recv())
    assert set(push) == {"id", "topic", "creationTime", "data"}
    (created,) = push["data"]
    assert created["category"] == "linear"
    assert created["orderStatus"] == "New"
    assert v5.cancel("linear", orderId=oid)["retCode"] == 0
    (cancelled,) = _orders(ws, 1)
    assert cancelled["orderId"] == oid
    assert cancelled["orderStatus"] == "Cancelled"
    assert cancelled["cancelType"] == "CancelByUser"
    assert {"cumExecQty", "leavesQty", "updatedTime", "orderLinkId", "rejectReason"} <= set(
        cancelled
    )


@pytest.mark.timeout(15)
def test_only_the_accounts_own_orders_are_pushed(
    ws: websocket.WebSocket, sim: InProcessSimulator
) -> None:
    _subscribed(ws)
    sim.admin.place_order(account="other", category="spot", symbol="BTCUSDT", price="1")
    mine = sim.admin.place_order(uid=HMAC_UID, category="spot", symbol="BTCUSDT", price="1")
    (first,) = _orders(ws, 1)
    assert first["orderId"] == mine


@pytest.mark.timeout(15)
def test_cancel_fill_race_sends_filled_twice(
    ws: websocket.WebSocket, sim: InProcessSimulator, v5: V5
) -> None:
    _subscribed(ws)
    oid = sim.admin.place_order(uid=HMAC_UID, category="spot", symbol="BTCUSDT", price="1")
    _orders(ws, 1)
    sim.admin.arm_fill_race(oid)
    assert v5.cancel("spot", orderId=oid)["retCode"] == 0
    first, second = _orders(ws, 2)
    assert first["orderStatus"] == second["orderStatus"] == "Filled"
    assert first["rejectReason"] == "EC_NoError"
    assert second["cancelType"] == "CancelByUser"
    assert second["rejectReason"] == "EC_OrigClOrdIDDoesNotExist"


@pytest.mark.timeout(15)
def test_drop_cuts_the_connection_and_refuse_keeps_it_down(
    ws: websocket.WebSocket, sim: InProcessSimulator
) -> None:
    _subscribed(ws)
    sim.admin.set_ws_faults(refuse=True)
    assert sim.admin.drop_ws() == 1
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    again = websocket.create_connection(sim.ws_url, timeout=5)
    try:
        assert again.recv() == ""  # closed at once
    finally:
        _close(again)
    assert sim.admin.ws_state()["connections"] == []


@pytest.mark.timeout(15)
def test_silent_stream_sends_nothing_not_even_pongs(
    ws: websocket.WebSocket, sim: InProcessSimulator
) -> None:
    _subscribed(ws)
    sim.admin.set_ws_faults(silent=True)
    sim.admin.place_order(uid=HMAC_UID, category="spot", symbol="BTCUSDT", price="1")
    ws.send(json.dumps({"op": "ping"}))
    ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    sim.admin.set_ws_faults(silent=False)
    assert _ask(ws, {"op": "ping"})["op"] == "pong"


@pytest.mark.timeout(20)
def test_pybit_private_websocket_authenticates_and_receives_orders(
    sim: InProcessSimulator, v5: V5, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pybit.unified_trading, "PRIVATE_WSS", sim.ws_url)
    received: list[dict[str, Any]] = []
    got_cancel = threading.Event()

    def on_order(message: dict[str, Any]) -> None:
        received.append(message)
        if any(o["orderStatus"] == "Cancelled" for o in message["data"]):
            got_cancel.set()

    session = WebSocket(
        channel_type="private", testnet=False, api_key=HMAC_KEY, api_secret=HMAC_SECRET
    )
    try:
        session.order_stream(callback=on_order)
        deadline = time.monotonic() + 5
        while not session.auth and time.monotonic() < deadline:
            time.sleep(0.02)
        assert session.auth is True
        while not sim.admin.ws_state()["connections"][0]["topics"]:
            time.sleep(0.02)
        oid = sim.admin.place_order(uid=HMAC_UID, category="spot", symbol="BTCUSDT", price="1")
        assert v5.cancel("spot", orderId=oid)["retCode"] == 0
        assert got_cancel.wait(5)
    finally:
        session.exit()
    assert received[0]["topic"] == "order"
    assert [o["orderStatus"] for m in received for o in m["data"]] == ["New", "Cancelled"]
