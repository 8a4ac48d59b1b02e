"""Claims made only while this pod's own heartbeat is fresh (``claim.lua``'s "stale").

The others take a pod for dead once its last beat is a pod TTL old and hand back what it holds,
to be sent again by whoever takes it. A pod that was frozen or cut off from Redis comes back
with a stale beat, and its task threads may claim before its beat thread has beaten again:
claimed and sent while the others still take it for dead, a cancel could also be handed back
and sent a second time. So a claim needs the pod's own beat to be recent
(``claims.own_beat_window_s``); when it is not, nothing is claimed and :class:`OwnBeatWait`
claims again until the pod has beaten, or the delivery is found taken over (``"taken"``).

A pod whose beat stays stale with nobody to take its deliveries over (a lone pod that cannot
write its beat) would wait forever: after ``wait_s`` (longer than a takeover takes), the claim
is made without the check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a stale claim is tried again (a beat is due within ``pod_beat_s``).
POLL_S = 0.05


def wait_for_takeover_s(pod_ttl_s: float, pod_beat_s: float) -> float:
    """How long to claim again before claiming without the check: twice what the others need
    to hand back a dead pod's deliveries (its TTL, then one of their sweeps, a beat apart)."""
    return 2 * (pod_ttl_s + pod_beat_s)


class OwnBeatWait:
    def __init__(
        self,
        wait_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wait_s = wait_s
        self._sleep = sleep
        self._monotonic = monotonic

    def settle(
        self,
        count: int,
        run: Callable[[Sequence[int], bool], Sequence[T]],
        stale: Callable[[T], bool],
    ) -> list[T]:
        """The replies of ``count`` claims: ``run(indices, check)`` claims those of
        ``indices`` (with the own-beat check when ``check``) and returns their replies in
        order; the stale ones are claimed again, every :data:`POLL_S`, and once more without
        the check after the wait."""
        replies: dict[int, T] = {}
        pending: Sequence[int] = range(count)
        deadline = self._monotonic() + self._wait_s
        waiting = False
        while pending:
            check = self._monotonic() < deadline
            if not check:
                log.warning(
                    "this worker process's heartbeat has been stale for %.1f s and no other "
                    "took its deliveries over: claiming without it",
                    self._wait_s,
                )
            for index, reply in zip(pending, run(pending, check), strict=True):
                replies[index] = reply
            pending = [index for index in pending if stale(replies[index])]
            if pending and not waiting:
                waiting = True
                log.info("claims wait for this worker process's next heartbeat")
            if pending:
                self._sleep(POLL_S)
        return [replies[index] for index in range(count)]
