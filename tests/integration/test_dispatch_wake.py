"""Dispatchers sleep until the next lane is due and are woken by a parking that makes a lane
ready sooner (pub/sub), so an idle worker does not poll Redis every few milliseconds and a new
parking is not delayed by the idle look interval."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from cancelq import halts
from cancelq.keys import Keys
from cancelq.worker.ratelimit.dispatcher import IDLE_LOOK_S, Dispatcher
from cancelq.worker.ratelimit.lanes import Budget, Lanes
from cancelq.worker.ratelimit.wake import LaneWake

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]
KEYS = Keys()
BUDGET = Budget(limit=2, window_ms=1000, batch=10, per_item=True)


@pytest.fixture
def lanes(client: redis.Redis) -> Lanes:
    return Lanes(client, KEYS, park_ttl_s=60, lease_ms=60_000)


@pytest.fixture
def dispatcher(lanes: Lanes) -> Iterator[Dispatcher]:
    """The shipped dispatcher: wake-ups on, idle look every IDLE_LOOK_S (5 s)."""
    running = Dispatcher(lanes, "cancelq", paused=lambda: False, wake_channel=KEYS.lanes_wake())
    running.start()
    time.sleep(0.2)  # subscribed
    yield running
    running.stop()


def admit(lanes: Lanes, rid: str, *, coalesce: bool = False) -> bool:
    item = json.dumps({"requestId": rid, "parkedAt": 0, "fields": {"account": "a"}})
    return lanes.admit(
        account="a",
        category="spot",
        budget=BUDGET,
        request_id=rid,
        item_json=item,
        delay_ms=0,
        claim_key=KEYS.claim("a", f"spot:link:{rid}"),
        coalesce=coalesce,
    ).admitted


def dispatched_within(client: redis.Redis, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if client.llen("cancelq"):
            return time.monotonic() - started
        time.sleep(0.002)
    return None


def test_a_cancel_parked_to_batch_on_a_busy_lane_is_dispatched_at_once_not_at_the_next_look(
    lanes: Lanes, client: redis.Redis, dispatcher: Dispatcher
) -> None:
    """Backlog coalescing parks a cancel that has budget (its lane sent one just now): due at
    once. The dispatcher, asleep with nothing parked, is woken by the parking."""
    time.sleep(IDLE_LOOK_S / 2)  # somewhere in the middle of its idle sleep
    assert admit(lanes, "r1")
    started = time.monotonic()
    assert not admit(lanes, "r2", coalesce=True)
    assert dispatched_within(client, 2 * IDLE_LOOK_S) is not None
    assert time.monotonic() - started < 0.5


def test_a_parking_behind_a_full_window_is_dispatched_when_the_window_frees(
    lanes: Lanes, client: redis.Redis, dispatcher: Dispatcher
) -> None:
    """The dispatcher sleeps exactly until the lane is due (dispatch.lua says when)."""
    time.sleep(IDLE_LOOK_S + 0.1)
    started = time.monotonic()
    assert admit(lanes, "r1")
    assert admit(lanes, "r2")
    assert not admit(lanes, "r3")
    waited = dispatched_within(client, 3)
    assert waited is not None
    assert 0.9 <= time.monotonic() - started <= 1.3  # the window is 1 s


def test_a_resume_wakes_the_dispatchers(lanes: Lanes, client: redis.Redis) -> None:
    woken = threading.Event()
    stopped = threading.Event()
    wake = LaneWake(client, KEYS.lanes_wake(), stopped)
    assert wake.wait(5)  # a new subscription looks once at once
    waiter = threading.Thread(target=lambda: woken.set() if wake.wait(10) else None)
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    halts.halt(client, KEYS, "acct", by="ops@test", reason="drill")
    halts.resume(client, KEYS, "acct", by="ops@test", reason="drill over")
    assert woken.wait(2)
    assert time.monotonic() - started < 0.5
    waiter.join(2)
    wake.close()


def test_an_idle_dispatcher_looks_every_idle_interval_and_sends_nothing_else(
    client: redis.Redis, dispatcher: Dispatcher
) -> None:
    client.config_resetstat()
    time.sleep(2 * IDLE_LOOK_S + 0.1)
    calls = {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in client.info("commandstats").items()
    }
    assert calls.get("evalsha", 0) <= 3, calls  # two or three looks in 4 s, not 200
