"""The Redis server's clock, read locally: one ``TIME`` now and then, the monotonic clock between.

Every pod's heartbeat is scored on the Redis clock (one clock for the whole fleet: a pod's own
clock may be off by seconds), and reading ``TIME`` for each beat cost a script, two calls
inside it and its round trip: half of an idle pod's Redis commands. Here the offset between the
Redis clock and this process's monotonic clock is measured with ``TIME`` (the reading is taken
to be the middle of its round trip, so its error is at most half of it) and used until
:data:`RESYNC_S` has passed or :meth:`RedisClock.forget` is called (after any Redis error: a
failover's new master has a clock of its own).

Only a fast reading is trusted (round trip at most :data:`MAX_TRUSTED_RTT_S`). A slow one
(a request held up by a partition and delivered when it heals, a stalled thread) could put the
estimate seconds ahead, and a pod whose clock runs ahead takes the others' beats for old and
hands back what they hold (the fault tier's partition test caught it: a reading sent during a
5 s cut was answered after it). Of :data:`READINGS` tries the fastest is kept; when none is
fast, an older offset stays in use, and without one the reading fails as a Redis timeout (the
beat is not written, and tried again at the next).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from cancelq.replies import time_us

#: How long one offset is trusted. Two clocks drift apart by parts per million, microseconds in
#: this time; the resync catches a step of the server's clock (NTP) within it.
RESYNC_S = 10.0
#: A reading slower than this is not trusted: half of it bounds the estimate's error, and a
#: live pod is taken for dead only when two pods' errors add up to more than the pod TTL less a
#: beat (1.5 s by default).
MAX_TRUSTED_RTT_S = 0.1
#: Readings tried for one sync before giving up on a fast one.
READINGS = 3


class SlowClockReading(redis.exceptions.TimeoutError):
    """No ``TIME`` reading was fast enough to trust, and no earlier offset is known."""


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
        best: tuple[float, float, float] | None = None  # round trip, sent, server ms
        for _ in range(READINGS):
            sent = self._monotonic()
            clock = self._redis.time()
            rtt = self._monotonic() - sent
            if best is None or rtt < best[0]:
                best = (rtt, sent, time_us(clock) / 1000)
            if rtt <= MAX_TRUSTED_RTT_S:
                break
        assert best is not None
        rtt, sent, server_ms = best
        if rtt > MAX_TRUSTED_RTT_S:
            if self._offset_ms is not None:
                return  # keep the trusted offset; try again at the next reading
            raise SlowClockReading(f"no TIME reading under {MAX_TRUSTED_RTT_S * 1000:.0f} ms")
        self._offset_ms = server_ms - (sent + rtt / 2) * 1000
        self._synced_at = sent + rtt
