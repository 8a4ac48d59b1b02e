"""Shared constants and the tiny signed client used by the simulator's tests."""

from __future__ import annotations

import json
from typing import Any

import requests

from cancelq.simulator.testing import InProcessSimulator, signed_request

HMAC_KEY = "HMACKEY0001"
HMAC_SECRET = "hmac-secret-value-0001"
HMAC_UID = 1001
RSA_KEY = "RSAKEY0001"
RSA_UID = 1002
OTHER_KEY = "HMACKEY0002"
OTHER_SECRET = "hmac-secret-value-0002"
OTHER_UID = 1003


class V5:
    """A tiny signed client for tests: ``v5.post(path, body)`` / ``v5.get(path, query)``."""

    def __init__(self, sim: InProcessSimulator, session: requests.Session) -> None:
        self.sim = sim
        self.session = session
        self.api_key = HMAC_KEY
        self.secret = HMAC_SECRET

    def post_raw(self, path: str, body: dict[str, Any], **kw: Any) -> requests.Response:
        return signed_request(
            self.session,
            self.sim.base_url,
            "POST",
            path,
            api_key=kw.pop("api_key", self.api_key),
            secret=kw.pop("secret", self.secret),
            payload=json.dumps(body),
            **kw,
        )

    def post(self, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        resp = self.post_raw(path, body, **kw)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def get(self, path: str, query: str, **kw: Any) -> dict[str, Any]:
        resp = signed_request(
            self.session,
            self.sim.base_url,
            "GET",
            path,
            api_key=kw.pop("api_key", self.api_key),
            secret=kw.pop("secret", self.secret),
            payload=query,
            **kw,
        )
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def cancel(
        self,
        category: str,
        symbol: str = "BTCUSDT",
        *,
        api_key: str | None = None,
        secret: str | None = None,
        **ids: str,
    ) -> dict[str, Any]:
        auth = {"api_key": api_key or self.api_key, "secret": secret or self.secret}
        body = {"category": category, "symbol": symbol, **ids}
        return self.post("/v5/order/cancel", body, **auth)
