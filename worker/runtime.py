"""Everything a worker process needs to run the pipeline, built once per process.

Built lazily on the first task (after a prefork child forks, so sockets are never shared).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

from cancelq.accounts import Account, load_accounts
from cancelq.besteffort import safely
from cancelq.bybit.client import BybitClient, Credentials, new_session
from cancelq.bybit.clock import ServerClock
from cancelq.bybit.signing import signer_for
from cancelq.errors import ConfigError
from cancelq.keys import Keys
from cancelq.redis_client import connect
from cancelq.settings import Settings
from cancelq.worker.claims import ClaimStore, own_beat_window_s
from cancelq.worker.intake import Intake
from cancelq.worker.metrics import Metrics
from cancelq.worker.ratelimit.lanes import Lanes
from cancelq.worker.retcodes import Action, build_table


@dataclass(frozen=True)
class AccountRuntime:
    account: Account
    credentials: Credentials
    table: Mapping[int, Action]


@dataclass
class IpBan:
    """HTTP 403 from the exchange: this pod sends nothing until the ban should be over."""

    metrics: Metrics
    until: float = 0.0
    active: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, pause_s: float) -> None:
        with self._lock:
            self.until = max(self.until, time.monotonic() + pause_s)
        self.active.set()
        safely(self.metrics.ip_banned.set, 1)

    def banned(self) -> bool:
        return self.remaining_s() > 0

    def remaining_s(self) -> float:
        left = self.until - time.monotonic()
        if left <= 0 and self.active.is_set():
            self.active.clear()
            safely(self.metrics.ip_banned.set, 0)
        return max(left, 0.0)


@dataclass
class Runtime:
    settings: Settings
    keys: Keys
    redis: redis.Redis
    accounts: Mapping[str, AccountRuntime]
    claims: ClaimStore
    client: BybitClient
    clock: ServerClock
    metrics: Metrics
    ban: IpBan
    lanes: Lanes
    intake: Intake
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set on SIGTERM: retries are parked for other pods instead of being sent from here."""

    @property
    def secrets(self) -> list[str]:
        """Every secret value this process holds (for the log redactor)."""
        found: list[str] = []
        for runtime in self.accounts.values():
            for secret in (runtime.account.hmac_secret, runtime.account.rsa_private_key_pem):
                if secret is not None:
                    found.append(secret.get_secret_value())
        return found


def build_runtime(
    settings: Settings, metrics: Metrics | None = None, *, pod_id: str = ""
) -> Runtime:
    if settings.redis_url is None:
        raise ConfigError("CANCELQ_REDIS_URL is required to run a worker")
    if settings.accounts_file is None:
        raise ConfigError("CANCELQ_ACCOUNTS_FILE is required to run a worker")
    metrics = metrics or Metrics()
    keys = Keys(prefix=settings.key_prefix, queue=settings.queue)
    client = connect(
        settings.redis_url,
        settings.redis_sentinel(),
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry_on_timeout=True,
    )
    accounts = {
        alias: AccountRuntime(
            account=account,
            credentials=Credentials(account.api_key, signer_for(account), account.recv_window_ms),
            table=build_table(account.ret_code_table, account.ret_codes),
        )
        for alias, account in load_accounts(settings.accounts_file).items()
    }
    session = new_session(settings.http_pool_size, settings.http_ca_bundle)
    return Runtime(
        settings=settings,
        keys=keys,
        redis=client,
        accounts=accounts,
        claims=ClaimStore(
            client,
            keys,
            lease_s=settings.dedup_lease_s,
            dedup_ttl_s=settings.dedup_ttl_s,
            outcome_ttl_s=settings.outcome_ttl_s,
            pod_id=pod_id,
            own_beat_within_s=own_beat_window_s(settings.pod_ttl_s, settings.pod_beat_s),
        ),
        client=BybitClient(
            settings.bybit_base_url,
            session,
            (settings.http_connect_timeout_s, settings.http_read_timeout_s),
        ),
        clock=ServerClock(settings.clock_refresh_s),
        metrics=metrics,
        ban=IpBan(metrics),
        lanes=Lanes(
            client,
            keys,
            park_ttl_s=int(settings.request_deadline_s) * 4,
            lease_ms=int(settings.dedup_lease_s * 1000),
        ),
        intake=Intake(client),
    )
