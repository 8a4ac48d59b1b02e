"""Bybit return codes as data: the real V5 table and the cancel-order page's simplified one.

Handlers never hard-code an order-related code; they name an :class:`Outcome` and ask the active
:class:`Dialect` for the ``(retCode, retMsg)`` pair. Spot and derivatives differ on real Bybit
(``170213`` vs ``110001`` for "not found"), so the lookup takes the category too.

Auth, rate-limit and system codes are the same in both dialects and are plain constants.
"""

from __future__ import annotations

import enum
from typing import Final

OK: Final = 0
PARAMS_ERROR: Final = 10001
TIMESTAMP_ERROR: Final = 10002
API_KEY_INVALID: Final = 10003
SIGN_ERROR: Final = 10004
TOO_MANY_VISITS: Final = 10006
SYSTEM_ERROR: Final = 10016

MSG_OK: Final = "OK"
MSG_TIMESTAMP: Final = "invalid request, please check your server timestamp or recv_window param"
MSG_API_KEY_INVALID: Final = "API key is invalid."
MSG_TOO_MANY_VISITS: Final = "Too many visits!"
MSG_SYSTEM_ERROR: Final = "Internal System Error."


class Dialect(enum.StrEnum):
    """Which code table order outcomes are reported in."""

    V5 = "v5"
    PAGE = "page"


class Outcome(enum.Enum):
    """Order-level results a cancel (or create) can end in."""

    NOT_FOUND = "not_found"
    ALREADY_CANCELLED = "already_cancelled"
    ALREADY_FILLED = "already_filled"
    INVALID_STATUS = "invalid_status"
    BAD_PARAMS = "bad_params"
    DUPLICATE_LINK_ID = "duplicate_link_id"


Code = tuple[int, str]

_V5_SPOT: Final[dict[Outcome, Code]] = {
    Outcome.NOT_FOUND: (170213, "Order does not exist."),
    Outcome.ALREADY_CANCELLED: (170142, "Order has been canceled"),
    Outcome.ALREADY_FILLED: (170139, "Order has been filled."),
    Outcome.INVALID_STATUS: (170190, "Cancel order has been finished"),
    Outcome.BAD_PARAMS: (170130, "Data sent for paramter '%s' is not valid."),
    Outcome.DUPLICATE_LINK_ID: (170141, "Duplicate clientOrderId"),
}

_V5_DERIVATIVES: Final[dict[Outcome, Code]] = {
    Outcome.NOT_FOUND: (110001, "order not exists or too late to cancel"),
    Outcome.ALREADY_CANCELLED: (110010, "The order has been cancelled"),
    Outcome.ALREADY_FILLED: (110008, "The order has been completed or cancelled."),
    Outcome.INVALID_STATUS: (110008, "The order has been completed or cancelled."),
    Outcome.BAD_PARAMS: (10001, "params error: %s"),
    Outcome.DUPLICATE_LINK_ID: (110072, "OrderLinkedID is duplicate"),
}

_PAGE: Final[dict[Outcome, Code]] = {
    Outcome.NOT_FOUND: (10001, "Order not found"),
    Outcome.ALREADY_CANCELLED: (10002, "Order already cancelled"),
    Outcome.ALREADY_FILLED: (10003, "Order already filled"),
    Outcome.INVALID_STATUS: (10004, "Invalid order status"),
    Outcome.BAD_PARAMS: (10005, "Invalid parameters: %s"),
    Outcome.DUPLICATE_LINK_ID: (10005, "Invalid parameters: %s"),
}


def lookup(dialect: Dialect, category: str, outcome: Outcome, detail: str = "") -> Code:
    """The ``(retCode, retMsg)`` for ``outcome``; ``detail`` fills a ``%s`` in the message."""
    if dialect is Dialect.PAGE:
        table = _PAGE
    elif category == "spot":
        table = _V5_SPOT
    else:
        table = _V5_DERIVATIVES
    code, msg = table[outcome]
    if "%s" in msg:
        msg = msg.replace("%s", detail)
    return code, msg


def sign_error_message(origin: str) -> str:
    """Bybit's 10004 text. ``origin`` is the string the server expected to be signed.

    It is made of the timestamp, API key, recv_window and payload only: never a secret.
    """
    return f"error sign! origin_string[{origin}]"
