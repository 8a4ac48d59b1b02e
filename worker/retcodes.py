"""The retCode tables as data: what each Bybit reply means for a cancel (an :class:`Action`).

``V5`` follows Bybit's real V5 codes; ``PAGE`` is the cancel-order page's simplified table (10001
not found, 10002 already cancelled, 10003 filled, 10004 invalid status, 10005 invalid params)
layered on V5. Operators choose a table per account and may override single codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from cancelq.bybit.client import ExchangeReply
from cancelq.errors import ConfigError


class Action(StrEnum):
    DONE = "done"  # accepted
    NOT_FOUND = "not_found"  # final after the re-check window
    ALREADY_GONE = "already_gone"
    TOO_LATE = "too_late"
    RETRY_CLOCK = "retry_clock"  # resync the clock, new timestamp and signature
    RETRY_RATE_LIMIT = "retry_rate_limit"  # wait for the reset timestamp
    RETRY_TRANSIENT = "retry_transient"  # backoff with jitter
    REJECTED = "rejected"
    AUTH_FAILURE = "auth_failure"
    IP_BAN = "ip_ban"
    UNKNOWN = "unknown"


_A = Action
V5: Final[Mapping[int, Action]] = MappingProxyType(
    {
        0: _A.DONE,
        110001: _A.NOT_FOUND,
        170213: _A.NOT_FOUND,
        110008: _A.ALREADY_GONE,
        110010: _A.ALREADY_GONE,
        170142: _A.ALREADY_GONE,
        170190: _A.ALREADY_GONE,
        170139: _A.TOO_LATE,
        10002: _A.RETRY_CLOCK,
        10006: _A.RETRY_RATE_LIMIT,
        30035: _A.RETRY_RATE_LIMIT,
        10000: _A.RETRY_TRANSIENT,
        10016: _A.RETRY_TRANSIENT,
        110079: _A.RETRY_TRANSIENT,
        170191: _A.RETRY_TRANSIENT,
        170212: _A.RETRY_TRANSIENT,
        10001: _A.REJECTED,
        170130: _A.REJECTED,
        170201: _A.REJECTED,
        10003: _A.AUTH_FAILURE,
        10004: _A.AUTH_FAILURE,
        10005: _A.AUTH_FAILURE,
        10027: _A.AUTH_FAILURE,
    }
)
PAGE: Final[Mapping[int, Action]] = MappingProxyType(
    {
        **V5,
        10001: _A.NOT_FOUND,
        10002: _A.ALREADY_GONE,
        10003: _A.TOO_LATE,
        10004: _A.ALREADY_GONE,
        10005: _A.REJECTED,
    }
)
TABLES: Final[Mapping[str, Mapping[int, Action]]] = MappingProxyType({"v5": V5, "page": PAGE})


def build_table(name: str, overrides: Mapping[int, str]) -> Mapping[int, Action]:
    """A table by name with per-code overrides; ConfigError on an unknown name or action."""
    if name not in TABLES:
        raise ConfigError(f"ret_code_table {name!r}: expected one of {', '.join(TABLES)}")
    table = dict(TABLES[name])
    for code, action in overrides.items():
        try:
            table[int(code)] = Action(action)
        except ValueError:
            allowed = ", ".join(a.value for a in Action)
            raise ConfigError(f"ret_codes {code} = {action!r}: expected one of {allowed}") from None
    return MappingProxyType(table)


def classify(reply: ExchangeReply, table: Mapping[int, Action]) -> Action:
    """What a reply means. HTTP-level signals come first, then the retCode table."""
    status = reply.http_status
    if status == 403:
        return Action.IP_BAN
    if status == 429:
        return Action.RETRY_RATE_LIMIT
    if status >= 500:
        return Action.RETRY_TRANSIENT
    if status == 401:
        return Action.AUTH_FAILURE
    if reply.ret_code is None:
        return Action.UNKNOWN
    return table.get(reply.ret_code, Action.UNKNOWN)
