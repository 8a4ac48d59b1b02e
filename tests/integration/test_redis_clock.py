"""The Redis clock read locally (worker/redis_clock.py) against a real Redis: it agrees with
``TIME``, reads ``TIME`` once per resync period, again after ``forget``, and keeps a good offset
over a slow reading. The pod beat scores with it (one ZADD a beat)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from cancelq.keys import Keys
from cancelq.worker.pods import PodBeat, beaten_within
from cancelq.worker.redis_clock import (
    MAX_TRUSTED_RTT_S,
    READINGS,
    RESYNC_S,
    RedisClock,
    SlowClockReading,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CONNECTION_SETUP = frozenset({"HELLO", "CLIENT", "SELECT", "AUTH"})


def server_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) / 1000


class CountingClient:
    """A real client whose TIME calls are counted (and can be slowed)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.reads = 0
        self.delay_s = 0.0

    def time(self) -> Any:
        self.reads += 1
        reading = self.client.time()
        time.sleep(self.delay_s)
        return reading


class FakeMonotonic:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def test_the_local_reading_agrees_with_redis_time(client: redis.Redis) -> None:
    clock = RedisClock(client)
    for _ in range(20):
        before = server_ms(client)
        estimate = clock.now_ms()
        after = server_ms(client)
        assert before - 5 <= estimate <= after + 5
        time.sleep(0.01)


def test_time_is_read_once_per_resync_period_and_after_forget(client: redis.Redis) -> None:
    counting, local = CountingClient(client), FakeMonotonic()
    clock = RedisClock(counting, monotonic=local)  # type: ignore[arg-type]
    for _ in range(50):
        clock.now_ms()
    assert counting.reads == 1
    local.offset += RESYNC_S
    clock.now_ms()
    assert counting.reads == 2
    clock.forget()
    clock.now_ms()
    assert counting.reads == 3


def test_a_slow_reading_keeps_the_better_offset(client: redis.Redis) -> None:
    counting, local = CountingClient(client), FakeMonotonic()
    clock = RedisClock(counting, monotonic=local)  # type: ignore[arg-type]
    clock.now_ms()
    counting.delay_s = MAX_TRUSTED_RTT_S * 4  # the reply sat in a stalled thread
    local.offset += RESYNC_S
    estimate = clock.now_ms()
    # the slow reading would have put the estimate ~delay/2 in the past; the old offset holds
    true = server_ms(client) + local.offset * 1000
    assert abs(estimate - true) < 10
    # and it is tried again at the next reading, not a resync period later
    reads = counting.reads
    counting.delay_s = 0.0
    clock.now_ms()
    assert counting.reads == reads + 1


def test_without_a_trusted_offset_a_slow_reading_fails_as_a_timeout(client: redis.Redis) -> None:
    """A reading answered late (sent during a partition, answered when it healed) would put the
    estimate ahead by half its round trip; the beat fails instead, and is tried again."""
    counting = CountingClient(client)
    counting.delay_s = MAX_TRUSTED_RTT_S * 2
    clock = RedisClock(counting)  # type: ignore[arg-type]
    with pytest.raises(SlowClockReading):
        clock.now_ms()
    assert counting.reads == READINGS
    counting.delay_s = 0.0
    assert abs(clock.now_ms() - server_ms(client)) < 10


def test_of_the_readings_of_one_sync_a_fast_one_ends_it(client: redis.Redis) -> None:
    class SlowFirst(CountingClient):
        def time(self) -> Any:
            self.delay_s = MAX_TRUSTED_RTT_S * 2 if self.reads == 0 else 0.0
            return super().time()

    slow_first = SlowFirst(client)
    clock = RedisClock(slow_first)  # type: ignore[arg-type]
    assert abs(clock.now_ms() - server_ms(client)) < 10
    assert slow_first.reads == 2


def test_after_forget_only_a_fast_reading_is_used(client: redis.Redis) -> None:
    counting = CountingClient(client)
    clock = RedisClock(counting)  # type: ignore[arg-type]
    clock.now_ms()
    clock.forget()  # a Redis error: the server may have changed
    counting.delay_s = MAX_TRUSTED_RTT_S * 2
    with pytest.raises(SlowClockReading):
        clock.now_ms()


def test_a_beat_that_cannot_read_the_clock_in_time_is_not_written(client: redis.Redis) -> None:
    counting = CountingClient(client)
    counting.delay_s = MAX_TRUSTED_RTT_S * 2
    pulse = PodBeat(counting, Keys(), "pod-slow", every_s=0.5, ttl_s=2.0)  # type: ignore[arg-type]
    assert pulse.beat() is None
    assert client.zscore(Keys().pods(), "pod-slow") is None


def test_a_beat_is_one_zadd_scored_on_the_redis_clock(client: redis.Redis) -> None:
    keys = Keys()
    pulse = PodBeat(client, keys, "pod-a", every_s=0.5, ttl_s=2.0)
    pulse.beat()  # the first beat also reads TIME
    with client.monitor() as monitor:
        beaten = pulse.beat()
        commands = []
        for event in monitor.listen():
            command = str(event["command"]).split(" ")[0]
            if command not in CONNECTION_SETUP:  # the pool's new connection says HELLO
                commands.append(command)
            if command == "ZADD":
                break
    assert commands == ["ZADD"]
    assert beaten is not None
    assert abs(beaten - server_ms(client)) < 50
    assert beaten_within(client, keys, "pod-a", 2.0)


def test_a_late_beat_never_sets_the_pod_back(client: redis.Redis) -> None:
    """A beat delivered after a later one (held up in a partition) keeps the later score."""
    keys = Keys()
    pulse = PodBeat(client, keys, "pod-late", every_s=0.5, ttl_s=2.0)
    beaten = pulse.beat()
    assert beaten is not None
    ahead = beaten + 60_000
    client.zadd(keys.pods(), {"pod-late": ahead})
    assert pulse.beat() is not None
    assert client.zscore(keys.pods(), "pod-late") == ahead
