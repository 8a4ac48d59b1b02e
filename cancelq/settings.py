"""Settings: one frozen, validated object built once from the environment (``CANCELQ_*``).

Every default is listed here with its unit. Build it with :func:`load_settings` and pass it
explicitly; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cancelq.contract import KILL_QUEUE, QUEUE
from cancelq.errors import ConfigError
from cancelq.redis_client import SentinelOptions, is_sentinel, parse_sentinel_url, url_passwords

TESTNET_URL = "https://api-testnet.bybit.com"
S = TypeVar("S", bound=BaseSettings)


class Settings(BaseSettings):
    """Worker, producer and CLI settings. Env var = ``CANCELQ_`` + field name in upper case."""

    model_config = SettingsConfigDict(
        env_prefix="CANCELQ_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    redis_url: str | None = None
    """Broker, dedup, limiter and outcome store: ``redis://``, ``rediss://`` (TLS) or
    ``sentinel://host:26379;sentinel://host2:26379;...`` (the Sentinels of a replicated
    Redis; ``cancelq/redis_client.py``). None: the demo starts an embedded Redis."""
    redis_sentinel_master: str | None = Field(None, validate_default=True)
    """With a ``sentinel://`` URL (required then): the name the Sentinels monitor the master
    under."""
    redis_sentinel_password: SecretStr | None = Field(None, validate_default=True)
    """With a ``sentinel://`` URL: the Sentinels' own password (the data password is in the
    URL). None: the Sentinels ask for none."""
    redis_sentinel_tls: bool = Field(False, validate_default=True)
    """With a ``sentinel://`` URL: TLS to the Sentinels and to the master, certificates
    verified (against ``redis_sentinel_ca_file``, else the system CAs)."""
    redis_sentinel_ca_file: Path | None = Field(None, validate_default=True)
    """PEM of the CAs the Sentinels' and the master's certificates are verified against."""
    bybit_base_url: str = TESTNET_URL
    """Exchange REST base; testnet by default, never mainnet."""
    bybit_ws_url: str = "wss://stream-testnet.bybit.com/v5/private"
    """Exchange private WebSocket (the confirmer follows the ``order`` topic there)."""
    accounts_file: Path | None = None
    """TOML accounts file (see README)."""
    metrics_port: int = Field(9808, ge=0, le=65535)
    """Prometheus /metrics port of a worker pod; 0 disables the endpoint."""
    metrics_host: str = "127.0.0.1"
    """Address /metrics binds to; set 0.0.0.0 in a pod so Prometheus can scrape it."""

    key_prefix: str = Field("cancelq", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    """Prefix of every Redis key cancelq writes (the Celery queue list is ``queue``)."""
    queue: str = QUEUE
    """Celery queue (Redis list) the producers push to."""
    kill_queue: str = KILL_QUEUE
    """Celery queue of kill-switch requests, consumed before and beside ``queue``."""

    outcome_ttl_s: int = Field(86_400, gt=0)
    """How long a final outcome stays readable (seconds)."""
    dedup_ttl_s: int = Field(86_400, gt=0)
    """How long a finished cancel identity stays deduplicated (seconds)."""
    dedup_lease_s: float = Field(60.0, gt=0)
    """A claim not renewed for this long is taken over by a duplicate (seconds)."""
    visibility_timeout_s: int = Field(300, gt=0)
    """The last resort: the broker re-delivers a message a live worker has held this long
    (seconds). A dead worker's messages are taken over after ``pod_ttl_s``."""
    outbox_rescue_after_s: float = Field(10.0, gt=0)
    """An enqueued cancel that no queue, lane or worker has held for this long is pushed again
    from the outbox (lost between kombu's pop and its unacked record, or by a Redis restart;
    a copy of one still running is refused by its claim) (seconds)."""
    pod_beat_s: float = Field(0.5, gt=0)
    """How often a worker process shows it is alive in Redis and checks for dead ones
    (seconds)."""
    pod_ttl_s: float = Field(2.0, gt=0)
    """A worker process silent this long is dead to the others, which take over what it held:
    prefetched and running messages, dispatched batches (seconds). Longer than ``pod_beat_s``
    by a margin for pauses (GC, a busy machine): a live process declared dead is fenced."""
    shutdown_grace_s: float = Field(25.0, ge=0)
    """SIGTERM: finish in-flight requests within this time, then hand the rest back (seconds)."""

    http_connect_timeout_s: float = Field(3.05, gt=0)
    http_read_timeout_s: float = Field(10.0, gt=0)
    http_ca_bundle: Path | None = None
    """PEM file of the CAs the exchange's certificate is checked against, REST and the
    confirmer's WebSocket (a TLS-inspecting proxy's, or a private test exchange's); default:
    certifi's bundle. Proxy and CA variables of
    the environment are not read (``trust_env`` is off: they cost a lookup per request)."""
    http_pool_size: int = Field(16, gt=0)
    """Keep-alive connections per worker process to the exchange."""

    max_attempts: int = Field(8, ge=1)
    """Exchange attempts per request before it fails."""
    request_deadline_s: float = Field(60.0, gt=0)
    """A request not finished this long after its first attempt fails (seconds)."""
    backoff_base_s: float = Field(0.1, gt=0)
    backoff_max_s: float = Field(5.0, gt=0)
    """Exponential backoff with full jitter between these bounds (seconds)."""
    not_found_recheck_s: float = Field(2.0, ge=0)
    """'Order does not exist' is re-checked for this long: a cancel can overtake its create."""
    not_found_retry_s: float = Field(0.25, gt=0)
    """Delay between those re-checks (seconds)."""
    clock_refresh_s: float = Field(300.0, gt=0)
    """Server-time offset is refreshed at least this often (seconds), and on every 10002."""
    ip_ban_pause_s: float = Field(600.0, gt=0)
    """After HTTP 403 this pod sends nothing for this long (Bybit bans for 10 minutes)."""

    confirm_deadline_s: float = Field(30.0, ge=0)
    """An accepted cancel not confirmed final by then is ``unconfirmed``; 0: no confirmations
    are registered (run without a confirmer)."""
    confirmer_metrics_port: int = Field(9809, ge=0, le=65535)
    """Prometheus /metrics port of a confirmer pod; 0 disables the endpoint."""

    batching: bool = True
    """Send several due cancels of one lane through /v5/order/cancel-batch."""
    coalesce_after_ms: int = Field(50, ge=0)
    """A cancel that already waited this long in the queue (its ``enqueuedAt`` to intake) is
    parked for the lane's next batch instead of sent alone: the fleet is behind, and one
    batch request clears a backlog faster than many single ones. 0 disables it."""
    ratelimit_margin: float = Field(0.0, ge=0, lt=1)
    """Share of each key's rate_limit_per_s kept unused (0.1 = use 90%)."""
    ratelimit_window_pad_ms: int = Field(10, ge=0, le=1000)
    """The limiter's window is 1 s plus this. Units count from each request's reply, which
    comes after its arrival at the exchange, so no pad is needed in principle (0 measured
    safe); 10 ms is a margin for clock-rate differences."""

    enqueue_min_replicas: int = Field(0, ge=0)
    """Producers (the CLI's ``enqueue``/``kill``; ``CancelProducer(min_replicas=...)``): an
    enqueue returns only once this many replicas hold it (Redis ``WAIT``), else it raises
    NotReplicatedError. 0: off, an enqueue is acknowledged by the master alone, and a master that
    dies before replicating it can lose it on failover."""
    enqueue_replica_timeout_ms: int = Field(1000, gt=0)
    """How long an enqueue waits for ``enqueue_min_replicas`` (ms)."""
    outcome_min_replicas: int = Field(0, ge=0)
    """Workers: after recording outcomes, wait until this many replicas hold them (Redis
    ``WAIT``) before the message is acknowledged; fewer in time is counted
    (``cancelq_store_errors_total{kind="not_replicated"}``) and logged, not retried. 0: off."""
    outcome_replica_timeout_ms: int = Field(1000, gt=0)
    """How long the worker waits for ``outcome_min_replicas`` (ms)."""

    allow_eviction: bool = False
    """Run on a Redis whose ``maxmemory-policy`` is not ``noeviction`` (it may evict queued
    cancels, claims and outcomes silently at maxmemory); off: workers and confirmers refuse to
    start on one (``cancelq/eviction.py``)."""

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_file: Path = Path("/tmp/cancelq-worker.health")  # noqa: S108 - per-pod liveness file
    """Heartbeat file the worker refreshes; ``cancelq health`` reads its age."""
    heartbeat_s: float = Field(5.0, gt=0)
    """How often the worker refreshes the heartbeat and samples queue depth (seconds)."""

    @field_validator("redis_url")
    @classmethod
    def _readable_sentinel_url(cls, url: str | None) -> str | None:
        if url is not None and is_sentinel(url):
            parse_sentinel_url(url)  # ValueError names the problem, never the URL
        return url

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_named_for_sentinel(cls, master: str | None, info: ValidationInfo) -> str | None:
        sentinel = _sentinel_url(info)
        if sentinel and not master:
            raise ValueError("required: CANCELQ_REDIS_URL is a sentinel:// URL")
        if master and not sentinel:
            raise ValueError("only with a sentinel:// CANCELQ_REDIS_URL")
        return master

    @field_validator("redis_sentinel_password", "redis_sentinel_tls", "redis_sentinel_ca_file")
    @classmethod
    def _only_with_sentinel(cls, value: object, info: ValidationInfo) -> object:
        if value and not _sentinel_url(info):
            raise ValueError("only with a sentinel:// CANCELQ_REDIS_URL")
        return value

    @field_validator("pod_ttl_s")
    @classmethod
    def _ttl_covers_beats(cls, ttl_s: float, info: ValidationInfo) -> float:
        beat_s = info.data.get("pod_beat_s")
        if beat_s is not None and ttl_s < 2 * beat_s:
            raise ValueError("must be at least twice CANCELQ_POD_BEAT_S")
        return ttl_s

    def redis_secrets(self) -> list[str]:
        """The Redis passwords (the URL's, the Sentinels'), to be masked like a key."""
        found = url_passwords(self.redis_url)
        if self.redis_sentinel_password is not None:
            found.append(self.redis_sentinel_password.get_secret_value())
        return found

    def redis_sentinel(self) -> SentinelOptions | None:
        """The Sentinel options of a ``sentinel://`` URL, else None."""
        if self.redis_sentinel_master is None:
            return None
        password = self.redis_sentinel_password
        return SentinelOptions(
            master=self.redis_sentinel_master,
            password=password.get_secret_value() if password else None,
            tls=self.redis_sentinel_tls,
            ca_file=str(self.redis_sentinel_ca_file) if self.redis_sentinel_ca_file else None,
        )


def _sentinel_url(info: ValidationInfo) -> bool:
    url = info.data.get("redis_url")
    return isinstance(url, str) and is_sentinel(url)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and overrides); ConfigError when invalid."""
    return build_settings(Settings, **overrides)


def build_settings(model: type[S], **overrides: Any) -> S:
    """Build any ``CANCELQ_*`` settings class; ConfigError names each bad variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        prefix = model.model_config.get("env_prefix", "")
        problems = [
            f"{prefix}{str(e['loc'][0]).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False)
        ]
        raise ConfigError(f"invalid settings: {'; '.join(problems)}") from None
