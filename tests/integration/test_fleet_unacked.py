"""The fleet-wide unacked gauge is counted by one pod (worker/pods.py ``fleet_unacked``): the
live pod with the smallest id counts every registered pod's records; every other pod reads
the registry once and exports no copy (``max by (queue)`` then reads the one counter)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from cancelq.keys import Keys
from cancelq.worker.metrics import Metrics
from cancelq.worker.observability import Observer
from cancelq.worker.pods import fleet_unacked, unacked_total
from cancelq.worker.ratelimit.lanes import Lanes
from cancelq.worker.rescue import Rescuer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEYS = Keys()
TTL_S = 2.0


@pytest.fixture
def fleet(client: redis.Redis) -> redis.Redis:
    """Pods a (dead for 10 s, 2 records), b and c (live; 1 and 0), kombu's shared hash (1)."""
    now_ms = 1_800_000_000_000
    client.zadd(KEYS.pods(), {"a": now_ms - 10_000, "b": now_ms - 300, "c": now_ms})
    client.hset(KEYS.pod_unacked("a"), mapping={"t1": "m", "t2": "m"})
    client.hset(KEYS.pod_unacked("b"), "t3", "m")
    client.hset(KEYS.unacked, "t4", "m")
    return client


def test_the_smallest_live_pod_counts_every_registered_pods_records(fleet: redis.Redis) -> None:
    assert fleet_unacked(fleet, KEYS, "b", TTL_S) == 4 == unacked_total(fleet, KEYS)


@pytest.mark.parametrize("pod", ["c", "a", "unregistered"])
def test_every_other_pod_counts_nothing(fleet: redis.Redis, pod: str) -> None:
    """c: a smaller live id counts; a: dead (its records are counted by b); unregistered: has
    not beaten yet."""
    assert fleet_unacked(fleet, KEYS, pod, TTL_S) is None


def test_when_the_counter_dies_the_next_live_pod_counts(fleet: redis.Redis) -> None:
    fleet.zadd(KEYS.pods(), {"c": 1_800_000_005_000})  # b's beat is now 5.3 s old
    assert fleet_unacked(fleet, KEYS, "c", TTL_S) == 4


def observer(client: redis.Redis, pod_id: str, tmp_path: Path) -> Observer:
    return Observer(
        Metrics(),
        client,
        KEYS,
        Lanes(client, KEYS, park_ttl_s=60, lease_ms=30_000),
        Rescuer(client, KEYS, after_s=30),
        host="127.0.0.1",
        port=0,
        health_file=tmp_path / f"{pod_id}.health",
        interval_s=5,
        pod_id=pod_id,
        pod_ttl_s=TTL_S,
    )


def unacked_gauge(o: Observer) -> float | None:
    return o.metrics.registry.get_sample_value("cancelq_queue_depth", {"queue": "unacked"})


def test_only_the_counting_pod_exports_the_gauge(fleet: redis.Redis, tmp_path: Path) -> None:
    counting, other = observer(fleet, "b", tmp_path), observer(fleet, "c", tmp_path)
    counting.beat()
    other.beat()
    assert unacked_gauge(counting) == 4
    assert unacked_gauge(other) is None
    assert other.metrics.registry.get_sample_value("cancelq_queue_depth", {"queue": "cancelq"}) == 0


def test_a_pod_that_stops_counting_drops_its_copy(fleet: redis.Redis, tmp_path: Path) -> None:
    c = observer(fleet, "c", tmp_path)
    fleet.zadd(KEYS.pods(), {"c": 1_800_000_005_000})  # b died: c counts
    c.beat()
    assert unacked_gauge(c) == 4
    fleet.zadd(KEYS.pods(), {"b": 1_800_000_005_100})  # b is back (a restart with its id)
    c.beat()
    assert unacked_gauge(c) is None
