"""The V5 endpoints over HTTP: every retCode path in both dialects, batch, cancel-all, realtime,
rate-limit headers and 10006, the per-IP rule, late creates, fills and the cancel/fill race."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sim_helpers import HMAC_KEY, HMAC_UID, OTHER_KEY, OTHER_SECRET, V5

from cancelq.simulator.testing import InProcessSimulator

pytestmark = pytest.mark.timeout(60)


def place(sim: InProcessSimulator, category: str = "spot", **kw: Any) -> str:
    args: dict[str, Any] = {"symbol": "BTCUSDT", "price": "100", "qty": "1", "uid": HMAC_UID}
    args.update(kw)
    return sim.admin.place_order(category=category, **args)


def code(reply: dict[str, Any]) -> int:
    value: int = reply["retCode"]
    return value


# -- create -----------------------------------------------------------------------------------


def test_create_limit_and_market_and_duplicate_link_id(v5: V5, sim: InProcessSimulator) -> None:
    body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit"}
    made = v5.post("/v5/order/create", {**body, "qty": "1", "price": "10", "orderLinkId": "c1"})
    assert code(made) == 0
    assert made["result"]["orderLinkId"] == "c1"
    dup = v5.post("/v5/order/create", {**body, "qty": "1", "price": "10", "orderLinkId": "c1"})
    assert (code(dup), dup["retMsg"]) == (110072, "OrderLinkedID is duplicate")
    market = v5.post("/v5/order/create", {**body, "orderType": "Market", "qty": "2"})
    assert sim.admin.order(market["result"]["orderId"])["orderStatus"] == "Filled"
    bad = v5.post("/v5/order/create", {**body, "qty": "0", "price": "1"})
    assert code(bad) == 10001
    spot_dup = v5.post(
        "/v5/order/create",
        {**body, "category": "spot", "qty": "1", "price": "1", "orderLinkId": "c1"},
    )
    assert code(spot_dup) == 0  # link ids are unique per category


# -- cancel, real V5 codes ----------------------------------------------------------------------


def test_cancel_ok_by_id_and_by_link_id(v5: V5, sim: InProcessSimulator) -> None:
    oid = place(sim, order_link_id="L-1")
    reply = v5.cancel("spot", orderLinkId="L-1")
    assert code(reply) == 0
    assert reply["result"] == {"orderId": oid, "orderLinkId": "L-1"}
    assert set(reply) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert sim.admin.order(oid)["orderStatus"] == "Cancelled"
    oid2 = place(sim, "linear")
    assert code(v5.cancel("linear", orderId=oid2)) == 0


def test_order_id_wins_over_link_id(v5: V5, sim: InProcessSimulator) -> None:
    a = place(sim, order_link_id="A")
    place(sim, order_link_id="B")
    reply = v5.cancel("spot", orderId=a, orderLinkId="B")
    assert reply["result"]["orderId"] == a
    assert sim.admin.orders(uid=HMAC_UID, open_only=True)[0]["orderLinkId"] == "B"


@pytest.mark.parametrize(
    "case",
    [
        ("spot", 170213, 170142, 170139),
        ("linear", 110001, 110010, 110008),
        ("inverse", 110001, 110010, 110008),
    ],
)
def test_v5_cancel_codes(v5: V5, sim: InProcessSimulator, case: tuple[str, int, int, int]) -> None:
    category, not_found, cancelled, filled = case
    symbol = "BTCUSD" if category == "inverse" else "BTCUSDT"
    assert code(v5.cancel(category, symbol, orderLinkId="none")) == not_found
    oid = place(sim, category, symbol=symbol)
    assert code(v5.cancel(category, symbol, orderId=oid)) == 0
    assert code(v5.cancel(category, symbol, orderId=oid)) == cancelled
    oid2 = place(sim, category, symbol=symbol)
    sim.admin.fill(oid2)
    assert code(v5.cancel(category, symbol, orderId=oid2)) == filled
    assert code(v5.cancel(category, "ETHUSDT", orderId=oid2)) == not_found  # other symbol
    bad = v5.cancel(category, symbol)
    assert code(bad) == (170130 if category == "spot" else 10001)


def test_cancel_bad_params_and_other_uid(v5: V5, sim: InProcessSimulator) -> None:
    assert code(v5.post("/v5/order/cancel", {"category": "futures", "orderId": "1"})) == 10001
    assert code(v5.post("/v5/order/cancel", {"category": "spot", "orderId": "1"})) == 170130
    oid = place(sim)
    other = v5.cancel("spot", orderId=oid, api_key=OTHER_KEY, secret=OTHER_SECRET)
    assert code(other) == 170213


def test_spot_order_filter_must_match(v5: V5, sim: InProcessSimulator) -> None:
    tpsl = place(sim, order_filter="tpslOrder")
    stop = place(sim, order_filter="StopOrder")
    assert code(v5.cancel("spot", orderId=tpsl)) == 170213  # default filter is Order
    assert code(v5.cancel("spot", orderId=tpsl, orderFilter="tpslOrder")) == 0
    assert code(v5.cancel("spot", orderId=stop, orderFilter="StopOrder")) == 0
    assert sim.admin.order(stop)["orderStatus"] == "Deactivated"
    assert code(v5.cancel("spot", orderId=stop, orderFilter="Bogus")) == 170130


def test_partially_filled_cancel(v5: V5, sim: InProcessSimulator) -> None:
    oid = place(sim, qty="4")
    assert sim.admin.partial_fill(oid, "1")["orderStatus"] == "PartiallyFilled"
    assert code(v5.cancel("spot", orderId=oid)) == 0
    order = sim.admin.order(oid)
    assert (order["orderStatus"], order["cumExecQty"]) == ("PartiallyFilledCanceled", "1")


# -- cancel, page dialect -----------------------------------------------------------------------


def test_page_dialect_codes(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_dialect("page")
    assert sim.admin.dialect() == "page"
    assert code(v5.cancel("spot", orderLinkId="none")) == 10001
    oid = place(sim)
    assert code(v5.cancel("spot", orderId=oid)) == 0
    assert code(v5.cancel("spot", orderId=oid)) == 10002
    filled = place(sim)
    sim.admin.fill(filled)
    assert code(v5.cancel("spot", orderId=filled)) == 10003
    assert code(v5.cancel("spot")) == 10005
    rejected = sim.state.book.get(place(sim))
    assert rejected is not None
    from cancelq.simulator.orders import OrderStatus

    rejected.status = OrderStatus.REJECTED
    assert code(v5.cancel("spot", orderId=rejected.order_id)) == 10004


# -- late creates and the fill race -------------------------------------------------------------


def test_cancel_can_overtake_a_late_create(v5: V5, sim: InProcessSimulator) -> None:
    place(sim, order_link_id="late-1", visible_after_ms=400)
    assert code(v5.cancel("spot", orderLinkId="late-1")) == 170213
    deadline = time.monotonic() + 10
    while code(v5.cancel("spot", orderLinkId="late-1")) != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    counts = sim.admin.cancel_counts()
    assert counts["orderLinkId"]["late-1"] >= 2


def test_fill_race_accepted_then_filled(v5: V5, sim: InProcessSimulator) -> None:
    events: list[dict[str, Any]] = []
    sim.state.book.listeners.append(lambda e: events.append(e.order))
    try:
        oid = place(sim)
        sim.admin.arm_fill_race(oid)
        assert code(v5.cancel("spot", orderId=oid)) == 0
    finally:
        sim.state.book.listeners.clear()
    assert sim.admin.order(oid)["orderStatus"] == "Filled"
    assert events[-1]["cancelType"] == "CancelByUser"
    assert events[-1]["rejectReason"] == "EC_OrigClOrdIDDoesNotExist"


# -- cancel-batch -------------------------------------------------------------------------------


def test_cancel_batch_per_item_codes(v5: V5, sim: InProcessSimulator) -> None:
    good = place(sim, "linear", order_link_id="b1")
    done = place(sim, "linear")
    sim.admin.fill(done)
    items = [
        {"symbol": "BTCUSDT", "orderLinkId": "b1"},
        {"symbol": "BTCUSDT", "orderId": "missing"},
        {"symbol": "BTCUSDT", "orderId": done},
    ]
    reply = v5.post("/v5/order/cancel-batch", {"category": "linear", "request": items})
    assert code(reply) == 0
    assert [c["code"] for c in reply["retExtInfo"]["list"]] == [0, 110001, 110008]
    assert reply["result"]["list"][0]["orderId"] == good
    assert len(reply["result"]["list"]) == 3


@pytest.mark.parametrize(("category", "cap"), [("spot", 10), ("linear", 20), ("option", 20)])
def test_cancel_batch_size_limits(v5: V5, category: str, cap: int) -> None:
    v5.sim.admin.set_rate_limit("order/cancel-batch", 100)  # default 10/s < 20 items
    sim_items = [{"symbol": "BTCUSDT", "orderLinkId": f"x{i}"} for i in range(cap + 1)]
    over = v5.post("/v5/order/cancel-batch", {"category": category, "request": sim_items})
    assert code(over) == 10001
    v5.sim.admin.reset()
    ok = v5.post("/v5/order/cancel-batch", {"category": category, "request": sim_items[:cap]})
    assert code(ok) == 0
    assert len(ok["retExtInfo"]["list"]) == cap
    assert code(v5.post("/v5/order/cancel-batch", {"category": category, "request": []})) == 10001


# -- cancel-all ---------------------------------------------------------------------------------


def test_cancel_all(v5: V5, sim: InProcessSimulator) -> None:
    place(sim, "spot")
    place(sim, "spot", order_filter="StopOrder")
    spot = v5.post("/v5/order/cancel-all", {"category": "spot"})
    assert spot["result"]["success"] == "1"
    assert len(spot["result"]["list"]) == 1  # spot default filter: Order
    assert code(v5.post("/v5/order/cancel-all", {"category": "linear"})) == 10001
    place(sim, "linear", symbol="BTCUSDT")
    place(sim, "linear", symbol="ETHUSDT")
    place(sim, "linear", symbol="ETHPERP")
    by_base = v5.post("/v5/order/cancel-all", {"category": "linear", "baseCoin": "ETH"})
    assert len(by_base["result"]["list"]) == 2
    by_settle = v5.post("/v5/order/cancel-all", {"category": "linear", "settleCoin": "USDT"})
    assert len(by_settle["result"]["list"]) == 1
    bad = v5.post("/v5/order/cancel-all", {"category": "spot", "orderFilter": "x"})
    assert code(bad) == 10001


def test_cancel_all_futures_cap(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.place_orders(
        [{"orderLinkId": f"cap{i}"} for i in range(505)],
        category="linear",
        symbol="BTCUSDT",
        price="1",
        qty="1",
        uid=HMAC_UID,
    )
    first = v5.post("/v5/order/cancel-all", {"category": "linear", "symbol": "BTCUSDT"})
    assert len(first["result"]["list"]) == 500
    second = v5.post("/v5/order/cancel-all", {"category": "linear", "symbol": "BTCUSDT"})
    assert len(second["result"]["list"]) == 5


# -- realtime and server time -------------------------------------------------------------------


def test_realtime_open_only_filters_and_paging(v5: V5, sim: InProcessSimulator) -> None:
    ids = [place(sim, "linear", order_link_id=f"r{i}") for i in range(3)]
    v5.cancel("linear", orderId=ids[0])
    listed = v5.get("/v5/order/realtime", "category=linear")
    assert listed["result"]["category"] == "linear"
    assert {o["orderId"] for o in listed["result"]["list"]} == set(ids[1:])
    closed = v5.get("/v5/order/realtime", f"category=linear&orderId={ids[0]}")
    assert closed["result"]["list"][0]["orderStatus"] == "Cancelled"
    both = v5.get("/v5/order/realtime", "category=linear&openOnly=1")
    assert len(both["result"]["list"]) == 3
    page = v5.get("/v5/order/realtime", "category=linear&openOnly=1&limit=2")
    assert len(page["result"]["list"]) == 2
    cursor = page["result"]["nextPageCursor"]
    rest = v5.get("/v5/order/realtime", f"category=linear&openOnly=1&limit=2&cursor={cursor}")
    assert len(rest["result"]["list"]) == 1
    assert rest["result"]["nextPageCursor"] == ""
    order = listed["result"]["list"][0]
    for field in ("orderLinkId", "symbol", "side", "orderType", "price", "qty", "cumExecQty"):
        assert field in order
    assert code(v5.get("/v5/order/realtime", "symbol=BTCUSDT")) == 10001


def test_server_time_is_public_and_skewable(http: Any, sim: InProcessSimulator) -> None:
    before = int(time.time())
    reply = http.get(f"{sim.base_url}/v5/market/time", timeout=5).json()
    assert int(reply["result"]["timeSecond"]) >= before
    assert int(reply["result"]["timeNano"]) // 1_000_000_000 == int(reply["result"]["timeSecond"])
    sim.admin.set_clock_skew(3_600_000)
    skewed = http.get(f"{sim.base_url}/v5/market/time", timeout=5).json()
    assert int(skewed["result"]["timeSecond"]) >= before + 3590


# -- rate limits --------------------------------------------------------------------------------


def test_rate_limit_headers_and_10006(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_rate_limit("order/cancel", 3, category="spot", uid=HMAC_UID)
    replies = [
        v5.post_raw("/v5/order/cancel", {"category": "spot", "symbol": "X", "orderId": "1"})
        for _ in range(4)
    ]
    statuses = [r.headers["X-Bapi-Limit-Status"] for r in replies]
    assert [r.headers["X-Bapi-Limit"] for r in replies] == ["3"] * 4
    assert statuses[:3] == ["2", "1", "0"]
    last = replies[3].json()
    assert (last["retCode"], last["retMsg"]) == (10006, "Too many visits!")
    reset_ms = int(replies[3].headers["X-Bapi-Limit-Reset-Timestamp"])
    assert 0 < reset_ms - time.time() * 1000 <= 1100
    other = v5.post_raw(
        "/v5/order/cancel",
        {"category": "spot", "symbol": "X", "orderId": "1"},
        api_key=OTHER_KEY,
        secret=OTHER_SECRET,
    )
    assert other.json()["retCode"] == 170213  # other UID has its own budget
    assert other.headers["X-Bapi-Limit"] == "20"


def test_batch_counts_items_and_knob(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_rate_limit("order/cancel-batch", 5, uid=HMAC_UID)
    items = [{"symbol": "X", "orderId": str(i)} for i in range(4)]
    first = v5.post_raw("/v5/order/cancel-batch", {"category": "linear", "request": items})
    assert first.headers["X-Bapi-Limit-Status"] == "1"
    second = v5.post_raw("/v5/order/cancel-batch", {"category": "linear", "request": items})
    assert second.json()["retCode"] == 10006
    sim.admin.reset()
    sim.admin.configure_rate_limits(batch_counts_items=False)
    for _ in range(5):
        reply = v5.post_raw("/v5/order/cancel-batch", {"category": "linear", "request": items})
        assert reply.json()["retCode"] == 0
    assert sim.admin.max_requests_in_window(endpoint="order/cancel-batch")["max"] == 20


def test_max_window_and_cancel_counts_via_admin(v5: V5, sim: InProcessSimulator) -> None:
    for _ in range(3):
        v5.cancel("spot", orderLinkId="same")
    v5.post(
        "/v5/order/cancel-batch",
        {"category": "spot", "request": [{"symbol": "BTCUSDT", "orderLinkId": "same"}] * 2},
    )
    assert sim.admin.cancel_counts()["orderLinkId"]["same"] == 5
    window = sim.admin.max_requests_in_window(api_key=HMAC_KEY)
    assert window["max"] >= 3
    by_uid = sim.admin.max_requests_in_window(by="uid")
    assert by_uid["list"][0]["uid"] == HMAC_UID
    records = sim.admin.records(endpoint="order/cancel", api_key=HMAC_KEY)
    assert len(records) == 3
    assert records[0]["ret_code"] == 170213
    assert sim.admin.records(limit=1)[0]["endpoint"] == "order/cancel-batch"


def test_ip_rule_403_and_ban(v5: V5, sim: InProcessSimulator, http: Any) -> None:
    sim.admin.configure_rate_limits(ip_limit=5, ip_window_ms=5000, ip_ban_ms=300)
    statuses = [http.get(f"{sim.base_url}/v5/market/time", timeout=5).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [403]
    banned = v5.post_raw("/v5/order/cancel", {"category": "spot"})
    assert banned.status_code == 403
    assert sim.admin.rate_limits()["banned"]
    sim.admin.configure_rate_limits(ip_limit=600, ip_window_ms=5000, ip_ban_ms=600_000)
    assert http.get(f"{sim.base_url}/v5/market/time", timeout=5).status_code == 200
