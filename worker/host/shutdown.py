"""SIGTERM with a hard deadline: the worker process ends soon after its grace time."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Final

from celery.signals import worker_shutting_down

log = logging.getLogger(__name__)

#: After the grace time, this long for Celery's own cold shutdown before the process ends.
EXIT_MARGIN_S: Final = 2.0


def install_grace_deadline(grace_s: float) -> None:
    """SIGTERM: the process ends at the latest ``grace_s`` + :data:`EXIT_MARGIN_S` later.

    Celery stops consuming and, after ``worker_soft_shutdown_timeout``, hands back what it can;
    but a thread-pool task blocked in an exchange round trip cannot be interrupted, and the
    interpreter waits for it at exit. Its message stays unacked in Redis and is re-delivered
    after the visibility timeout (dedup makes the repeat harmless), so ending here loses nothing.
    """

    def arm(**_: Any) -> None:
        timer = threading.Timer(grace_s + EXIT_MARGIN_S, _exit_now)
        timer.daemon = True
        timer.start()

    worker_shutting_down.connect(arm, weak=False)


def _exit_now() -> None:
    log.warning("shutdown grace time over: exiting; unfinished requests return to the queue")
    logging.shutdown()
    os._exit(0)
