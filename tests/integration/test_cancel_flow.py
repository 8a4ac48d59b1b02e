"""The pipeline end to end: real Redis, a real worker process, the simulator over HTTP."""

from __future__ import annotations

import pytest

from cancelq.errors import ContractError
from cancelq.outcomes import Status
from cancelq.producers.message import encode_message
from tests.support import KEYS, Stack, cancel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_cancel_by_order_id(stack: Stack) -> None:
    order_id = stack.place(order_link_id="by-id-1")
    rid = stack.producer.enqueue(**cancel(orderId=order_id))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.CANCELLED
    assert (outcome.retCode, outcome.retMsg) == (0, "OK")
    assert (outcome.orderId, outcome.orderLinkId) == (order_id, "by-id-1")
    assert outcome.attempts == 1
    assert outcome.enqueuedAt is not None
    assert outcome.startedAt is not None
    assert outcome.sentAt is not None
    assert outcome.answeredAt is not None
    assert outcome.enqueuedAt <= outcome.startedAt <= outcome.sentAt <= outcome.answeredAt
    assert stack.order_status(order_id) == "Cancelled"


def test_cancel_by_order_link_id_with_rsa_key(stack: Stack) -> None:
    order_id = stack.place(account="rsa", category="linear", order_link_id="rsa-link-1")
    rid = stack.producer.enqueue(**cancel("rsa", category="linear", orderLinkId="rsa-link-1"))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.CANCELLED
    assert outcome.orderId == order_id
    assert stack.order_status(order_id) == "Cancelled"


def test_order_id_wins_when_both_ids_are_given(stack: Stack) -> None:
    first = stack.place(order_link_id="both-a")
    second = stack.place(order_link_id="both-b")
    rid = stack.producer.enqueue(**cancel(orderId=first, orderLinkId="both-b"))
    assert stack.producer.wait(rid, 15).status is Status.CANCELLED
    assert stack.order_status(first) == "Cancelled"
    assert stack.order_status(second) == "New"


@pytest.mark.parametrize("order_filter", ["Order", "tpslOrder", "StopOrder"])
def test_each_spot_order_filter(stack: Stack, order_filter: str) -> None:
    trigger = "" if order_filter == "Order" else "90"
    order_id = stack.place(order_filter=order_filter, trigger_price=trigger)
    rid = stack.producer.enqueue(**cancel(orderId=order_id, orderFilter=order_filter))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.CANCELLED, outcome
    assert stack.order_status(order_id) in {"Cancelled", "Deactivated"}


def test_unknown_order_is_not_found_only_after_the_recheck_window(stack: Stack) -> None:
    rid = stack.producer.enqueue(**cancel(orderLinkId="never-existed"))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.NOT_FOUND
    assert outcome.retCode == 170213
    assert outcome.attempts >= 3  # 0.6 s window, 0.2 s between re-checks
    assert outcome.finishedAt is not None
    assert outcome.startedAt is not None
    assert outcome.finishedAt - outcome.startedAt >= 500


def test_a_cancel_that_overtakes_its_create_still_cancels_the_order(stack: Stack) -> None:
    order_id = stack.place(order_link_id="late-1", visible_after_ms=300)
    rid = stack.producer.enqueue(**cancel(orderLinkId="late-1"))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.CANCELLED
    assert outcome.attempts >= 2
    assert stack.order_status(order_id) == "Cancelled"


def test_already_cancelled_and_filled_orders(stack: Stack) -> None:
    gone = stack.place(order_link_id="gone-1")
    first = stack.producer.enqueue(**cancel(orderLinkId="gone-1"))
    assert stack.producer.wait(first, 15).status is Status.CANCELLED
    # a different identity (by orderId) for the same, now cancelled, order
    again = stack.producer.enqueue(**cancel(orderId=gone))
    outcome = stack.producer.wait(again, 15)
    assert (outcome.status, outcome.retCode) == (Status.ALREADY_GONE, 170142)

    filled = stack.place(order_link_id="filled-1")
    stack.sim.admin.fill(filled)
    late = stack.producer.enqueue(**cancel(orderLinkId="filled-1"))
    outcome = stack.producer.wait(late, 15)
    assert (outcome.status, outcome.retCode) == (Status.TOO_LATE, 170139)


def test_derivatives_codes_for_filled_orders(stack: Stack) -> None:
    filled = stack.place(category="linear", order_link_id="lin-filled")
    stack.sim.admin.fill(filled)
    rid = stack.producer.enqueue(**cancel(category="linear", orderLinkId="lin-filled"))
    outcome = stack.producer.wait(rid, 15)
    assert (outcome.status, outcome.retCode) == (Status.ALREADY_GONE, 110008)


def test_page_dialect_with_the_page_table(stack: Stack) -> None:
    stack.sim.admin.set_dialect("page")
    cancelled = stack.place(account="page", order_link_id="pg-1")
    filled = stack.place(account="page", order_link_id="pg-2")
    stack.sim.admin.fill(filled)
    ids = stack.producer.enqueue_many(
        [
            cancel("page", orderLinkId="pg-1"),
            cancel("page", orderLinkId="pg-2"),
            cancel("page", orderLinkId="pg-missing"),
        ]
    )
    outcomes = stack.producer.wait_many(ids, 15)
    assert outcomes[ids[0]].status is Status.CANCELLED
    assert (outcomes[ids[1]].status, outcomes[ids[1]].retCode) == (Status.TOO_LATE, 10003)
    assert (outcomes[ids[2]].status, outcomes[ids[2]].retCode) == (Status.NOT_FOUND, 10001)
    again = stack.producer.enqueue(**cancel("page", orderId=cancelled))
    outcome = stack.producer.wait(again, 15)
    assert (outcome.status, outcome.retCode) == (Status.ALREADY_GONE, 10002)


def test_duplicates_are_sent_once_and_report_the_first_outcome(stack: Stack) -> None:
    stack.place(order_link_id="dup-1")
    ids = stack.producer.enqueue_many([cancel(orderLinkId="dup-1")] * 3)
    outcomes = stack.producer.wait_many(ids, 15)
    assert {o.status for o in outcomes.values()} == {Status.CANCELLED}
    originals = [o for o in outcomes.values() if o.duplicateOf is None]
    assert len(originals) == 1
    assert all(o.duplicateOf == originals[0].requestId for o in outcomes.values() if o.duplicateOf)
    assert stack.sim.admin.cancel_counts()["orderLinkId"].get("dup-1") == 1


def test_unknown_account_is_rejected_and_never_sent(stack: Stack) -> None:
    rid = stack.producer.enqueue(**cancel("nobody", orderLinkId="x-1"))
    outcome = stack.producer.wait(rid, 15)
    assert outcome.status is Status.REJECTED
    assert outcome.reason == "account: not in the accounts file"
    control = stack.producer.enqueue(**cancel(orderLinkId="x-1"))  # same cancel, known account
    assert stack.producer.wait(control, 15).status is Status.NOT_FOUND
    sent = stack.sim.admin.records(endpoint="order/cancel")
    assert sent
    assert all(r["api_key"] == KEYS["main"] for r in sent)


def test_invalid_messages_are_refused_by_the_producer_and_rejected_by_the_worker(
    stack: Stack,
) -> None:
    with pytest.raises(ContractError, match="orderLinkId: at most 36"):
        stack.producer.enqueue(**cancel(orderLinkId="x" * 40))
    bad = {"account": "main", "category": "spot", "symbol": "BTCUSDT", "requestId": "bad-1"}
    stack.redis.lpush("cancelq", encode_message(bad, "bad-1"))
    outcome = stack.producer.wait("bad-1", 15)
    assert outcome.status is Status.REJECTED
    assert outcome.reason == "orderId/orderLinkId: one of the two is required"
    control = stack.producer.enqueue(**cancel(orderId=stack.place()))  # a valid one is sent
    assert stack.producer.wait(control, 15).status is Status.CANCELLED
    assert len(stack.sim.admin.records(endpoint="order/cancel")) == 1


def test_transient_errors_are_retried_within_the_attempt_bound(stack: Stack) -> None:
    order_ids = [stack.place(order_link_id=f"tr-{i}") for i in range(10)]
    stack.sim.admin.set_faults(p_10016=0.5, seed=7)
    try:
        ids = stack.producer.enqueue_many([cancel(orderId=oid) for oid in order_ids])
        outcomes = list(stack.producer.wait_many(ids, 30).values())
    finally:
        stack.sim.admin.clear_faults()
    cancelled = [o for o in outcomes if o.status is Status.CANCELLED]
    # each attempt fails with p=0.5: giving up after 8 (p=1/256 per cancel) is correct, and
    # then it must say so; fewer than 8 of 10 cancelled has a probability of about 1e-5
    assert len(cancelled) >= 8
    assert max(o.attempts for o in cancelled) > 1
    for gave_up in (o for o in outcomes if o.status is not Status.CANCELLED):
        assert gave_up.status is Status.FAILED
        assert (gave_up.attempts, gave_up.reason) == (
            8,
            "gave up after 8 attempts (last: transient)",
        )


def test_a_skewed_exchange_clock_is_resynced(stack: Stack) -> None:
    order_id = stack.place(order_link_id="skew-1")
    stack.sim.admin.set_clock_skew(20_000)  # far beyond recv_window: the first try gets 10002
    try:
        rid = stack.producer.enqueue(**cancel(orderId=order_id))
        outcome = stack.producer.wait(rid, 15)
    finally:
        stack.sim.admin.set_clock_skew(0)
    assert outcome.status is Status.CANCELLED
    codes = [r["ret_code"] for r in stack.sim.admin.records(endpoint="order/cancel")]
    assert codes[-1] == 0
