"""Outcomes: the one final record of every request, readable by ``requestId``.

The worker writes an outcome once (``SET NX``: the first final outcome wins, a re-delivered copy
cannot overwrite it). A duplicate's own record only points at the request it duplicates
(``duplicateOf``); reading it returns the earlier request's outcome, under the duplicate's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from cancelq.errors import StoreError
from cancelq.keys import Keys


class Status(StrEnum):
    """Final statuses. Every request ends in exactly one."""

    CANCELLED = "cancelled"  # retCode 0: the exchange accepted the cancel
    ALREADY_GONE = "already_gone"  # the order was already cancelled or completed
    NOT_FOUND = "not_found"  # no such order, after the re-check window
    TOO_LATE = "too_late"  # the order filled before the cancel
    REJECTED = "rejected"  # invalid message, unknown account, or bad parameters per exchange
    AUTH_FAILED = "auth_failed"  # key invalid, bad signature, no permission, banned key
    FAILED = "failed"  # retries or deadline exhausted, or an unknown retCode
    DUPLICATE = "duplicate"  # stored only: resolved to the earlier request's outcome
    COVERED_BY_KILL = "covered_by_kill"  # resolved by a kill switch before it was sent
    KILLED = "killed"  # a kill switch request: cancel-all done


class Outcome(BaseModel):
    """What happened to one request. Times are epoch milliseconds (worker wall clock)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    requestId: str
    status: Status
    account: str | None = None
    category: str | None = None
    symbol: str | None = None
    orderId: str | None = None
    orderLinkId: str | None = None
    retCode: int | None = None
    retMsg: str | None = None
    reason: str | None = None
    attempts: int = 0
    duplicateOf: str | None = None
    ordersCancelled: int | None = None  # kill switch: orders the exchange cancelled
    requestsCovered: int | None = None  # kill switch: queued cancels resolved without sending
    enqueuedAt: int | None = None
    startedAt: int | None = None
    sentAt: int | None = None
    answeredAt: int | None = None
    finishedAt: int | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @property
    def is_duplicate_pointer(self) -> bool:
        return self.status is Status.DUPLICATE and self.duplicateOf is not None


class OutcomeReader:
    """Reads outcomes (resolving duplicates) for producers and the CLI."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    @property
    def keys(self) -> Keys:
        return self._keys

    def get(self, request_id: str) -> Outcome | None:
        """The final outcome of ``request_id``, or None while it is pending."""
        return self.get_many([request_id]).get(request_id)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, Outcome]:
        """Final outcomes of those ids that have one; two round trips at most."""
        stored = self._fetch(request_ids)
        pointers = {rid: o.duplicateOf for rid, o in stored.items() if o.is_duplicate_pointer}
        originals = self._fetch([p for p in set(pointers.values()) if p is not None])
        final: dict[str, Outcome] = {}
        for rid, outcome in stored.items():
            if rid not in pointers:
                final[rid] = outcome
            elif (original := originals.get(pointers[rid] or "")) is not None:
                final[rid] = original.model_copy(
                    update={"requestId": rid, "duplicateOf": original.requestId}
                )
        return final

    def _fetch(self, request_ids: Iterable[str]) -> dict[str, Outcome]:
        ids = list(request_ids)
        if not ids:
            return {}
        try:
            raw = self._redis.mget([self._keys.outcome(rid) for rid in ids])
        except redis.RedisError as exc:
            raise StoreError(f"reading outcomes failed: {exc}") from exc
        return {rid: parse_outcome(value) for rid, value in zip(ids, raw, strict=True) if value}


def parse_outcome(raw: str | bytes) -> Outcome:
    data: dict[str, Any] = json.loads(raw)
    return Outcome.model_validate(data)
