"""The confirmer's metrics (names are a contract with ``monitoring/``).

* ``cancelq_confirm_latency_seconds`` (histogram; account, result): the exchange accepted the
  cancel -> its confirmation is known.
* ``cancelq_confirmations_total`` (counter; account, result, via): confirmations written; via is
  ``stream``, ``rest`` or ``deadline``.
* ``cancelq_confirm_fallbacks_total`` (counter; account, reason): REST checks sent; reason is
  ``stream_down`` or ``late``.
* ``cancelq_confirm_stream_reconnects_total`` (counter; account): reconnects after a loss.
* ``cancelq_confirm_stream_up`` (gauge; account): 1 while this replica's stream of the account
  is authenticated and subscribed, 0 while it is down.
* ``cancelq_confirm_pending`` (gauge): accepted cancels awaiting confirmation, all accounts.
* ``cancelq_confirm_leases`` (gauge): accounts this replica owns.

``account`` is an alias of the accounts file; a replica that loses an account's lease removes
that account's ``stream_up`` series (only the owner reports it).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ConfirmerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "cancelq_confirm_latency_seconds",
            "Exchange accept of a cancel to its confirmation being known",
            ["account", "result"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.confirmations = Counter(
            "cancelq_confirmations",
            "Confirmations written, by result and by what gave them",
            ["account", "result", "via"],
            registry=r,
        )
        self.fallbacks = Counter(
            "cancelq_confirm_fallbacks",
            "REST order-status checks made instead of waiting for the stream",
            ["account", "reason"],
            registry=r,
        )
        self.reconnects = Counter(
            "cancelq_confirm_stream_reconnects",
            "Private stream reconnect attempts after a loss",
            ["account"],
            registry=r,
        )
        self.stream_up = Gauge(
            "cancelq_confirm_stream_up",
            "1 while the account's private order stream is authenticated and subscribed",
            ["account"],
            registry=r,
        )
        self.pending = Gauge(
            "cancelq_confirm_pending", "Accepted cancels awaiting confirmation", registry=r
        )
        self.leases = Gauge(
            "cancelq_confirm_leases", "Accounts whose stream this replica owns", registry=r
        )

    def stream_gone(self, account: str) -> None:
        """This replica no longer owns the account: drop its series."""
        with contextlib.suppress(KeyError):
            self.stream_up.remove(account)


def populate(metrics: ConfirmerMetrics) -> None:
    """Touch every metric once (monitoring tests and the sample exporter)."""
    metrics.latency.labels("main", "confirmed_cancelled").observe(0.02)
    metrics.confirmations.labels("main", "confirmed_cancelled", "stream").inc()
    metrics.fallbacks.labels("main", "late").inc()
    metrics.reconnects.labels("main").inc()
    metrics.stream_up.labels("main").set(1)
    metrics.pending.set(0)
    metrics.leases.set(1)
