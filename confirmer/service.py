"""The confirmer service: leases decide which accounts this replica follows.

Threads: the caller's (lease loop and heartbeat, every ``lease_check_s``), the sweep (every
``sweep_interval_s``), the REST fallback, and one stream per owned account. A lease taken starts
that account's stream; a lease lost stops it at once (one owner per account). On stop, streams
close and leases are released, so another replica takes over without waiting for the TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from cancelq.accounts import Account
from cancelq.besteffort import safely
from cancelq.bybit.client import BybitClient, Credentials, new_session
from cancelq.bybit.clock import ServerClock
from cancelq.bybit.signing import signer_for
from cancelq.confirmations import now_ms
from cancelq.confirmer.config import ConfirmerConfig
from cancelq.confirmer.fallback import Budget, FallbackBudget, FallbackWorker, RestChecker
from cancelq.confirmer.leases import TAKEN, LeaseStore
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.resolver import Resolver, StreamSink
from cancelq.confirmer.store import ConfirmationStore
from cancelq.confirmer.stream import OrderStream
from cancelq.confirmer.sweeper import Ownership, Sweeper
from cancelq.errors import CancelqError
from cancelq.heartbeat import write_heartbeat
from cancelq.keys import Keys
from cancelq.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """What a confirmer is made of (built by :func:`build_confirmer`)."""

    settings: Settings
    config: ConfirmerConfig
    accounts: Mapping[str, Account]
    redis: redis.Redis
    metrics: ConfirmerMetrics


class Confirmer:
    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self.metrics = parts.metrics
        settings, config = parts.settings, parts.config
        keys = Keys(prefix=settings.key_prefix, queue=settings.queue)
        store = ConfirmationStore(
            parts.redis,
            keys,
            confirmation_ttl_s=settings.outcome_ttl_s,
            final_ttl_s=config.final_ttl_s,
        )
        self.leases = LeaseStore(parts.redis, keys, config.replica_id, config.lease_ttl_s)
        self.resolver = Resolver(store, parts.metrics)
        self.sink = StreamSink(self.resolver, parts.metrics)
        self.fallbacks = FallbackWorker(
            _checker(settings, parts.accounts),
            _budget(parts.redis, keys, parts.accounts, config),
            self.resolver.settle,
            parts.metrics,
        )
        self.streams: dict[str, OrderStream] = {}
        self.sweeper = Sweeper(
            self.resolver,
            Ownership(lambda: list(self.streams), self.sink.is_up, frozenset(parts.accounts)),
            self.fallbacks.submit,
            config,
            parts.metrics,
        )
        self._stop = threading.Event()
        self._sweep_thread = threading.Thread(target=self._sweep_loop, name="sweep", daemon=True)

    def run(self, stop: threading.Event, health_file: Path | None = None) -> None:
        """Block until ``stop`` is set."""
        self.fallbacks.start()
        self._sweep_thread.start()
        try:
            while not stop.is_set():
                self.tick()
                _beat(health_file)
                stop.wait(self._parts.config.lease_check_s)
        finally:
            self.shutdown()
            if health_file is not None:
                health_file.unlink(missing_ok=True)

    def tick(self) -> None:
        """Renew owned leases, drop lost ones, try free ones."""
        for alias in self._parts.accounts:
            try:
                held = self.leases.hold(alias)
            except CancelqError:
                log.warning("lease of %s not checked: redis unavailable", alias)
                continue
            if held and alias not in self.streams:
                self._start_stream(alias)
            elif not held and alias in self.streams:
                log.warning("lease of %s lost to another replica: stopping its stream", alias)
                self._stop_stream(alias)
            if held == TAKEN and alias in self.streams:
                log.info("lease of %s taken by %s", alias, self.leases.replica_id)
        safely(self._parts.metrics.leases.set, len(self.streams))

    def shutdown(self) -> None:
        self._stop.set()
        for alias in list(self.streams):
            self._stop_stream(alias)
            try:
                self.leases.release(alias)
            except CancelqError:
                log.warning("lease of %s not released (it will expire)", alias)
        self.fallbacks.stop()
        if self._sweep_thread.is_alive():
            self._sweep_thread.join(5)

    def _start_stream(self, alias: str) -> None:
        account = self._parts.accounts[alias]
        stream = OrderStream(
            account=account,
            signer=signer_for(account),
            url=self._parts.settings.bybit_ws_url,
            ca_bundle=self._parts.settings.http_ca_bundle,
            config=self._parts.config,
            listener=self.sink,
            on_reconnect=lambda a: safely(self._parts.metrics.reconnects.labels(a).inc),
        )
        self.streams[alias] = stream
        self.sweeper.forget_seen()
        stream.start()

    def _stop_stream(self, alias: str) -> None:
        stream = self.streams.pop(alias, None)
        if stream is not None:
            stream.stop()
        self.sink.forget(alias)

    def _sweep_loop(self) -> None:
        interval = self._parts.config.sweep_interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sweeper.sweep(now_ms())
            except CancelqError:
                log.warning("sweep failed (will retry)", exc_info=True)
            except Exception:  # the sweep must outlive any bug in one pass
                log.exception("sweep crashed (will retry)")
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _checker(settings: Settings, accounts: Mapping[str, Account]) -> RestChecker:
    client = BybitClient(
        settings.bybit_base_url,
        new_session(4, settings.http_ca_bundle),
        (settings.http_connect_timeout_s, settings.http_read_timeout_s),
    )
    credentials = {
        alias: Credentials(a.api_key, signer_for(a), a.recv_window_ms)
        for alias, a in accounts.items()
    }
    return RestChecker(client, credentials, ServerClock(settings.clock_refresh_s))


def _budget(
    client: redis.Redis,
    keys: Keys,
    accounts: Mapping[str, Account],
    config: ConfirmerConfig,
) -> FallbackBudget:
    budgets = {}
    for alias, account in accounts.items():
        per_s = config.fallback_per_s or account.rate_limit_per_s
        budgets[alias] = Budget(per_s=per_s, capacity=max(1.0, per_s))
    return FallbackBudget(client, keys, budgets)


def _beat(health_file: Path | None) -> None:
    """The worker's heartbeat format, so ``cancelq health`` probes a confirmer pod too."""
    if health_file is None:
        return
    try:
        write_heartbeat(health_file, ready=True)
    except OSError:
        log.warning("cannot write heartbeat file %s", health_file)
