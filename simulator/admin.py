"""The admin API, mounted under ``/__admin/`` (documented in ``simulator/README.md``).

Reachable from loopback clients; any other client must send ``X-Admin-Token`` equal to the
configured token (no token configured: never). Bodies and replies are JSON; errors are
``{"error": "..."}`` with HTTP 400/403/404.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cancelq.simulator.accounts import AccountError, make_account
from cancelq.simulator.admin_ws import ws_routes
from cancelq.simulator.endpoints import decimal_or_none
from cancelq.simulator.faults import updated
from cancelq.simulator.orders import NewOrder, Order, Rejection, parse_kind
from cancelq.simulator.recorder import cancel_counts, max_window_counts
from cancelq.simulator.retcodes import Dialect
from cancelq.simulator.state import SimulatorState

PREFIX = "/__admin"
ADMIN_AUTH_HEADER = "X-Admin-Token"
STATE_KEY = web.AppKey("state", SimulatorState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def admin_allowed(remote: str | None, token_sent: str | None, token: str | None) -> bool:
    """Loopback always; others only with the configured token."""
    if is_loopback(remote):
        return True
    if not token or not token_sent:
        return False
    return hmac.compare_digest(token_sent.encode(), token.encode())


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not admin_allowed(
        request.remote, request.headers.get(ADMIN_AUTH_HEADER), state.config.admin_token
    ):
        return web.json_response({"error": "admin API: loopback or X-Admin-Token only"}, status=403)
    try:
        return await handler(request)
    except AdminError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except (ValueError, TypeError, KeyError) as exc:
        return web.json_response({"error": f"bad request: {exc}"}, status=400)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise AdminError("body must be a JSON object")
    return data


def _state(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


# -- health, accounts -------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(
        {
            "ok": True,
            "accounts": len(state.accounts.all()),
            "orders": len(state.book),
            "records": len(state.recorder),
            "dialect": str(state.dialect),
            "server_ms": state.server_ms(),
        }
    )


async def list_accounts(request: web.Request) -> web.Response:
    rows = [
        {
            "alias": a.alias,
            "uid": a.uid,
            "api_key": a.api_key,
            "kind": "hmac" if a.hmac_secret is not None else "rsa",
        }
        for a in _state(request).accounts.all()
    ]
    return web.json_response({"list": rows})


async def add_account(request: web.Request) -> web.Response:
    body = await _body(request)
    try:
        account = make_account(
            str(body.get("alias") or body["api_key"]),
            str(body["api_key"]),
            uid=None if body.get("uid") is None else int(body["uid"]),
            api_secret=body.get("api_secret"),
            rsa_public_key_pem=body.get("rsa_public_key"),
        )
    except AccountError as exc:
        raise AdminError(str(exc)) from exc
    _state(request).accounts.add(account)
    return web.json_response(
        {"alias": account.alias, "uid": account.uid, "api_key": account.api_key}
    )


async def remove_account(request: web.Request) -> web.Response:
    if not _state(request).accounts.remove(request.match_info["api_key"]):
        raise AdminError("no such api key", 404)
    return web.json_response({"removed": True})


# -- orders -----------------------------------------------------------------------------------


def _uid_for(state: SimulatorState, body: dict[str, Any]) -> int:
    if body.get("uid") is not None:
        return int(body["uid"])
    key = body.get("api_key")
    alias = body.get("account")
    for account in state.accounts.all():
        if account.api_key == key or (alias and account.alias == alias):
            return account.uid
    raise AdminError("give uid, api_key or account (alias) of a known account")


def _new_order(state: SimulatorState, body: dict[str, Any]) -> NewOrder:
    kind = parse_kind(body.get("orderFilter") or body.get("kind"))
    if kind is None:
        raise AdminError("orderFilter must be Order, tpslOrder or StopOrder")
    return NewOrder(
        uid=_uid_for(state, body),
        category=str(body.get("category", "")),
        symbol=str(body.get("symbol", "")),
        side=str(body.get("side", "Buy")),
        qty=str(body.get("qty", "1")),
        order_type=str(body.get("orderType", "Limit")),
        price=str(body.get("price", "") or ""),
        order_link_id=str(body.get("orderLinkId", "") or ""),
        kind=kind,
        trigger_price=str(body.get("triggerPrice", "") or ""),
        visible_after_ms=int(body.get("visible_after_ms", 0) or 0),
    )


def _order_json(order: Order) -> dict[str, Any]:
    data = order.to_v5()
    data["uid"] = order.uid
    data["category"] = order.category
    data["visibleAtMs"] = order.visible_at_ms
    return data


def _place(state: SimulatorState, body: dict[str, Any]) -> dict[str, Any]:
    made = state.book.create(_new_order(state, body), state.server_ms())
    if isinstance(made, Rejection):
        raise AdminError(f"order rejected: {made.outcome.value} {made.detail}".strip())
    return {
        "orderId": made.order_id,
        "orderLinkId": made.order_link_id,
        "orderStatus": str(made.status),
    }


async def place_order(request: web.Request) -> web.Response:
    return web.json_response(_place(_state(request), await _body(request)))


async def place_orders(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    defaults = {k: v for k, v in body.items() if k != "orders"}
    rows = []
    for item in body.get("orders", []):
        try:
            rows.append(_place(state, {**defaults, **item}))
        except AdminError as exc:
            rows.append({"error": str(exc), "orderLinkId": item.get("orderLinkId", "")})
    return web.json_response({"list": rows})


async def list_orders(request: web.Request) -> web.Response:
    q = request.query
    orders = _state(request).book.orders(
        uid=int(q["uid"]) if q.get("uid") else None,
        category=q.get("category") or None,
        open_only=_flag(q.get("open_only", "0")),
    )
    return web.json_response({"list": [_order_json(o) for o in orders]})


def _order(request: web.Request) -> Order:
    order = _state(request).book.get(request.match_info["order_id"])
    if order is None:
        raise AdminError("no such order", 404)
    return order


async def get_order(request: web.Request) -> web.Response:
    return web.json_response(_order_json(_order(request)))


async def fill_order(request: web.Request) -> web.Response:
    state = _state(request)
    order = _order(request)
    body = await _body(request)
    rej = state.book.fill(order, decimal_or_none(body.get("qty")), state.server_ms())
    if rej is not None:
        raise AdminError(f"cannot fill: {rej.outcome.value}", 409)
    return web.json_response(_order_json(order))


async def trigger_order(request: web.Request) -> web.Response:
    state = _state(request)
    order = _order(request)
    if state.book.trigger(order, state.server_ms()) is not None:
        raise AdminError("order is not Untriggered", 409)
    return web.json_response(_order_json(order))


async def race_order(request: web.Request) -> web.Response:
    order = _order(request)
    _state(request).book.arm_fill_race(order)
    return web.json_response(_order_json(order))


# -- knobs: faults, clock, dialect, rate limits -----------------------------------------------


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_state(request).faults.settings.to_json())


async def set_faults(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    state.faults.configure(updated(state.faults.settings, body))
    return web.json_response(state.faults.settings.to_json())


async def clear_faults(request: web.Request) -> web.Response:
    state = _state(request)
    state.faults.clear()
    return web.json_response(state.faults.settings.to_json())


async def set_clock(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    skew = int(body.get("skew_ms", 0))
    state.faults.configure(updated(state.faults.settings, {"clock_skew_ms": skew}))
    return web.json_response({"skew_ms": skew, "server_ms": state.server_ms()})


async def get_dialect(request: web.Request) -> web.Response:
    return web.json_response({"dialect": str(_state(request).dialect)})


async def set_dialect(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    try:
        state.dialect = Dialect(str(body.get("dialect")))
    except ValueError as exc:
        raise AdminError("dialect must be v5 or page") from exc
    return web.json_response({"dialect": str(state.dialect)})


def _limits_json(state: SimulatorState) -> dict[str, Any]:
    lim = state.limiter
    return {
        "enabled": lim.enabled,
        "batch_counts_items": state.batch_counts_items,
        "ip_limit": lim.ip_limit,
        "ip_window_ms": lim.ip_window_ms,
        "ip_ban_ms": lim.ip_ban_ms,
        "banned": lim.banned(),
        "overrides": [
            {"endpoint": e, "category": c, "limit": n} for (e, c), n in lim.global_overrides.items()
        ],
        "uid_overrides": [
            {"uid": uid, "endpoint": e, "category": c, "limit": n}
            for uid, table in lim.uid_overrides.items()
            for (e, c), n in table.items()
        ],
    }


async def get_rate_limits(request: web.Request) -> web.Response:
    return web.json_response(_limits_json(_state(request)))


def _apply_limit_settings(state: SimulatorState, body: dict[str, Any]) -> None:
    lim = state.limiter
    if "enabled" in body:
        lim.enabled = bool(body["enabled"])
    if "batch_counts_items" in body:
        state.batch_counts_items = bool(body["batch_counts_items"])
    for name in ("ip_limit", "ip_window_ms", "ip_ban_ms"):
        if name in body:
            setattr(lim, name, int(body[name]))
            lim.reset()
    for item in body.get("limits", []):
        uid = item.get("uid")
        lim.set_limit(
            str(item["endpoint"]),
            str(item.get("category") or ""),
            int(item["limit"]),
            None if uid is None else int(uid),
        )


async def set_rate_limits(request: web.Request) -> web.Response:
    state = _state(request)
    _apply_limit_settings(state, await _body(request))
    return web.json_response(_limits_json(state))


# -- request log ------------------------------------------------------------------------------


def _selection(request: web.Request) -> dict[str, Any]:
    q = request.query
    return {
        "endpoint": q.get("endpoint") or None,
        "api_key": q.get("api_key") or None,
        "since_ms": float(q["since_ms"]) if q.get("since_ms") else None,
    }


async def get_records(request: web.Request) -> web.Response:
    recorder = _state(request).recorder
    rows = [r.to_json() for r in recorder.select(**_selection(request))]
    limit = int(request.query.get("limit", "0") or 0)
    if limit > 0:
        rows = rows[-limit:]
    return web.json_response({"list": rows, "dropped": recorder.dropped})


async def get_cancel_counts(request: web.Request) -> web.Response:
    records = _state(request).recorder.select(**_selection(request))
    return web.json_response(cancel_counts(records))


async def get_max_window(request: web.Request) -> web.Response:
    q = request.query
    records = _state(request).recorder.select(**_selection(request))
    by = q.get("by", "api_key")
    if by not in ("api_key", "uid"):
        raise AdminError("by must be api_key or uid")
    rows = max_window_counts(records, float(q.get("window_ms", "1000")), by)
    return web.json_response({"max": rows[0]["max"] if rows else 0, "list": rows})


async def reset(request: web.Request) -> web.Response:
    state = _state(request)
    body = await _body(request)
    if body.get("orders", True):
        state.book.reset()
    if body.get("records", True):
        state.recorder.reset()
    if body.get("limiter", True):
        state.limiter.reset()
    if body.get("faults", False):
        state.faults.clear()
        state.streams.faults.silent = state.streams.faults.refuse = False
    return web.json_response({"reset": True})


def build_admin_app(state: SimulatorState) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[STATE_KEY] = state
    r = app.router
    r.add_get("/health", health)
    r.add_get("/accounts", list_accounts)
    r.add_post("/accounts", add_account)
    r.add_delete("/accounts/{api_key}", remove_account)
    r.add_get("/orders", list_orders)
    r.add_post("/orders", place_order)
    r.add_post("/orders/batch", place_orders)
    r.add_get("/orders/{order_id}", get_order)
    r.add_post("/orders/{order_id}/fill", fill_order)
    r.add_post("/orders/{order_id}/trigger", trigger_order)
    r.add_post("/orders/{order_id}/race", race_order)
    r.add_get("/faults", get_faults)
    r.add_post("/faults", set_faults)
    r.add_delete("/faults", clear_faults)
    r.add_post("/clock", set_clock)
    r.add_get("/dialect", get_dialect)
    r.add_post("/dialect", set_dialect)
    r.add_get("/rate-limits", get_rate_limits)
    r.add_post("/rate-limits", set_rate_limits)
    r.add_get("/records", get_records)
    r.add_get("/cancel-counts", get_cancel_counts)
    r.add_get("/max-window", get_max_window)
    r.add_post("/reset", reset)
    r.add_routes(ws_routes(state.streams))
    return app
