from __future__ import annotations

import pytest

from cancelq.contract import parse_kill
from cancelq.errors import ContractError
from cancelq.symbols import coins, in_scope
from cancelq.worker.killswitch import cancel_all_bodies, covers, kill_covering


def test_spot_is_cancelled_once_per_order_filter() -> None:
    bodies = cancel_all_bodies(parse_kill({"account": "a", "category": "spot"}))
    assert [b["orderFilter"] for b in bodies] == ["Order", "tpslOrder", "StopOrder"]


def test_futures_without_a_symbol_or_coin_go_per_settle_coin() -> None:
    bodies = cancel_all_bodies(parse_kill({"account": "a", "category": "linear"}))
    assert bodies == [
        {"category": "linear", "settleCoin": "USDT"},
        {"category": "linear", "settleCoin": "USDC"},
    ]
    one = cancel_all_bodies(parse_kill({"account": "a", "category": "linear", "symbol": "BTCUSDT"}))
    assert one == [{"category": "linear", "symbol": "BTCUSDT"}]


def test_a_whole_account_covers_every_category() -> None:
    categories = {b["category"] for b in cancel_all_bodies(parse_kill({"account": "a"}))}
    assert categories == {"spot", "linear", "inverse", "option"}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"account": "a", "symbol": "BTCUSDT"}, "symbol: needs a category"),
        (
            {"account": "a", "category": "linear", "symbol": "BTCUSDT", "baseCoin": "BTC"},
            "at most one of the three",
        ),
    ],
)
def test_bad_kill_scopes_are_refused(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(ContractError, match=problem):
        parse_kill(fields)


def test_coins_and_scopes_follow_bybit_symbol_conventions() -> None:
    assert coins("linear", "BTCUSDT") == ("BTC", "USDT")
    assert coins("linear", "ETHPERP") == ("ETH", "USDC")
    assert coins("inverse", "BTCUSDZ25") == ("BTC", "BTC")
    assert coins("option", "BTC-26DEC25-100000-C") == ("BTC", "USDC")
    assert in_scope("settle:USDT", "linear", "SOLUSDT")
    assert not in_scope("settle:USDT", "linear", "SOLPERP")
    assert in_scope("base:BTC", "inverse", "BTCUSD")
    assert not in_scope("symbol:BTCUSDT", "spot", "ETHUSDT")


def test_only_cancels_enqueued_before_the_kill_are_covered() -> None:
    kills = {"symbol:BTCUSDT": 1_000}
    assert kill_covering(kills, "spot", "BTCUSDT", 999) == "symbol:BTCUSDT"
    assert kill_covering(kills, "spot", "BTCUSDT", 1_001) is None
    assert kill_covering(kills, "spot", "ETHUSDT", 999) is None
    # no (plausible) enqueue time: nothing says it came before the kill, so it is sent
    assert kill_covering(kills, "spot", "BTCUSDT", None) is None
    assert covers("all", 1_000, "spot", {"fields": {"symbol": "X1", "enqueuedAt": 5}})
    assert not covers("all", 1_000, "spot", {"fields": {"symbol": "X1", "enqueuedAt": 5_000}})
