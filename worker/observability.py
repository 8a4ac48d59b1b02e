"""What a worker pod shows operators: /metrics, a heartbeat file for probes, and the fleet-wide
gauges (queue depths, halted accounts), sampled by one pod of the fleet (``pods.fleet_sampler``):
the others export no copy, which ``max by`` reads the same. Every pod sweeps the outbox (no
lost cancel waits for the sampling pod to be live).

Runs beside Celery (started and stopped by a worker bootstep, ``worker/host/bootsteps.py``);
every failure here is logged and swallowed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from prometheus_client import start_http_server

from cancelq.besteffort import safely
from cancelq.errors import StoreError
from cancelq.heartbeat import write_heartbeat
from cancelq.keys import Keys
from cancelq.replies import as_text
from cancelq.worker.metrics import Metrics
from cancelq.worker.pods import fleet_sampler, unacked_of
from cancelq.worker.ratelimit.lanes import Lanes
from cancelq.worker.rescue import Rescuer

log = logging.getLogger(__name__)


class Observer:
    """Serves /metrics and, every ``interval_s``, writes the heartbeat and samples queues."""

    def __init__(
        self,
        metrics: Metrics,
        client: redis.Redis,
        keys: Keys,
        lanes: Lanes,
        rescuer: Rescuer,
        *,
        host: str,
        port: int,
        health_file: Path,
        interval_s: float,
        accounts: Iterable[str] = (),
        pod_id: str = "",
        pod_ttl_s: float = 2.0,
    ) -> None:
        """``pod_id``: this worker process's id in the pod registry (the fleet-wide gauges are
        sampled by one pod, ``pods.fleet_sampler``)."""
        self.metrics = metrics
        self._redis = client
        self._lanes = lanes
        self._rescuer = rescuer
        self._keys = keys
        self._host, self._port = host, port
        self._health_file = health_file
        self._interval_s = interval_s
        self._accounts = list(accounts)  # the halted gauge's label set (the accounts file)
        self._pod_id, self._pod_ttl_s = pod_id, pod_ttl_s
        self._stop = threading.Event()
        self.ready = False
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._port:
            self._server, _ = start_http_server(
                self._port, addr=self._host, registry=self.metrics.registry
            )
            log.info("metrics on http://%s:%d/metrics", self._host, self._port)
        self._thread = threading.Thread(target=self._loop, name="cancelq-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        self._health_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self._interval_s)

    def mark_ready(self) -> None:
        """The consumer is connected and consuming (Celery's ``worker_ready``)."""
        self.ready = True
        self.beat()

    def beat(self) -> None:
        try:
            write_heartbeat(self._health_file, ready=self.ready)
        except OSError:
            log.warning("cannot write heartbeat file %s", self._health_file, exc_info=True)
        try:
            rescued = self._rescuer.sweep().rescued
            sample = self._sample_the_fleet()
        except (redis.RedisError, StoreError):
            log.debug("queue depth not sampled: redis unavailable")
            return
        if rescued:
            safely(self.metrics.rescued.inc, rescued)
        if sample is None:
            self._drop_fleet_gauges()
        else:
            self._export(sample)

    def _sample_the_fleet(self) -> FleetSample | None:
        """The fleet-wide sample, or None when another pod samples it (one registry read)."""
        pods = fleet_sampler(self._redis, self._keys, self._pod_id, self._pod_ttl_s)
        if pods is None:
            return None
        return FleetSample(
            waiting=int(self._redis.llen(self._keys.queue)),
            unacked=unacked_of(self._redis, self._keys, pods),
            deferred=self._lanes.parked(),
            halted=frozenset(as_text(name) for name in self._redis.hkeys(self._keys.halts())),
        )

    def _export(self, sample: FleetSample) -> None:
        gauge = self.metrics.queue_depth
        safely(gauge.labels("cancelq").set, sample.waiting)
        safely(gauge.labels("unacked").set, sample.unacked)
        safely(gauge.labels("deferred").set, sample.deferred)
        for account in self._accounts:
            safely(self.metrics.account_halted.labels(account).set, int(account in sample.halted))

    def _drop_fleet_gauges(self) -> None:
        """No stale copy of another pod's sample (a pod that sampled before, then lost its
        turn to a smaller live id, or the halted gauges primed at 0 at start)."""
        for queue in QUEUES:
            safely(self.metrics.queue_depth.remove, queue)
        for account in self._accounts:
            safely(self.metrics.account_halted.remove, account)


#: The ``queue`` labels of ``cancelq_queue_depth``.
QUEUES = ("cancelq", "unacked", "deferred")


@dataclass(frozen=True)
class FleetSample:
    """One reading of the fleet-wide gauges."""

    waiting: int  # in the broker list
    unacked: int  # taken, not acknowledged, over every registered pod
    deferred: int  # parked in lanes
    halted: frozenset[str]  # accounts an operator halted
