"""The checks the framework overrides apply to every queue item, as pure functions (no kombu, no
Celery): the kombu envelope, the protocol-v2 body, protocol v1, and what Celery may log."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cancelq.worker.envelopes import (
    MAX_MESSAGE_BYTES,
    as_text,
    body_problem,
    call_reprs,
    envelope_problem,
    header_id,
    is_protocol_v1,
    oversized,
    raw_text,
    v1_request_id,
)

ENVELOPE: dict[str, Any] = {
    "body": "W1tdLCB7fSwge31d",
    "content-type": "application/json",
    "content-encoding": "utf-8",
    "headers": {"task": "cancelq.cancel_order", "id": "req-1"},
    "properties": {
        "delivery_tag": "tag-1",
        "delivery_info": {"exchange": "", "routing_key": "cancelq"},
        "body_encoding": "base64",
    },
}


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """ENVELOPE with the field at ``path`` set to ``value`` (``...`` deletes it)."""
    payload = copy.deepcopy(ENVELOPE)
    target = payload
    for name in path[:-1]:
        target = target[name]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


def test_a_kombu_envelope_passes() -> None:
    assert envelope_problem(ENVELOPE) is None
    assert envelope_problem(changed(("body",), None)) is None  # kombu allows a null body


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ([1, 2, 3], "not a JSON object"),
        ("text", "not a JSON object"),
        (changed(("headers",), ...), "headers: not an object"),
        (changed(("headers",), []), "headers: not an object"),
        (changed(("body",), 42), "body: not a string"),
        (changed(("content-type",), ["json"]), "content-type: not a string"),
        (changed(("properties",), "x"), "properties: not an object"),
        (
            changed(("properties", "delivery_tag"), 7),
            "properties: delivery_tag or delivery_info missing",
        ),
        (
            changed(("properties", "delivery_info"), ...),
            "properties: delivery_tag or delivery_info missing",
        ),
        (
            changed(("properties", "delivery_info", "routing_key"), None),
            "delivery_info: exchange or routing_key missing",
        ),
        (changed(("properties", "body_encoding"), 1), "body_encoding: not a string"),
    ],
)
def test_what_is_not_an_envelope_says_why(payload: object, problem: str) -> None:
    assert envelope_problem(payload) == problem


def test_the_request_id_of_an_envelope_is_its_task_id() -> None:
    assert header_id(ENVELOPE) == "req-1"
    assert header_id(changed(("headers", "task"), "cancelq.submit")) is None  # internal ids
    assert header_id(changed(("headers", "id"), 5)) is None
    assert header_id("not a dict") is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([[], {"account": "main"}, {}], None),
        (((), {}, None), None),
        ({"task": "x"}, "body: not [args, kwargs, embed]"),
        ([[], {}], "body: not [args, kwargs, embed]"),
        (["a", {}, {}], "body: args not an array"),
        ([[], [], {}], "body: kwargs not an object"),
        ([[], {}, []], "body: embed not an object"),
    ],
)
def test_a_protocol_v2_body_is_args_kwargs_embed(body: object, problem: str | None) -> None:
    assert body_problem(body) == problem


def test_protocol_v1_is_told_apart_by_its_headers_and_body() -> None:
    v1_body = {"task": "cancelq.cancel_order", "id": "t-1", "args": [], "kwargs": {}}
    assert is_protocol_v1({}, v1_body)
    assert not is_protocol_v1({"task": "cancelq.cancel_order"}, v1_body)  # v2 headers
    assert not is_protocol_v1({}, [[], {}, {}])  # a v2 body
    assert not is_protocol_v1(None, v1_body)


def test_a_protocol_v1_request_id_prefers_the_requests_own() -> None:
    assert v1_request_id({"task": "t", "id": "task-id", "kwargs": {"requestId": "r-9"}}) == "r-9"
    assert v1_request_id({"task": "t", "id": "task-id", "kwargs": {}}) == "task-id"
    assert v1_request_id({"task": "t", "id": 7, "kwargs": "x"}) is None
    assert v1_request_id({"task": "cancelq.submit", "id": "d-1"}) is None


def test_celery_may_log_the_ids_of_a_call_and_nothing_else() -> None:
    shown = call_reprs(
        {"account": "main", "orderId": "1", "api_secret": "s3cr3t", "requestId": 5, "x": "y"}
    )
    assert shown["argsrepr"] == "()"
    assert shown["kwargsrepr"] == repr({"account": "main", "orderId": "1"})
    assert "s3cr3t" not in str(shown)
    assert len(call_reprs({"orderLinkId": "x" * 500})["kwargsrepr"]) == 200


def test_size_limit_and_text_helpers() -> None:
    assert not oversized(b"x" * MAX_MESSAGE_BYTES)
    assert oversized(b"x" * (MAX_MESSAGE_BYTES + 1))
    assert as_text(b"caf\xc3\xa9 \xff") == "café \ufffd"
    assert raw_text({"a": 1}) == '{"a": 1}'
    assert raw_text(None) is None
    assert raw_text({"a": object()}) is None
