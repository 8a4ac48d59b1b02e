"""A cancel's outcome deletes the unacked record of the delivery that carried it, in the script
that records it (``finish.lua``), and the acknowledgement after the task sends nothing more:
one round trip a cancel fewer. Against a real Redis, and end to end with the real worker and a
cancel sent with Celery's own ``send_task``."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from bench.round_trips import Monitor
from cancelq.keys import Keys
from cancelq.outcomes import Outcome, Status
from cancelq.replies import as_text
from cancelq.worker.claims import ClaimStore
from tests.integration.test_celery_send_task import send_task
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
KEYS = Keys()
POD = "pod-a"
TAG = "tag-1"


def holding(client: redis.Redis, tag: str = TAG) -> tuple[bool, bool]:
    """(in the unacked hash, in the unacked index) of pod ``POD``."""
    return (
        bool(client.hexists(KEYS.pod_unacked(POD), tag)),
        client.zscore(KEYS.pod_unacked_index(POD), tag) is not None,
    )


@pytest.fixture
def held(client: redis.Redis) -> redis.Redis:
    """kombu's record of delivery ``TAG`` held by ``POD``."""
    client.hset(KEYS.pod_unacked(POD), TAG, '["message", "", "cancelq"]')
    client.zadd(KEYS.pod_unacked_index(POD), {TAG: time.time()})
    return client


def outcome(request_id: str) -> Outcome:
    return Outcome(requestId=request_id, status=Status.CANCELLED, account="main")


def store(client: redis.Redis, pod_id: str = POD) -> ClaimStore:
    return ClaimStore(client, KEYS, lease_s=30, dedup_ttl_s=60, outcome_ttl_s=60, pod_id=pod_id)


def test_the_outcome_that_ends_a_delivery_deletes_its_record(held: redis.Redis) -> None:
    written = store(held).finish(
        outcome("r1"), account=None, identity=None, keep=True, ends_delivery=TAG
    )
    assert written
    assert held.exists(KEYS.outcome("r1"))
    assert holding(held) == (False, False)


def test_an_outcome_that_ends_no_delivery_leaves_the_record(held: redis.Redis) -> None:
    assert store(held).finish(outcome("r1"), account=None, identity=None, keep=True)
    assert holding(held) == (True, True)


def test_a_repeated_outcome_still_deletes_the_record(held: redis.Redis) -> None:
    """First outcome wins, and the delivery that carried the request has ended all the same
    (a copy's run answered from the first outcome)."""
    claims = store(held)
    assert claims.finish(outcome("r1"), account=None, identity=None, keep=True)
    assert not claims.finish(
        outcome("r1"), account=None, identity=None, keep=True, ends_delivery=TAG
    )
    assert holding(held) == (False, False)


def test_a_store_outside_a_worker_deletes_no_record(held: redis.Redis) -> None:
    store(held, pod_id="").finish(
        outcome("r1"), account=None, identity=None, keep=True, ends_delivery=TAG
    )
    assert holding(held) == (True, True)


def unacked_deletes_by_clients(entries: list[dict[str, Any]]) -> list[str]:
    """HDEL/ZREM of an unacked hash or index sent by a client (not from inside a script)."""
    found = []
    for entry in entries:
        words = str(entry.get("command", "")).split()
        if (
            entry.get("client_type") != "lua"
            and len(words) > 1
            and words[0].upper() in ("HDEL", "ZREM")
            and words[1].startswith((f"{KEYS.prefix}:unacked:", f"{KEYS.prefix}:unacked_index:"))
        ):
            found.append(str(entry["command"]))
    return found


def test_a_cancel_sent_with_send_task_is_acknowledged_without_a_round_trip(
    stack: Stack,
) -> None:
    stack.place(order_link_id="record-on-finish")
    monitor = Monitor(redis.Redis.from_url(stack.redis_server.url)).start()
    try:
        [request_id] = send_task(stack, "int", ["record-on-finish"])
        found = stack.producer.wait_many([request_id], 15)
        assert found[request_id].status is Status.CANCELLED
        time.sleep(0.5)  # the acknowledgement after the task
    finally:
        monitor.stop()
    inside = [
        e for e in monitor.entries if e.get("client_type") == "lua" and "unacked" in e["command"]
    ]
    assert any(str(e["command"]).upper().startswith("HDEL") for e in inside), inside
    assert unacked_deletes_by_clients(monitor.entries) == []
    pods = [as_text(p) for p in stack.redis.zrange(KEYS.pods(), 0, -1)]
    assert wait_until(
        lambda: all(stack.redis.hlen(KEYS.pod_unacked(pod)) == 0 for pod in pods), 5
    ), "a record was left behind"
