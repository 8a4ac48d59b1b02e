"""The confirmer with real processes: Redis, the simulator (HTTP + private WebSocket), a worker
registering confirmations, and ``cancelq confirmer`` replicas."""

from __future__ import annotations

import pytest

from cancelq.confirmations import Confirmation, read_summary
from cancelq.keys import Keys
from cancelq.outcomes import Status
from tests.confirmer.conftest import Confirmers
from tests.support import Stack, cancel, scan_redis, wait_until

pytestmark = pytest.mark.integration


def _streams_up(stack: Stack, count: int = 3, timeout_s: float = 10) -> None:
    def subscribed() -> bool:
        connections = stack.sim.admin.ws_state()["connections"]
        return len(connections) == count and all(c["topics"] == ["order"] for c in connections)

    assert wait_until(subscribed, timeout_s), stack.sim.admin.ws_state()


def _cancel_all(stack: Stack, order_ids: list[tuple[str, str]]) -> list[str]:
    producer = stack.producer
    rids = producer.enqueue_many([cancel(account, orderId=oid) for account, oid in order_ids])
    outcomes = producer.wait_many(rids, timeout_s=15)
    assert {o.status for o in outcomes.values()} == {Status.CANCELLED}
    return rids


@pytest.mark.timeout(60)
def test_cancels_are_confirmed_through_the_stream(stack: Stack, confirmers: Confirmers) -> None:
    confirmers.start("c1")
    _streams_up(stack)
    orders = [("main", stack.place()) for _ in range(8)] + [("rsa", stack.place("rsa"))]
    rids = _cancel_all(stack, orders)
    records = stack.producer.wait_confirmations(rids, timeout_s=10)
    assert {r.result for r in records.values()} == {Confirmation.CONFIRMED_CANCELLED}
    assert {r.via for r in records.values()} == {"stream"}
    assert {r.orderStatus for r in records.values()} == {"Cancelled"}
    # a confirmation written before its outcome would say "unknown" here
    assert {r.account for r in records.values()} == {"main", "rsa"}
    summary = read_summary(stack.redis, Keys(), rids)
    assert summary.missing == 0
    assert summary.latency_max_s is not None
    assert summary.latency_max_s < 1.0
    assert stack.redis.zcard(Keys().confirm_pending()) == 0


@pytest.mark.timeout(60)
def test_a_cancel_racing_a_fill_is_filled_first(stack: Stack, confirmers: Confirmers) -> None:
    confirmers.start("c1")
    _streams_up(stack)
    order_id = stack.place()
    stack.sim.admin.arm_fill_race(order_id)
    (rid,) = _cancel_all(stack, [("main", order_id)])  # accepted: retCode 0
    record = stack.producer.wait_confirmation(rid, timeout_s=10)
    assert record.result is Confirmation.FILLED_FIRST
    assert record.orderStatus == "Filled"
    assert record.orderId == order_id


@pytest.mark.timeout(60)
def test_stream_killed_mid_run_confirms_through_the_rest_fallback(
    stack: Stack, confirmers: Confirmers
) -> None:
    confirmers.start("c1")
    _streams_up(stack)
    before = _cancel_all(stack, [("main", stack.place())])
    stack.sim.admin.set_ws_faults(refuse=True)
    stack.sim.admin.drop_ws()
    orders = [("main", stack.place()) for _ in range(5)]
    filled = stack.place()
    stack.sim.admin.arm_fill_race(filled)
    rids = _cancel_all(stack, [*orders, ("main", filled)])
    records = stack.producer.wait_confirmations([*before, *rids], timeout_s=10)
    during = [records[rid] for rid in rids]
    assert {r.via for r in during} == {"rest"}
    assert [r.result for r in during] == [Confirmation.CONFIRMED_CANCELLED] * 5 + [
        Confirmation.FILLED_FIRST
    ]
    stack.sim.admin.set_ws_faults(refuse=False)
    _streams_up(stack)
    (after,) = _cancel_all(stack, [("main", stack.place())])
    assert stack.producer.wait_confirmation(after, timeout_s=10).via == "stream"


@pytest.mark.timeout(60)
def test_a_killed_replica_is_taken_over_and_nothing_is_missed(
    stack: Stack, confirmers: Confirmers
) -> None:
    first = confirmers.start("c1")
    _streams_up(stack)
    confirmers.start("c2")
    lease = Keys().confirm_lease("main")
    assert stack.redis.get(lease) == "c1"
    first.kill()  # SIGKILL: no release, the lease must expire
    orders = [("main", stack.place()) for _ in range(6)]
    rids = _cancel_all(stack, orders)  # cancelled while no replica follows the stream
    records = stack.producer.wait_confirmations(rids, timeout_s=10)
    assert {r.result for r in records.values()} == {Confirmation.CONFIRMED_CANCELLED}
    assert wait_until(lambda: stack.redis.get(lease) == "c2", 5)
    _streams_up(stack)  # one connection per account: c2 only
    (after,) = _cancel_all(stack, [("main", stack.place())])
    assert stack.producer.wait_confirmation(after, timeout_s=10).via == "stream"


@pytest.mark.timeout(60)
def test_unconfirmed_after_the_deadline_and_no_secret_anywhere(
    stack: Stack, confirmers: Confirmers
) -> None:
    confirmers.start("c1")
    _streams_up(stack)
    stack.sim.admin.set_ws_faults(silent=True)  # the push is lost ...
    stack.sim.admin.set_faults(p_http_5xx=1.0, endpoints=["order/realtime"])  # ... and REST fails
    (rid,) = _cancel_all(stack, [("main", stack.place())])
    record = stack.producer.wait_confirmation(rid, timeout_s=15)
    assert record.result is Confirmation.UNCONFIRMED
    assert record.via == "deadline"
    dump = "\n".join(f"{k} {v}" for k, v in scan_redis(stack.redis))
    for secret in stack.secrets:
        assert secret not in dump
        assert secret not in confirmers.logs()
