"""Floor: a Celery no-op task from the same producer (``BENCH_FLOOR=noop``), or one keep-alive
POST per task with a pre-built session and nothing else (``BENCH_FLOOR=post``). Records an
outcome only when ``BENCH_RECORD=1`` (latency runs); throughput runs measure the bare task."""

from __future__ import annotations

import os
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

app, config = make_app("floor")
outcomes = OutcomeWriter(config)
MODE = os.environ.get("BENCH_FLOOR", "noop")
_sessions: dict[int, requests.Session] = {}


def _post(fields: dict[str, Any]) -> int | None:
    http = _sessions.setdefault(os.getpid(), requests.Session())
    body = exchange_body(fields)
    resp = http.post(
        config.base_url + CANCEL_PATH,
        headers=signed_headers(config.accounts[fields["account"]], body),
        data=body,
        timeout=10,
    )
    code = resp.json().get("retCode")
    return int(code) if code is not None else None


@app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
def cancel_order(**fields: Any) -> None:
    started = now_ms()
    code = _post(fields) if MODE == "post" else 0
    outcomes.write(fields, code, {"startedAt": started, "sentAt": started, "answeredAt": now_ms()})
