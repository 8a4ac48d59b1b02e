"""Account halts: an operator stops every send of one account at once, across every pod.

A halt is one field of the hash ``Keys.halts()`` (alias -> JSON: who, why, when). The limiter's
scripts read it atomically with admission (``admit.lua`` parks instead of sending) and dispatch
(``dispatch.lua`` leaves a halted lane's cancels where they are); a dispatched batch re-checks it
in the pipeline that claims its items. ``resume`` deletes the field and makes the account's lanes
due at once, so they drain within their budgets.

Every halt and resume is written with an audit entry (a bounded stream) in one ``MULTI`` and
logged. The alias is not secret; ``by`` and ``reason`` are what the operator typed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text, time_ms

log = logging.getLogger(__name__)

#: The audit stream keeps about this many entries (``XADD MAXLEN ~``).
AUDIT_MAX: Final = 10_000
#: Lane categories a resume makes due at once (``lanes:ready`` members ``<alias>:<category>``).
CATEGORIES: Final = ("spot", "linear", "inverse", "option")


@dataclass(frozen=True)
class Halt:
    """One account's halt: who set it, why, and when (epoch ms, the Redis clock)."""

    account: str
    by: str
    reason: str
    at_ms: int

    def to_json(self) -> str:
        return json.dumps({"by": self.by, "reason": self.reason, "at": self.at_ms})

    @classmethod
    def from_json(cls, account: str, raw: str) -> Halt:
        try:
            data = json.loads(raw)
            return cls(account, str(data["by"]), str(data["reason"]), int(data["at"]))
        except (ValueError, KeyError, TypeError):
            return cls(account, "?", "unreadable halt record", 0)


def _now_ms(client: redis.Redis) -> int:
    return time_ms(client.time())


def halt(client: redis.Redis, keys: Keys, account: str, *, by: str, reason: str) -> Halt:
    """Halt ``account``: once this returns, no pod admits or dispatches a send of it."""
    try:
        record = Halt(account, by, reason, _now_ms(client))
        with client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.halts(), account, record.to_json())
            _audit(pipe, keys, "halt", record)
            pipe.execute()
    except redis.RedisError as exc:
        raise StoreError(f"halting {account} failed: {exc}") from exc
    log.warning(
        "account halted: %s by %s: %s",
        account,
        by,
        reason,
        extra={"account": account, "by": by, "reason": reason, "action": "halt"},
    )
    return record


def resume(client: redis.Redis, keys: Keys, account: str, *, by: str, reason: str) -> bool:
    """Lift the halt of ``account`` (its parked cancels drain); False when it was not halted."""
    try:
        record = Halt(account, by, reason, _now_ms(client))
        with client.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.halts(), account)
            _audit(pipe, keys, "resume", record)
            for category in CATEGORIES:  # due now, and dispatchers woken to look at them
                pipe.zadd(keys.lanes_ready(), {f"{account}:{category}": 0}, xx=True)
            pipe.publish(keys.lanes_wake(), account)
            removed = pipe.execute()[0]
    except redis.RedisError as exc:
        raise StoreError(f"resuming {account} failed: {exc}") from exc
    log.warning(
        "account resumed: %s by %s: %s",
        account,
        by,
        reason,
        extra={"account": account, "by": by, "reason": reason, "action": "resume"},
    )
    return bool(removed)


def _audit(pipe: redis.client.Pipeline, keys: Keys, action: str, record: Halt) -> None:
    fields: dict[str, str] = {
        "action": action,
        "account": record.account,
        "by": record.by,
        "reason": record.reason,
        "at": str(record.at_ms),
    }
    pipe.xadd(keys.halt_audit(), fields, maxlen=AUDIT_MAX, approximate=True)  # type: ignore[arg-type]


def halted(client: redis.Redis, keys: Keys) -> dict[str, Halt]:
    """Every halted account (read only: ``HGETALL``)."""
    try:
        raw = client.hgetall(keys.halts())
    except redis.RedisError as exc:
        raise StoreError(f"reading halts failed: {exc}") from exc
    return parse_halts(raw)


def parse_halts(raw: Mapping[Any, Any]) -> dict[str, Halt]:
    """Halts from an ``HGETALL`` reply read in someone else's pipeline."""
    return {as_text(k): Halt.from_json(as_text(k), as_text(v)) for k, v in raw.items()}


def audit(client: redis.Redis, keys: Keys, count: int = 20) -> list[dict[str, str]]:
    """The latest audit entries, newest first."""
    try:
        entries: Any = client.xrevrange(keys.halt_audit(), count=count) or []
    except redis.RedisError as exc:
        raise StoreError(f"reading the halt audit failed: {exc}") from exc
    return [{as_text(k): as_text(v) for k, v in fields.items()} for _, fields in entries]
