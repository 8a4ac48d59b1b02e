"""Prometheus metrics of a worker pod.

Names and labels are a contract with ``monitoring/`` (alert rules, dashboards) and are listed in
``docs/DESIGN.md``. Every label set is bounded: ``account`` is an alias from the accounts file or
``unknown``; ``ret_code`` is Bybit's code (a bounded set in practice) or ``http_<status>`` /
``network``. Never an order id, an API key or a secret.

Updating a metric must never fail a cancel: the pipeline calls these through
:func:`cancelq.besteffort.safely`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cancelq.besteffort import safely
from cancelq.errors import STORE_ERROR_KINDS, StoreError

#: Sub-millisecond (loopback simulator) to tens of seconds (retries with backoff).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 3, 5, 10, 20)
UNKNOWN_ACCOUNT = "unknown"


class Metrics:
    """All metrics of one worker, registered in one registry (a private one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.end_to_end = Histogram(
            "cancelq_end_to_end_seconds",
            "Producer enqueuedAt to exchange reply.",
            ["account", "category"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "cancelq_queue_wait_seconds",
            "Producer enqueuedAt to the worker starting the request.",
            ["account"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.exchange_request = Histogram(
            "cancelq_exchange_request_seconds",
            "One HTTP round trip to the exchange.",
            ["account", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.exchange_responses = Counter(
            "cancelq_exchange_responses",
            "Exchange replies by Bybit retCode (or http_<status> / network).",
            ["account", "category", "endpoint", "ret_code"],
            registry=r,
        )
        self.outcomes = Counter(
            "cancelq_outcomes",
            "Final outcomes by status.",
            ["account", "status"],
            registry=r,
        )
        self.retries = Counter(
            "cancelq_retries",
            "Retries scheduled, by reason.",
            ["account", "reason"],
            registry=r,
        )
        self.dedup_hits = Counter(
            "cancelq_dedup_hits",
            "Duplicates answered from an earlier request.",
            ["account"],
            registry=r,
        )
        self.ratelimit_wait = Histogram(
            "cancelq_ratelimit_wait_seconds",
            "Time a cancel waited for its key's rate budget.",
            ["account"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "cancelq_ratelimit_remaining",
            "Last X-Bapi-Limit-Status seen.",
            ["account", "endpoint"],
            registry=r,
        )
        self.ratelimit_limit = Gauge(
            "cancelq_ratelimit_limit",
            "Last X-Bapi-Limit seen.",
            ["account", "endpoint"],
            registry=r,
        )
        self.batch_size = Histogram(
            "cancelq_batch_size",
            "Cancels per exchange request.",
            ["account", "category"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.clock_offset = Gauge(
            "cancelq_clock_offset_seconds",
            "Exchange clock minus local clock.",
            registry=r,
        )
        self.in_flight = Gauge(
            "cancelq_in_flight",
            "Requests being processed by this worker.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "cancelq_queue_depth",
            "Cancels waiting: queue=cancelq (broker list), unacked (taken, not finished), "
            "deferred (parked for a retry or a rate budget).",
            ["queue"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cancelq_dead_letters",
            "Messages that could not be read as a cancel.",
            ["reason"],
            registry=r,
        )
        self.ip_banned = Gauge(
            "cancelq_ip_banned",
            "1 while this pod has stopped sending after an HTTP 403.",
            registry=r,
        )
        self.rescued = Counter(
            "cancelq_rescued",
            "Enqueued cancels the broker lost, pushed again from the outbox.",
            registry=r,
        )
        self.kills = Counter(
            "cancelq_kills",
            "Kill-switch runs.",
            ["account", "category"],
            registry=r,
        )
        self.ignored_fields = Counter(
            "cancelq_ignored_fields",
            "Message fields read past without refusing the cancel (unknown, implausible,"
            " invalid side fields); field names are bounded (worker/field_notes.py).",
            ["field", "reason"],
            registry=r,
        )

        self.account_halted = Gauge(
            "cancelq_account_halted",
            "1 while an operator has halted the account (cancelq halt): its cancels wait parked.",
            ["account"],
            registry=r,
        )

        self.store_errors = Counter(
            "cancelq_store_errors",
            "Redis failures the worker met and retried, by kind (oom, readonly, noperm,"
            " unavailable, not_replicated, other).",
            ["kind"],
            registry=r,
        )

    def store_error(self, exc: StoreError) -> None:
        """Count a Redis failure by its kind (best effort)."""
        safely(self.store_errors.labels(exc.kind).inc)

    def prime(
        self,
        accounts: Iterable[str],
        *,
        statuses: Iterable[str],
        retry_reasons: Iterable[str],
        categories: Iterable[str],
        endpoints: Iterable[str],
    ) -> None:
        """Create every bounded label series at 0, so rate() and increase() see the first event
        (a counter that appears with 1 is invisible to them)."""
        categories = list(categories)
        for account in accounts:
            for status in statuses:
                self.outcomes.labels(account, status)
            for reason in retry_reasons:
                self.retries.labels(account, reason)
            for category in [*categories, "all"]:
                self.kills.labels(account, category)
            for category in categories:
                for endpoint in endpoints:
                    self.exchange_responses.labels(account, category, endpoint, "0")
            self.dedup_hits.labels(account)
            self.account_halted.labels(account).set(0)
        for kind in STORE_ERROR_KINDS:
            self.store_errors.labels(kind)
        for field in ("enqueuedAt", "requestId"):
            for reason in ("implausible", "invalid"):
                self.ignored_fields.labels(field, reason)
