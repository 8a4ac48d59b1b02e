"""The simulator's shared state: one object holding every component, built from the config."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cancelq.simulator.accounts import AccountStore, load_accounts
from cancelq.simulator.config import SimulatorConfig
from cancelq.simulator.faults import FaultInjector
from cancelq.simulator.orders import OrderBook
from cancelq.simulator.ratelimit import RateLimiter
from cancelq.simulator.recorder import Recorder
from cancelq.simulator.retcodes import Dialect
from cancelq.simulator.ws import PrivateStreams


@dataclass(slots=True)
class SimulatorState:
    config: SimulatorConfig
    accounts: AccountStore
    book: OrderBook
    limiter: RateLimiter
    faults: FaultInjector
    recorder: Recorder
    dialect: Dialect
    batch_counts_items: bool
    streams: PrivateStreams

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> SimulatorState:
        accounts = AccountStore(load_accounts(config.accounts_file) if config.accounts_file else [])
        faults = FaultInjector(config.faults)
        book = OrderBook()
        streams = PrivateStreams(
            accounts, lambda: int(time.time() * 1000) + faults.settings.clock_skew_ms
        )
        book.listeners.append(streams.on_event)
        return cls(
            config=config,
            accounts=accounts,
            book=book,
            limiter=RateLimiter(
                config.rate_limits,
                ip_limit=config.ip_limit,
                ip_window_ms=config.ip_window_ms,
                ip_ban_ms=config.ip_ban_ms,
                enabled=config.rate_limits_enabled,
            ),
            faults=faults,
            recorder=Recorder(config.record_size),
            dialect=config.dialect,
            batch_counts_items=config.batch_counts_items,
            streams=streams,
        )

    def server_ms(self) -> int:
        """The exchange clock: wall clock plus the configured skew."""
        return int(time.time() * 1000) + self.faults.settings.clock_skew_ms
