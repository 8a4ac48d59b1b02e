"""The message contract: one place for the task name, the queue and every field rule.

Producers (any language) publish a Celery protocol-v2 message whose keyword arguments are the
fields below; :func:`parse_cancel` turns those keyword arguments into a :class:`CancelRequest` or
raises :class:`~cancelq.errors.ContractError` naming each broken field and its rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
#: 2001-09-09 .. 2286-11-20 in epoch milliseconds: anything else is seconds or garbage.
ENQUEUED_AT_RANGE: Final = (1_000_000_000_000, 9_999_999_999_999)

RULES: Final[Mapping[str, str]] = {
    "account": "required; 1 to 64 characters of [A-Za-z0-9_.-], an alias from the accounts file",
    "category": "required; one of spot, linear, inverse, option",
    "symbol": "required; 2 to 32 characters of [A-Z0-9] (upper case, e.g. BTCUSDT)",
    "orderId": "1 to 64 characters of [A-Za-z0-9-]",
    "orderLinkId": "at most 36 characters of [A-Za-z0-9_-]",
    "orderFilter": "one of Order, tpslOrder, StopOrder; tpslOrder and StopOrder are spot only",
    "requestId": "1 to 64 characters of [A-Za-z0-9_.:-]",
    "enqueuedAt": "an integer: the producer's wall clock in epoch milliseconds",
}


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
        low, high = ENQUEUED_AT_RANGE
        if self.enqueuedAt is not None and not low <= self.enqueuedAt <= high:
            problems.append(_problem("enqueuedAt"))
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


def parse_cancel(fields: Mapping[str, Any]) -> CancelRequest:
    """Validate a message's keyword arguments; raise ContractError naming every broken rule."""
    normalised = _as_dict(fields)
    enqueued_at = normalised.get("enqueuedAt")
    if isinstance(enqueued_at, float) and enqueued_at.is_integer():
        normalised["enqueuedAt"] = int(enqueued_at)  # JSON numbers from other languages
    return _validate(CancelRequest, normalised)


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
        raise ContractError(_describe(exc)) from None


def _describe(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for error in exc.errors(include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else "message"
        if error["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown field (allowed: {', '.join(RULES)})")
        elif error["type"] == "missing":
            problems.append(f"{field}: missing; {RULES.get(field, 'required')}")
        else:
            problems.append(f"{field}: {RULES.get(field, error['msg'])}")
    return problems or ["message: not a valid cancel request"]


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


def parse_kill(fields: Mapping[str, Any]) -> KillRequest:
    """Validate a kill request; raise ContractError naming every broken rule."""
    return _validate(KillRequest, _as_dict(fields))
