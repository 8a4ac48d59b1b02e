"""Issue 5, proof 5: fuzz the queue. At least 2,000 hypothesis-generated messages (bad field
types, missing or over-long ids, unknown categories and accounts, bodies that are not a task
call, pickle and other content types, unknown tasks, broken envelopes) plus raw bytes pushed
with plain Redis commands and huge items: the worker never crashes and every message is
accounted for (an outcome by its request id, or a dead letter)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import SECRETS, assert_no_secrets, fault_stack, leftovers
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

GENERATED = 2200
DEAD_LETTERS = "cancelq:dead-letters"
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)
LINK_TEXT = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=60)
KWARGS = st.fixed_dictionaries(
    {},
    optional={
        "account": st.one_of(st.sampled_from(["load", "slow", "nobody", ""]), VALUES),
        "category": st.one_of(st.sampled_from(["linear", "spot", "futures", "SPOT"]), VALUES),
        "symbol": st.one_of(st.sampled_from(["BTCUSDT", "btcusdt", "X" * 40]), VALUES),
        "orderId": st.one_of(LINK_TEXT, VALUES),
        "orderLinkId": st.one_of(LINK_TEXT, VALUES),
        "orderFilter": st.one_of(st.sampled_from(["Order", "StopOrder", "tpslOrder", "x"]), VALUES),
        "enqueuedAt": st.one_of(st.integers(), VALUES),
        "requestId": st.one_of(st.integers(), st.just("has space"), st.just("x" * 65)),
        "api_secret": st.sampled_from(SECRETS),
    },
)
CONTENT_TYPES = st.sampled_from(
    ["application/x-python-serialize", "application/x-yaml", "text/plain", "application/data"]
)


@dataclass(frozen=True)
class Fuzzed:
    raw: bytes
    marker: str | None  # the request id a reader can take from it, if any


def envelope(marker: str, body: bytes, **changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "cancelq.cancel_order", "id": marker, "retries": 0},
        "properties": {
            "correlation_id": marker,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "cancelq"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": f"tag-{marker}",
        },
    }
    message.update(changes)
    return message


def call_body(kwargs: object, args: object = ()) -> bytes:
    return json.dumps([args, kwargs, {"callbacks": None}]).encode()


@st.composite
def fuzzed(draw: st.DrawFn) -> Fuzzed:
    marker = f"fz-{draw(st.uuids()).hex}"
    kind = draw(
        st.sampled_from(
            ["kwargs", "kwargs", "kwargs", "body", "content", "task", "envelope", "raw"]
        )
    )
    if kind == "kwargs":
        args = draw(st.one_of(st.just(()), st.lists(SCALARS, min_size=1, max_size=2)))
        message = envelope(marker, call_body(draw(KWARGS), args))
    elif kind == "body":
        body = draw(st.one_of(st.binary(max_size=60), VALUES.map(lambda v: json.dumps(v).encode())))
        message = envelope(marker, body)
    elif kind == "content":
        message = envelope(
            marker, draw(st.binary(max_size=60)), **{"content-type": draw(CONTENT_TYPES)}
        )
    elif kind == "task":
        headers = {"id": marker, "lang": "py"}
        task = draw(st.one_of(st.none(), st.text(max_size=30), st.integers()))
        if task is not None:
            headers["task"] = task
        message = envelope(marker, call_body({}), headers=headers)
    elif kind == "envelope":
        message = envelope(marker, call_body({}))
        key = draw(
            st.sampled_from(
                ["properties", "headers", "body", "content-type", "delivery_info", "delivery_tag"]
            )
        )
        target = message["properties"] if key in {"delivery_info", "delivery_tag"} else message
        target[key] = draw(VALUES)
        if not isinstance(message["headers"], dict):
            marker = ""
    else:
        raw = draw(st.one_of(st.binary(max_size=120), VALUES.map(lambda v: json.dumps(v).encode())))
        return Fuzzed(raw, None)
    headers = message.get("headers")
    readable = isinstance(headers, dict) and headers.get("id") == marker and marker
    return Fuzzed(json.dumps(message).encode(), marker if readable else None)


def generate() -> list[Fuzzed]:
    found: list[Fuzzed] = []

    @settings(
        max_examples=GENERATED,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzzed())
    def collect(item: Fuzzed) -> None:
        found.append(item)

    collect()
    return found


def extras() -> list[Fuzzed]:
    """Beyond hypothesis: huge items, the secret in garbage, a pickle of a real cancel."""
    huge_link = "L" * 100_000
    return [
        Fuzzed(b"\x00" * 400_000, None),
        Fuzzed(b"garbage " + SECRETS[0].encode(), None),
        Fuzzed(
            json.dumps(
                envelope("fz-huge-kwargs", call_body({"account": "load", "orderLinkId": huge_link}))
            ).encode(),
            "fz-huge-kwargs",
        ),
        Fuzzed(json.dumps(envelope("fz-huge-item", b"x" * 300_000)).encode(), None),
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("fuzz")) as stack:
        yield stack
        assert_no_secrets(stack, stack.secrets)


def dead_letters(stack: Stack) -> list[dict[str, str]]:
    return [fields for _, fields in stack.redis.xrange(DEAD_LETTERS)]


def accounted(stack: Stack, items: list[Fuzzed]) -> tuple[int, int]:
    """(marked messages with an outcome or a dead letter, dead letters without a request id)."""
    letters = dead_letters(stack)
    lettered = {d["requestId"] for d in letters if d["requestId"]}
    marked = [i.marker for i in items if i.marker]
    with stack.redis.pipeline(transaction=False) as pipe:
        for marker in marked:
            pipe.exists(f"cancelq:outcome:{marker}")
        exists = pipe.execute()
    found = sum(1 for m, e in zip(marked, exists, strict=True) if e or m in lettered)
    return found, sum(1 for d in letters if not d["requestId"])


def test_fuzzed_messages_and_raw_bytes_are_all_accounted_for(stack: Stack) -> None:
    items = generate()
    assert len(items) >= 2000
    items += extras()
    worker = stack.start_worker(**FAULT_ENV)
    pid = worker.pid
    with stack.redis.pipeline(transaction=False) as pipe:
        for item in items:
            pipe.lpush("cancelq", item.raw)
        pipe.execute()
    marked = sum(1 for i in items if i.marker)
    unmarked = len(items) - marked
    assert wait_until(lambda: accounted(stack, items) == (marked, unmarked), 120, 0.5)
    assert wait_until(lambda: leftovers(stack) == {"queue": 0, "unacked": 0, "parked": 0}, 30)
    reasons: dict[str, int] = {}
    for letter in dead_letters(stack):
        reasons[letter["reason"]] = reasons.get(letter["reason"], 0) + 1
    print(
        f"\n[fuzz] pushed={len(items)} with-request-id={marked} accounted={accounted(stack, items)}"
        f" dead-letters-by-reason={reasons}"
    )
    assert worker.alive(), "the worker must never crash"
    assert worker.pid == pid
    assert "Unrecoverable error" not in worker.log_text()
    follow_up = stack.producer.enqueue(
        account="load", category="linear", symbol="BTCUSDT", orderLinkId="after-fuzz"
    )
    assert stack.producer.wait(follow_up, 30).status.value == "not_found"
    worker.stop()
