"""Wakes a sleeping dispatcher when a lane becomes ready sooner than it planned to look.

A dispatcher sleeps until the earliest lane is due (``dispatch.lua`` tells it when). A parking
that makes some lane ready sooner (``admit.lua``) and a resume (``cancelq.halts``) publish on
``Keys.lanes_wake``; every dispatcher is subscribed and runs at once. Pub/sub may drop a message
(a reconnect): after every (re)subscription the dispatcher looks once, and it never sleeps
longer than its idle look interval, so a lost wake costs at most that.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from redis.client import PubSub

log = logging.getLogger(__name__)


class LaneWake:
    """One subscription to the wake channel, used by one dispatcher thread."""

    def __init__(self, client: redis.Redis, channel: str, stopped: threading.Event) -> None:
        self._client = client
        self._channel = channel
        self._stopped = stopped
        self._pubsub: PubSub | None = None

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True when woken (a wake, a new subscription, an error:
        look now), False when the time ran out."""
        deadline = time.monotonic() + timeout_s
        try:
            if self._pubsub is None:
                open_pubsub: Any = self._client.pubsub  # untyped up to redis-py 8.1, typed after
                self._pubsub = open_pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self._channel)
                return True  # what was published before this subscription was not heard
            while (left := deadline - time.monotonic()) > 0 and not self._stopped.is_set():
                if self._pubsub.get_message(timeout=left) is not None:
                    while self._pubsub.get_message(timeout=0) is not None:
                        pass  # one look serves every wake already here
                    return True
            return False
        except redis.RedisError:
            log.warning("dispatch wake-ups unavailable; looking every %.1f s", timeout_s)
            self.close()
            self._stopped.wait(max(deadline - time.monotonic(), 0))
            return True

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None
