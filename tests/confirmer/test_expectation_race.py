"""Issue 14: an accepted cancel's expectation and the stream's final state, in every order.

The worker registers the expectation in the script that records the outcome (``finish.lua``);
the confirmer remembers a final state and reads the order's watchers in one MULTI. These tests
put the two in the orders that used to leave a request pending after its confirmation (or
confirmed as "account unknown"), on purpose, against a real Redis."""

from __future__ import annotations

import random
import threading

import pytest
import redis

from cancelq.confirmations import Confirmation
from cancelq.worker.scripted_pipeline import run_pipeline
from tests.confirmer.parts import (
    KEYS,
    Parts,
    accepted,
    accepted_outcome,
    claims,
    expectation,
    in_the_future_ms,
    push,
)
from tests.confirmer.parts import record as read_record

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def no_scripts_loaded(client: redis.Redis) -> None:
    """Every test starts as a fresh Redis would: the first pipelined finish meets NOSCRIPT."""
    client.script_flush()


def _pending(client: redis.Redis) -> set[str]:
    return set(client.zrange(KEYS.confirm_pending(), 0, -1))


def test_a_repeated_finish_never_puts_a_confirmed_request_back(client: redis.Redis) -> None:
    parts = Parts(client)
    assert accepted(client, "r1", "o1", deadline_ms=in_the_future_ms())
    parts.sink.on_orders("main", push("Cancelled", "o1"))
    assert read_record(client, "r1") is not None
    assert _pending(client) == set()
    # the same request recorded again (a re-run after NOSCRIPT, a takeover's second attempt)
    assert not accepted(client, "r1", "o1", deadline_ms=in_the_future_ms())
    assert _pending(client) == set()
    assert client.smembers(KEYS.confirm_watch("main", "o1")) == set()


def test_a_push_between_a_failed_pipeline_and_its_rerun(client: redis.Redis) -> None:
    """NOSCRIPT on the first run (a fresh or restarted Redis): the worker loads the scripts and
    runs the pipeline again. The final state arrives exactly in between."""
    parts = Parts(client)
    store = claims(client)
    load = client.script_load

    def push_then_load(script: str) -> str:
        parts.sink.on_orders("main", push("Cancelled", "o2"))
        return str(load(script))

    client.script_load = push_then_load  # type: ignore[method-assign]

    def fill(pipe: redis.client.Pipeline) -> None:
        outcome = accepted_outcome("r2", "o2")
        exp = expectation("o2", deadline_ms=in_the_future_ms())
        store.finish(outcome, account=None, identity=None, keep=True, client=pipe, expectation=exp)

    run_pipeline(client, fill, store.scripts)
    # the push found nobody watching (nothing was registered without the outcome) ...
    assert read_record(client, "r2") is None
    assert _pending(client) == {"r2"}
    # ... and the sweep's first sight resolves it from the remembered final state
    parts.sweeper.sweep(in_the_future_ms(0))
    confirmation = read_record(client, "r2")
    assert confirmation is not None
    assert (confirmation.account, confirmation.via, confirmation.result) == (
        "main",
        "stream",
        Confirmation.CONFIRMED_CANCELLED,
    )
    assert _pending(client) == set()


def test_racing_outcomes_and_pushes_leave_no_confirmed_request_pending(
    client: redis.Redis,
) -> None:
    parts = Parts(client)
    store = claims(client)
    orders = [f"o{i}" for i in range(300)]
    deadline = in_the_future_ms()

    def record_in_batches() -> None:
        for start in range(0, len(orders), 10):

            def fill(
                pipe: redis.client.Pipeline, batch: list[str] = orders[start : start + 10]
            ) -> None:
                for oid in batch:
                    exp = expectation(oid, deadline_ms=deadline)
                    outcome = accepted_outcome(f"r-{oid}", oid)
                    store.finish(
                        outcome,
                        account=None,
                        identity=None,
                        keep=True,
                        client=pipe,
                        expectation=exp,
                    )

            run_pipeline(client, fill, store.scripts)

    def push_in_random_order() -> None:
        for oid in random.Random(7).sample(orders, len(orders)):
            parts.sink.on_orders("main", push("Cancelled", oid))

    threads = [
        threading.Thread(target=record_in_batches),
        threading.Thread(target=push_in_random_order),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    confirmed = {rid for rid in (f"r-{o}" for o in orders) if read_record(client, rid) is not None}
    assert not confirmed & _pending(client), "confirmed requests still pending"
    assert confirmed | _pending(client) == {f"r-{o}" for o in orders}
    parts.sweeper.sweep(in_the_future_ms(0))
    assert _pending(client) == set()
    records = [read_record(client, f"r-{o}") for o in orders]
    assert {(r.account, r.via) for r in records if r is not None} == {("main", "stream")}
    assert all(r is not None for r in records)
