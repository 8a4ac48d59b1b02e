"""The dispatch loop every worker runs in a thread: sends parked cancels as budget frees.

All dispatchers of all pods run the same atomic script, so any number may run; each sleeps
until the next lane is due (at most ``max_sleep_s``, so new parkings are seen soon).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cancelq.errors import StoreError
from cancelq.worker.ratelimit.lanes import Lanes

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        lanes: Lanes,
        queue: str,
        *,
        paused: Callable[[], bool],
        on_store_error: Callable[[StoreError], None] = lambda _: None,
        max_sleep_s: float = 0.02,
    ) -> None:
        self._on_store_error = on_store_error
        self._lanes = lanes
        self._queue = queue
        self._max_sleep_s = max_sleep_s
        self._paused = paused  # true while this pod must not send (IP ban)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cancelq-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.run_once())

    def run_once(self) -> float:
        """One dispatch round; returns how long to sleep before the next."""
        if self._paused():
            return self._max_sleep_s * 10
        try:
            result = self._lanes.dispatch(self._queue)
        except StoreError as exc:
            self._on_store_error(exc)
            log.warning("dispatch failed (%s); retrying", exc.kind, exc_info=True)
            return 0.5
        if result.dispatched:
            return 0.0
        if result.next_ms < 0:
            return self._max_sleep_s
        return min(result.next_ms / 1000, self._max_sleep_s)
