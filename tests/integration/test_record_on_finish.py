"""A cancel's outcome, or its parking, deletes the unacked record of the delivery that carried
it, in the script that records it (``finish.lua``) or parks it (the intake), and the
acknowledgement after the task sends nothing more: one round trip a cancel fewer. Against a
real Redis, and end to end with the real worker and cancels sent with Celery's own
``send_task``."""

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
from cancelq.worker.delivery import running
from cancelq.worker.intake import IntakeResult
from cancelq.worker.ratelimit.lanes import Lanes
from tests.integration.test_celery_send_task import send_task
from tests.integration.test_intake import busy
from tests.integration.test_intake import take as intake
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


def take(client: redis.Redis, request_id: str, record_index: str) -> IntakeResult:
    """The intake of ``request_id`` as delivery ``TAG`` of ``POD``, coalescing (a busy lane
    parks it)."""
    lanes = Lanes(client, KEYS, park_ttl_s=60, lease_ms=30_000)
    with running(TAG, request_id):
        return intake(
            client, store(client), lanes, request_id, coalesce=True, record_index=record_index
        )


def test_a_parked_cancel_deletes_the_record_of_its_delivery(held: redis.Redis) -> None:
    busy(Lanes(held, KEYS, park_ttl_s=60, lease_ms=30_000))
    result = take(held, "r1", store(held).record_index)
    assert result.admission is not None
    assert not result.admission.admitted
    assert holding(held) == (False, False)


def test_a_parked_cancel_of_a_delivery_that_goes_on_keeps_the_record(held: redis.Redis) -> None:
    busy(Lanes(held, KEYS, park_ttl_s=60, lease_ms=30_000))
    result = take(held, "r1", "")
    assert result.admission is not None
    assert not result.admission.admitted
    assert holding(held) == (True, True)


def test_an_admitted_cancel_keeps_the_record_until_its_outcome(held: redis.Redis) -> None:
    result = take(held, "r1", store(held).record_index)
    assert result.admission is not None
    assert result.admission.admitted
    assert holding(held) == (True, True)


def records_written(entries: list[dict[str, Any]], task: str) -> set[str]:
    """Delivery tags of the unacked records written for messages of ``task``."""
    tags = set()
    for entry in entries:
        command = str(entry.get("command", ""))
        words = command.split()
        if (
            len(words) > 2
            and words[0].upper() == "HSET"
            and words[1].startswith(f"{KEYS.prefix}:unacked:")
            and task in command
        ):
            tags.add(words[2])
    return tags


def unacked_deletes_by_clients(entries: list[dict[str, Any]]) -> set[str]:
    """Delivery tags whose unacked record a client deleted (HDEL/ZREM of an unacked hash or
    index sent as a command, not from inside a script)."""
    found = set()
    for entry in entries:
        words = str(entry.get("command", "")).split()
        if (
            entry.get("client_type") != "lua"
            and len(words) > 2
            and words[0].upper() in ("HDEL", "ZREM")
            and words[1].startswith((f"{KEYS.prefix}:unacked:", f"{KEYS.prefix}:unacked_index:"))
        ):
            found.add(words[2])
    return found


def sent_while_monitored(stack: Stack, links: list[str]) -> list[dict[str, Any]]:
    """Orders placed for ``links``, their cancels sent with ``send_task`` and all cancelled,
    the Redis commands meanwhile (up to their acknowledgements)."""
    for link in links:
        stack.place(order_link_id=link)
    monitor = Monitor(redis.Redis.from_url(stack.redis_server.url)).start()
    try:
        ids = send_task(stack, "int", links)
        found = stack.producer.wait_many(ids, 30)
        assert [found[i].status for i in ids] == [Status.CANCELLED] * len(ids)
        # every record deleted (by a script, or by a batch's acknowledgement) while monitored
        pods = [as_text(p) for p in stack.redis.zrange(KEYS.pods(), 0, -1)]
        assert wait_until(
            lambda: all(stack.redis.hlen(KEYS.pod_unacked(pod)) == 0 for pod in pods), 10
        ), "a record was left behind"
    finally:
        monitor.stop()
    return monitor.entries


def test_a_cancel_sent_with_send_task_is_acknowledged_without_a_round_trip(
    stack: Stack,
) -> None:
    entries = sent_while_monitored(stack, ["record-on-finish"])
    [tag] = records_written(entries, "cancelq.cancel_order")
    inside = [e for e in entries if e.get("client_type") == "lua" and "unacked" in e["command"]]
    assert any(str(e["command"]).upper().startswith("HDEL") and tag in e["command"] for e in inside)
    assert unacked_deletes_by_clients(entries) == set()


def test_parked_cancels_are_acknowledged_without_a_round_trip(stack: Stack) -> None:
    """30 cancels at once on a key of 20/s: some park (a dispatcher sends them as batches,
    ``cancelq.submit`` messages, whose acknowledgements delete their records as before)."""
    entries = sent_while_monitored(stack, [f"parked-{n}" for n in range(30)])
    cancels = records_written(entries, "cancelq.cancel_order")
    batches = records_written(entries, "cancelq.submit")
    assert len(cancels) == 30
    assert batches, "nothing parked: the test did not reach the parked path"
    assert unacked_deletes_by_clients(entries) == batches
