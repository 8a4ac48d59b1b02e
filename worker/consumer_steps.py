"""Where bad input meets the worker: every message that cannot be read as a cancel becomes a
dead letter (``worker/dead_letters.py``) and the worker keeps consuming.

Two layers, because Celery's defaults lose such messages or stop the worker:

* :class:`Transport` (kombu's Redis transport with a checking channel). kombu parses each item
  it pops off the list; a non-JSON item (garbage pushed with plain Redis commands) or a JSON
  document that is not a message envelope raises inside the event loop and ends the worker
  ("Unrecoverable error"), the item already gone. Here such an item is a dead letter instead.
* :class:`Consumer` (Celery's consumer with recording hooks). By default a body that does not
  decode is acked and only logged, an unknown task, a message without a task name, a pickle
  (``ContentDisallowed``) and an invalid task are rejected and dropped. Here each is recorded
  first, and a cancel whose body is not ``[args, {kwargs}, embed]`` is refused before a pool
  slot runs it (Celery would fail the task and drop it).
  A Celery protocol v1 message (no ``task`` header; the body an object naming ``task``, ``id``,
  ``args``, ``kwargs``, as older clients such as node-celery send) is a dead letter too: Celery
  would convert and run it, but the contract is protocol v2 (the task name and id in the
  headers, where dead letters, outcomes and logs read them).

:func:`install` binds the recorder; ``worker/app.py`` names both classes in the Celery config.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from queue import Empty
from typing import Any, Final

from celery.signals import worker_shutting_down
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.exceptions import ContentDisallowed
from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads

from cancelq.contract import TASK_NAME
from cancelq.worker.dead_letters import DeadLetters, Reason
from cancelq.worker.ratelimit.lanes import SUBMIT_TASK

log = logging.getLogger(__name__)

#: A cancel is well under 1 KiB and a dispatcher's batch message under 16 KiB: anything beyond
#: this is not read at all (a huge body must not cost the worker its memory).
MAX_MESSAGE_BYTES: Final = 256 * 1024
OUR_TASKS: Final = frozenset({TASK_NAME, SUBMIT_TASK})
#: The fields Celery may log of a call (see :func:`_safe_reprs`).
SHOWN_FIELDS: Final = ("account", "orderId", "orderLinkId", "requestId")
#: How much of an oversized item a dead letter's preview is made from.
PREVIEW_BYTES: Final = 4096
#: The detail of a protocol v1 dead letter: what the producer must change.
PROTOCOL_V1_DETAIL: Final = "Celery protocol v1 message: publish protocol v2 (task name in headers)"


class _Bound:
    """The recorder of this process (set by :func:`install`; None: log only)."""

    recorder: DeadLetters | None = None


def install(recorder: DeadLetters) -> None:
    _Bound.recorder = recorder


def _record(
    reason: Reason,
    raw: bytes | str | None,
    *,
    content_type: str | None = None,
    request_id: str | None = None,
    detail: str = "",
) -> None:
    recorder = _Bound.recorder
    try:
        if recorder is None:
            log.warning("dead letter: %s (no recorder bound)", reason.value)
            return
        recorder.record(
            reason, raw, content_type=content_type, request_id=request_id, detail=detail
        )
    except Exception:  # recording must never stop the consumer
        log.exception("dead letter not recorded")


# -- transport layer: raw items ---------------------------------------------------------------


def envelope_problem(payload: object) -> str | None:
    """Why ``payload`` is not a kombu message envelope kombu can deliver, ack and restore."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    if not isinstance(payload.get("headers"), dict):
        return "headers: not an object"
    for name in ("body", "content-type", "content-encoding"):
        if not isinstance(payload.get(name), str | None):
            return f"{name}: not a string"
    return _properties_problem(payload.get("properties"))


def _properties_problem(props: object) -> str | None:
    if not isinstance(props, dict):
        return "properties: not an object"
    info = props.get("delivery_info")
    if not isinstance(props.get("delivery_tag"), str) or not isinstance(info, dict):
        return "properties: delivery_tag or delivery_info missing"
    if not isinstance(info.get("exchange"), str) or not isinstance(info.get("routing_key"), str):
        return "delivery_info: exchange or routing_key missing"
    if not isinstance(props.get("body_encoding"), str | None):
        return "body_encoding: not a string"
    return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _header_id(payload: object) -> str | None:
    headers = payload.get("headers") if isinstance(payload, dict) else None
    if not isinstance(headers, dict) or headers.get("task") == SUBMIT_TASK:
        return None
    value = headers.get("id")
    return value if isinstance(value, str) else None


class Channel(kombu_redis.Channel):
    """kombu's Redis channel that turns unreadable queue items into dead letters."""

    def _readable(self, item: bytes | str) -> dict[str, Any] | None:
        """The envelope of a popped item, or None after recording it as a dead letter."""
        if len(item) > MAX_MESSAGE_BYTES:
            _record(Reason.TOO_LARGE, item[:PREVIEW_BYTES], detail=f"{len(item)} bytes")
            return None
        try:
            payload = loads(_text(item))  # type: ignore[no-untyped-call]
        except (ValueError, TypeError) as exc:
            _record(Reason.NOT_JSON, item, detail=type(exc).__name__)
            return None
        problem = envelope_problem(payload)
        if problem is None:
            try:
                # the body must decode (base64 ...)
                self.Message(payload, channel=self)  # type: ignore[no-untyped-call]
            except Exception as exc:
                problem = f"body: {type(exc).__name__}"
        if problem is not None:
            content_type = payload.get("content-type") if isinstance(payload, dict) else None
            _record(
                Reason.BAD_ENVELOPE,
                item,
                content_type=content_type if isinstance(content_type, str) else None,
                request_id=_header_id(payload),
                detail=problem,
            )
            return None
        result: dict[str, Any] = payload
        return result

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's ``_brpop_read`` (5.7), with the popped item checked before delivery."""
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = _text(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._readable(item)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush: Callable[[], None] | None = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()


class Transport(kombu_redis.Transport):
    """kombu's Redis transport (``redis://`` and ``rediss://``) with the checking channel."""

    Channel = Channel


# -- consumer layer: envelopes ----------------------------------------------------------------


def body_problem(payload: object) -> str | None:
    """Why a decoded protocol-v2 body is not ``[args, {kwargs}, embed]``."""
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return "body: not [args, kwargs, embed]"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return "body: args not an array"
    if not isinstance(kwargs, Mapping):
        return "body: kwargs not an object"
    if not isinstance(embed, Mapping | None):
        return "body: embed not an object"
    return None


def v1_request_id(body: Mapping[str, Any]) -> str | None:
    """The request a protocol v1 body names: its ``requestId`` keyword, else its task ``id``
    (none for the internal task, whose ids are not requests)."""
    if body.get("task") == SUBMIT_TASK:
        return None
    kwargs = body.get("kwargs")
    named = kwargs.get("requestId") if isinstance(kwargs, Mapping) else None
    found = named if isinstance(named, str) else body.get("id")
    return found if isinstance(found, str) else None


def _message_facts(message: Any) -> tuple[str | None, str | None, object]:
    """(content type, request id, raw envelope) of a kombu message, defensively."""
    content_type = getattr(message, "content_type", None)
    raw = getattr(message, "_raw", None)
    return (content_type if isinstance(content_type, str) else None, _header_id(raw), raw)


def _raw_text(raw: object) -> str | None:
    try:
        return json.dumps(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _safe_reprs(headers: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """What Celery logs of the call (``Task ... received/succeeded``, the ``data`` of a JSON log
    line): the ids only, never what a producer put in the message (a stray secret field)."""
    shown = {k: kwargs[k] for k in SHOWN_FIELDS if isinstance(kwargs.get(k), str)}
    headers["argsrepr"] = "()"
    headers["kwargsrepr"] = repr(shown)[:200]


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer; every message it would drop is recorded first."""

    def _dead(self, message: Any, reason: Reason, detail: str) -> None:
        content_type, request_id, raw = _message_facts(message)
        _record(
            reason,
            _raw_text(raw),
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
        if not isinstance(payload, Mapping) or "task" not in payload:
            return False
        content_type, _, raw = _message_facts(message)
        _record(
            Reason.PROTOCOL_V1,
            _raw_text(raw),
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
            _safe_reprs(headers, payload[1])
            return False
        self._dead(message, Reason.BAD_BODY, problem)
        self._drop(message)
        return True


# -- shutdown: a hard deadline ----------------------------------------------------------------

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
