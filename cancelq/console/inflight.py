"""What worker processes hold right now, per lane: read from kombu's unacked hashes.

Each value is kombu's ``[message, exchange, routing_key]`` with the Celery protocol-v2 message;
a ``cancelq.cancel_order`` counts one for its (account, category), a dispatched
``cancelq.submit`` batch counts its items for its lane. Anything unreadable is skipped: this is
a view, not a contract check.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from cancelq.replies import as_text

CANCEL_TASK = "cancelq.cancel_order"
SUBMIT_TASK = "cancelq.submit"


def count_in_flight(values: Iterable[object]) -> Counter[str]:
    """Lane (``account:category``) -> cancels held, from the values of unacked hashes."""
    lanes: Counter[str] = Counter()
    for value in values:
        try:
            lane, n = _lane_of(*_task_and_kwargs(value))
        except (ValueError, TypeError, KeyError, IndexError):
            continue
        if lane:
            lanes[lane] += n
    return lanes


def held_fields(value: object) -> list[dict[str, Any]]:
    """The fields of every cancel one unacked-hash value holds (a dispatched batch, item by
    item); [] for another task or anything unreadable."""
    try:
        task, kwargs = _task_and_kwargs(value)
        if task == CANCEL_TASK:
            return [dict(kwargs)]
        if task == SUBMIT_TASK:
            return [dict(item["fields"]) for item in kwargs["items"]]
    except (ValueError, TypeError, KeyError, IndexError):
        pass
    return []


def _task_and_kwargs(value: object) -> tuple[str, dict[str, Any]]:
    message = json.loads(as_text(value))[0]
    body: Any = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs = json.loads(body)[:2]
    if not kwargs and args and isinstance(args[0], dict):
        kwargs = args[0]
    return str(message["headers"]["task"]), kwargs


def _lane_of(task: str, kwargs: dict[str, Any]) -> tuple[str, int]:
    if task == CANCEL_TASK:
        return f"{kwargs['account']}:{kwargs['category']}", 1
    if task == SUBMIT_TASK:
        return str(kwargs["lane"]), len(kwargs["items"])
    return "", 0
