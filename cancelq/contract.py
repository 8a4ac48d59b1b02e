"""The message contract: one place for the task name, the queue and every field rule.

Producers (any language) publish a Celery protocol-v2 message whose keyword arguments are the
fields below; :func:`read_cancel` turns those keyword arguments into a :class:`CancelRequest` or
raises :class:`~cancelq.errors.ContractError` naming each broken field and its rule.

The principle: a cancel reduces risk, so it is refused only when it cannot identify the order
safely. The fields that identify the account and the order (and a kill's scope) are strict;
every other field is read leniently (:func:`normalise`): ``null`` is absent, an implausible
``enqueuedAt`` or an unusable ``requestId`` is dropped, an unknown field is ignored. What was
dropped comes back as :class:`Note` values for the worker to count and log; parsing itself has
no side effects.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from cancelq.errors import ContractError

TASK_NAME: Final = "cancelq.cancel_order"
QUEUE: Final = "cancelq"
KILL_TASK_NAME: Final = "cancelq.kill"
KILL_QUEUE: Final = "cancelq.kill"

Category = Literal["spot", "linear", "inverse", "option"]
OrderFilter = Literal["Order", "tpslOrder", "StopOrder"]

ACCOUNT_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{2,32}")
ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
ORDER_LINK_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")
REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: An ``enqueuedAt`` is plausible from 2001-09-09 (1e12 ms): seconds since the epoch (1.7e9)
#: and garbage fall far below. No bound relative to now: an honest old time (a cancel that waited
#: out an outage, a producer clock behind) is information for the latency metrics ...
ENQUEUED_AT_FLOOR_MS: Final = 1_000_000_000_000
#: ... up to this long after the reader's clock (producer clocks run ahead by seconds, not
#: minutes; microseconds, 1.7e15, and far-future values fall far above).
ENQUEUED_AT_FUTURE_MS: Final = 5 * 60 * 1000
#: A decimal number in a string (protobuf's JSON mapping writes int64 as a string).
NUMBER_TEXT_RE: Final = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,9})?")

RULES: Final[Mapping[str, str]] = {
    "account": "required; 1 to 64 characters of [A-Za-z0-9_.-], an alias from the accounts file",
    "category": "required; one of spot, linear, inverse, option",
    "symbol": "required; 2 to 32 characters of [A-Z0-9] (upper case, e.g. BTCUSDT)",
    "orderId": "1 to 64 characters of [A-Za-z0-9-]",
    "orderLinkId": "at most 36 characters of [A-Za-z0-9_-]",
    "orderFilter": "one of Order, tpslOrder, StopOrder; tpslOrder and StopOrder are spot only",
    "requestId": "1 to 64 characters of [A-Za-z0-9_.:-], or an integer",
    "enqueuedAt": "a JSON number (or its decimal text): the producer's wall clock in epoch ms",
}
#: Added to the rule of a field that came as a JSON number where a string identifies the order.
NUMBER_REFUSED: Final = (
    "; a JSON string, not a number (Bybit's 19-digit order ids lose digits as JSON numbers in"
    " JavaScript and many parsers, and a number drops a link id's leading zeros)"
)
#: What a :class:`Note` says happened to a field.
NoteReason = Literal["unknown", "implausible", "invalid"]


@dataclass(frozen=True)
class Note:
    """A field the contract read past without refusing the cancel."""

    field: str
    reason: NoteReason


def _matching(pattern: re.Pattern[str]) -> StringConstraints:
    return StringConstraints(pattern=f"^{pattern.pattern}$")


class CancelRequest(BaseModel):
    """A valid cancel request, exactly as it travels (Bybit's field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)

    account: Annotated[str, _matching(ACCOUNT_RE)]
    category: Category
    symbol: Annotated[str, _matching(SYMBOL_RE)]
    orderId: Annotated[str, _matching(ORDER_ID_RE)] | None = None
    orderLinkId: Annotated[str, _matching(ORDER_LINK_ID_RE)] | None = None
    orderFilter: OrderFilter | None = None
    requestId: Annotated[str, _matching(REQUEST_ID_RE)] | None = None
    enqueuedAt: int | None = None

    @model_validator(mode="after")
    def _check_rules(self) -> CancelRequest:
        problems = []
        if self.orderId is None and self.orderLinkId is None:
            problems.append("orderId/orderLinkId: one of the two is required")
        if self.category != "spot" and self.orderFilter not in (None, "Order"):
            problems.append(_problem("orderFilter"))
        if problems:
            raise ContractError(problems)
        return self

    @property
    def identity(self) -> str:
        """What makes two requests the same cancel (for dedup), without the account."""
        if self.orderLinkId is not None:
            return f"{self.category}:link:{self.orderLinkId}"
        return f"{self.category}:id:{self.orderId}"

    def exchange_body(self) -> dict[str, str]:
        """The JSON body of ``POST /v5/order/cancel`` (``orderId`` wins when both are given)."""
        body = {"category": self.category, "symbol": self.symbol}
        if self.orderId is not None:
            body["orderId"] = self.orderId
        if self.orderLinkId is not None:
            body["orderLinkId"] = self.orderLinkId
        if self.category == "spot" and self.orderFilter is not None:
            body["orderFilter"] = self.orderFilter
        return body


def _problem(field: str) -> str:
    return f"{field}: {RULES[field]}"


def read_cancel(
    fields: Mapping[str, Any], now_ms: int | None = None
) -> tuple[CancelRequest, list[Note]]:
    """Validate a message's keyword arguments; raise ContractError naming every broken rule of
    an identifying field; the request and what was dropped or ignored on the way."""
    data, notes = normalise(_as_dict(fields), CancelRequest, now_ms)
    return _validate(CancelRequest, data), notes


def parse_cancel(fields: Mapping[str, Any], now_ms: int | None = None) -> CancelRequest:
    """:func:`read_cancel` without the notes (producers validating before they publish)."""
    return read_cancel(fields, now_ms)[0]


def normalise(
    data: dict[str, Any], model: type[BaseModel], now_ms: int | None = None
) -> tuple[dict[str, Any], list[Note]]:
    """The lenient side of the contract, before the strict model sees ``data``.

    ``null`` is absent; fields the model does not know are ignored; ``enqueuedAt`` becomes
    integer ms or is dropped when not plausible; ``requestId`` becomes text or is dropped.
    """
    notes: list[Note] = []
    known = model.model_fields
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            notes.append(Note(str(name), "unknown"))
        elif value is not None:
            out[name] = value
    if "enqueuedAt" in out:
        out["enqueuedAt"], reason = _enqueued_at(out["enqueuedAt"], now_ms)
        if reason is not None:
            notes.append(Note("enqueuedAt", reason))
    if "requestId" in out:
        out["requestId"] = _request_id(out["requestId"])
        if out["requestId"] is None:
            notes.append(Note("requestId", "invalid"))
    return {k: v for k, v in out.items() if v is not None}, notes


def _enqueued_at(value: object, now_ms: int | None) -> tuple[int | None, NoteReason | None]:
    """Epoch ms from any JSON number or its decimal text; None and why when unusable."""
    number = _number(value)
    if number is None or not math.isfinite(number):
        return None, "invalid"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if not ENQUEUED_AT_FLOOR_MS <= number <= now + ENQUEUED_AT_FUTURE_MS:
        return None, "implausible"
    return math.floor(number), None


def _number(value: object) -> float | None:
    """A JSON number (not a boolean) or the decimal text of one, as a float; else None."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric and not (isinstance(value, str) and NUMBER_TEXT_RE.fullmatch(value)):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond any float
        return None


def _request_id(value: object) -> str | None:
    """The request id as text (an integer is its decimal form); None when unusable."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and REQUEST_ID_RE.fullmatch(value):
        return value
    return None


M = TypeVar("M", bound=BaseModel)


def _as_dict(fields: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise ContractError(["message: keyword arguments must be a JSON object"])
    return dict(fields)


def _validate(model: type[M], data: dict[str, Any]) -> M:
    """``model`` from ``data``; every broken rule as one ContractError (field and rule)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(_describe(exc, data)) from None


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else "message"
        if error["type"] == "missing":
            problems.append(f"{field}: missing; {RULES.get(field, 'required')}")
        else:
            problems.append(f"{field}: {RULES.get(field, error['msg'])}{_why_number(data, field)}")
    return problems or ["message: not a valid cancel request"]


def _why_number(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return NUMBER_REFUSED if numeric and field in ("orderId", "orderLinkId") else ""


class KillRequest(BaseModel):
    """Cancel everything of an account, optionally one category and one symbol or coin."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)

    account: Annotated[str, _matching(ACCOUNT_RE)]
    category: Category | None = None
    symbol: Annotated[str, _matching(SYMBOL_RE)] | None = None
    baseCoin: Annotated[str, _matching(SYMBOL_RE)] | None = None
    settleCoin: Annotated[str, _matching(SYMBOL_RE)] | None = None
    requestId: Annotated[str, _matching(REQUEST_ID_RE)] | None = None
    enqueuedAt: int | None = None

    @model_validator(mode="after")
    def _check_scope(self) -> KillRequest:
        narrowing = [n for n in ("symbol", "baseCoin", "settleCoin") if getattr(self, n)]
        problems = []
        if len(narrowing) > 1:
            problems.append("symbol/baseCoin/settleCoin: at most one of the three")
        if narrowing and self.category is None:
            problems.append(f"{narrowing[0]}: needs a category")
        if problems:
            raise ContractError(problems)
        return self

    @property
    def scope(self) -> str:
        """The marker field naming what this kill covers within its category."""
        if self.symbol:
            return f"symbol:{self.symbol}"
        if self.baseCoin:
            return f"base:{self.baseCoin}"
        if self.settleCoin:
            return f"settle:{self.settleCoin}"
        return "all"


def read_kill(
    fields: Mapping[str, Any], now_ms: int | None = None
) -> tuple[KillRequest, list[Note]]:
    """Validate a kill request (its scope is strict, as a cancel's identity); raise
    ContractError naming every broken rule; the request and what was dropped or ignored."""
    data, notes = normalise(_as_dict(fields), KillRequest, now_ms)
    return _validate(KillRequest, data), notes


def parse_kill(fields: Mapping[str, Any], now_ms: int | None = None) -> KillRequest:
    """:func:`read_kill` without the notes."""
    return read_kill(fields, now_ms)[0]
