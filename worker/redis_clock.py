"""The Redis server's clock, read locally: one ``TIME`` now and then, the monotonic clock between.

Every pod's heartbeat is scored on the Redis clock (one clock for the whole fleet: a pod's own
clock may be off by seconds), and reading ``TIME`` for each beat cost a script, two calls
inside it and its round trip: half of an idle pod's Redis commands. Here the offset between the
Redis clock and this process's monotonic clock is measured with one ``TIME`` (the reading is
taken to be the middle of its round trip, so the error is at most half of it) and used until
:data:`RESYNC_S` has passed or :meth:`RedisClock.forget` is called (after any Redis error: a
failover's new master has a clock of its own). A reading whose round trip took longer than
:data:`MAX_TRUSTED_RTT_S` replaces an older offset only when there is none.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

#: How long one offset is trusted. Two clocks drift apart by parts per million, microseconds in
#: this time; the resync catches a step of the server's clock (NTP) within it.
RESYNC_S = 10.0
#: A reading slower than this (a stalled thread, a busy Redis) is a poor one: at most half of
#: it is the estimate's error, and the pod TTL this clock serves is 2 s.
MAX_TRUSTED_RTT_S = 0.05


class RedisClock:
    """Milliseconds on the Redis clock, from one ``TIME`` every :data:`RESYNC_S`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        resync_s: float = RESYNC_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._resync_s = resync_s
        self._monotonic = monotonic
        self._offset_ms: float | None = None  # Redis ms minus local monotonic ms
        self._synced_at = 0.0

    def now_ms(self) -> int:
        """The Redis clock now, in ms (reads ``TIME`` when the offset is due; raises RedisError
        when it cannot be read and no offset is known)."""
        local = self._monotonic()
        if self._offset_ms is None or local - self._synced_at >= self._resync_s:
            self._sync()
            local = self._monotonic()
        assert self._offset_ms is not None
        return int(local * 1000 + self._offset_ms)

    def forget(self) -> None:
        """Read ``TIME`` again at the next :meth:`now_ms` (the server may have changed)."""
        self._offset_ms = None

    def _sync(self) -> None:
        sent = self._monotonic()
        seconds, micros = self._redis.time()
        received = self._monotonic()
        rtt = received - sent
        if rtt > MAX_TRUSTED_RTT_S and self._offset_ms is not None:
            return  # keep the better offset; try again at the next reading
        server_ms = int(seconds) * 1000 + int(micros) / 1000
        self._offset_ms = server_ms - (sent + rtt / 2) * 1000
        self._synced_at = received
