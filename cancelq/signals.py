"""What the exchange said per lane, in 10 s buckets: a cheap, best-effort record for operators.

Workers count, where a reply is classified, the budget units a request spent that reached the
exchange (``sent``), rate-limit answers (``rate_limited``: 10006, 30035, HTTP 429) and
authentication failures (``auth_failed``: 10003, 10004, 10005, 10027). Each bucket is one hash
(``Keys.signals``), field ``<account>:<category>|<signal>``, expiring after a few minutes; the
increments ride in the pipeline that records the request's outcomes, in the script that
restamps its budget units (``restamp.lua``: no command of their own). ``cancelq top`` sums the
last :data:`MINUTE_BUCKETS` buckets: "the last minute" is 50 to 60 s. Best effort: a pipeline
re-run after a Redis script flush may count a request twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cancelq.keys import Keys
from cancelq.replies import as_text

BUCKET_MS: Final = 10_000
MINUTE_BUCKETS: Final = 6
BUCKET_TTL_S: Final = 180
SENT: Final = "sent"
RATE_LIMITED: Final = "rate_limited"
AUTH_FAILED: Final = "auth_failed"


def bucket_of(now_ms: int) -> int:
    return now_ms // BUCKET_MS


@dataclass(frozen=True)
class SignalCounts:
    """Increments of one lane's signals in one bucket (``restamp.lua`` applies them with the
    request's budget units: no command of their own)."""

    key: str
    increments: dict[str, int]  # field <lane>|<signal> -> n, zeros left out
    ttl_s: int = BUCKET_TTL_S

    @classmethod
    def of(cls, keys: Keys, lane: str, counts: Mapping[str, int], now_ms: int) -> SignalCounts:
        """``lane``'s ``counts`` (signal -> n) in the bucket of ``now_ms``."""
        increments = {f"{lane}|{signal}": n for signal, n in counts.items() if n}
        return cls(keys.signals(bucket_of(now_ms)), increments)


def minute_keys(keys: Keys, now_ms: int) -> list[str]:
    """The buckets "the last minute" sums, the current one first."""
    current = bucket_of(now_ms)
    return [keys.signals(current - k) for k in range(MINUTE_BUCKETS)]


def sum_buckets(replies: Iterable[Mapping[object, object]]) -> dict[str, Counter[str]]:
    """``HGETALL`` replies of :func:`minute_keys` summed: lane -> signal -> count."""
    lanes: dict[str, Counter[str]] = {}
    for reply in replies:
        for field, value in reply.items():
            lane, _, signal = as_text(field).rpartition("|")
            if lane:
                lanes.setdefault(lane, Counter())[signal] += int(as_text(value))
    return lanes
