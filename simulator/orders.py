"""The order book: every order of every UID, and the order state machine.

States (Bybit's ``orderStatus``)::

    New ──fill──▶ PartiallyFilled ──fill──▶ Filled
     │                 │
     └─cancel─▶ Cancelled      └─cancel─▶ PartiallyFilledCanceled (spot) / Cancelled (others)
    Untriggered ──trigger──▶ New        Untriggered ──cancel──▶ Deactivated

``Filled``, ``Cancelled``, ``PartiallyFilledCanceled``, ``Deactivated`` and ``Rejected`` are
final. Every state change is published to ``OrderBook.listeners`` (the hook a private WebSocket
``order`` stream will use). A cancel that races a fill (armed with ``arm_fill_race``) is
accepted, yet the order ends ``Filled``: one ``Filled`` event, then the second ``Filled`` event
with ``cancelType=CancelByUser`` and ``rejectReason=EC_OrigClOrdIDDoesNotExist``, as on Bybit.

An order may be created invisible until ``visible_at_ms``: until then it cannot be found,
which lets a cancel overtake its own order's create.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cancelq.simulator.retcodes import Outcome

_log = logging.getLogger(__name__)

CATEGORIES = frozenset({"spot", "linear", "inverse", "option"})
LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_QUOTES = ("USDT", "USDC", "USDE", "FDUSD", "BTC", "ETH", "EUR", "BRL", "DAI", "USD")
_INVERSE_RE = re.compile(r"^([A-Z0-9]+?)USD([FGHJKMNQUVXZ]\d\d)?$")


class OrderStatus(enum.StrEnum):
    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    PARTIALLY_FILLED_CANCELED = "PartiallyFilledCanceled"
    UNTRIGGERED = "Untriggered"
    DEACTIVATED = "Deactivated"
    REJECTED = "Rejected"


class OrderKind(enum.StrEnum):
    """Bybit's ``orderFilter`` values."""

    NORMAL = "Order"
    TPSL = "tpslOrder"
    CONDITIONAL = "StopOrder"


OPEN_STATES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED})
_DONE_OUTCOME = {
    OrderStatus.FILLED: Outcome.ALREADY_FILLED,
    OrderStatus.CANCELLED: Outcome.ALREADY_CANCELLED,
    OrderStatus.PARTIALLY_FILLED_CANCELED: Outcome.ALREADY_CANCELLED,
    OrderStatus.DEACTIVATED: Outcome.ALREADY_CANCELLED,
    OrderStatus.REJECTED: Outcome.INVALID_STATUS,
}
_STOP_TYPE = {OrderKind.NORMAL: "", OrderKind.TPSL: "tpslOrder", OrderKind.CONDITIONAL: "Stop"}


def parse_kind(value: str | None) -> OrderKind | None:
    """``orderFilter`` text -> kind (``None`` when unknown)."""
    if value is None or value == "":
        return OrderKind.NORMAL
    try:
        return OrderKind(value)
    except ValueError:
        return None


def coins(category: str, symbol: str) -> tuple[str, str]:
    """``(baseCoin, settleCoin)`` derived from a symbol: BTCUSDT -> BTC/USDT, BTCUSD -> BTC/BTC."""
    if "-" in symbol:  # options and dated USDC futures: BTC-26DEC25-100000-C
        return symbol.split("-", 1)[0], "USDC"
    if category == "inverse":
        match = _INVERSE_RE.match(symbol)
        base = match.group(1) if match else symbol
        return base, base
    if symbol.endswith("PERP"):
        return symbol[: -len("PERP")], "USDC"
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


@dataclass(slots=True)
class Order:
    order_id: str
    order_link_id: str
    uid: int
    category: str
    symbol: str
    side: str
    order_type: str
    price: str
    qty: Decimal
    kind: OrderKind
    status: OrderStatus
    created_ms: int
    updated_ms: int
    visible_at_ms: int = 0
    cum_exec_qty: Decimal = Decimal(0)
    trigger_price: str = ""
    time_in_force: str = "GTC"
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    fill_on_cancel: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    def visible(self, now_ms: int) -> bool:
        return now_ms >= self.visible_at_ms

    def to_v5(self) -> dict[str, Any]:
        """The order as ``/v5/order/realtime`` and the WebSocket ``order`` topic show it."""
        leaves = self.qty - self.cum_exec_qty if self.is_open else Decimal(0)
        price = Decimal(self.price or "0")
        return {
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "blockTradeId": "",
            "symbol": self.symbol,
            "price": self.price or "0",
            "qty": str(self.qty),
            "side": self.side,
            "isLeverage": "0" if self.category == "spot" else "",
            "positionIdx": 0,
            "orderStatus": str(self.status),
            "cancelType": self.cancel_type,
            "rejectReason": self.reject_reason,
            "avgPrice": (self.price or "0") if self.cum_exec_qty else "",
            "leavesQty": str(leaves),
            "leavesValue": str(leaves * price),
            "cumExecQty": str(self.cum_exec_qty),
            "cumExecValue": str(self.cum_exec_qty * price),
            "cumExecFee": "0",
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": _STOP_TYPE[self.kind],
            "orderIv": "",
            "triggerPrice": self.trigger_price or "0",
            "takeProfit": "0",
            "stopLoss": "0",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": "",
            "reduceOnly": False,
            "closeOnTrigger": False,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order operation failed, as an outcome plus detail for the message."""

    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One state change, for listeners (a later WebSocket ``order`` stream)."""

    order: dict[str, Any]
    uid: int
    category: str
    time_ms: int


@dataclass(frozen=True, slots=True)
class NewOrder:
    """What a create (signed or admin) asks for."""

    uid: int
    category: str
    symbol: str
    side: str
    qty: str
    order_type: str = "Limit"
    price: str = ""
    order_link_id: str = ""
    kind: OrderKind = OrderKind.NORMAL
    trigger_price: str = ""
    time_in_force: str = "GTC"
    visible_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class CancelScope:
    """What ``cancel-all`` cancels."""

    uid: int
    category: str
    symbol: str = ""
    base_coin: str = ""
    settle_coin: str = ""
    kind: OrderKind | None = None  # None: every kind
    limit: int | None = None


Listener = Callable[[OrderEvent], None]


def _bad_field(req: NewOrder) -> str:
    """The first malformed field of a create (empty when none)."""
    if req.category not in CATEGORIES:
        return "category"
    if not req.symbol:
        return "symbol"
    if req.side not in ("Buy", "Sell"):
        return "side"
    if req.order_type not in ("Limit", "Market"):
        return "orderType"
    if req.order_link_id and not LINK_ID_RE.match(req.order_link_id):
        return "orderLinkId"
    return ""


def _validate_new(req: NewOrder) -> Rejection | Decimal:
    bad = _bad_field(req)
    if bad:
        return Rejection(Outcome.BAD_PARAMS, bad)
    try:
        qty = Decimal(req.qty)
        if req.price:
            Decimal(req.price)
    except InvalidOperation:
        return Rejection(Outcome.BAD_PARAMS, "qty/price")
    if qty <= 0 or (req.order_type == "Limit" and not req.price):
        return Rejection(Outcome.BAD_PARAMS, "qty" if qty <= 0 else "price")
    return qty


class OrderBook:
    """All orders, indexed by id and by ``(uid, category, orderLinkId)``."""

    def __init__(self) -> None:
        self._by_id: dict[str, Order] = {}
        self._by_link: dict[tuple[int, str, str], Order] = {}
        self._seq = itertools.count(1)
        self.listeners: list[Listener] = []

    # -- queries -------------------------------------------------------------------------------

    def get(self, order_id: str) -> Order | None:
        return self._by_id.get(order_id)

    def find(
        self, uid: int, category: str, order_id: str, link_id: str, now_ms: int
    ) -> Order | None:
        """The visible order of this UID/category; ``orderId`` wins over ``orderLinkId``."""
        if order_id:
            order = self._by_id.get(order_id)
            if order is None or order.uid != uid or order.category != category:
                return None
        else:
            order = self._by_link.get((uid, category, link_id))
        if order is None or not order.visible(now_ms):
            return None
        return order

    def orders(
        self, uid: int | None = None, category: str | None = None, open_only: bool = False
    ) -> Iterator[Order]:
        for order in self._by_id.values():
            if uid is not None and order.uid != uid:
                continue
            if category is not None and order.category != category:
                continue
            if open_only and not order.is_open:
                continue
            yield order

    def __len__(self) -> int:
        return len(self._by_id)

    # -- changes -------------------------------------------------------------------------------

    def create(self, req: NewOrder, now_ms: int) -> Order | Rejection:
        checked = _validate_new(req)
        if isinstance(checked, Rejection):
            return checked
        link_key = (req.uid, req.category, req.order_link_id)
        if req.order_link_id and link_key in self._by_link:
            return Rejection(Outcome.DUPLICATE_LINK_ID, "orderLinkId")
        order = Order(
            order_id=self._new_id(req.category),
            order_link_id=req.order_link_id,
            uid=req.uid,
            category=req.category,
            symbol=req.symbol,
            side=req.side,
            order_type=req.order_type,
            price=req.price if req.order_type == "Limit" else "",
            qty=checked,
            kind=req.kind,
            status=self._initial_status(req),
            created_ms=now_ms,
            updated_ms=now_ms,
            visible_at_ms=now_ms + max(0, req.visible_after_ms),
            trigger_price=req.trigger_price,
            time_in_force=req.time_in_force if req.order_type == "Limit" else "IOC",
        )
        if order.status is OrderStatus.FILLED:
            order.cum_exec_qty = order.qty
        self._by_id[order.order_id] = order
        if req.order_link_id:
            self._by_link[link_key] = order
        self._emit(order, now_ms)
        return order

    def cancel(self, order: Order, now_ms: int) -> Rejection | None:
        """Cancel a found order; ``None`` means accepted."""
        if not order.is_open:
            return Rejection(_DONE_OUTCOME[order.status])
        order.updated_ms = now_ms
        if order.fill_on_cancel:  # the fill wins: a Filled event, then Bybit's second one
            order.status = OrderStatus.FILLED
            order.cum_exec_qty = order.qty
            self._emit(order, now_ms)
            order.reject_reason = "EC_OrigClOrdIDDoesNotExist"
        else:
            order.status = self._cancelled_status(order)
        order.cancel_type = "CancelByUser"
        self._emit(order, now_ms)
        return None

    def cancel_all(self, scope: CancelScope, now_ms: int) -> list[Order]:
        done: list[Order] = []
        for order in list(self.orders(scope.uid, scope.category, open_only=True)):
            if scope.limit is not None and len(done) >= scope.limit:
                break
            if order.visible(now_ms) and _in_scope(order, scope):
                self.cancel(order, now_ms)
                done.append(order)
        return done

    def fill(self, order: Order, qty: Decimal | None, now_ms: int) -> Rejection | None:
        """Fill ``qty`` (all that is left when ``None``): PartiallyFilled or Filled."""
        if not order.is_open:
            return Rejection(_DONE_OUTCOME[order.status])
        left = order.qty - order.cum_exec_qty
        amount = left if qty is None else min(qty, left)
        if amount <= 0:
            return Rejection(Outcome.BAD_PARAMS, "qty")
        order.cum_exec_qty += amount
        order.status = (
            OrderStatus.FILLED if order.cum_exec_qty >= order.qty else OrderStatus.PARTIALLY_FILLED
        )
        order.updated_ms = now_ms
        self._emit(order, now_ms)
        return None

    def trigger(self, order: Order, now_ms: int) -> Rejection | None:
        """An ``Untriggered`` conditional/TP-SL order becomes ``New``."""
        if order.status is not OrderStatus.UNTRIGGERED:
            return Rejection(Outcome.INVALID_STATUS)
        order.status = OrderStatus.NEW
        order.updated_ms = now_ms
        self._emit(order, now_ms)
        return None

    def arm_fill_race(self, order: Order) -> None:
        """The next accepted cancel of ``order`` loses the race against a fill."""
        order.fill_on_cancel = True

    def reset(self) -> None:
        self._by_id.clear()
        self._by_link.clear()

    # -- internals -----------------------------------------------------------------------------

    def _new_id(self, category: str) -> str:
        if category == "spot":
            return str(1_900_000_000_000_000_000 + next(self._seq))
        return str(uuid.uuid4())

    @staticmethod
    def _initial_status(req: NewOrder) -> OrderStatus:
        if req.kind is not OrderKind.NORMAL or req.trigger_price:
            return OrderStatus.UNTRIGGERED
        if req.order_type == "Market":
            return OrderStatus.FILLED
        return OrderStatus.NEW

    @staticmethod
    def _cancelled_status(order: Order) -> OrderStatus:
        if order.status is OrderStatus.UNTRIGGERED:
            return OrderStatus.DEACTIVATED
        if order.status is OrderStatus.PARTIALLY_FILLED and order.category == "spot":
            return OrderStatus.PARTIALLY_FILLED_CANCELED
        return OrderStatus.CANCELLED

    def _emit(self, order: Order, now_ms: int) -> None:
        if not self.listeners:
            return
        event = OrderEvent(order.to_v5(), order.uid, order.category, now_ms)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken hook never breaks the book
                _log.exception("order listener failed")


def _in_scope(order: Order, scope: CancelScope) -> bool:
    if scope.kind is not None and order.kind is not scope.kind:
        return False
    if scope.symbol:
        return order.symbol == scope.symbol
    base, settle = coins(order.category, order.symbol)
    if scope.base_coin:
        return base == scope.base_coin
    if scope.settle_coin:
        return settle == scope.settle_coin
    return True
