"""What a queue item must be before the worker reads it as a task call: pure checks of kombu's
message envelope and of Celery's protocol-v2 body, with no kombu or Celery import.

The host's framework overrides (``worker/host/kombu_channel.py`` for raw items,
``worker/host/celery_consumer.py`` for decoded messages) ask these what is wrong with a
message; each answer is the ``detail`` of its dead letter (``worker/dead_letters.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from cancelq.contract import TASK_NAME
from cancelq.worker.ratelimit.lanes import SUBMIT_TASK

#: A cancel is well under 1 KiB and a dispatcher's batch message under 16 KiB: anything beyond
#: this is not read at all (a huge body must not cost the worker its memory).
MAX_MESSAGE_BYTES: Final = 256 * 1024
#: How much of an oversized item a dead letter's preview is made from.
PREVIEW_BYTES: Final = 4096
#: The tasks whose bodies are checked before a pool slot runs them.
OUR_TASKS: Final = frozenset({TASK_NAME, SUBMIT_TASK})
#: The fields Celery may log of a call (see :func:`call_reprs`).
SHOWN_FIELDS: Final = ("account", "orderId", "orderLinkId", "requestId")
#: The detail of a protocol v1 dead letter: what the producer must change.
PROTOCOL_V1_DETAIL: Final = "Celery protocol v1 message: publish protocol v2 (task name in headers)"


def oversized(item: bytes | str) -> bool:
    """Too large to be read at all (see :data:`MAX_MESSAGE_BYTES`)."""
    return len(item) > MAX_MESSAGE_BYTES


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


def header_id(payload: object) -> str | None:
    """The request id an envelope's headers name (none for the internal task, whose ids are
    not requests)."""
    headers = payload.get("headers") if isinstance(payload, dict) else None
    if not isinstance(headers, dict) or headers.get("task") == SUBMIT_TASK:
        return None
    value = headers.get("id")
    return value if isinstance(value, str) else None


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


def is_protocol_v1(headers: object, payload: object) -> bool:
    """A Celery protocol v1 message: no ``task`` header, the body an object naming ``task``
    (as older clients such as node-celery send)."""
    if not isinstance(headers, dict) or "task" in headers:
        return False
    return isinstance(payload, Mapping) and "task" in payload


def v1_request_id(body: Mapping[str, Any]) -> str | None:
    """The request a protocol v1 body names: its ``requestId`` keyword, else its task ``id``
    (none for the internal task, whose ids are not requests)."""
    if body.get("task") == SUBMIT_TASK:
        return None
    kwargs = body.get("kwargs")
    named = kwargs.get("requestId") if isinstance(kwargs, Mapping) else None
    found = named if isinstance(named, str) else body.get("id")
    return found if isinstance(found, str) else None


def call_reprs(kwargs: Mapping[str, Any]) -> dict[str, str]:
    """What Celery may log of a call (``argsrepr``, ``kwargsrepr``: ``Task ... received``, the
    ``data`` of a JSON log line): the ids only, never what a producer put in the message (a
    stray secret field)."""
    shown = {k: kwargs[k] for k in SHOWN_FIELDS if isinstance(kwargs.get(k), str)}
    return {"argsrepr": "()", "kwargsrepr": repr(shown)[:200]}


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def raw_text(raw: object) -> str | None:
    """A decoded envelope as JSON text for a dead letter (None when it is not JSON-able)."""
    try:
        return json.dumps(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
