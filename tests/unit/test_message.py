"""The hand-built protocol-v2 message against the one Celery itself builds."""

from __future__ import annotations

import base64
import json

from celery import Celery

from cancelq.contract import QUEUE, TASK_NAME
from cancelq.producers.message import build_message

FIELDS = {"account": "main", "category": "spot", "symbol": "BTCUSDT", "orderLinkId": "l1"}


def test_body_is_base64_json_of_args_kwargs_embed() -> None:
    message = build_message(FIELDS, "rid-1")
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert args == []
    assert kwargs == FIELDS
    assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}
    assert message["content-type"] == "application/json"
    assert message["properties"]["body_encoding"] == "base64"
    assert message["properties"]["delivery_info"]["routing_key"] == QUEUE


def test_headers_are_celerys_protocol_v2_headers() -> None:
    app = Celery(set_as_current=False)
    celery_message = app.amqp.as_task_v2("rid-1", TASK_NAME, args=(), kwargs=FIELDS)
    ours = build_message(FIELDS, "rid-1")["headers"]
    optional = {"replaced_task_nesting", "stamped_headers", "stamps"}  # newer Celery extras
    assert set(celery_message.headers) - optional <= set(ours)
    assert ours["task"] == TASK_NAME
    assert ours["id"] == ours["root_id"] == "rid-1"
    for name in ("eta", "expires", "group", "parent_id", "shadow", "retries", "timelimit"):
        assert ours[name] == celery_message.headers[name], name
