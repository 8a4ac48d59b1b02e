"""Unit tests of the simulator's parts, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)

from cancelq.simulator import retcodes
from cancelq.simulator.accounts import (
    AccountError,
    AccountStore,
    derive_uid,
    load_accounts,
    make_account,
)
from cancelq.simulator.auth import AuthFailure, authenticate, check_timestamp
from cancelq.simulator.faults import FaultInjector, FaultKind, FaultSettings, updated
from cancelq.simulator.orders import (
    CancelScope,
    NewOrder,
    OrderBook,
    OrderEvent,
    OrderKind,
    OrderStatus,
    Rejection,
    coins,
)
from cancelq.simulator.ratelimit import RateLimiter, RollingWindow
from cancelq.simulator.recorder import Recorder, RequestRecord, cancel_counts, max_window_counts
from cancelq.simulator.retcodes import Dialect, Outcome

NOW = 1_700_000_000_000


# -- accounts ---------------------------------------------------------------------------------


def test_accounts_file_hmac_secret_file_rsa_and_derived_uid(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    (tmp_path / "secret").write_text("from-file\n")
    (tmp_path / "acc.toml").write_text(
        '[accounts.a]\napi_key = "A"\napi_secret = "s"\nuid = 7\nrate_limit_per_s = 3\n'
        '[accounts.b]\napi_key = "B"\napi_secret_file = "secret"\n'
        '[accounts.c]\napi_key = "C"\nrsa_public_key_file = "pub.pem"\n'
        'rsa_private_key_file = "ignored"\n'
    )
    accounts = {a.alias: a for a in load_accounts(tmp_path / "acc.toml")}
    assert accounts["a"].uid == 7
    assert accounts["a"].hmac_secret == b"s"
    assert accounts["b"].hmac_secret == b"from-file"
    assert accounts["b"].uid == derive_uid("b") == derive_uid("b")
    assert accounts["c"].rsa_public_key is not None
    assert "from-file" not in repr(accounts["b"])


def test_account_needs_exactly_one_credential() -> None:
    with pytest.raises(AccountError):
        make_account("x", "K")
    with pytest.raises(AccountError):
        make_account("x", "K", api_secret="s", rsa_public_key_pem="pem")
    with pytest.raises(AccountError):
        make_account("x", "K", rsa_public_key_pem="not a pem")


# -- auth -------------------------------------------------------------------------------------


def _headers(ts: int, sign: str, window: str = "5000") -> dict[str, str]:
    return {
        "X-BAPI-API-KEY": "K",
        "X-BAPI-TIMESTAMP": str(ts),
        "X-BAPI-RECV-WINDOW": window,
        "X-BAPI-SIGN": sign,
    }


def _hmac(ts: int, body: bytes, secret: bytes = b"sec") -> str:
    return hmac.new(secret, f"{ts}K5000".encode() + body, hashlib.sha256).hexdigest()


def test_hmac_accepts_exact_bytes_and_rejects_one_changed_byte() -> None:
    store = AccountStore([make_account("a", "K", uid=1, api_secret="sec")])
    body = b'{"category":"spot"}'
    ok = authenticate(_headers(NOW, _hmac(NOW, body)), body, store, NOW)
    assert not isinstance(ok, AuthFailure)
    assert ok.uid == 1
    bad = authenticate(_headers(NOW, _hmac(NOW, body)), body.replace(b"t", b"T", 1), store, NOW)
    assert isinstance(bad, AuthFailure)
    assert bad.ret_code == retcodes.SIGN_ERROR
    assert "sec" not in bad.ret_msg.replace("second", "")


def test_rsa_signature() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    store = AccountStore([make_account("r", "K", uid=2, rsa_public_key_pem=pem)])
    body = b"category=spot"
    raw = key.sign(f"{NOW}K5000".encode() + body, padding.PKCS1v15(), hashes.SHA256())
    sign = base64.b64encode(raw).decode()
    assert not isinstance(authenticate(_headers(NOW, sign), body, store, NOW), AuthFailure)
    bad = authenticate(_headers(NOW, sign), body + b"&x=1", store, NOW)
    assert isinstance(bad, AuthFailure)
    assert bad.ret_code == retcodes.SIGN_ERROR
    garbage = authenticate(_headers(NOW, "!!notbase64"), body, store, NOW)
    assert isinstance(garbage, AuthFailure)


@pytest.mark.parametrize(
    ("ts", "accepted"),
    [(NOW, True), (NOW - 5000, True), (NOW - 5001, False), (NOW + 999, True), (NOW + 1000, False)],
)
def test_recv_window_rule(ts: int, accepted: bool) -> None:
    assert check_timestamp(ts, 5000, NOW) is accepted


def test_auth_failure_codes() -> None:
    store = AccountStore([make_account("a", "K", uid=1, api_secret="sec")])
    body = b"{}"
    missing = authenticate({}, body, store, NOW)
    assert isinstance(missing, AuthFailure)
    assert (missing.http_status, missing.ret_code) == (401, 10003)
    headers = _headers(NOW, _hmac(NOW, body))
    for header, code in (("X-BAPI-SIGN", 10004), ("X-BAPI-TIMESTAMP", 10002)):
        partial = {k: v for k, v in headers.items() if k != header}
        failure = authenticate(partial, body, store, NOW)
        assert isinstance(failure, AuthFailure)
        assert (failure.http_status, failure.ret_code) == (401, code)
    unknown = authenticate({**headers, "X-BAPI-API-KEY": "NOPE"}, body, store, NOW)
    assert isinstance(unknown, AuthFailure)
    assert (unknown.http_status, unknown.ret_code) == (200, 10003)
    stale = authenticate(_headers(NOW - 6000, _hmac(NOW - 6000, body)), body, store, NOW)
    assert isinstance(stale, AuthFailure)
    assert stale.ret_code == 10002
    bad_window = authenticate({**headers, "X-BAPI-RECV-WINDOW": "abc"}, body, store, NOW)
    assert isinstance(bad_window, AuthFailure)
    assert bad_window.ret_code == 10002


# -- orders -----------------------------------------------------------------------------------


def _new(book: OrderBook, **kw: object) -> str:
    args: dict[str, object] = {
        "uid": 1,
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "qty": "2",
        "price": "100",
    }
    args.update(kw)
    made = book.create(NewOrder(**args), NOW)  # type: ignore[arg-type]
    assert not isinstance(made, Rejection), made
    return made.order_id


def test_state_machine_fill_partial_cancel_and_events() -> None:
    book = OrderBook()
    events: list[OrderEvent] = []
    book.listeners.append(events.append)
    oid = _new(book, order_link_id="L1")
    order = book.get(oid)
    assert order is not None
    assert order.status is OrderStatus.NEW
    assert book.fill(order, Decimal(1), NOW) is None
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert book.cancel(order, NOW) is None
    assert order.status is OrderStatus.PARTIALLY_FILLED_CANCELED
    rej = book.cancel(order, NOW)
    assert rej is not None
    assert rej.outcome is Outcome.ALREADY_CANCELLED
    assert [e.order["orderStatus"] for e in events] == [
        "New",
        "PartiallyFilled",
        "PartiallyFilledCanceled",
    ]


def test_derivative_partial_cancel_is_cancelled_and_fill_then_cancel_is_filled() -> None:
    book = OrderBook()
    order = book.get(_new(book, category="linear"))
    assert order is not None
    book.fill(order, Decimal("0.5"), NOW)
    book.cancel(order, NOW)
    assert order.status is OrderStatus.CANCELLED
    filled = book.get(_new(book, category="linear"))
    assert filled is not None
    book.fill(filled, None, NOW)
    assert filled.status is OrderStatus.FILLED
    rej = book.cancel(filled, NOW)
    assert rej is not None
    assert rej.outcome is Outcome.ALREADY_FILLED


def test_conditional_orders_untriggered_deactivated_and_trigger() -> None:
    book = OrderBook()
    stop = book.get(_new(book, kind=OrderKind.CONDITIONAL))
    assert stop is not None
    assert stop.status is OrderStatus.UNTRIGGERED
    book.cancel(stop, NOW)
    assert stop.status is OrderStatus.DEACTIVATED
    tpsl = book.get(_new(book, kind=OrderKind.TPSL))
    assert tpsl is not None
    assert book.trigger(tpsl, NOW) is None
    assert tpsl.status is OrderStatus.NEW
    assert book.trigger(tpsl, NOW) is not None


def test_market_order_is_filled_and_link_id_unique() -> None:
    book = OrderBook()
    order = book.get(_new(book, order_type="Market", price="", order_link_id="M"))
    assert order is not None
    assert order.status is OrderStatus.FILLED
    dup = book.create(
        NewOrder(1, "spot", "BTCUSDT", "Buy", "1", "Limit", "1", order_link_id="M"), NOW
    )
    assert isinstance(dup, Rejection)
    assert dup.outcome is Outcome.DUPLICATE_LINK_ID
    bad = book.create(NewOrder(1, "spot", "BTCUSDT", "Buy", "1", "Limit", "1", "x" * 37), NOW)
    assert isinstance(bad, Rejection)
    assert bad.detail == "orderLinkId"


def test_find_order_id_wins_and_late_visibility() -> None:
    book = OrderBook()
    a = _new(book, order_link_id="A")
    b = _new(book, order_link_id="B")
    found = book.find(1, "spot", a, "B", NOW)
    assert found is not None
    assert found.order_id == a
    assert book.find(2, "spot", a, "", NOW) is None  # other UID
    assert book.find(1, "linear", "", "B", NOW) is None  # category matters
    found_b = book.find(1, "spot", "", "B", NOW)
    assert found_b is not None
    assert found_b.order_id == b
    late = _new(book, order_link_id="LATE", visible_after_ms=500)
    assert book.find(1, "spot", "", "LATE", NOW + 499) is None
    found_late = book.find(1, "spot", "", "LATE", NOW + 500)
    assert found_late is not None
    assert found_late.order_id == late


def test_fill_race_ends_filled_with_cancel_type() -> None:
    book = OrderBook()
    events: list[OrderEvent] = []
    book.listeners.append(events.append)
    order = book.get(_new(book))
    assert order is not None
    book.arm_fill_race(order)
    assert book.cancel(order, NOW) is None
    assert order.status is OrderStatus.FILLED
    last = events[-1].order
    assert last["cancelType"] == "CancelByUser"
    assert last["rejectReason"] == "EC_OrigClOrdIDDoesNotExist"


def test_broken_listener_does_not_break_book(caplog: pytest.LogCaptureFixture) -> None:
    book = OrderBook()

    def boom(event: OrderEvent) -> None:
        raise RuntimeError("listener bug")

    book.listeners.append(boom)
    assert _new(book)
    assert "order listener failed" in caplog.text


def test_cancel_all_scope_and_cap() -> None:
    book = OrderBook()
    for i in range(5):
        _new(book, category="linear", symbol="BTCUSDT" if i % 2 else "ETHUSDC")
    done = book.cancel_all(CancelScope(uid=1, category="linear", settle_coin="USDT"), NOW)
    assert len(done) == 2
    capped = book.cancel_all(CancelScope(uid=1, category="linear", base_coin="ETH", limit=2), NOW)
    assert len(capped) == 2


@pytest.mark.parametrize(
    ("category", "symbol", "expected"),
    [
        ("spot", "BTCUSDT", ("BTC", "USDT")),
        ("linear", "ETHUSDC", ("ETH", "USDC")),
        ("linear", "BTCPERP", ("BTC", "USDC")),
        ("inverse", "BTCUSD", ("BTC", "BTC")),
        ("inverse", "ETHUSDZ25", ("ETH", "ETH")),
        ("option", "BTC-26DEC25-100000-C", ("BTC", "USDC")),
    ],
)
def test_coins(category: str, symbol: str, expected: tuple[str, str]) -> None:
    assert coins(category, symbol) == expected


def test_dialect_tables() -> None:
    assert retcodes.lookup(Dialect.V5, "spot", Outcome.NOT_FOUND)[0] == 170213
    assert retcodes.lookup(Dialect.V5, "linear", Outcome.NOT_FOUND)[0] == 110001
    page = [
        retcodes.lookup(Dialect.PAGE, "spot", o)[0]
        for o in (
            Outcome.NOT_FOUND,
            Outcome.ALREADY_CANCELLED,
            Outcome.ALREADY_FILLED,
            Outcome.INVALID_STATUS,
            Outcome.BAD_PARAMS,
        )
    ]
    assert page == [10001, 10002, 10003, 10004, 10005]


# -- rate limits ------------------------------------------------------------------------------


def test_rolling_window_all_or_nothing() -> None:
    window = RollingWindow(1000)
    assert window.try_spend(8, 10, 0)
    assert not window.try_spend(3, 10, 10)
    assert window.try_spend(2, 10, 10)
    assert window.reset_at(10) == 1000
    assert window.try_spend(8, 10, 1000)  # the first 8 expired


def test_limiter_defaults_overrides_and_ip_ban() -> None:
    lim = RateLimiter(ip_limit=3, ip_window_ms=5000, ip_ban_ms=100)
    assert lim.limit_for(1, "order/cancel", "spot") == 20
    assert lim.limit_for(1, "order/cancel", "linear") == 10
    assert lim.limit_for(1, "order/cancel-all", "option") == 1
    lim.set_limit("order/cancel", "", 2, uid=1)
    assert lim.limit_for(1, "order/cancel", "spot") == 2
    assert lim.limit_for(2, "order/cancel", "spot") == 20
    first = lim.check(1, "order/cancel", "spot", 1, NOW)
    assert (first.allowed, first.limit, first.remaining) == (True, 2, 1)
    lim.check(1, "order/cancel", "spot", 1, NOW)
    third = lim.check(1, "order/cancel", "spot", 1, NOW + 1)
    assert not third.allowed
    assert third.reset_ms == NOW + 1000
    assert all(lim.ip_check("1.2.3.4", NOW) for _ in range(3))
    assert not lim.ip_check("1.2.3.4", NOW)
    assert not lim.ip_check("1.2.3.4", NOW + 50)  # banned
    assert lim.ip_check("1.2.3.4", NOW + 5100)  # ban over, window rolled


# -- recorder ---------------------------------------------------------------------------------


def _rec(seq: int, t: float, endpoint: str, items: int = 1, ids: tuple = ()) -> RequestRecord:
    return RequestRecord(seq, t, "127.0.0.1", "POST", endpoint, "K", 1, "spot", "", items, ids)


def test_recorder_ring_counts_and_window() -> None:
    rec = Recorder(size=3)
    for i in range(4):
        rec.add(_rec(i, float(i), "order/cancel", ids=(("orderLinkId", "X"),)))
    assert len(rec) == 3
    assert rec.dropped == 1
    records = [
        _rec(1, 0.0, "order/cancel", ids=(("orderLinkId", "A"),)),
        _rec(2, 100.0, "order/cancel-batch", 3, (("orderLinkId", "A"), ("orderId", "9"))),
        _rec(3, 999.0, "order/cancel"),
        _rec(4, 1000.0, "order/cancel"),
        _rec(5, 1500.0, "order/create"),
    ]
    assert cancel_counts(records) == {"orderLinkId": {"A": 2}, "orderId": {"9": 1}}
    rows = max_window_counts(records, 1000.0)
    by_endpoint = {r["endpoint"]: r["max"] for r in rows}
    assert by_endpoint == {"order/cancel": 2, "order/cancel-batch": 3, "order/create": 1}
    assert rows[0]["endpoint"] == "order/cancel-batch"


# -- faults -----------------------------------------------------------------------------------


def test_fault_injector_seeded_and_scoped() -> None:
    settings = FaultSettings(p_10016=0.5, seed=42, endpoints=("order/cancel",))
    a = FaultInjector(settings)
    b = FaultInjector(settings)
    kinds_a = [d.kind if (d := a.decide("order/cancel")) else None for _ in range(50)]
    kinds_b = [d.kind if (d := b.decide("order/cancel")) else None for _ in range(50)]
    assert kinds_a == kinds_b
    assert FaultKind.RET_10016 in kinds_a
    assert None in kinds_a
    assert a.decide("market/time") is None


@pytest.mark.parametrize("dist", ["fixed", "uniform", "normal", "lognormal", "exponential"])
def test_latency_distributions_non_negative(dist: str) -> None:
    inj = FaultInjector(
        updated(FaultSettings(), {"latency_ms": 5, "latency_dist": dist, "seed": 1})
    )
    inj.configure(updated(inj.settings, {"latency_max_ms": 10, "latency_sigma_ms": 2}))
    delays = [d.delay_s for _ in range(100) if (d := inj.decide("order/cancel"))]
    assert len(delays) == 100
    assert all(x >= 0 for x in delays)
    assert 0.0005 < sum(delays) / 100 < 0.05


def test_fault_settings_validation() -> None:
    with pytest.raises(ValueError, match="unknown"):
        updated(FaultSettings(), {"nope": 1})
    with pytest.raises(ValueError, match="between 0 and 1"):
        updated(FaultSettings(), {"p_10016": 2})
    assert updated(FaultSettings(), {"http_5xx_statuses": [502]}).http_5xx_statuses == (502,)
