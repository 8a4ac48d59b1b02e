"""The confirmer's parts against a real Redis: both orders of arrival of a push and an
expectation, deadlines, leases and takeover, the fallback budget, auth signing, the summary."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import redis

from cancelq.bybit.signing import HmacSigner
from cancelq.confirmations import Confirmation, ConfirmationRecord, result_for, summarize
from cancelq.confirmer.fallback import Budget, FallbackBudget
from cancelq.confirmer.leases import RENEWED, TAKEN, LeaseStore
from cancelq.confirmer.stream import auth_message, backoff_s
from tests.confirmer.parts import KEYS, Parts, accepted, push
from tests.confirmer.parts import record as read_record


def _accepted(client: redis.Redis, rid: str, order_id: str, *, deadline_ms: int) -> None:
    assert accepted(client, rid, order_id, deadline_ms=deadline_ms)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("status", "result"),
    [
        ("Cancelled", Confirmation.CONFIRMED_CANCELLED),
        ("PartiallyFilledCanceled", Confirmation.CONFIRMED_CANCELLED),
        ("Deactivated", Confirmation.CONFIRMED_CANCELLED),
        ("Filled", Confirmation.FILLED_FIRST),
        ("New", None),
        ("PartiallyFilled", None),
        ("Untriggered", None),
    ],
)
def test_order_status_to_result(status: str, result: Confirmation | None) -> None:
    assert result_for(status) == result


@pytest.mark.timeout(10)
def test_push_after_the_expectation_resolves_at_once(client: redis.Redis) -> None:
    parts = Parts(client)
    _accepted(client, "r1", "o1", deadline_ms=int(time.time() * 1000) + 60_000)
    parts.sink.on_orders("main", push("New", "o1"))
    assert read_record(client, "r1") is None
    parts.sink.on_orders("main", push("Cancelled", "o1"))
    record = read_record(client, "r1")
    assert record is not None
    assert (record.result, record.via, record.orderStatus) == (
        Confirmation.CONFIRMED_CANCELLED,
        "stream",
        "Cancelled",
    )
    assert record.latency_s is not None
    assert client.zcard(KEYS.confirm_pending()) == 0


@pytest.mark.timeout(10)
def test_push_before_the_expectation_is_found_by_the_sweep(client: redis.Redis) -> None:
    parts = Parts(client)
    parts.sink.on_orders("main", push("Filled", "o2"))  # nobody waits yet
    _accepted(client, "r2", "o2", deadline_ms=int(time.time() * 1000) + 60_000)
    parts.sweeper.sweep(int(time.time() * 1000))
    record = read_record(client, "r2")
    assert record is not None
    assert record.result is Confirmation.FILLED_FIRST
    assert parts.checks == []


@pytest.mark.timeout(10)
def test_second_filled_push_changes_nothing(client: redis.Redis) -> None:
    parts = Parts(client)
    _accepted(client, "r3", "o3", deadline_ms=int(time.time() * 1000) + 60_000)
    parts.sink.on_orders("main", push("Filled", "o3"))
    first = client.get(KEYS.confirmation("r3"))
    parts.sink.on_orders(
        "main",
        push("Filled", "o3", cancelType="CancelByUser", rejectReason="EC_OrigClOrdIDDoesNotExist"),
    )
    assert client.get(KEYS.confirmation("r3")) == first
    total = parts.metrics.confirmations.labels("main", "filled_first", "stream")._value.get()
    assert total == 1


@pytest.mark.timeout(10)
def test_sweep_asks_rest_when_late_or_stream_down_and_expires_at_deadline(
    client: redis.Redis,
) -> None:
    now = int(time.time() * 1000)
    _accepted(client, "r4", "o4", deadline_ms=now + 60_000)
    Parts(client).sweeper.sweep(now)  # fresh, stream up: wait for the push
    down = Parts(client, up=False)
    down.sweeper.sweep(now)
    assert [(c.order_id, c.reason) for c in down.checks] == [("o4", "stream_down")]
    late = Parts(client)
    late.sweeper.sweep(now + 1500)
    assert [(c.order_id, c.reason) for c in late.checks] == [("o4", "late")]
    late.sweeper.sweep(now + 61_000)
    record = read_record(client, "r4")
    assert record is not None
    assert (record.result, record.via) == (Confirmation.UNCONFIRMED, "deadline")


@pytest.mark.timeout(10)
def test_a_replica_not_owning_the_account_leaves_it_alone(client: redis.Redis) -> None:
    now = int(time.time() * 1000)
    _accepted(client, "r5", "o5", deadline_ms=now - 1)
    other = Parts(client, owned=False)
    other.sweeper.sweep(now)
    assert other.checks == []
    assert read_record(client, "r5") is None


@pytest.mark.timeout(10)
def test_lease_one_owner_renewal_and_takeover(client: redis.Redis) -> None:
    keys = KEYS
    a = LeaseStore(client, keys, "a", ttl_s=0.3)
    b = LeaseStore(client, keys, "b", ttl_s=0.3)
    assert a.hold("main") == TAKEN
    assert b.hold("main") == 0
    assert a.hold("main") == RENEWED
    time.sleep(0.4)  # a died: no renewal
    assert b.hold("main") == TAKEN
    assert a.hold("main") == 0
    a.release("main")  # not a's: nothing happens
    assert b.owner("main") == "b"
    b.release("main")
    assert b.owner("main") is None


@pytest.mark.timeout(10)
def test_fallback_budget_is_a_token_bucket(client: redis.Redis) -> None:
    budget = FallbackBudget(client, KEYS, {"main": Budget(per_s=5, capacity=2)})
    assert [budget.take("main") for _ in range(3)] == [True, True, False]
    time.sleep(0.25)
    assert budget.take("main") is True
    assert budget.take("unknown") is False


@pytest.mark.timeout(10)
def test_auth_message_signs_get_realtime_expires() -> None:
    message = json.loads(auth_message("KEY", HmacSigner("SECRET"), 1700000000000, "1"))
    expected = hmac.new(b"SECRET", b"GET/realtime1700000000000", hashlib.sha256).hexdigest()
    assert message == {"req_id": "1", "op": "auth", "args": ["KEY", 1700000000000, expected]}
    assert "SECRET" not in json.dumps(message)


@pytest.mark.timeout(10)
def test_backoff_grows_and_is_capped() -> None:
    assert all(0 <= backoff_s(n, 0.2, 1.0) <= min(1.0, 0.2 * 2 ** (n - 1)) for n in range(1, 9))


@pytest.mark.timeout(10)
def test_summary_counts_results_and_latency() -> None:
    def rec(rid: str, result: Confirmation, latency_ms: int) -> ConfirmationRecord:
        return ConfirmationRecord(
            requestId=rid,
            result=result,
            account="main",
            orderId=rid,
            via="stream",
            acceptedAt=1000,
            confirmedAt=1000 + latency_ms,
        )

    summary = summarize(
        [
            rec("a", Confirmation.CONFIRMED_CANCELLED, 10),
            rec("b", Confirmation.FILLED_FIRST, 30),
            rec("c", Confirmation.UNCONFIRMED, 9000),
        ],
        expected=4,
    )
    assert summary.by_result == {"confirmed_cancelled": 1, "filled_first": 1, "unconfirmed": 1}
    assert summary.missing == 1
    assert summary.latency_max_s == pytest.approx(0.03)
    assert summary.latency_p50_s == pytest.approx(0.01)
