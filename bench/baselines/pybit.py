"""pybit-in-celery: a task calling pybit's ``HTTP.cancel_order``, its session's ``endpoint``
pointed at the simulator. One pybit session per account per process (keep-alive), built
lazily after fork."""

from __future__ import annotations

import os
from typing import Any

from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from bench.baselines.common import BODY_FIELDS, OutcomeWriter, make_app, now_ms
from cancelq.contract import TASK_NAME

app, config = make_app("pybit")
outcomes = OutcomeWriter(config)
_sessions: dict[tuple[int, str], Any] = {}


def session(alias: str) -> Any:
    key = (os.getpid(), alias)
    if key not in _sessions:
        account = config.accounts[alias]
        assert account.hmac_secret is not None
        http = HTTP(
            testnet=False,
            api_key=account.api_key,
            api_secret=account.hmac_secret.get_secret_value(),
            recv_window=5000,
        )
        http.endpoint = config.base_url
        ca_file = os.environ.get("REQUESTS_CA_BUNDLE")
        if ca_file:  # pybit sends prepared requests, which never read requests' CA variable
            http.client.verify = ca_file
        _sessions[key] = http
    return _sessions[key]


@app.task(name=TASK_NAME, rate_limit=config.rate_limit, ignore_result=True)  # type: ignore[untyped-decorator]
def cancel_order(**fields: Any) -> None:
    started = now_ms()
    http = session(fields["account"])
    params = {k: fields[k] for k in BODY_FIELDS if k in fields}
    sent = now_ms()
    code: int | None
    try:
        code = int(http.cancel_order(**params)["retCode"])
    except InvalidRequestError as exc:
        code = int(exc.status_code)
    except FailedRequestError:
        code = None
    outcomes.write(fields, code, {"startedAt": started, "sentAt": sent, "answeredAt": now_ms()})
