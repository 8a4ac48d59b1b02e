"""Worker processes show that they are alive in Redis, so that others can take over what a
dead one held (``worker/takeover.py``).

Each consuming worker process (a prefork pool's children share their parent's) has a pod id
and beats every ``pod_beat_s`` from a thread of its own, beside Celery's event loop: the pod's
entry in the ``<prefix>:pods`` zset gets the Redis clock (one ZADD a beat, no key of its own;
the clock is read locally between ``TIME`` readings, ``worker/redis_clock.py``). A process
whose last beat is older than ``pod_ttl_s`` is dead to the others. The thread never stops
before the process ends: a warm shutdown still runs requests (and kombu hands back the rest),
so the pod stays alive until it exits and is dead a TTL later.

After Redis was unreachable (a restart, a Sentinel failover: the new master's beats are as old
as replication left them), a pod judges the others again only once it has beaten without a
break for a TTL: every live pod has beaten again by then, and none is taken for dead because
it could not beat while nobody could.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text, time_ms
from cancelq.worker.redis_clock import RedisClock

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def new_pod_id() -> str:
    """``<host>-<pid>-<random>``: unique per process start, readable in ``cancelq top``."""
    host = _UNSAFE.sub("_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class PodBeat:
    """The heartbeat of one worker process in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        pod_id: str,
        *,
        every_s: float,
        ttl_s: float,
        after_beat: Callable[[int], object] | None = None,
        on_store_error: Callable[[StoreError], None] = lambda _: None,
    ) -> None:
        """``after_beat`` runs after every beat in the same thread, given the beat's Redis
        clock in ms (the takeover sweep); its errors are logged, never end the beat.
        ``on_store_error`` counts a failed beat."""
        self._on_store_error = on_store_error
        if ttl_s <= every_s:
            raise ValueError("the pod TTL must be longer than the beat interval")
        self.pod_id = pod_id
        self._keys = keys
        self._every_s = every_s
        self._redis = client
        self._clock = RedisClock(client)
        self._after_beat = after_beat
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._ttl_s = ttl_s
        self._beating_since: float | None = None  # monotonic; None after a failed beat

    def beat(self) -> int | None:
        """One beat; the Redis clock in ms, or None (logged) when Redis cannot be reached."""
        try:
            now_ms = self._clock.now_ms()
            # GT: a beat held up in a partition and delivered after a later one (on a connection
            # the client already dropped) must not set the pod back (the fault tier's cut test
            # saw it: the healthy pod took over what the cut-off pod had taken since the heal).
            # A step back of the Redis clock then leaves scores ahead: pods look alive longer,
            # never dead sooner.
            self._redis.zadd(self._keys.pods(), {self.pod_id: now_ms}, gt=True)
        except redis.RedisError as exc:
            self._clock.forget()  # a failover's new master: its own clock
            error = StoreError("pod heartbeat not written")
            error.__cause__ = exc
            self._on_store_error(error)
            log.warning("pod heartbeat not written: redis %s", error.kind)
            self._beating_since = None
            return None
        if self._beating_since is None:
            self._beating_since = time.monotonic()
        return int(now_ms)

    def steady(self) -> bool:
        """Has this pod beaten without a break for a TTL (the others had time to beat too)?"""
        since = self._beating_since
        return since is not None and time.monotonic() - since >= self._ttl_s

    def start(self) -> None:
        """Beat now, then every ``every_s`` until the process ends."""
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="cancelq-pod-beat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (tests; a worker never calls it: it is dead a TTL after it exits)."""
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self._every_s):
            now_ms = self.beat()
            if now_ms is not None and self.steady() and self._after_beat is not None:
                try:
                    self._after_beat(now_ms)
                except Exception:  # a sweep must never stop the heartbeat
                    log.warning("after-beat work failed", exc_info=True)


def beaten_within(client: redis.Redis, keys: Keys, pod_id: str, ttl_s: float) -> bool:
    """Has ``pod_id`` beaten within ``ttl_s`` on the Redis clock (alive, as the others judge)?"""
    with client.pipeline(transaction=False) as pipe:
        pipe.zscore(keys.pods(), pod_id)
        pipe.time()
        score, clock = pipe.execute()
    return score is not None and float(score) > time_ms(clock) - ttl_s * 1000


def unacked_total(client: redis.Redis, keys: Keys) -> int:
    """Messages taken and not acknowledged, over every registered worker process (and kombu's
    shared hash of older workers)."""
    registry: list[Any] = client.zrange(keys.pods(), 0, -1)
    return unacked_of(client, keys, [as_text(pod) for pod in registry])


def fleet_sampler(client: redis.Redis, keys: Keys, pod_id: str, ttl_s: float) -> list[str] | None:
    """Every registered pod when ``pod_id`` is the one pod that samples the fleet-wide gauges
    (queue depths, halted accounts): the live pod with the smallest id (live: beaten within
    ``ttl_s`` of the freshest beat, so no clock is read); None, after this one read of the
    registry, for every other pod. When every pod sampled, an idle fleet of N pods read the same
    keys N times per sampling period, and the unacked count (one HLEN per registered pod) N²
    times."""
    registry: list[Any] = client.zrange(keys.pods(), 0, -1, withscores=True)
    beats = {as_text(pod): float(score) for pod, score in registry}
    if pod_id not in beats:
        return None
    freshest = max(beats.values())
    live = [pod for pod, beat in beats.items() if beat >= freshest - ttl_s * 1000]
    if min(live) != pod_id:
        return None
    return list(beats)


def unacked_of(client: redis.Redis, keys: Keys, pods: list[str]) -> int:
    """Messages taken and not acknowledged by ``pods`` (and in kombu's shared hash)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hlen(keys.unacked)
        for pod in pods:
            pipe.hlen(keys.pod_unacked(pod))
        return sum(int(n) for n in pipe.execute())
