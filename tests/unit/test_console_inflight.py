"""Reading what worker processes hold from kombu's unacked-hash values (``top``'s in-flight
column, the takeover tests and benchmark): a cancel, a dispatched batch, anything else."""

from __future__ import annotations

import base64
import json

from cancelq.console.inflight import count_in_flight, held_fields
from cancelq.producers.message import encode_message

CANCEL = {"account": "main", "category": "linear", "symbol": "BTCUSDT", "orderLinkId": "l-1"}


def unacked(message: str | dict[str, object]) -> str:
    """kombu's unacked-hash value: [message, exchange, routing key]."""
    envelope = json.loads(message) if isinstance(message, str) else message
    return json.dumps([envelope, "", "cancelq"])


def batch(lane: str, links: list[str]) -> dict[str, object]:
    items = [{"requestId": link, "fields": {**CANCEL, "orderLinkId": link}} for link in links]
    body = json.dumps([[], {"lane": lane, "items": items, "spent": "d1", "units": len(items)}, {}])
    return {"body": body, "headers": {"task": "cancelq.submit", "id": "d1"}, "properties": {}}


def test_a_producers_cancel_message_is_one_cancel_of_its_lane() -> None:
    value = unacked(encode_message(CANCEL, "t1"))
    assert [f["orderLinkId"] for f in held_fields(value)] == ["l-1"]
    assert count_in_flight([value]) == {"main:linear": 1}


def test_a_dispatched_batch_holds_each_of_its_items() -> None:
    value = unacked(batch("main:spot", ["a", "b", "c"]))
    assert [f["orderLinkId"] for f in held_fields(value)] == ["a", "b", "c"]
    assert count_in_flight([value.encode()]) == {"main:spot": 3}


def test_base64_bodies_are_read_too() -> None:
    message = batch("main:spot", ["a"])
    message["body"] = base64.b64encode(str(message["body"]).encode()).decode()
    message["properties"] = {"body_encoding": "base64"}
    assert [f["orderLinkId"] for f in held_fields(unacked(message))] == ["a"]


def test_other_tasks_and_garbage_hold_no_cancel() -> None:
    other = {"body": "[[], {}, {}]", "headers": {"task": "other.task"}, "properties": {}}
    for value in (unacked(other), "not json", json.dumps([{"body": "[]"}, "", "q"])):
        assert held_fields(value) == []
        assert count_in_flight([value]) == {}
