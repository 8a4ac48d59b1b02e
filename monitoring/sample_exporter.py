"""Serve the worker's real metric definitions with plausible sample values, no worker needed.

For checking dashboards and queries against ``worker.metrics.Metrics`` as it is defined today:
every metric is touched with sample label values, so every series name and label a real worker
can expose is present. ``python -m monitoring.sample_exporter --port 9808`` serves it until
interrupted; tests call :func:`populate` and :func:`serve` directly.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from cancelq.worker.metrics import Metrics

ACCOUNTS = ("main", "alt")
STATUSES = (
    "cancelled",
    "already_gone",
    "not_found",
    "too_late",
    "rejected",
    "auth_failed",
    "failed",
    "duplicate",
    "covered_by_kill",
)
RET_CODES = ("0", "110001", "110008", "10006", "10002", "http_503", "network")
RETRY_REASONS = ("clock", "rate_limit", "transient", "network", "not_found_recheck")
QUEUES = {"cancelq": 12.0, "unacked": 3.0, "deferred": 5.0}


def populate(metrics: Metrics, rounds: int = 1) -> None:
    """Touch every metric of ``metrics`` with sample label values; call again to add traffic."""
    for _ in range(rounds):
        for n, account in enumerate(ACCOUNTS):
            _touch_account(metrics, account, n)
    metrics.clock_offset.set(0.012)
    metrics.in_flight.set(2)
    metrics.ip_banned.set(0)
    for queue, depth in QUEUES.items():
        metrics.queue_depth.labels(queue=queue).set(depth)
    metrics.dead_letters.labels(reason="not_json").inc()
    metrics.kills.labels(account="main", category="linear").inc()
    metrics.ignored_fields.labels(field="strategy", reason="unknown").inc()
    metrics.store_errors.labels(kind="oom").inc()


def _touch_account(metrics: Metrics, account: str, n: int) -> None:
    for i, latency in enumerate((0.0008, 0.004, 0.03, 0.3, 2.5)):
        metrics.end_to_end.labels(account=account, category="linear").observe(latency * (n + 1))
        metrics.queue_wait.labels(account=account).observe(latency / 2)
        metrics.exchange_request.labels(account=account, endpoint="cancel").observe(latency / 3)
        metrics.ratelimit_wait.labels(account=account).observe(latency / 4)
        metrics.batch_size.labels(account=account, category="linear").observe(i + 1)
    metrics.exchange_request.labels(account=account, endpoint="time").observe(0.002)
    for count, ret_code in enumerate(RET_CODES, start=1):
        metrics.exchange_responses.labels(
            account=account,
            category="linear",
            endpoint="cancel",
            ret_code=ret_code,
        ).inc(10 // count)
    for status in STATUSES:
        metrics.outcomes.labels(account=account, status=status).inc()
    for reason in RETRY_REASONS:
        metrics.retries.labels(account=account, reason=reason).inc()
    metrics.dedup_hits.labels(account=account).inc()
    metrics.ratelimit_remaining.labels(account=account, endpoint="cancel").set(7 - n)
    metrics.ratelimit_limit.labels(account=account, endpoint="cancel").set(10)
    metrics.account_halted.labels(account=account).set(int(n == 0))


@contextmanager
def serve(metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``metrics.registry`` on ``host`` (on a free port by default); yield host:port."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    try:
        yield f"{host}:{_port(server)}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _port(server: WSGIServer) -> int:
    return int(server.server_address[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9808)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    args = parser.parse_args()
    metrics = Metrics()
    stop = threading.Event()
    with serve(metrics, args.host, args.port) as address:
        print(f"serving sample cancelq metrics on http://{address}/metrics", flush=True)
        try:
            while not stop.wait(args.interval):
                populate(metrics)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
