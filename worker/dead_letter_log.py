"""Reading the dead-letter stream (``cancelq:dead-letters``) back: list, get one, remove.

Each entry is what :class:`~cancelq.worker.dead_letters.DeadLetters` wrote; records written
before a field existed read it as empty. Redis errors become
:class:`~cancelq.errors.StoreError` here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text


@dataclass(frozen=True)
class DeadLetter:
    """One record of the stream (``id`` is its stream id, ``time`` epoch ms)."""

    id: str
    reason: str
    time: int
    pod: str
    task: str
    content_type: str
    size: int
    request_id: str
    detail: str
    preview: str
    body: str
    unreplayable: str

    @classmethod
    def from_entry(cls, entry_id: Any, raw: Mapping[Any, Any]) -> DeadLetter:
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            id=as_text(entry_id),
            reason=fields.get("reason", ""),
            time=_int(fields.get("time")),
            pod=fields.get("pod", ""),
            task=fields.get("task", ""),
            content_type=fields.get("contentType", ""),
            size=_int(fields.get("size")),
            request_id=fields.get("requestId", ""),
            detail=fields.get("detail", ""),
            preview=fields.get("preview", ""),
            body=fields.get("body", ""),
            unreplayable=fields.get("unreplayable", ""),
        )


def _letters(reply: object) -> list[DeadLetter]:
    """The records of an ``XRANGE``/``XREVRANGE`` reply."""
    entries = reply if isinstance(reply, list) else []
    return [DeadLetter.from_entry(entry_id, fields or {}) for entry_id, fields in entries]


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


class DeadLetterLog:
    """The stream of dead letters, read and trimmed by operators (``cancelq dead-letters``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._key = keys.dead_letters()

    def newest(self, count: int | None = None) -> list[DeadLetter]:
        """The newest ``count`` records (all when None), newest first."""
        try:
            entries = self._redis.xrevrange(self._key, count=count)
        except redis.RedisError as exc:
            raise StoreError(f"dead letters not read: {exc}") from exc
        return _letters(entries)

    def get(self, entry_id: str) -> DeadLetter | None:
        try:
            entries = self._redis.xrange(self._key, min=entry_id, max=entry_id)
        except redis.ResponseError:  # not a stream id
            return None
        except redis.RedisError as exc:
            raise StoreError(f"dead letter not read: {exc}") from exc
        found = _letters(entries)
        return found[0] if found else None

    def count(self) -> int:
        try:
            return int(self._redis.xlen(self._key))
        except redis.RedisError as exc:
            raise StoreError(f"dead letters not counted: {exc}") from exc

    def remove(self, entry_ids: Sequence[str]) -> int:
        """Delete these records (``XDEL``); how many were still there."""
        if not entry_ids:
            return 0
        try:
            return int(self._redis.xdel(self._key, *entry_ids))
        except redis.RedisError as exc:
            raise StoreError(f"dead letters not removed: {exc}") from exc
