"""The bench's readings of a Redis server against a real one: its wakeups (voluntary context
switches) follow round trips, not commands, and commandstats' time is read per command."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from bench.measure import command_usec, commandstats
from bench.scenarios.redis_cost import wakeups
from cancelq.harness.embedded_redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PINGS = 50


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with RedisServer() as server:
        yield redis.Redis.from_url(server.url)


def woken(client: redis.Redis) -> int:
    count = wakeups(client)
    assert count is not None, "the test Redis runs here: /proc must show its context switches"
    return count


def test_each_round_trip_to_an_idle_redis_wakes_it_a_pipeline_does_once(
    client: redis.Redis,
) -> None:
    """A command that reaches Redis asleep wakes it (a pause of 2 ms lets it fall asleep
    between two: a command that arrives before it sleeps wakes nothing, so back-to-back round
    trips may count fewer wakeups than round trips)."""
    before = woken(client)
    for _ in range(PINGS):
        client.ping()
        time.sleep(0.002)
    one_by_one = woken(client)
    with client.pipeline(transaction=False) as pipe:
        for _ in range(PINGS):
            pipe.ping()
        pipe.execute()
    pipelined = woken(client)
    assert one_by_one - before >= PINGS * 4 // 5
    assert pipelined - one_by_one <= 10


def test_command_time_is_read_for_each_command(client: redis.Redis) -> None:
    calls0, usec0 = commandstats(client), command_usec(client)
    for i in range(PINGS):
        client.set(f"k{i}", "v" * 100_000)  # a copy of 100 kB: microseconds each, not nothing
    calls1, usec1 = commandstats(client), command_usec(client)
    assert calls1["set"] - calls0.get("set", 0) == PINGS
    assert usec1["set"] > usec0.get("set", 0)
