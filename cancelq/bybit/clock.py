"""The exchange's clock as seen from this process: local time plus a measured offset.

Bybit accepts a request when ``server_time - recv_window <= timestamp < server_time + 1000``, so
timestamps are taken from this clock, refreshed from ``/v5/market/time`` periodically and at once
after a 10002. Thread-safe; a failed refresh keeps the last offset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cancelq.bybit.client import ExchangeReply

#: Aim a little behind the server: a timestamp in the server's future (>= +1000 ms) is rejected.
SAFETY_LAG_MS = 100


class ServerClock:
    """``wall`` (seconds since the epoch) and ``monotonic`` are the local clocks it reads."""

    def __init__(
        self,
        refresh_every_s: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresh_every_s = refresh_every_s
        self._wall = wall
        self._monotonic = monotonic
        self._offset_ms = 0
        self._synced_at: float | None = None
        self._lock = threading.Lock()

    @property
    def offset_ms(self) -> int:
        return self._offset_ms

    def now_ms(self) -> int:
        """Timestamp to sign with: local wall clock corrected to the exchange's."""
        return int(self._wall() * 1000) + self._offset_ms - SAFETY_LAG_MS

    def is_stale(self) -> bool:
        synced = self._synced_at
        return synced is None or self._monotonic() - synced > self._refresh_every_s

    def invalidate(self) -> None:
        """Force a refresh before the next request (after a 10002)."""
        self._synced_at = None

    def sync(self, fetch: Callable[[], ExchangeReply]) -> bool:
        """Measure the offset with one server-time call; True when it succeeded."""
        with self._lock:
            if not self.is_stale():
                return True
            before = self._wall()
            reply = fetch()
            after = self._wall()
            server_ms = _server_ms(reply)
            if server_ms is None:
                return False
            midpoint_ms = (before + after) * 500
            self._offset_ms = int(server_ms - midpoint_ms)
            self._synced_at = self._monotonic()
            return True


def _server_ms(reply: ExchangeReply) -> int | None:
    nano = reply.result.get("timeNano")
    if isinstance(nano, str) and nano.isdigit():
        return int(nano) // 1_000_000
    return reply.server_time_ms
