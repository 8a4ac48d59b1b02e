"""Celery's consumer with recording hooks: every message it would drop is a dead letter first.

By default a body that does not decode is acked and only logged; an unknown task, a message
without a task name, a pickle (``ContentDisallowed``) and an invalid task are rejected and
dropped. Here each is recorded first (``worker/dead_letters.py``), and a cancel whose body is
not ``[args, {kwargs}, embed]`` is refused before a pool slot runs it (Celery would fail the
task and drop it). A Celery protocol v1 message (no ``task`` header; the body an object naming
``task``, ``id``, ``args``, ``kwargs``, as older clients such as node-celery send) is a dead
letter too: Celery would convert and run it, but the contract is protocol v2 (the task name and
id in the headers, where dead letters, outcomes and logs read them).

A lost broker connection is retried every 0.5 s at first, 2 s apart at most (Celery: after
2 s, then 4 s, 6 s ... up to 30 s): a Sentinel failover is over in about 2 s, and Celery's
second try only came 6 s after the master died.

:func:`install` binds the recorder (for this consumer and ``kombu_channel``);
``worker/host/app.py`` names :class:`Consumer` in the Celery config (``worker_consumer``). This
overrides Celery internals: the Celery version is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.exceptions import ContentDisallowed

from cancelq.worker.dead_letters import DeadLetters, Reason
from cancelq.worker.envelopes import (
    OUR_TASKS,
    PROTOCOL_V1_DETAIL,
    body_problem,
    call_reprs,
    header_id,
    is_protocol_v1,
    raw_text,
    v1_request_id,
)
from cancelq.worker.host import dead_letter_hook
from cancelq.worker.host.dead_letter_hook import record

log = logging.getLogger(__name__)

#: kombu's ``ensure_connection`` intervals for the consumer's reconnects (seconds).
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


def install(recorder: DeadLetters) -> None:
    """Bind the recorder both overrides (:class:`Consumer`, ``kombu_channel.Channel``) use."""
    dead_letter_hook.bind(recorder)


def _message_facts(message: Any) -> tuple[str | None, str | None, object]:
    """(content type, request id, raw envelope) of a kombu message, defensively."""
    content_type = getattr(message, "content_type", None)
    raw = getattr(message, "_raw", None)
    return (content_type if isinstance(content_type, str) else None, header_id(raw), raw)


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer; every message it would drop is recorded first."""

    def ensure_connected(self, conn: Any) -> Any:
        """Celery's, retrying at :data:`RECONNECT_INTERVALS` instead of kombu's defaults."""
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)

    def _dead(self, message: Any, reason: Reason, detail: str) -> None:
        content_type, request_id, raw = _message_facts(message)
        record(
            reason,
            raw_text(raw),
            content_type=content_type,
            request_id=request_id,
            detail=detail,
        )

    def _drop(self, message: Any) -> None:
        if not message.acknowledged:
            message.reject_log_error(log, self.connection_errors)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead(message, Reason.DECODE_ERROR, type(exc).__name__)
        if not message.acknowledged:
            message.ack_log_error(log, self.connection_errors)

    def on_unknown_message(self, _body: Any, message: Any) -> None:
        self._dead(message, Reason.UNKNOWN_MESSAGE, "no task name")
        self._drop(message)

    def on_unknown_task(self, _body: Any, message: Any, _exc: Exception) -> None:
        name = message.headers.get("task") if isinstance(message.headers, dict) else None
        shown = name if isinstance(name, str) else type(name).__name__
        self._dead(message, Reason.UNKNOWN_TASK, f"task {shown[:64]!r}")
        self._drop(message)

    def on_invalid_task(self, _body: Any, message: Any, exc: Exception) -> None:
        if isinstance(exc, ContentDisallowed):
            self._dead(message, Reason.CONTENT_DISALLOWED, "content type not accepted")
        else:
            self._dead(message, Reason.INVALID_TASK, type(exc).__name__)
        self._drop(message)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], None]:
        handler: Callable[[Any], None] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> None:
            if self._protocol_v1(message) or self._refused(message):
                return
            try:
                handler(message)
            except Exception as exc:  # Celery would end the worker: record, drop, go on
                self._dead(message, Reason.INVALID_TASK, type(exc).__name__)
                self._drop(message)

        return on_task_received

    def _protocol_v1(self, message: Any) -> bool:
        """True (recorded and dropped, never run) for a Celery protocol v1 message."""
        headers = message.headers
        if not isinstance(headers, dict) or "task" in headers:
            return False
        try:
            payload = message.payload
        except Exception:  # let Celery's handler route it to the decode/invalid hooks
            return False
        if not is_protocol_v1(headers, payload):
            return False
        content_type, _, raw = _message_facts(message)
        record(
            Reason.PROTOCOL_V1,
            raw_text(raw),
            content_type=content_type,
            request_id=v1_request_id(payload),
            detail=PROTOCOL_V1_DETAIL,
        )
        self._drop(message)
        return True

    def _refused(self, message: Any) -> bool:
        """True when a message for one of our tasks has a body that is not a task call."""
        headers = message.headers
        if not isinstance(headers, dict) or headers.get("task") not in OUR_TASKS:
            return False
        try:
            payload = message.payload
        except Exception:  # let Celery's handler route it to the decode/invalid hooks
            return False
        problem = body_problem(payload)
        if problem is None:
            headers.update(call_reprs(payload[1]))
            return False
        self._dead(message, Reason.BAD_BODY, problem)
        self._drop(message)
        return True
