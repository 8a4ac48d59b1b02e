"""What a worker pod shows operators: /metrics, a heartbeat file for probes, queue depth (the
fleet-wide unacked count from one pod only, ``pods.fleet_unacked``).

Runs beside Celery (started and stopped by a worker bootstep, ``worker/host/bootsteps.py``);
every failure here is logged and swallowed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
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
from cancelq.worker.pods import fleet_unacked
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
        """``pod_id``: this worker process's id in the pod registry (the fleet-wide unacked
        count is sampled by one pod, ``pods.fleet_unacked``)."""
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
            waiting = self._redis.llen(self._keys.queue)
            unacked = fleet_unacked(self._redis, self._keys, self._pod_id, self._pod_ttl_s)
            deferred = self._lanes.parked()
            rescued = self._rescuer.sweep().rescued
            halted = set(self._redis.hkeys(self._keys.halts()))
        except (redis.RedisError, StoreError):
            log.debug("queue depth not sampled: redis unavailable")
            return
        gauge = self.metrics.queue_depth
        safely(gauge.labels("cancelq").set, waiting)
        if unacked is None:  # another pod counts it: no stale copy here for max by (queue)
            safely(gauge.remove, "unacked")
        else:
            safely(gauge.labels("unacked").set, unacked)
        safely(gauge.labels("deferred").set, deferred)
        if rescued:
            safely(self.metrics.rescued.inc, rescued)
        names = {as_text(name) for name in halted}
        for account in self._accounts:
            safely(self.metrics.account_halted.labels(account).set, int(account in names))
