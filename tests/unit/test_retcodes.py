from __future__ import annotations

import pytest

from cancelq.bybit.client import ExchangeReply
from cancelq.errors import ConfigError
from cancelq.worker.retcodes import PAGE, V5, Action, build_table, classify


def reply(ret_code: int | None, http: int = 200) -> ExchangeReply:
    return ExchangeReply(http_status=http, ret_code=ret_code, ret_msg="")


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (0, Action.DONE),
        (110001, Action.NOT_FOUND),
        (170213, Action.NOT_FOUND),
        (110008, Action.ALREADY_GONE),
        (110010, Action.ALREADY_GONE),
        (170142, Action.ALREADY_GONE),
        (170190, Action.ALREADY_GONE),
        (170139, Action.TOO_LATE),
        (10002, Action.RETRY_CLOCK),
        (10006, Action.RETRY_RATE_LIMIT),
        (30035, Action.RETRY_RATE_LIMIT),
        (10016, Action.RETRY_TRANSIENT),
        (10000, Action.RETRY_TRANSIENT),
        (110079, Action.RETRY_TRANSIENT),
        (170191, Action.RETRY_TRANSIENT),
        (170212, Action.RETRY_TRANSIENT),
        (10001, Action.REJECTED),
        (170130, Action.REJECTED),
        (170201, Action.REJECTED),
        (10003, Action.AUTH_FAILURE),
        (10004, Action.AUTH_FAILURE),
        (10005, Action.AUTH_FAILURE),
        (10027, Action.AUTH_FAILURE),
        (99999, Action.UNKNOWN),
    ],
)
def test_v5_table_follows_bybit(code: int, action: Action) -> None:
    assert classify(reply(code), V5) is action


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (10001, Action.NOT_FOUND),
        (10002, Action.ALREADY_GONE),
        (10003, Action.TOO_LATE),
        (10004, Action.ALREADY_GONE),
        (10005, Action.REJECTED),
        (0, Action.DONE),
        (10006, Action.RETRY_RATE_LIMIT),
    ],
)
def test_page_table_speaks_the_cancel_order_pages_codes(code: int, action: Action) -> None:
    assert classify(reply(code), PAGE) is action


@pytest.mark.parametrize(
    ("http", "action"),
    [
        (403, Action.IP_BAN),
        (429, Action.RETRY_RATE_LIMIT),
        (502, Action.RETRY_TRANSIENT),
        (401, Action.AUTH_FAILURE),
        (404, Action.UNKNOWN),
    ],
)
def test_http_signals_come_before_the_table(http: int, action: Action) -> None:
    assert classify(reply(None, http), V5) is action


def test_operators_override_single_codes_per_account() -> None:
    table = build_table("v5", {10001: "not_found", 12345: "retry_transient"})
    assert classify(reply(10001), table) is Action.NOT_FOUND
    assert classify(reply(12345), table) is Action.RETRY_TRANSIENT
    assert classify(reply(10001), V5) is Action.REJECTED  # the shared table is untouched


def test_unknown_table_or_action_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="ret_code_table 'v4'"):
        build_table("v4", {})
    with pytest.raises(ConfigError, match="ret_codes 10001 = 'maybe'"):
        build_table("v5", {10001: "maybe"})
