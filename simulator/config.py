"""Simulator settings: one frozen object built once (by the CLI or a test) and passed down.

Every default is documented here with its unit. Live changes made through the admin API go to
the components (limiter, fault injector, dialect holder), never back into this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cancelq.simulator.faults import FaultSettings
from cancelq.simulator.retcodes import Dialect

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # 0 = pick a free port and print it
DEFAULT_RECORD_SIZE = 200_000  # requests kept in the ring buffer
DEFAULT_IP_LIMIT = 600  # requests per IP ...
DEFAULT_IP_WINDOW_MS = 5_000  # ... per this rolling window (ms)
DEFAULT_IP_BAN_MS = 600_000  # ban after breaking the per-IP rule: 10 minutes
DEFAULT_HANG_MAX_S = 120.0  # a "hang" fault answers nothing for at most this long (s)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator needs at start."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    accounts_file: Path | None = None
    dialect: Dialect = Dialect.V5
    admin_token: str | None = None
    record_size: int = DEFAULT_RECORD_SIZE
    ip_limit: int = DEFAULT_IP_LIMIT
    ip_window_ms: int = DEFAULT_IP_WINDOW_MS
    ip_ban_ms: int = DEFAULT_IP_BAN_MS
    rate_limits: dict[tuple[str, str], int] = field(default_factory=dict)  # overrides
    batch_counts_items: bool = True  # cancel-batch spends one unit per item (Bybit)
    rate_limits_enabled: bool = True
    faults: FaultSettings = field(default_factory=FaultSettings)
    hang_max_s: float = DEFAULT_HANG_MAX_S
    tcp_nodelay: bool = True  # only the benchmark turns this off
    tls_cert: Path | None = None  # with tls_key: serve HTTPS/WSS (Bybit's API is HTTPS only)
    tls_key: Path | None = None
    log_level: str = "WARNING"
