"""``cancelq confirmer``: build everything once from the settings and run until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from cancelq.accounts import load_accounts
from cancelq.confirmer.config import load_confirmer_config
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.service import Confirmer, Parts
from cancelq.errors import ConfigError
from cancelq.eviction import check_eviction_policy
from cancelq.logs import configure_logging
from cancelq.redis_client import connect
from cancelq.settings import Settings

log = logging.getLogger(__name__)


def build_confirmer(settings: Settings, metrics: ConfirmerMetrics | None = None) -> Confirmer:
    """Validate settings and accounts (ConfigError) and build an unstarted confirmer."""
    if settings.accounts_file is None:
        raise ConfigError("CANCELQ_ACCOUNTS_FILE: the confirmer needs the accounts file")
    if settings.redis_url is None:
        raise ConfigError("CANCELQ_REDIS_URL: the confirmer needs Redis")
    if settings.confirm_deadline_s == 0:
        raise ConfigError("CANCELQ_CONFIRM_DEADLINE_S is 0: confirmations are switched off")
    accounts = load_accounts(settings.accounts_file)
    client = connect(
        settings.redis_url,
        settings.redis_sentinel(),
        decode_responses=True,
        health_check_interval=30,
    )
    check_eviction_policy(client, allow=settings.allow_eviction, service="confirmer")
    parts = Parts(
        settings, load_confirmer_config(), accounts, client, metrics or ConfirmerMetrics()
    )
    return Confirmer(parts)


def run_confirmer(settings: Settings) -> None:
    confirmer = build_confirmer(settings)
    configure_logging(settings.log_format, settings.log_level, _secrets(settings))
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the confirmer", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.confirmer_metrics_port:
        start_http_server(
            settings.confirmer_metrics_port,
            addr=settings.metrics_host,
            registry=confirmer.metrics.registry,
        )
    log.info("confirmer %s started", confirmer.leases.replica_id)
    confirmer.run(stop, settings.health_file)
    log.info("confirmer stopped")


def _secrets(settings: Settings) -> list[str]:
    assert settings.accounts_file is not None
    values: list[str] = settings.redis_secrets()
    for account in load_accounts(settings.accounts_file).values():
        for secret in (account.hmac_secret, account.rsa_private_key_pem):
            if secret is not None:
                values.append(secret.get_secret_value())
    return values
