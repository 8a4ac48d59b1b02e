"""What each V5 endpoint does with already-authenticated parameters.

No HTTP here: each function takes the state, the account, the parsed parameters and the
exchange clock, and returns a :class:`Reply`. ``handlers.py`` does the plumbing around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from cancelq.simulator import retcodes
from cancelq.simulator.accounts import Account
from cancelq.simulator.orders import (
    CATEGORIES,
    CancelScope,
    NewOrder,
    Order,
    OrderKind,
    Rejection,
    parse_kind,
)
from cancelq.simulator.recorder import Identity
from cancelq.simulator.retcodes import Outcome
from cancelq.simulator.state import SimulatorState

BATCH_MAX = {"spot": 10, "linear": 20, "inverse": 20, "option": 20}
FUTURES_CANCEL_ALL_CAP = 500
REALTIME_DEFAULT_LIMIT = 20
REALTIME_MAX_LIMIT = 50
CLOSED_KEPT = 500


@dataclass(slots=True)
class Reply:
    ret_code: int
    ret_msg: str
    result: dict[str, Any] = field(default_factory=dict)
    ext: dict[str, Any] = field(default_factory=dict)
    ids: tuple[Identity, ...] = ()


Business = Callable[[SimulatorState, Account, dict[str, Any], int], Reply]


def ok(result: dict[str, Any], ids: tuple[Identity, ...] = ()) -> Reply:
    return Reply(retcodes.OK, retcodes.MSG_OK, result, {}, ids)


def params_error(detail: str) -> Reply:
    return Reply(retcodes.PARAMS_ERROR, f"params error: {detail}")


def rejected(state: SimulatorState, category: str, rej: Rejection) -> Reply:
    code, msg = retcodes.lookup(state.dialect, category, rej.outcome, rej.detail)
    return Reply(code, msg)


def _s(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    return "" if value is None else str(value)


def identities(params: dict[str, Any]) -> tuple[Identity, ...]:
    """The ids a cancel item names, for the request log."""
    out: list[Identity] = []
    if params.get("orderId"):
        out.append(("orderId", str(params["orderId"])))
    if params.get("orderLinkId"):
        out.append(("orderLinkId", str(params["orderLinkId"])))
    return tuple(out)


# -- /v5/order/create -------------------------------------------------------------------------


def _create_kind(category: str, params: dict[str, Any]) -> OrderKind | None:
    if category == "spot":
        return parse_kind(_s(params, "orderFilter") or None)
    if _s(params, "triggerPrice"):
        return OrderKind.CONDITIONAL
    return OrderKind.NORMAL


def create_order(state: SimulatorState, acct: Account, p: dict[str, Any], now: int) -> Reply:
    category = _s(p, "category")
    kind = _create_kind(category, p)
    if kind is None:
        return rejected(state, category, Rejection(Outcome.BAD_PARAMS, "orderFilter"))
    req = NewOrder(
        uid=acct.uid,
        category=category,
        symbol=_s(p, "symbol"),
        side=_s(p, "side"),
        qty=_s(p, "qty"),
        order_type=_s(p, "orderType") or "Limit",
        price=_s(p, "price"),
        order_link_id=_s(p, "orderLinkId"),
        kind=kind,
        trigger_price=_s(p, "triggerPrice"),
        time_in_force=_s(p, "timeInForce") or "GTC",
    )
    made = state.book.create(req, now)
    if isinstance(made, Rejection):
        return rejected(state, category, made)
    return ok({"orderId": made.order_id, "orderLinkId": made.order_link_id})


# -- /v5/order/cancel and cancel-batch --------------------------------------------------------


def _locate(
    state: SimulatorState, uid: int, category: str, p: dict[str, Any], now: int
) -> Order | Rejection:
    order_id, link_id, symbol = _s(p, "orderId"), _s(p, "orderLinkId"), _s(p, "symbol")
    if not order_id and not link_id:
        return Rejection(Outcome.BAD_PARAMS, "orderId or orderLinkId is required")
    if not symbol:
        return Rejection(Outcome.BAD_PARAMS, "symbol")
    kind = parse_kind(_s(p, "orderFilter") or None) if category == "spot" else None
    if category == "spot" and kind is None:
        return Rejection(Outcome.BAD_PARAMS, "orderFilter")
    order = state.book.find(uid, category, order_id, link_id, now)
    if order is None or order.symbol != symbol or (kind is not None and order.kind is not kind):
        return Rejection(Outcome.NOT_FOUND)
    return order


def cancel_one(
    state: SimulatorState, uid: int, category: str, p: dict[str, Any], now: int
) -> tuple[Order | None, Rejection | None]:
    """Find and cancel one order: ``(order, None)`` when accepted."""
    found = _locate(state, uid, category, p, now)
    if isinstance(found, Rejection):
        return None, found
    return found, state.book.cancel(found, now)


def cancel_order(state: SimulatorState, acct: Account, p: dict[str, Any], now: int) -> Reply:
    category = _s(p, "category")
    ids = identities(p)
    if category not in CATEGORIES:
        return params_error("category")
    order, rej = cancel_one(state, acct.uid, category, p, now)
    if rej is not None or order is None:
        reply = rejected(state, category, rej or Rejection(Outcome.NOT_FOUND))
        reply.ids = ids
        return reply
    return ok({"orderId": order.order_id, "orderLinkId": order.order_link_id}, ids)


def batch_items(p: dict[str, Any]) -> list[dict[str, Any]] | None:
    items = p.get("request")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    return items


def _batch_item(
    state: SimulatorState, uid: int, category: str, item: dict[str, Any], now: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    order, rej = cancel_one(state, uid, category, item, now)
    row = {
        "category": category,
        "symbol": _s(item, "symbol"),
        "orderId": order.order_id if order else _s(item, "orderId"),
        "orderLinkId": order.order_link_id if order else _s(item, "orderLinkId"),
    }
    if rej is None:
        return row, {"code": retcodes.OK, "msg": retcodes.MSG_OK}
    code, msg = retcodes.lookup(state.dialect, category, rej.outcome, rej.detail)
    return row, {"code": code, "msg": msg}


def cancel_batch(state: SimulatorState, acct: Account, p: dict[str, Any], now: int) -> Reply:
    category = _s(p, "category")
    items = batch_items(p)
    if category not in CATEGORIES:
        return params_error("category")
    if not items:
        return params_error("request must be a non-empty list")
    if len(items) > BATCH_MAX[category]:
        return params_error(f"the number of orders exceeds {BATCH_MAX[category]}")
    rows, codes = [], []
    ids: list[Identity] = []
    for item in items:
        row, code = _batch_item(state, acct.uid, category, item, now)
        rows.append(row)
        codes.append(code)
        ids.extend(identities(item))
    return Reply(retcodes.OK, retcodes.MSG_OK, {"list": rows}, {"list": codes}, tuple(ids))


# -- /v5/order/cancel-all ---------------------------------------------------------------------


def _cancel_all_kind(category: str, value: str) -> OrderKind | bool | None:
    """The kind to cancel; ``None`` = every kind; ``False`` = invalid filter."""
    if not value:
        return OrderKind.NORMAL if category == "spot" else None
    if value == "OpenOrder" and category in ("linear", "inverse"):
        return OrderKind.NORMAL
    kind = parse_kind(value)
    return False if kind is None else kind


def cancel_all(state: SimulatorState, acct: Account, p: dict[str, Any], now: int) -> Reply:
    category = _s(p, "category")
    if category not in CATEGORIES:
        return params_error("category")
    symbol, base, settle = _s(p, "symbol"), _s(p, "baseCoin"), _s(p, "settleCoin")
    if category in ("linear", "inverse") and not (symbol or base or settle):
        return params_error("symbol, baseCoin or settleCoin is required")
    kind = _cancel_all_kind(category, _s(p, "orderFilter"))
    if kind is False:
        return params_error("orderFilter")
    scope = CancelScope(
        uid=acct.uid,
        category=category,
        symbol=symbol,
        base_coin="" if symbol else base,
        settle_coin="" if symbol or base else settle,
        kind=kind if isinstance(kind, OrderKind) else None,
        limit=FUTURES_CANCEL_ALL_CAP if category in ("linear", "inverse") else None,
    )
    done = state.book.cancel_all(scope, now)
    rows = [{"orderId": o.order_id, "orderLinkId": o.order_link_id} for o in done]
    return ok({"list": rows, "success": "1"})


# -- /v5/order/realtime -----------------------------------------------------------------------


def _matches(order: Order, p: dict[str, Any], kind: OrderKind | None) -> bool:
    if kind is not None and order.kind is not kind:
        return False
    if p.get("symbol") and order.symbol != p["symbol"]:
        return False
    if p.get("orderLinkId") and order.order_link_id != p["orderLinkId"]:
        return False
    return not (p.get("orderId") and order.order_id != p["orderId"])


def _page(p: dict[str, Any]) -> tuple[int, int] | None:
    try:
        limit = int(p.get("limit") or REALTIME_DEFAULT_LIMIT)
        start = int(p.get("cursor") or 0)
    except ValueError:
        return None
    if not 1 <= limit <= REALTIME_MAX_LIMIT or start < 0:
        return None
    return start, limit


def open_orders(state: SimulatorState, acct: Account, p: dict[str, Any], now: int) -> Reply:
    category = _s(p, "category")
    if category not in CATEGORIES:
        return params_error("category")
    kind = parse_kind(_s(p, "orderFilter") or None) if p.get("orderFilter") else None
    page = _page(p)
    if page is None:
        return params_error("limit/cursor")
    by_id = bool(p.get("orderId") or p.get("orderLinkId"))
    open_only = _s(p, "openOnly") in ("", "0") and not by_id
    found = [
        o
        for o in state.book.orders(acct.uid, category, open_only=open_only)
        if o.visible(now) and _matches(o, p, kind)
    ]
    found.sort(key=lambda o: o.created_ms, reverse=True)
    found = [o for o in found if o.is_open] + [o for o in found if not o.is_open][:CLOSED_KEPT]
    start, limit = page
    chunk = found[start : start + limit]
    cursor = str(start + limit) if start + limit < len(found) else ""
    result = {"list": [o.to_v5() for o in chunk], "nextPageCursor": cursor, "category": category}
    return ok(result)


# -- /v5/market/time --------------------------------------------------------------------------


def server_time(now_ms: int) -> dict[str, str]:
    return {"timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}


def decimal_or_none(value: Any) -> Decimal | None:
    """Parse an optional quantity (admin fills)."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError("qty must be a decimal number") from exc
