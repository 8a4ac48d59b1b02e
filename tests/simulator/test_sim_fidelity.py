"""Independent clients against the simulator: the official SDK pybit (HMAC and RSA keys) and
ccxt's bybit class; plus negative auth tests with hand-signed requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from sim_helpers import HMAC_KEY, HMAC_SECRET, HMAC_UID, RSA_KEY, RSA_UID, V5

from cancelq.harness.accounts import RsaPair
from cancelq.simulator.testing import InProcessSimulator, signed_headers

pytestmark = pytest.mark.timeout(60)


def _pybit(sim: InProcessSimulator, key: str, secret: str, rsa: bool = False) -> Iterator[HTTP]:
    session = HTTP(
        testnet=False, api_key=key, api_secret=secret, rsa_authentication=rsa, max_retries=1
    )
    session.endpoint = sim.base_url
    try:
        yield session
    finally:
        session.client.close()


@pytest.fixture
def hmac_session(sim: InProcessSimulator) -> Iterator[HTTP]:
    yield from _pybit(sim, HMAC_KEY, HMAC_SECRET)


@pytest.fixture
def rsa_session(sim: InProcessSimulator, rsa_pair: RsaPair) -> Iterator[HTTP]:
    yield from _pybit(sim, RSA_KEY, rsa_pair.private_pem, rsa=True)


@pytest.mark.parametrize("which", ["hmac_session", "rsa_session"])
def test_pybit_place_cancel_batch_time_open_orders(
    which: str, request: pytest.FixtureRequest, sim: InProcessSimulator
) -> None:
    session: HTTP = request.getfixturevalue(which)
    uid = HMAC_UID if which == "hmac_session" else RSA_UID
    server = session.get_server_time()
    assert abs(int(server["result"]["timeSecond"]) - time.time()) < 5
    placed = session.place_order(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.01",
        price="20000",
        orderLinkId=f"pb-{which}",
    )
    order_id = placed["result"]["orderId"]
    open_orders = session.get_open_orders(category="linear", symbol="BTCUSDT")
    assert [o["orderId"] for o in open_orders["result"]["list"]] == [order_id]
    cancelled = session.cancel_order(category="linear", symbol="BTCUSDT", orderId=order_id)
    assert cancelled["retCode"] == 0
    assert sim.admin.order(order_id)["orderStatus"] == "Cancelled"
    more = [
        session.place_order(
            category="spot",
            symbol="ETHUSDT",
            side="Sell",
            orderType="Limit",
            qty="1",
            price="3000",
            orderLinkId=f"pbb-{which}-{i}",
        )
        for i in range(3)
    ]
    batch = session.cancel_batch_order(
        category="spot",
        request=[{"symbol": "ETHUSDT", "orderLinkId": f"pbb-{which}-{i}"} for i in range(3)]
        + [{"symbol": "ETHUSDT", "orderId": "nope"}],
    )
    assert [c["code"] for c in batch["retExtInfo"]["list"]] == [0, 0, 0, 170213]
    assert [r["orderId"] for r in batch["result"]["list"][:3]] == [
        m["result"]["orderId"] for m in more
    ]
    session.place_order(
        category="spot", symbol="ETHUSDT", side="Buy", orderType="Limit", qty="1", price="1"
    )
    assert len(session.cancel_all_orders(category="spot")["result"]["list"]) == 1
    assert not sim.admin.orders(uid=uid, open_only=True)
    with pytest.raises(InvalidRequestError) as err:
        session.cancel_order(category="linear", symbol="BTCUSDT", orderLinkId="unknown")
    assert err.value.status_code == 110001


def test_pybit_wrong_secret_is_10004_without_secret_in_message(sim: InProcessSimulator) -> None:
    for session in _pybit(sim, HMAC_KEY, "wrong-secret"):
        with pytest.raises(InvalidRequestError) as err:
            session.get_open_orders(category="spot")
        assert err.value.status_code == 10004
        assert "error sign!" in err.value.message
        assert HMAC_SECRET not in err.value.message
        assert "wrong-secret" not in err.value.message


def test_pybit_unknown_key_is_10003(sim: InProcessSimulator) -> None:
    for session in _pybit(sim, "NOPE", "whatever"):
        with pytest.raises(InvalidRequestError) as err:
            session.cancel_order(category="spot", symbol="BTCUSDT", orderId="1")
        assert err.value.status_code == 10003


def test_pybit_sees_http_403_as_ip_ban(sim: InProcessSimulator) -> None:
    sim.admin.configure_rate_limits(ip_limit=1, ip_window_ms=5000, ip_ban_ms=200)
    try:
        for session in _pybit(sim, HMAC_KEY, HMAC_SECRET):
            session.get_server_time()
            with pytest.raises(FailedRequestError) as err:
                session.get_server_time()
            assert err.value.status_code == 403
    finally:
        sim.admin.configure_rate_limits(ip_limit=600, ip_ban_ms=600_000)


def test_ccxt_cancel_order(sim: InProcessSimulator) -> None:
    order_id = sim.admin.place_order(
        category="spot", symbol="BTCUSDT", price="100", qty="1", uid=HMAC_UID
    )
    exchange = ccxt.bybit({"apiKey": HMAC_KEY, "secret": HMAC_SECRET, "enableRateLimit": False})
    exchange.urls["api"] = dict.fromkeys(exchange.urls["api"], sim.base_url)
    exchange.set_markets([_ccxt_spot_market()])
    try:
        result = exchange.cancel_order(order_id, "BTC/USDT")
        assert result["id"] == order_id
        with pytest.raises(ccxt.OrderNotFound):
            exchange.cancel_order("missing", "BTC/USDT")
    finally:
        exchange.session.close()
    assert sim.admin.order(order_id)["orderStatus"] == "Cancelled"


def _ccxt_spot_market() -> dict[str, Any]:
    return {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "baseId": "BTC",
        "quoteId": "USDT",
        "settle": None,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "linear": None,
        "inverse": None,
        "active": True,
        "precision": {"amount": 0.000001, "price": 0.01},
        "limits": {},
        "info": {},
    }


# -- negative auth over HTTP ----------------------------------------------------------------------

BODY = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "neg"}


def _send(v5: V5, body: bytes, headers: dict[str, str]) -> requests.Response:
    return v5.session.post(
        f"{v5.sim.base_url}/v5/order/cancel", data=body, headers=headers, timeout=5
    )


def test_changed_body_by_one_byte_fails(v5: V5) -> None:
    text = json.dumps(BODY)
    headers = signed_headers(HMAC_KEY, HMAC_SECRET, text)
    assert _send(v5, text.encode(), headers).json()["retCode"] == 170213
    changed = text.replace("neg", "nef").encode()
    reply = _send(v5, changed, headers).json()
    assert reply["retCode"] == 10004
    assert HMAC_SECRET not in json.dumps(reply)


def test_dict_repr_signing_from_the_page_is_rejected(v5: V5) -> None:
    headers = signed_headers(HMAC_KEY, HMAC_SECRET, str(BODY))  # the page's mistake
    assert _send(v5, json.dumps(BODY).encode(), headers).json()["retCode"] == 10004


@pytest.mark.parametrize(("offset_ms", "expected"), [(-6000, 10002), (1500, 10002), (-100, 170213)])
def test_stale_and_future_timestamps(v5: V5, offset_ms: int, expected: int) -> None:
    text = json.dumps(BODY)
    ts = int(time.time() * 1000) + offset_ms
    headers = signed_headers(HMAC_KEY, HMAC_SECRET, text, timestamp_ms=ts)
    reply = _send(v5, text.encode(), headers).json()
    assert reply["retCode"] == expected
    if expected == 10002:
        assert reply["retMsg"] == (
            "invalid request, please check your server timestamp or recv_window param"
        )


@pytest.mark.parametrize(
    ("missing", "expected"),
    [("X-BAPI-API-KEY", 10003), ("X-BAPI-SIGN", 10004), ("X-BAPI-TIMESTAMP", 10002)],
)
def test_missing_headers_are_401(v5: V5, missing: str, expected: int) -> None:
    text = json.dumps(BODY)
    headers = signed_headers(HMAC_KEY, HMAC_SECRET, text)
    del headers[missing]
    resp = _send(v5, text.encode(), headers)
    assert resp.status_code == 401
    assert resp.json()["retCode"] == expected


def test_get_query_signed_exactly(v5: V5, sim: InProcessSimulator) -> None:
    query = "category=spot&symbol=BTCUSDT"
    headers = signed_headers(HMAC_KEY, HMAC_SECRET, query)
    url = f"{sim.base_url}/v5/order/realtime"
    assert v5.session.get(f"{url}?{query}", headers=headers, timeout=5).json()["retCode"] == 0
    reordered = "symbol=BTCUSDT&category=spot"
    reply = v5.session.get(f"{url}?{reordered}", headers=headers, timeout=5).json()
    assert reply["retCode"] == 10004
