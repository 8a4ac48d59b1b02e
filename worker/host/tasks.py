"""The Celery tasks: thin shells around the pipeline.

* ``cancelq.cancel_order`` (public, the contract): one request from a producer.
* ``cancelq.submit`` (internal): cancels a dispatcher took out of a lane, budget spent.
* ``cancelq.kill`` (public, own queue): the kill switch.

Waiting never happens here (parked cancels wait in Redis). A Redis failure reschedules the
message with a countdown; if even that fails the message is requeued, never acked and dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from celery.exceptions import Retry as CeleryRetry

from cancelq.contract import KILL_TASK_NAME, TASK_NAME
from cancelq.errors import StoreError
from cancelq.worker.delivery import running
from cancelq.worker.pipeline import CancelPipeline
from cancelq.worker.ratelimit.lanes import SUBMIT_TASK

log = logging.getLogger(__name__)
STORE_RETRY_S = 1.0
UNEXPECTED_RETRY_S = 5.0
MAX_UNEXPECTED_RETRIES = 5


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


def register_tasks(app: Celery, provider: Callable[[], CancelPipeline]) -> None:
    """The public tasks take keyword arguments only; the internal one takes what dispatch sent."""

    def public(
        name: str,
        run: Callable[[CancelPipeline, dict[str, Any], str], None],
        *,
        carries_one_request: bool,
    ) -> None:
        @app.task(name=name, bind=True, max_retries=None, ignore_result=True)  # type: ignore[untyped-decorator]
        def task(self: Task, *args: Any, **fields: Any) -> None:
            pipeline = provider()
            task_id = str(self.request.id)
            call = keyword_fields(args, fields)
            if call is None:
                pipeline.reject(fields, task_id, POSITIONAL_REFUSED)
                return
            carries = _carried_request(call, task_id) if carries_one_request else ""
            with running(_delivery_tag(self), carries) as first:
                if first:
                    _guarded(self, pipeline, lambda: run(pipeline, call, task_id))

    public(TASK_NAME, CancelPipeline.handle, carries_one_request=True)
    public(KILL_TASK_NAME, CancelPipeline.kill, carries_one_request=False)

    @app.task(name=SUBMIT_TASK, bind=True, max_retries=None, ignore_result=True)  # type: ignore[untyped-decorator]
    def submit(
        self: Task,
        lane: str = "",
        items: list[Any] | None = None,
        spent: str = "",
        units: int = 0,
    ) -> None:
        """``lane`` names the (account:category) the dispatcher took ``items`` from; ``spent``
        and ``units`` the budget units it spent on them (``dispatch.lua``)."""
        pipeline = provider()
        task_id = str(self.request.id)
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        with running(_delivery_tag(self)) as first:
            if not first:
                return
            _guarded(
                self,
                pipeline,
                lambda: pipeline.submit(
                    items or [],
                    task_id,
                    lane=lane,
                    spent=spent,
                    units=_int(units),
                    redelivered=redelivered,
                ),
            )


POSITIONAL_REFUSED = (
    "message: positional arguments are not accepted (keyword arguments, or one JSON object"
    " as the only argument)"
)


def keyword_fields(args: tuple[Any, ...], fields: dict[str, Any]) -> dict[str, Any] | None:
    """The call's fields: its keyword arguments, or one JSON object passed as the only
    positional argument with no keyword arguments (``applyAsync([{...}])``, a common slip of
    celery-node and ``send_task(args=[...])`` users, unambiguous); None for anything else."""
    if not args:
        return fields
    if len(args) == 1 and isinstance(args[0], dict) and not fields:
        return args[0]
    return None


def _carried_request(fields: dict[str, Any], task_id: str) -> str:
    """The request id a cancel's outcome will carry: its ``requestId``, else the task id (as
    the pipeline reads it; a malformed one is rejected under the task id, and then no finish
    ends the delivery: its acknowledgement deletes the record as usual)."""
    request_id = fields.get("requestId")
    return request_id if isinstance(request_id, str) and request_id else task_id


def _delivery_tag(task: Task) -> str:
    """The broker's delivery tag of the message this execution runs ("" when unknown)."""
    tag = (task.request.properties or {}).get("delivery_tag")
    return tag if isinstance(tag, str) else ""


def _int(value: object) -> int:
    """A count from a message, 0 when it is not one (an old or foreign message)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _guarded(task: Task, pipeline: CancelPipeline, work: Callable[[], None]) -> None:
    """Run ``work``; whatever goes wrong, the message is rescheduled or answered, never dropped."""
    gauge = pipeline.rt.metrics.in_flight
    gauge.inc()
    try:
        work()
    except (StoreError, redis.RedisError) as exc:
        error = exc if isinstance(exc, StoreError) else _store_error(exc)
        pipeline.rt.metrics.store_error(error)
        log.warning("%s (%s); rescheduling", exc, error.kind, extra={"requestId": task.request.id})
        _reschedule(task, STORE_RETRY_S, pipeline.rt.settings.visibility_timeout_s / 2)
    except Exception as exc:  # a bug: retry a few times, then give up loudly
        log.exception("unexpected %s", type(exc).__name__, extra={"requestId": task.request.id})
        if (task.request.retries or 0) >= MAX_UNEXPECTED_RETRIES:
            pipeline.fail(
                task.request.kwargs or {},
                str(task.request.id),
                f"internal error: {type(exc).__name__}",
            )
            return
        _reschedule(task, UNEXPECTED_RETRY_S, pipeline.rt.settings.visibility_timeout_s / 2)
    finally:
        gauge.dec()


def _store_error(exc: redis.RedisError) -> StoreError:
    """A redis-py error that reached the task untranslated, as ours (its kind kept)."""
    error = StoreError(str(exc))
    error.__cause__ = exc
    return error


def _reschedule(task: Task, delay_s: float, patience_s: float) -> None:
    """Publish the message again with a countdown.

    While the broker is down this waits and tries again (up to ``patience_s``): the message may
    exist only in this worker's memory (kombu pops it before it records it as unacked), so
    giving up here would lose the cancel. A repeat is harmless: dedup answers it.
    """
    deadline = time.monotonic() + patience_s
    pause = 0.2
    while True:
        try:
            task.retry(countdown=delay_s, max_retries=None)
        except CeleryRetry:
            raise
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                raise Reject(
                    reason=f"reschedule failed: {type(exc).__name__}", requeue=True
                ) from None
            log.warning(
                "broker unavailable (%s); holding the message, trying again in %.1fs",
                type(exc).__name__,
                pause,
                extra={"requestId": task.request.id},
            )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
