"""The Celery protocol-v2 message, built by hand: the language-neutral wire contract.

A message is one JSON document pushed (``LPUSH``) onto the Redis list named like the queue
(``cancelq``). Its ``body`` is the base64 of the JSON array ``[args, kwargs, embed]`` with
``args = []`` and ``kwargs`` the cancel fields. Any language can build it; the README shows one.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from cancelq.contract import QUEUE, TASK_NAME

_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
EMBED: Mapping[str, None] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def build_message(
    fields: Mapping[str, Any], task_id: str, queue: str = QUEUE, task: str = TASK_NAME
) -> dict[str, Any]:
    """The envelope kombu's Redis transport reads, for ``cancelq.cancel_order(**fields)``."""
    body = json.dumps([[], dict(fields), dict(EMBED)], separators=(",", ":"))
    return {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": "()",
            "kwargsrepr": _kwargs_repr(fields),
            "origin": _ORIGIN,
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def encode_message(
    fields: Mapping[str, Any], task_id: str, queue: str = QUEUE, task: str = TASK_NAME
) -> str:
    return json.dumps(build_message(fields, task_id, queue, task), separators=(",", ":"))


def _kwargs_repr(fields: Mapping[str, Any]) -> str:
    """What Celery logs of the call: the ids only, short."""
    shown = {k: fields[k] for k in ("account", "orderId", "orderLinkId") if k in fields}
    return repr(shown)[:200]
