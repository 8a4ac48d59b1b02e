"""The fleet-wide gauges (queue depths, halted accounts) are sampled by one pod
(worker/pods.py ``fleet_sampler``): the live pod with the smallest id reads them, every
registered pod's unacked records included; every other pod reads the registry once and
exports no copy (``max by`` then reads the one sample). Every pod still sweeps the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from cancelq.keys import Keys
from cancelq.worker.metrics import Metrics
from cancelq.worker.observability import QUEUES, Observer
from cancelq.worker.pods import fleet_sampler, unacked_of, unacked_total
from cancelq.worker.ratelimit.lanes import Lanes
from cancelq.worker.rescue import Rescuer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEYS = Keys()
TTL_S = 2.0
ACCOUNTS = ("desk1", "desk2")


@pytest.fixture
def fleet(client: redis.Redis) -> redis.Redis:
    """Pods a (dead for 10 s, 2 records), b and c (live; 1 and 0), kombu's shared hash (1),
    2 cancels in the broker list, desk1 halted."""
    now_ms = 1_800_000_000_000
    client.zadd(KEYS.pods(), {"a": now_ms - 10_000, "b": now_ms - 300, "c": now_ms})
    client.hset(KEYS.pod_unacked("a"), mapping={"t1": "m", "t2": "m"})
    client.hset(KEYS.pod_unacked("b"), "t3", "m")
    client.hset(KEYS.unacked, "t4", "m")
    client.rpush(KEYS.queue, "m1", "m2")
    client.hset(KEYS.halts(), "desk1", "{}")
    return client


def test_the_smallest_live_pod_samples_every_registered_pod(fleet: redis.Redis) -> None:
    pods = fleet_sampler(fleet, KEYS, "b", TTL_S)
    assert pods is not None
    assert sorted(pods) == ["a", "b", "c"]
    assert unacked_of(fleet, KEYS, pods) == 4 == unacked_total(fleet, KEYS)


@pytest.mark.parametrize("pod", ["c", "a", "unregistered"])
def test_every_other_pod_samples_nothing(fleet: redis.Redis, pod: str) -> None:
    """c: a smaller live id samples; a: dead (its records are counted by b); unregistered: has
    not beaten yet."""
    assert fleet_sampler(fleet, KEYS, pod, TTL_S) is None


def test_when_the_sampler_dies_the_next_live_pod_samples(fleet: redis.Redis) -> None:
    fleet.zadd(KEYS.pods(), {"c": 1_800_000_005_000})  # b's beat is now 5.3 s old
    assert fleet_sampler(fleet, KEYS, "c", TTL_S) is not None


def observer(client: redis.Redis, pod_id: str, tmp_path: Path) -> Observer:
    metrics = Metrics()
    metrics.prime(ACCOUNTS, statuses=(), retry_reasons=(), categories=(), endpoints=())
    return Observer(
        metrics,
        client,
        KEYS,
        Lanes(client, KEYS, park_ttl_s=60, lease_ms=30_000),
        Rescuer(client, KEYS, after_s=30),
        host="127.0.0.1",
        port=0,
        health_file=tmp_path / f"{pod_id}.health",
        interval_s=5,
        accounts=ACCOUNTS,
        pod_id=pod_id,
        pod_ttl_s=TTL_S,
    )


def depth(o: Observer, queue: str) -> float | None:
    return o.metrics.registry.get_sample_value("cancelq_queue_depth", {"queue": queue})


def halted(o: Observer, account: str) -> float | None:
    return o.metrics.registry.get_sample_value("cancelq_account_halted", {"account": account})


def test_only_the_sampling_pod_exports_the_fleet_gauges(fleet: redis.Redis, tmp_path: Path) -> None:
    sampling, other = observer(fleet, "b", tmp_path), observer(fleet, "c", tmp_path)
    sampling.beat()
    other.beat()
    assert [depth(sampling, q) for q in QUEUES] == [2, 4, 0]
    assert [halted(sampling, a) for a in ACCOUNTS] == [1, 0]
    assert [depth(other, q) for q in QUEUES] == [None, None, None]
    assert [halted(other, a) for a in ACCOUNTS] == [None, None], "primed at 0, then dropped"


def test_a_pod_that_stops_sampling_drops_its_copies(fleet: redis.Redis, tmp_path: Path) -> None:
    c = observer(fleet, "c", tmp_path)
    fleet.zadd(KEYS.pods(), {"c": 1_800_000_005_000})  # b died: c samples
    c.beat()
    assert [depth(c, q) for q in QUEUES] == [2, 4, 0]
    assert halted(c, "desk1") == 1
    fleet.zadd(KEYS.pods(), {"b": 1_800_000_005_100})  # b is back (a restart with its id)
    c.beat()
    assert [depth(c, q) for q in QUEUES] == [None, None, None]
    assert [halted(c, a) for a in ACCOUNTS] == [None, None]


def test_a_pod_that_does_not_sample_still_rescues_lost_cancels(
    fleet: redis.Redis, tmp_path: Path
) -> None:
    """The outbox sweep runs on every pod: a lost cancel never waits for the sampler."""
    fleet.zadd(KEYS.outbox(), {"lost-1": 0})  # waiting since the epoch, in no list or hash
    fleet.hset(KEYS.outbox_messages(), "lost-1", '{"properties": {}}')
    other = observer(fleet, "c", tmp_path)
    other.beat()
    assert fleet.lrange(KEYS.queue, 0, -1)[-1] == b'{"properties": {}}'
    assert other.metrics.registry.get_sample_value("cancelq_rescued_total") == 1
