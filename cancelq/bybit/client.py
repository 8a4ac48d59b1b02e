"""The exchange client: typed, one result type, never sleeps (waiting is the scheduler's job).

Any HTTP reply, whatever its status or retCode, comes back as an :class:`ExchangeReply`; the
retCode table (``cancelq.worker.retcodes``) decides what it means. Only "no reply at all" raises, as
:class:`~cancelq.errors.ExchangeUnavailableError`: the one place requests' exceptions are
translated into ours.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter

from cancelq.bybit.signing import Signer, auth_headers
from cancelq.errors import ExchangeUnavailableError

CANCEL: Final = "/v5/order/cancel"
CANCEL_BATCH: Final = "/v5/order/cancel-batch"
CANCEL_ALL: Final = "/v5/order/cancel-all"
CREATE: Final = "/v5/order/create"
REALTIME: Final = "/v5/order/realtime"
SERVER_TIME: Final = "/v5/market/time"

#: Short endpoint names used as metric label values.
ENDPOINT_LABELS: Final[Mapping[str, str]] = {
    CANCEL: "cancel",
    CANCEL_BATCH: "cancel_batch",
    CANCEL_ALL: "cancel_all",
    CREATE: "create",
    REALTIME: "realtime",
    SERVER_TIME: "time",
}


@dataclass(frozen=True)
class ExchangeReply:
    """One HTTP reply. ``ret_code`` is None when the body is not a Bybit envelope."""

    http_status: int
    ret_code: int | None
    ret_msg: str
    result: Mapping[str, Any] = field(default_factory=dict)
    ret_ext_info: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    limit_remaining: int | None = None
    limit_reset_ms: int | None = None
    server_time_ms: int | None = None
    sent_at_ms: int = 0
    answered_at_ms: int = 0
    elapsed_s: float = 0.0

    @property
    def code_label(self) -> str:
        """Metric label: Bybit's retCode, else ``http_<status>``."""
        if self.ret_code is not None:
            return str(self.ret_code)
        return f"http_{self.http_status}"


@dataclass(frozen=True)
class Credentials:
    """What signs a request: never logged (the signer's repr is masked)."""

    api_key: str
    signer: Signer
    recv_window_ms: int


def new_session(pool_size: int, ca_bundle: Path | None = None) -> requests.Session:
    """One keep-alive session per process; no urllib3 retries (retrying is the RetryPolicy's
    job, ``cancelq.worker.decisions``).
    ``ca_bundle``: verify the exchange against these CAs instead of certifi's."""
    session = requests.Session()
    session.trust_env = False  # no proxy/.netrc lookups per request (seen in the profile)
    if ca_bundle is not None:
        session.verify = str(ca_bundle)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": "cancelq/0.1", "Content-Type": "application/json"})
    return session


class BybitClient:
    """Signed V5 calls over one ``requests.Session``."""

    def __init__(
        self, base_url: str, session: requests.Session, timeout: tuple[float, float]
    ) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._timeout = timeout

    def post(
        self, path: str, body: Mapping[str, Any], creds: Credentials, timestamp_ms: int
    ) -> ExchangeReply:
        """Serialise ``body`` once, sign those bytes, send those very bytes."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = auth_headers(
            creds.api_key, creds.signer, timestamp_ms, creds.recv_window_ms, payload
        )
        return self._send("POST", self._base + path, headers, payload)

    def get(
        self, path: str, query: Mapping[str, str], creds: Credentials, timestamp_ms: int
    ) -> ExchangeReply:
        """Signed GET: the exact query string sent is the one signed."""
        query_string = urlencode(query)
        headers = auth_headers(
            creds.api_key, creds.signer, timestamp_ms, creds.recv_window_ms, query_string.encode()
        )
        url = f"{self._base}{path}?{query_string}" if query_string else self._base + path
        return self._send("GET", url, headers, None)

    def server_time(self) -> ExchangeReply:
        """Public ``GET /v5/market/time``."""
        return self._send("GET", self._base + SERVER_TIME, {}, None)

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], payload: bytes | None
    ) -> ExchangeReply:
        sent_at = time.time()
        started = time.perf_counter()
        try:
            response = self._session.request(
                method, url, data=payload, headers=headers, timeout=self._timeout
            )
        except requests.Timeout as exc:
            raise ExchangeUnavailableError("timeout", type(exc).__name__) from None
        except requests.ConnectionError as exc:
            raise ExchangeUnavailableError("connection", type(exc).__name__) from None
        except requests.RequestException as exc:
            raise ExchangeUnavailableError("request", type(exc).__name__) from None
        elapsed = time.perf_counter() - started
        return _reply(response, sent_at, elapsed)


def _reply(response: requests.Response, sent_at: float, elapsed: float) -> ExchangeReply:
    envelope = _envelope(response)
    headers = response.headers
    ret_code = envelope.get("retCode")
    return ExchangeReply(
        http_status=response.status_code,
        ret_code=ret_code if isinstance(ret_code, int) else None,
        ret_msg=str(envelope.get("retMsg", response.reason or ""))[:500],
        result=_mapping(envelope.get("result")),
        ret_ext_info=_mapping(envelope.get("retExtInfo")),
        limit=_int(headers.get("X-Bapi-Limit")),
        limit_remaining=_int(headers.get("X-Bapi-Limit-Status")),
        limit_reset_ms=_int(headers.get("X-Bapi-Limit-Reset-Timestamp")),
        server_time_ms=_int(envelope.get("time")),
        sent_at_ms=int(sent_at * 1000),
        answered_at_ms=int((sent_at + elapsed) * 1000),
        elapsed_s=elapsed,
    )


def _envelope(response: requests.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
