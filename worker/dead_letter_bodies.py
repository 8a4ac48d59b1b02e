"""What of a dead letter's message is kept to replay it, and how a kept body is read back.

A dead letter keeps its message's *body* (the decoded Celery body, ``[args, kwargs, embed]`` or
a protocol v1 object; for a JSON item that is not an envelope, the item itself) so that
``cancelq dead-letters replay`` can read it through the contract again. Only JSON is kept:
a body that does not parse as JSON (a pickle, garbage) is never decoded any other way and is
not replayable. Before it is stored, every mapping entry whose name could hold a credential
(:data:`~cancelq.worker.dead_letters.SECRET_NAME_RE`) is removed at any depth; a body over
:data:`MAX_BODY_BYTES`, nested deeper than :data:`MAX_DEPTH`, or still holding a configured
secret anywhere is not kept (the record says why). The kept body is for the replay only:
nothing prints it (``show`` prints the masked preview and the fields the contract reads).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cancelq.contract import KILL_TASK_NAME, TASK_NAME
from cancelq.worker.envelopes import body_problem
from cancelq.worker.ratelimit.lanes import SUBMIT_TASK

#: A cancel's body is well under 1 KiB; the stream keeps up to 10,000 records, so the bodies
#: cost at most about 80 MiB of Redis memory.
MAX_BODY_BYTES: Final = 8 * 1024
#: A cancel's body is 3 levels deep.
MAX_DEPTH: Final = 16
#: Field names that could hold a credential: dropped from kept bodies and previews.
SECRET_NAME_RE: Final = re.compile(r"(?i)key|secret|token|pass|sign|auth|cred|private|cookie")
#: Runs that look like keys, signatures or base64 blobs: masked wherever a record is shown.
KEY_LIKE_RE: Final = re.compile(r"[A-Za-z0-9+/=_-]{24,}")
NON_PRINTABLE_RE: Final = re.compile(r"[^\x20-\x7e]")
TOO_LARGE: Final = "too large to replay"
NOT_JSON: Final = "not JSON"


@dataclass(frozen=True)
class KeptBody:
    """What a dead letter keeps for its replay: ``body`` (compact JSON, credential-named fields
    removed) and the task the message names, or why nothing was kept (``unreplayable``)."""

    body: str = ""
    task: str = ""
    unreplayable: str = ""


def keep_body(raw: bytes | str | None, secrets: Iterable[str] = ()) -> KeptBody:
    """The replayable part of a queue item (or of the envelope Celery decoded)."""
    if raw is None:
        return KeptBody(unreplayable="no message")
    item = _json(raw)
    if item is _INVALID:
        return KeptBody(unreplayable=f"{NOT_JSON}: the queue item")
    if isinstance(item, dict) and ("headers" in item or "body" in item):
        return _kept(*_envelope_body(item), secrets)
    return _kept(_encoded(raw), "", "", secrets)


def _kept(body: bytes | None, task: str, why: str, secrets: Iterable[str]) -> KeptBody:
    if body is None:
        return KeptBody(task=task, unreplayable=why)
    if len(body) > MAX_BODY_BYTES:
        why = f"{TOO_LARGE} ({len(body)} bytes, over {MAX_BODY_BYTES})"
        return KeptBody(task=task, unreplayable=why)
    value = _json(body)
    if value is _INVALID:
        return KeptBody(task=task, unreplayable=f"{NOT_JSON}: the body{why}")
    if _depth(value) > MAX_DEPTH:
        return KeptBody(task=task, unreplayable=f"nested deeper than {MAX_DEPTH}")
    if not task and isinstance(value, dict) and isinstance(value.get("task"), str):
        task = value["task"][:64]  # a protocol v1 body names its task
    text = json.dumps(strip_secret_fields(value), separators=(",", ":"))
    if any(line in text for line in _secret_lines(secrets)):
        return KeptBody(task=task, unreplayable="holds a configured secret: not kept")
    return KeptBody(body=text, task=task)


def _envelope_body(envelope: Mapping[str, Any]) -> tuple[bytes | None, str, str]:
    """(body bytes or None, task name, why not / what the content type said)."""
    headers = envelope.get("headers")
    task = headers.get("task") if isinstance(headers, dict) else None
    task = task[:64] if isinstance(task, str) else ""
    content_type = envelope.get("content-type")
    said = f" (content type {content_type[:64]})" if isinstance(content_type, str) else ""
    body = envelope.get("body")
    if not isinstance(body, str):
        return None, task, "no body"
    props = envelope.get("properties")
    encoding = props.get("body_encoding") if isinstance(props, dict) else None
    if encoding is None:
        return body.encode(), task, said
    if encoding != "base64":
        return None, task, f"body encoding {str(encoding)[:32]!r}: not replayable"
    try:
        return base64.b64decode(body, validate=True), task, said
    except (binascii.Error, ValueError):
        return None, task, "body: not base64"


_INVALID: Final = object()


def _json(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, or :data:`_INVALID` (never another decoder)."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _INVALID


def _encoded(raw: bytes | str) -> bytes:
    return raw.encode() if isinstance(raw, str) else raw


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iterative: a hostile body cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def strip_secret_fields(value: Any) -> Any:
    """``value`` without any mapping entry, at any depth, whose name could be a credential."""
    if isinstance(value, dict):
        return {k: strip_secret_fields(v) for k, v in value.items() if not SECRET_NAME_RE.search(k)}
    if isinstance(value, list):
        return [strip_secret_fields(v) for v in value]
    return value


def masked(text: str) -> str:
    """``text`` with key-like runs masked and anything unprintable replaced (for display)."""
    return NON_PRINTABLE_RE.sub("?", KEY_LIKE_RE.sub("***", text))


def _secret_lines(secrets: Iterable[str]) -> list[str]:
    """Each line of each secret long enough to be recognisable (an RSA key is many lines)."""
    return [line.strip() for s in secrets for line in s.splitlines() if len(line.strip()) >= 8]


@dataclass(frozen=True)
class Call:
    """What a kept body asks for: the cancel's fields, or why it is not a cancel to replay."""

    fields: Mapping[str, Any] | None
    problem: str = ""


def read_call(task: str, body_json: str) -> Call:
    """The keyword arguments of the cancel a kept body holds (protocol v2 ``[args, kwargs,
    embed]``, a protocol v1 object, or a bare object of fields), or why there is none."""
    body = _json(body_json)
    if isinstance(body, dict) and "task" in body:  # protocol v1: the task is named in the body
        task = task or str(body["task"])[:64]
        body = [body.get("args") or [], body.get("kwargs") or {}, None]
    problem = _task_problem(task)
    if problem is not None:
        return Call(None, problem)
    if isinstance(body, dict):
        return Call(body)  # a bare object of fields pushed as the queue item
    return _call_of(body)


def _task_problem(task: str) -> str | None:
    """Only cancels are replayed (a message that names no task is read as one)."""
    if task in (KILL_TASK_NAME, SUBMIT_TASK):
        return f"task {task}: not replayed (send a new request)"
    if task not in ("", TASK_NAME):
        return f"task {task!r}: not {TASK_NAME}"
    return None


def _call_of(body: Any) -> Call:
    """The fields of a protocol-v2 body, as the worker's task reads them."""
    problem = body_problem(body)
    if problem is not None:
        return Call(None, problem)
    args, kwargs, _ = body
    if not args:
        return Call(kwargs)
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
        return Call(args[0])  # the fields as the one positional argument
    return Call(None, "body: positional arguments other than one object of fields")
