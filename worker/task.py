"""The Celery task ``cancelq.cancel_order``: a thin shell around the pipeline.

It turns the pipeline's decision into Celery's language: :class:`~worker.pipeline.Retry`
becomes ``task.retry(countdown=...)``; a Redis failure becomes a requeue, never an ack.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from celery.exceptions import Retry as CeleryRetry

from cancelq.contract import TASK_NAME
from cancelq.errors import StoreError
from worker.pipeline import CancelPipeline, Retry, now_ms

log = logging.getLogger(__name__)
STORE_RETRY_S = 1.0


class PipelineProvider:
    """One pipeline per process, built on first use (after fork under prefork)."""

    def __init__(
        self, build: Callable[[], CancelPipeline], initial: CancelPipeline | None = None
    ) -> None:
        self._build = build
        self._pipeline = initial
        self._pid = os.getpid() if initial is not None else 0
        self._lock = threading.Lock()

    def __call__(self) -> CancelPipeline:
        if self._pipeline is None or self._pid != os.getpid():
            with self._lock:
                if self._pipeline is None or self._pid != os.getpid():
                    self._pipeline = self._build()
                    self._pid = os.getpid()
        return self._pipeline


def register_cancel_task(app: Celery, provider: Callable[[], CancelPipeline]) -> Task:
    @app.task(name=TASK_NAME, bind=True, max_retries=None, ignore_result=True)  # type: ignore[untyped-decorator]
    def cancel_order(self: Task, *args: Any, **fields: Any) -> None:
        pipeline = provider()
        task_id = str(self.request.id)
        if args:
            pipeline.reject(
                fields, task_id, "message: positional arguments are not accepted", now_ms()
            )
            return
        pipeline.rt.metrics.in_flight.inc()
        try:
            step = pipeline.handle(fields, task_id)
        except StoreError:
            log.warning("redis unavailable; rescheduling", extra={"requestId": task_id})
            step = Retry(STORE_RETRY_S, "store")
        finally:
            pipeline.rt.metrics.in_flight.dec()
        if isinstance(step, Retry):
            _reschedule(self, step.delay_s)

    return cancel_order


def _reschedule(task: Task, delay_s: float) -> None:
    """Publish the request again with a countdown; if even that fails, requeue unacked."""
    try:
        task.retry(countdown=delay_s, max_retries=None)
    except CeleryRetry:
        raise
    except Exception as exc:
        raise Reject(reason=f"reschedule failed: {type(exc).__name__}", requeue=True) from None
