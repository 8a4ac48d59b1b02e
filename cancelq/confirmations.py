"""Confirmations: did an accepted cancel really cancel the order, or did it fill first?

Bybit's reply to a cancel means *accepted*. When the worker records a ``cancelled`` outcome it
also registers an expectation (:func:`expect`): the request id joins the pending set with a
deadline, and is indexed under its (account, orderId) so the confirmer, following the private
order stream (or polling ``/v5/order/realtime``), can resolve it. The confirmer writes one
:class:`ConfirmationRecord` per request, readable like an outcome.
"""

from __future__ import annotations

from enum import StrEnum

import redis
from pydantic import BaseModel, ConfigDict

from cancelq.keys import Keys


class Confirmation(StrEnum):
    CONFIRMED_CANCELLED = "confirmed_cancelled"  # Cancelled, PartiallyFilledCanceled, Deactivated
    FILLED_FIRST = "filled_first"  # Filled (also the second Filled after a cancel/fill race)
    UNCONFIRMED = "unconfirmed"  # no final state seen before the deadline


class ConfirmationRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    requestId: str
    result: Confirmation
    account: str
    orderId: str
    orderStatus: str | None = None
    via: str | None = None  # "stream", "rest" or "deadline"
    acceptedAt: int | None = None  # ms, the exchange's accept reply
    confirmedAt: int | None = None  # ms


def expect(
    pipe: redis.client.Pipeline, keys: Keys, *, request_id: str, account: str, order_id: str,
    deadline_ms: int, ttl_s: int,
) -> None:
    """Queue, on ``pipe``, the expectation that ``order_id`` reaches a final state."""
    watch = keys.confirm_watch(account, order_id)
    pipe.zadd(keys.confirm_pending(), {request_id: deadline_ms})
    pipe.sadd(watch, request_id)
    pipe.expire(watch, ttl_s)
