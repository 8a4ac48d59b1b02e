"""Celery protocol v1 messages (older clients such as the npm package ``node-celery``): the task
name, id, args and kwargs in the body, no ``task`` header. Celery would convert and run them;
cancelq makes each a ``protocol_v1`` dead letter, answers the request it names with a
``rejected`` outcome, never sends it to the exchange and keeps consuming.

The message is written by hand after Celery's documented v1 format (``task``, ``id``, ``args``,
``kwargs``, ``retries``, ``eta``, ``expires``, extensions), in the kombu Redis envelope that
node-celery pushes (empty headers, base64 body), and pushed with a plain ``LPUSH``.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from cancelq.keys import Keys
from cancelq.outcomes import Status
from cancelq.worker.pods import unacked_total
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DEAD_LETTERS = "cancelq:dead-letters"
V1_DETAIL = "Celery protocol v1 message: publish protocol v2 (task name in headers)"


def v1_body(task: str, task_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A protocol v1 body: every field of the documented format, keyword arguments only."""
    return {
        "task": task,
        "id": task_id,
        "args": [],
        "kwargs": kwargs,
        "retries": 0,
        "eta": None,
        "expires": None,
        "utc": True,
        "callbacks": None,
        "errbacks": None,
        "timelimit": [None, None],
        "taskset": None,
        "chord": None,
    }


def v1_envelope(body: dict[str, Any]) -> str:
    """The kombu Redis envelope of a v1 message: empty headers, the body base64-encoded."""
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "headers": {},
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "properties": {
                "body_encoding": "base64",
                "correlation_id": body["id"],
                "reply_to": str(uuid.uuid4()),
                "delivery_info": {"exchange": "cancelq", "priority": 0, "routing_key": "cancelq"},
                "delivery_mode": 2,
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def dead_letters(stack: Stack) -> list[dict[str, str]]:
    return [fields for _, fields in stack.redis.xrange(DEAD_LETTERS)]


def test_protocol_v1_messages_are_dead_letters_never_executed(stack: Stack) -> None:
    named = stack.place(order_link_id="v1-named")
    by_task_id = stack.place(order_link_id="v1-task-id")
    cancels = [
        v1_body(
            "cancelq.cancel_order",
            "v1-task-1",
            {
                "account": "main",
                "category": "spot",
                "symbol": "BTCUSDT",
                "orderLinkId": "v1-named",
                "requestId": "v1-req-1",
            },
        ),
        v1_body(
            "cancelq.cancel_order",
            "v1-task-2",
            {"account": "main", "category": "spot", "symbol": "BTCUSDT", "orderId": by_task_id},
        ),
        v1_body("other.task", "v1-task-3", {}),
    ]
    for body in cancels:
        stack.redis.lpush("cancelq", v1_envelope(body))

    assert wait_until(lambda: len(dead_letters(stack)) == 3, 15)
    letters = dead_letters(stack)
    assert {d["reason"] for d in letters} == {"protocol_v1"}
    assert {d["detail"] for d in letters} == {V1_DETAIL}
    assert sorted(d["requestId"] for d in letters) == ["v1-req-1", "v1-task-2", "v1-task-3"]
    for request_id in ("v1-req-1", "v1-task-2"):
        outcome = stack.producer.wait(request_id, 5)
        assert outcome.status is Status.REJECTED
        assert outcome.reason == "message: protocol_v1"
    # never executed: both orders still open at the exchange; nothing left queued or unacked
    assert stack.order_status(named) == "New"
    assert stack.order_status(by_task_id) == "New"
    assert stack.redis.llen("cancelq") == 0
    assert wait_until(lambda: unacked_total(stack.redis, Keys()) == 0, 5)


def test_the_worker_keeps_consuming_after_protocol_v1_messages(stack: Stack) -> None:
    worker = stack.workers[0]
    pid = worker.pid
    body = v1_body("cancelq.cancel_order", "v1-then-v2", {"account": "main"})
    stack.redis.lpush("cancelq", v1_envelope(body))
    order_id = stack.place(order_link_id="after-v1")
    rid = stack.producer.enqueue(
        account="main", category="spot", symbol="BTCUSDT", orderLinkId="after-v1"
    )
    assert stack.producer.wait(rid, 15).status is Status.CANCELLED
    assert stack.order_status(order_id) == "Cancelled"
    assert [d["reason"] for d in dead_letters(stack)] == ["protocol_v1"]
    assert worker.alive()
    assert worker.pid == pid
    assert "Unrecoverable error" not in worker.log_text()
