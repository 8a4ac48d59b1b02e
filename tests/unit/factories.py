"""Tickets for the pipeline's pure stages, built without Redis, Celery or an accounts file."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from cancelq.accounts import Account
from cancelq.bybit.client import Credentials
from cancelq.bybit.signing import HmacSigner
from cancelq.contract import parse_cancel
from cancelq.worker.retcodes import V5
from cancelq.worker.runtime import AccountRuntime
from cancelq.worker.tickets import Ticket


def account_runtime(alias: str = "main") -> AccountRuntime:
    account = Account(
        alias=alias,
        api_key="KEY",
        hmac_secret=SecretStr("secret"),
        rsa_private_key_pem=None,
        rate_limit_per_s=20,
        recv_window_ms=5000,
        ret_code_table="v5",
        ret_codes={},
    )
    return AccountRuntime(account, Credentials("KEY", HmacSigner("secret"), 5000), V5)


def ticket(
    attempts: int = 1, started_ms: int = 0, request_id: str = "r-1", **fields: Any
) -> Ticket:
    """A ticket for one spot cancel on account ``main`` (``fields`` override the cancel's)."""
    request = parse_cancel(
        {"account": "main", "category": "spot", "symbol": "BTCUSDT", "orderId": "1", **fields}
    )
    return Ticket(request, request_id, account_runtime(), attempts, started_ms)
