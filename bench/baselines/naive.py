"""Naive: what the cancel-order page's example does, as a Celery task.

A new ``requests.post`` per cancel (no session, no keep-alive), signed per the page but
corrected to sign the exact JSON body; Celery's own ``rate_limit`` (``BENCH_RATE_LIMIT``).
"""

from __future__ import annotations

from typing import Any

import requests

from bench.baselines.common import (
    CANCEL_PATH,
    OutcomeWriter,
    exchange_body,
    make_app,
    now_ms,
    signed_headers,
)
from cancelq.contract import TASK_NAME

app, config = make_app("naive")
outcomes = OutcomeWriter(config)


@app.task(name=TASK_NAME, rate_limit=config.rate_limit, ignore_result=True)  # type: ignore[untyped-decorator]
def cancel_order(**fields: Any) -> None:
    started = now_ms()
    account = config.accounts[fields["account"]]
    body = exchange_body(fields)
    headers = signed_headers(account, body)
    sent = now_ms()
    code: int | None = None
    try:
        resp = requests.post(config.base_url + CANCEL_PATH, headers=headers, data=body, timeout=10)
        code = resp.json().get("retCode")
    except (requests.RequestException, ValueError):
        code = None
    outcomes.write(fields, code, {"startedAt": started, "sentAt": sent, "answeredAt": now_ms()})
