"""The confirmer's Redis side: pending expectations, watch sets, final states, confirmations.

Ordering that makes "stream message before expectation" safe (both orders of arrival)::

    stream:  MULTI SET final:<acct>:<order>, SMEMBERS watch:<acct>:<order> EXEC -> resolve those
    worker:  finish.lua: outcome + SADD watch:<acct>:<order> + ZADD pending <rid>, one step
    sweep:   first sight of <rid> in pending  -> GET final:<acct>:<order>  -> resolve if known

Both sides are atomic, so one runs wholly before the other: the second sees what the first
wrote. The stream resolves what already watches the order; the sweep resolves what registered
after the final state was seen. A request's watch entry exists only together with its outcome
and its pending entry (never a confirmation "account unknown" for an outcome not yet written),
and a confirmed request is never put back into pending (``finish.lua`` registers only with a new
outcome and while no confirmation exists). Confirmations are ``SET NX``: the first one
wins, a later duplicate (second ``Filled`` push, a REST answer racing the stream) changes nothing.
Redis errors become :class:`~cancelq.errors.StoreError` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cancelq.confirmations import ConfirmationRecord
from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.outcomes import Outcome, parse_outcome
from cancelq.replies import as_text


@dataclass(frozen=True)
class FinalState:
    """An order's final state as the exchange reported it."""

    order_status: str
    cum_exec_qty: str | None = None

    def to_json(self) -> str:
        return json.dumps({"orderStatus": self.order_status, "cumExecQty": self.cum_exec_qty})

    @classmethod
    def parse(cls, raw: str) -> FinalState | None:
        try:
            data = json.loads(raw)
            return cls(str(data["orderStatus"]), data.get("cumExecQty"))
        except (ValueError, KeyError, TypeError):
            return None


class ConfirmationStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, *, confirmation_ttl_s: int, final_ttl_s: int
    ) -> None:
        self._redis = client
        self.keys = keys
        self._confirmation_ttl_s = confirmation_ttl_s
        self._final_ttl_s = final_ttl_s

    def remember_final(self, account: str, order_id: str, state: FinalState) -> list[str]:
        """Record the final state, then return the request ids waiting for it."""
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    self.keys.confirm_final(account, order_id),
                    state.to_json(),
                    ex=self._final_ttl_s,
                )
                pipe.smembers(self.keys.confirm_watch(account, order_id))
                _, members = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"recording a final state failed: {exc}") from exc
        return sorted(as_text(m) for m in members)

    def finals(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], FinalState]:
        """Known final states of these (account, orderId) pairs."""
        if not pairs:
            return {}
        raw = self._call(
            lambda: self._redis.mget([self.keys.confirm_final(a, o) for a, o in pairs])
        )
        found: dict[tuple[str, str], FinalState] = {}
        for pair, value in zip(pairs, raw, strict=True):
            state = FinalState.parse(as_text(value)) if value else None
            if state is not None:
                found[pair] = state
        return found

    def pending(self, limit: int) -> tuple[list[tuple[str, int]], int]:
        """Up to ``limit`` pending (requestId, deadline ms), earliest deadline first; and the
        total count."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrange(self.keys.confirm_pending(), 0, limit - 1, withscores=True)
                pipe.zcard(self.keys.confirm_pending())
                entries, total = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"reading pending confirmations failed: {exc}") from exc
        return [(as_text(m), int(score)) for m, score in entries], int(total)

    def outcomes(self, request_ids: Sequence[str]) -> dict[str, Outcome]:
        if not request_ids:
            return {}
        raw = self._call(lambda: self._redis.mget([self.keys.outcome(rid) for rid in request_ids]))
        found: dict[str, Outcome] = {}
        for rid, value in zip(request_ids, raw, strict=True):
            if value:
                try:
                    found[rid] = parse_outcome(value)
                except ValueError:
                    continue
        return found

    def write(self, records: Iterable[ConfirmationRecord]) -> list[ConfirmationRecord]:
        """Write confirmations (first wins), settle their expectations; the ones newly written."""
        batch = list(records)
        if not batch:
            return []
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                for record in batch:
                    pipe.set(
                        self.keys.confirmation(record.requestId),
                        record.to_json(),
                        nx=True,
                        ex=self._confirmation_ttl_s,
                    )
                    pipe.zrem(self.keys.confirm_pending(), record.requestId)
                    if record.orderId:
                        pipe.srem(
                            self.keys.confirm_watch(record.account, record.orderId),
                            record.requestId,
                        )
                replies = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"writing confirmations failed: {exc}") from exc
        written = replies[0::3] if all(r.orderId for r in batch) else _set_replies(batch, replies)
        return [record for record, ok in zip(batch, written, strict=True) if ok]

    @staticmethod
    def _call(fn: Callable[[], Any]) -> list[Any]:
        try:
            result: list[Any] = fn()
        except redis.RedisError as exc:
            raise StoreError(f"redis read failed: {exc}") from exc
        return result


def _set_replies(batch: Sequence[ConfirmationRecord], replies: list[object]) -> list[object]:
    """The SET replies of a pipeline where records without an orderId sent two commands."""
    out: list[object] = []
    index = 0
    for record in batch:
        out.append(replies[index])
        index += 3 if record.orderId else 2
    return out
