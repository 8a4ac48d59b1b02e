"""Issue 14, end to end: messages drawn by hypothesis, pushed raw onto the queue (protocol v2,
no producer library validating them first), taken by a real worker and sent to the simulator.
Every message with a valid identity cancels its order whatever its side fields hold; every one
without a valid identity ends ``rejected`` naming the rule, and nothing of it reaches the
exchange."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cancelq.contract import RULES, CancelRequest, normalise
from cancelq.outcomes import Status
from cancelq.producers.message import build_message
from tests.support import Stack, cancel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=4,
)
noise = st.dictionaries(
    st.sampled_from(["enqueuedAt", "requestId", "strategy", "schema_v", "x-trace", "orderFilter"]),
    values,
    max_size=4,
).map(lambda d: {k: v for k, v in d.items() if k != "orderFilter" or v is None})
breakers = st.sampled_from(
    [
        ({"account": "no such alias!"}, "account"),
        ({"category": "futures"}, "category"),
        ({"symbol": "btcusdt"}, "symbol"),
        ({"orderLinkId": 12345}, "orderLinkId"),
        ({"orderLinkId": None}, "orderId/orderLinkId"),
        ({"orderFilter": "StopOrder", "category": "linear"}, "orderFilter"),
    ]
)


def push(stack: Stack, fields: dict[str, Any]) -> str:
    """LPUSH one raw message; the id its outcome is recorded under."""
    task_id = f"prop-{uuid.uuid4().hex[:12]}"
    data, _ = normalise(dict(fields), CancelRequest)
    if "requestId" in fields and data.get("requestId") is not None:
        fields = {**fields, "requestId": task_id}  # a valid drawn id: keep it unique
    stack.redis.lpush("cancelq", json.dumps(build_message(fields, task_id)))
    return task_id


def test_drawn_messages_are_sent_when_they_identify_the_order(stack: Stack) -> None:
    # the draws run inside, so a falsifying example never prints the stack (its secrets)
    @settings(
        max_examples=3,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        good=st.lists(noise, min_size=12, max_size=12),
        bad=st.lists(st.tuples(noise, breakers), min_size=6, max_size=6),
    )
    def drawn(good: list[dict[str, Any]], bad: list[tuple[dict[str, Any], Any]]) -> None:
        check(stack, good, bad)

    drawn()


def check(stack: Stack, good: list[dict[str, Any]], bad: list[tuple[dict[str, Any], Any]]) -> None:
    sent: dict[str, str] = {}
    for side in good:
        link = f"p-{uuid.uuid4().hex[:10]}"
        order_id = stack.place(order_link_id=link)
        sent[push(stack, {**side, **cancel(orderLinkId=link)})] = order_id
    refused: dict[str, str] = {}
    for side, (change, rule) in bad:
        link = f"p-{uuid.uuid4().hex[:10]}"
        refused[push(stack, {**side, **cancel(orderLinkId=link), **change})] = rule
    outcomes = stack.producer.wait_many([*sent, *refused], timeout_s=30)
    for rid, order_id in sent.items():
        assert outcomes[rid].status is Status.CANCELLED, outcomes[rid]
        assert stack.order_status(order_id) == "Cancelled"
    for rid, rule in refused.items():
        outcome = outcomes[rid]
        assert outcome.status is Status.REJECTED
        assert outcome.retCode is None
        assert f"{rule}: " in (outcome.reason or "")
        assert rule not in RULES or RULES[rule] in (outcome.reason or "")
