"""The dispatch loop every worker runs in a thread: sends parked cancels as budget frees.

All dispatchers of all pods run the same atomic script, so any number may run; each sleeps
until the next lane is due, woken sooner when a parking makes some lane ready before that
(``wake.py``), and never longer than ``idle_s`` (a lost wake-up costs at most that).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cancelq.errors import StoreError
from cancelq.worker.ratelimit.lanes import Lanes
from cancelq.worker.ratelimit.wake import LaneWake

#: The longest a dispatcher sleeps with nothing due: a wake-up lost by pub/sub (a reconnect)
#: or a parking by an older worker that does not publish waits at most this long.
IDLE_LOOK_S = 5.0
#: How often a pod stopped by an IP ban looks whether the ban ended.
BANNED_LOOK_S = 0.2

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        lanes: Lanes,
        queue: str,
        *,
        paused: Callable[[], bool],
        wake_channel: str | None = None,
        idle_s: float = IDLE_LOOK_S,
        on_store_error: Callable[[StoreError], None] = lambda _: None,
    ) -> None:
        """``wake_channel``: the pub/sub channel of :class:`LaneWake` (None: no wake-ups, the
        dispatcher looks every ``idle_s`` at the latest); ``on_store_error`` counts a failed
        round."""
        self._on_store_error = on_store_error
        self._lanes = lanes
        self._queue = queue
        self._idle_s = idle_s
        self._paused = paused  # true while this pod must not send (IP ban)
        self._stop = threading.Event()
        self._wake = (
            LaneWake(lanes.client, wake_channel, self._stop) if wake_channel is not None else None
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cancelq-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                sleep_s = self.run_once()
                if sleep_s <= 0:
                    continue
                if self._wake is None:
                    self._stop.wait(sleep_s)
                else:
                    self._wake.wait(sleep_s)
        finally:
            if self._wake is not None:
                self._wake.close()

    def run_once(self) -> float:
        """One dispatch round; returns how long to sleep before the next."""
        if self._paused():
            return BANNED_LOOK_S
        try:
            result = self._lanes.dispatch(self._queue)
        except StoreError as exc:
            self._on_store_error(exc)
            log.warning("dispatch failed (%s); retrying", exc.kind, exc_info=True)
            return 0.5
        if result.dispatched:
            return 0.0
        if result.next_ms < 0:
            return self._idle_s
        return min(result.next_ms / 1000, self._idle_s)
