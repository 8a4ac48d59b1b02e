"""What every baseline shares: its Celery app (cancelq's own configuration), accounts, signing,
outcome records and the readiness file the harness waits for."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready

from cancelq.accounts import Account, load_accounts
from cancelq.settings import load_settings
from cancelq.worker.host.app import create_app

RECV_WINDOW = "5000"
CANCEL_PATH = "/v5/order/cancel"
OUTCOME_TTL_MS = 3_600_000
BODY_FIELDS = ("category", "symbol", "orderId", "orderLinkId", "orderFilter")


@dataclass(frozen=True)
class BaselineConfig:
    redis_url: str
    base_url: str
    accounts: Mapping[str, Account]
    rate_limit: str | None  # Celery's rate_limit string, e.g. "20/s"
    record: bool  # write an outcome per cancel

    @classmethod
    def from_env(cls) -> BaselineConfig:
        settings = load_settings()
        assert settings.redis_url is not None
        assert settings.accounts_file is not None
        return cls(
            redis_url=settings.redis_url,
            base_url=settings.bybit_base_url,
            accounts=load_accounts(settings.accounts_file),
            rate_limit=os.environ.get("BENCH_RATE_LIMIT") or None,
            record=os.environ.get("BENCH_RECORD", "1") == "1",
        )


def make_app(name: str) -> tuple[Celery, BaselineConfig]:
    """cancelq's Celery configuration (late acks, prefetch 1, JSON), so only the task differs."""
    config = BaselineConfig.from_env()
    app = create_app(load_settings())
    app.main = name
    ready = os.environ.get("BENCH_READY_FILE")
    if ready:
        worker_ready.connect(lambda **_: Path(ready).touch(), weak=False)
    return app, config


def now_ms() -> int:
    return int(time.time() * 1000)


def exchange_body(fields: Mapping[str, Any]) -> str:
    return json.dumps({k: fields[k] for k in BODY_FIELDS if k in fields})


def signed_headers(account: Account, body: str) -> dict[str, str]:
    """Signed per the cancel-order page, corrected: the exact JSON body sent is signed."""
    assert account.hmac_secret is not None
    ts = str(int(time.time() * 1000))
    origin = ts + account.api_key + RECV_WINDOW + body
    sign = hmac.new(
        account.hmac_secret.get_secret_value().encode(), origin.encode(), hashlib.sha256
    ).hexdigest()
    return {
        "X-BAPI-API-KEY": account.api_key,
        "X-BAPI-SIGN": sign,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": RECV_WINDOW,
        "Content-Type": "application/json",
    }


class OutcomeWriter:
    """One SET per cancel, the same key and fields (subset) cancelq writes."""

    def __init__(self, config: BaselineConfig) -> None:
        self._config = config
        self._redis: redis.Redis | None = None
        self._pid = 0

    def _client(self) -> redis.Redis:
        if self._redis is None or self._pid != os.getpid():  # one client per process (fork)
            self._redis = redis.Redis.from_url(self._config.redis_url)
            self._pid = os.getpid()
        return self._redis

    def write(
        self, fields: Mapping[str, Any], ret_code: int | None, times: Mapping[str, int]
    ) -> None:
        if not self._config.record:
            return
        rid = str(fields.get("requestId", ""))
        status = "cancelled" if ret_code == 0 else "failed"
        doc = {
            "requestId": rid,
            "status": status,
            "retCode": ret_code,
            "enqueuedAt": fields.get("enqueuedAt"),
            **times,
            "finishedAt": now_ms(),
        }
        self._client().set(f"cancelq:outcome:{rid}", json.dumps(doc), px=OUTCOME_TTL_MS)
