"""Durable enqueue: what "held by a replica" costs a producer. Enqueue latency (one cancel per
call, the MULTI with its outbox entry) with ``min_replicas=0`` (the master alone) and
``min_replicas=1`` (then ``WAIT 1``) against the bench's Redis with one replica on the same
machine; medians over 3 repeats, both measured in each repeat, the ratio from the same run."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import redis

from bench.context import Context
from bench.measure import Figure, Spread, percentile
from cancelq.harness.embedded_redis import RedisServer
from cancelq.producers.client import CancelProducer

REPEATS = 3
COUNTS = {"quick": 500, "full": 3000}
DB = 9  # apart from the databases the workers of other scenarios read
SYNC_TIMEOUT_S = 20.0


def in_sync(replica: RedisServer) -> bool:
    info = redis.Redis.from_url(replica.url, decode_responses=True).info("replication")
    return bool(info.get("master_link_status") == "up")


def enqueue_ms(producer: CancelProducer, alias: str, n: int, tag: str) -> list[float]:
    """``n`` enqueues one after another; each one's wall time in ms."""
    samples = []
    for i in range(n):
        started = time.perf_counter()
        producer.enqueue(
            account=alias, category="linear", symbol="BTCUSDT", orderLinkId=f"{tag}-{i}"
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(ctx: Context) -> None:
    master = ctx.stack.redis_server
    url = urlunsplit(urlsplit(master.url)._replace(path=f"/{DB}"))
    n = COUNTS.get(ctx.sizes.name, COUNTS["quick"])
    alias = ctx.keys.free.alias
    stats: dict[int, dict[str, list[float]]] = {
        0: {"p50": [], "p99": []},
        1: {"p50": [], "p99": []},
    }
    with RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        while not in_sync(replica):
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not sync with the bench's Redis")
            time.sleep(0.05)
        client = redis.Redis.from_url(url)
        for repeat in range(REPEATS):
            for replicas in (0, 1):
                ctx.say(f"durable enqueue: repeat {repeat + 1}/{REPEATS}, min_replicas={replicas}")
                producer = CancelProducer(client, min_replicas=replicas, replica_timeout_ms=1000)
                samples = enqueue_ms(producer, alias, n, f"dur-{repeat}-{replicas}")
                stats[replicas]["p50"].append(percentile(samples, 50))
                stats[replicas]["p99"].append(percentile(samples, 99))
                client.flushdb()
        client.close()
    for q in ("p50", "p99"):
        ctx.results.add(
            Figure(
                "durable enqueue",
                f"enqueue latency {q}, min_replicas=1",
                Spread.of_repeats(stats[1][q]),
                "ms",
                Spread.of_repeats(stats[0][q]),
                "min_replicas=0",
                note=f"{n} sequential enqueues per repeat, {REPEATS} repeats, one replica on "
                "loopback (WAIT 1, 1000 ms timeout); medians of the per-repeat percentiles",
                fmt="{:.3f}",
            )
        )
