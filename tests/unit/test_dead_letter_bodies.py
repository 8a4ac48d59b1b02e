"""What a dead letter keeps of its message for a replay, and how the replay reads it back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cancelq.cli.replay import judge
from cancelq.worker.dead_letter_bodies import (
    MAX_BODY_BYTES,
    KeptBody,
    keep_body,
    read_call,
)
from cancelq.worker.dead_letter_log import DeadLetter

pytestmark = pytest.mark.timeout(10)

CANCEL = {
    "account": "main",
    "category": "spot",
    "symbol": "BTCUSDT",
    "orderLinkId": "dl-1",
    "requestId": "dl-req-1",
}
SECRET = "s3cr3t-value-0123456789abcdef"


def envelope(body: bytes, task: str | None = "cancelq.cancel_order", **changes: Any) -> str:
    headers: dict[str, Any] = {"lang": "py", "id": "dl-req-1"}
    if task is not None:
        headers["task"] = task
    message: dict[str, Any] = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "t-1",
            "delivery_info": {"exchange": "", "routing_key": "cancelq"},
        },
    }
    message.update(changes)
    return json.dumps(message)


def call(kwargs: Any, args: Any = ()) -> bytes:
    return json.dumps([list(args), kwargs, {"callbacks": None}]).encode()


def letter(kept: KeptBody) -> DeadLetter:
    return DeadLetter(
        id="1-0",
        reason="content_disallowed",
        time=0,
        pod="host-1-abcdef",
        task=kept.task,
        content_type="text/plain",
        size=0,
        request_id="dl-req-1",
        detail="",
        preview="",
        body=kept.body,
        unreplayable=kept.unreplayable,
    )


def test_credential_named_fields_are_removed_at_any_depth_before_storing() -> None:
    kwargs = {**CANCEL, "apiSecret": SECRET, "meta": {"token": SECRET, "note": "kept"}}
    kept = keep_body(envelope(call(kwargs)))
    assert kept.unreplayable == ""
    assert kept.task == "cancelq.cancel_order"
    assert SECRET not in kept.body
    assert "apiSecret" not in kept.body
    assert read_call(kept.task, kept.body).fields == {**CANCEL, "meta": {"note": "kept"}}


def test_a_configured_secret_anywhere_means_no_body_is_kept() -> None:
    kept = keep_body(envelope(call({**CANCEL, "note": SECRET})), secrets=[SECRET])
    assert kept.body == ""
    assert kept.unreplayable.startswith("holds a configured secret")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x80\x05}\x94.", "not JSON: the queue item"),  # a pickle pushed as the item
        (
            envelope(b"\x80\x05}\x94.", **{"content-type": "application/x-python-serialize"}),
            "not JSON: the body (content type application/x-python-serialize)",
        ),
        (envelope(b"x" * (MAX_BODY_BYTES + 1)), "too large to replay"),
        (envelope(call(json.loads("[" * 20 + "]" * 20))), "nested deeper than 16"),
        ("[" * 100_000, "not JSON: the queue item"),
        (None, "no message"),
    ],
)
def test_what_is_not_json_or_too_large_keeps_no_body(raw: Any, why: str) -> None:
    kept = keep_body(raw)
    assert kept.body == ""
    assert kept.unreplayable.startswith(why)


def test_protocol_v1_and_bare_fields_are_read_as_the_cancel_they_hold() -> None:
    v1 = {"task": "cancelq.cancel_order", "id": "v1-1", "args": [], "kwargs": CANCEL}
    kept = keep_body(envelope(json.dumps(v1).encode(), task=None, headers={}))
    assert kept.task == "cancelq.cancel_order"
    assert read_call(kept.task, kept.body).fields == CANCEL
    bare = keep_body(json.dumps(CANCEL))
    assert read_call(bare.task, bare.body).fields == CANCEL
    positional = keep_body(envelope(call({}, args=[CANCEL])))
    assert read_call(positional.task, positional.body).fields == CANCEL


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ("cancelq.kill", "task cancelq.kill: not replayed"),
        ("cancelq.submit", "task cancelq.submit: not replayed"),
        ("engine.other", "task 'engine.other': not cancelq.cancel_order"),
    ],
)
def test_only_cancels_are_replayed(task: str, problem: str) -> None:
    kept = keep_body(envelope(call(CANCEL), task=task))
    found = read_call(kept.task, kept.body)
    assert found.fields is None
    assert found.problem.startswith(problem)


def test_the_replay_verdict_names_the_rule_or_the_cancel_it_sends() -> None:
    good = judge(letter(keep_body(envelope(call({**CANCEL, "enqueuedAt": 1, "x": 1})))))
    assert good.kind == "replayable"
    assert good.was == "dl-req-1"
    # only the contract's fields; a new requestId and enqueuedAt are given by the producer
    assert good.cancel == {k: v for k, v in CANCEL.items() if k != "requestId"}
    bad = judge(letter(keep_body(envelope(call(refused := {**CANCEL, "symbol": "btc"})))))
    assert bad.kind == "invalid"
    assert any(rule.startswith("symbol:") for rule in bad.rules)
    assert bad.seen["symbol"] == '"btc"'
    assert set(bad.seen) == set(refused)
    garbage = judge(letter(keep_body(b"garbage")))
    assert (garbage.kind, garbage.why) == ("not_replayable", "not JSON: the queue item")
