"""Typed client for the simulator's admin API (``/__admin/``), built on ``requests``.

One method per admin route. Errors from the admin API raise :class:`AdminClientError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests

ADMIN_PREFIX = "/__admin"
ADMIN_AUTH_HEADER = "X-Admin-Token"


class AdminClientError(RuntimeError):
    """The admin API answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"admin API {status}: {message}")
        self.status = status
        self.message = message


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class AdminClient:
    """``AdminClient("http://127.0.0.1:8080")``; ``token`` for non-loopback servers."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
        *,
        verify: str | None = None,
    ) -> None:
        """``verify``: CA file for an HTTPS simulator with a private CA (default: the system's)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # per request: a session's ``verify`` loses to REQUESTS_CA_BUNDLE in requests
        self._verify: str | bool = verify if verify is not None else True
        if token:
            self._session.headers[ADMIN_AUTH_HEADER] = token

    def close(self) -> None:
        self._session.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        resp = self._session.request(
            method,
            f"{self.base_url}{ADMIN_PREFIX}{path}",
            json=None if body is None else dict(body),
            params=None if params is None else _drop_none(params),
            timeout=self.timeout,
            verify=self._verify,
        )
        if resp.status_code != 200:
            try:
                message = str(resp.json().get("error", resp.text))
            except ValueError:
                message = resp.text
            raise AdminClientError(resp.status_code, message)
        return resp.json()

    # -- health and accounts -------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def accounts(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", "/accounts")["list"]
        return rows

    def add_account(
        self,
        alias: str,
        api_key: str,
        *,
        uid: int | None = None,
        api_secret: str | None = None,
        rsa_public_key: str | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) a key: HMAC ``api_secret`` or RSA ``rsa_public_key`` (PEM)."""
        body = {
            "alias": alias,
            "api_key": api_key,
            "uid": uid,
            "api_secret": api_secret,
            "rsa_public_key": rsa_public_key,
        }
        result: dict[str, Any] = self._call("POST", "/accounts", _drop_none(body))
        return result

    def remove_account(self, api_key: str) -> None:
        self._call("DELETE", f"/accounts/{api_key}")

    # -- orders --------------------------------------------------------------------------------

    def place_order(
        self,
        *,
        category: str,
        symbol: str,
        side: str = "Buy",
        qty: str = "1",
        price: str = "",
        order_type: str = "Limit",
        order_link_id: str = "",
        order_filter: str = "Order",
        trigger_price: str = "",
        visible_after_ms: int = 0,
        uid: int | None = None,
        api_key: str | None = None,
        account: str | None = None,
    ) -> str:
        """Place an order without signing; returns its ``orderId``.

        ``order_filter``: ``Order``, ``tpslOrder`` or ``StopOrder`` (the latter two start
        ``Untriggered``). ``visible_after_ms`` > 0 makes the create land late.
        Name the owner by ``uid``, ``api_key`` or ``account`` (alias).
        """
        body = _order_body(locals())
        result = self._call("POST", "/orders", body)
        return str(result["orderId"])

    def place_orders(
        self, orders: Sequence[Mapping[str, Any]], **defaults: Any
    ) -> list[dict[str, Any]]:
        """Place many orders in one call. Items and ``defaults`` use the V5/admin field names
        (``category``, ``symbol``, ``side``, ``qty``, ``price``, ``orderType``, ``orderLinkId``,
        ``orderFilter``, ``visible_after_ms``, ``uid``/``api_key``/``account``).
        Returns one ``{"orderId", "orderLinkId", "orderStatus"}`` or ``{"error"}`` per item."""
        body = {**defaults, "orders": [dict(o) for o in orders]}
        rows: list[dict[str, Any]] = self._call("POST", "/orders/batch", body)["list"]
        return rows

    def orders(
        self, *, uid: int | None = None, category: str | None = None, open_only: bool = False
    ) -> list[dict[str, Any]]:
        params = {"uid": uid, "category": category, "open_only": "1" if open_only else "0"}
        rows: list[dict[str, Any]] = self._call("GET", "/orders", params=params)["list"]
        return rows

    def order(self, order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/orders/{order_id}")
        return result

    def fill(self, order_id: str, qty: str | None = None) -> dict[str, Any]:
        """Fill ``qty`` (everything left when ``None``); returns the order."""
        result: dict[str, Any] = self._call(
            "POST", f"/orders/{order_id}/fill", _drop_none({"qty": qty})
        )
        return result

    def partial_fill(self, order_id: str, qty: str) -> dict[str, Any]:
        return self.fill(order_id, qty)

    def trigger(self, order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/orders/{order_id}/trigger", {})
        return result

    def arm_fill_race(self, order_id: str) -> dict[str, Any]:
        """The next accepted cancel of this order loses against a fill (ends ``Filled``)."""
        result: dict[str, Any] = self._call("POST", f"/orders/{order_id}/race", {})
        return result

    # -- private WebSocket --------------------------------------------------------------------

    def ws_state(self) -> dict[str, Any]:
        """``{silent, refuse, pushed, connections:[{conn_id, uid, topics}]}``."""
        result: dict[str, Any] = self._call("GET", "/ws")
        return result

    def set_ws_faults(
        self, *, silent: bool | None = None, refuse: bool | None = None
    ) -> dict[str, Any]:
        """``silent``: open but mute (no pushes, no pongs); ``refuse``: close new connections."""
        body = _drop_none({"silent": silent, "refuse": refuse})
        result: dict[str, Any] = self._call("POST", "/ws", body)
        return result

    def drop_ws(self, uid: int | None = None) -> int:
        """Abort private connections (all, or one UID's) without a close frame."""
        return int(self._call("POST", "/ws/drop", _drop_none({"uid": uid}))["dropped"])

    # -- faults, clock, dialect, limits --------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault knobs (names as in ``simulator.faults.FaultSettings``)."""
        result: dict[str, Any] = self._call("POST", "/faults", changes)
        return result

    def clear_faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", "/faults")
        return result

    def set_clock_skew(self, skew_ms: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/clock", {"skew_ms": skew_ms})
        return result

    def dialect(self) -> str:
        return str(self._call("GET", "/dialect")["dialect"])

    def set_dialect(self, dialect: str) -> None:
        """``"v5"`` (real Bybit codes) or ``"page"`` (the cancel-order page's table)."""
        self._call("POST", "/dialect", {"dialect": dialect})

    def rate_limits(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/rate-limits")
        return result

    def set_rate_limit(
        self, endpoint: str, limit: int, *, category: str = "", uid: int | None = None
    ) -> dict[str, Any]:
        """Per-UID limit (requests/s) for ``endpoint`` (e.g. ``order/cancel``), optionally
        only for one ``category`` and/or one ``uid``."""
        item = _drop_none({"endpoint": endpoint, "limit": limit, "category": category, "uid": uid})
        result: dict[str, Any] = self._call("POST", "/rate-limits", {"limits": [item]})
        return result

    def configure_rate_limits(
        self,
        *,
        enabled: bool | None = None,
        batch_counts_items: bool | None = None,
        ip_limit: int | None = None,
        ip_window_ms: int | None = None,
        ip_ban_ms: int | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "enabled": enabled,
                "batch_counts_items": batch_counts_items,
                "ip_limit": ip_limit,
                "ip_window_ms": ip_window_ms,
                "ip_ban_ms": ip_ban_ms,
            }
        )
        result: dict[str, Any] = self._call("POST", "/rate-limits", body)
        return result

    # -- request log ---------------------------------------------------------------------------

    def records(
        self,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        since_ms: float | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        params = {"endpoint": endpoint, "api_key": api_key, "since_ms": since_ms, "limit": limit}
        rows: list[dict[str, Any]] = self._call("GET", "/records", params=params)["list"]
        return rows

    def cancel_counts(
        self, *, api_key: str | None = None, since_ms: float | None = None
    ) -> dict[str, dict[str, int]]:
        """Cancel requests (batch items each) per id: ``{"orderLinkId": {..}, "orderId": {..}}``."""
        params = {"api_key": api_key, "since_ms": since_ms}
        result: dict[str, dict[str, int]] = self._call("GET", "/cancel-counts", params=params)
        return result

    def max_requests_in_window(
        self,
        *,
        window_ms: float = 1000.0,
        endpoint: str | None = None,
        api_key: str | None = None,
        since_ms: float | None = None,
        by: str = "api_key",
    ) -> dict[str, Any]:
        """Highest requests (batch: items) any key (``by="uid"``: UID) spent in any window,
        per endpoint group and category: ``{"max": n, "list": [{api_key, uid, endpoint,
        category, max, window_start_ms, total}, ...]}`` (highest first)."""
        params = {
            "window_ms": window_ms,
            "endpoint": endpoint,
            "api_key": api_key,
            "since_ms": since_ms,
            "by": by,
        }
        result: dict[str, Any] = self._call("GET", "/max-window", params=params)
        return result

    def reset(
        self,
        *,
        orders: bool = True,
        records: bool = True,
        limiter: bool = True,
        faults: bool = False,
    ) -> None:
        body = {"orders": orders, "records": records, "limiter": limiter, "faults": faults}
        self._call("POST", "/reset", body)


def _order_body(args: Mapping[str, Any]) -> dict[str, Any]:
    body = {
        "category": args["category"],
        "symbol": args["symbol"],
        "side": args["side"],
        "qty": args["qty"],
        "price": args["price"],
        "orderType": args["order_type"],
        "orderLinkId": args["order_link_id"],
        "orderFilter": args["order_filter"],
        "triggerPrice": args["trigger_price"],
        "visible_after_ms": args["visible_after_ms"],
        "uid": args["uid"],
        "api_key": args["api_key"],
        "account": args["account"],
    }
    return _drop_none(body)
