"""The V5 HTTP routes: the plumbing around ``endpoints.py``.

Each request goes through, in order: per-IP rule (HTTP 403 + ban) -> injected latency and
transport faults (reset, hang, HTTP 5xx/429) -> signature check -> parameter parsing ->
application faults (10016, 10006) -> per-UID rate limit (10006) -> the endpoint -> the reply,
with ``X-Bapi-Limit*`` headers on every authenticated reply. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from cancelq.simulator import endpoints, retcodes
from cancelq.simulator.accounts import Account
from cancelq.simulator.auth import H_API_KEY, AuthFailure, authenticate
from cancelq.simulator.endpoints import Business, Reply
from cancelq.simulator.faults import FaultDecision, FaultKind
from cancelq.simulator.ratelimit import Decision
from cancelq.simulator.recorder import RequestRecord
from cancelq.simulator.state import SimulatorState

JSON_TYPE = "application/json"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    name: str  # endpoint group, as in the request log and rate-limit tables
    business: Business | None  # None: the public server-time endpoint
    batch: bool = False


ROUTES = (
    Route("POST", "/v5/order/create", "order/create", endpoints.create_order),
    Route("POST", "/v5/order/cancel", "order/cancel", endpoints.cancel_order),
    Route("POST", "/v5/order/cancel-batch", "order/cancel-batch", endpoints.cancel_batch, True),
    Route("POST", "/v5/order/cancel-all", "order/cancel-all", endpoints.cancel_all),
    Route("GET", "/v5/order/realtime", "order/realtime", endpoints.open_orders),
    Route("GET", "/v5/market/time", "market/time", None),
)


def envelope(state: SimulatorState, reply: Reply) -> bytes:
    return _dumps(
        {
            "retCode": reply.ret_code,
            "retMsg": reply.ret_msg,
            "result": reply.result,
            "retExtInfo": reply.ext,
            "time": state.server_ms(),
        }
    ).encode()


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def limit_headers(decision: Decision) -> dict[str, str]:
    return {
        "X-Bapi-Limit": str(decision.limit),
        "X-Bapi-Limit-Status": str(decision.remaining),
        "X-Bapi-Limit-Reset-Timestamp": str(decision.reset_ms),
    }


class V5Handlers:
    """Binds the routes to one :class:`SimulatorState`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def register(self, app: web.Application) -> None:
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._bind(route))

    def _bind(self, route: Route) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self.handle(route, request)

        return handler

    async def handle(self, route: Route, request: web.Request) -> web.StreamResponse:
        state = self.state
        started = time.perf_counter()
        rec = RequestRecord(
            seq=state.recorder.next_seq(),
            time_ms=time.time() * 1000.0,
            ip=request.remote or "",
            method=request.method,
            endpoint=route.name,
            api_key=request.headers.get(H_API_KEY, ""),
            uid=None,
            category="",
            body="",
            items=1,
            ids=(),
        )
        try:
            response = await self._serve(route, request, rec)
        finally:
            rec.handler_us = int((time.perf_counter() - started) * 1e6)
            state.recorder.add(rec)
        rec.http_status = response.status
        return response

    async def _serve(
        self, route: Route, request: web.Request, rec: RequestRecord
    ) -> web.StreamResponse:
        state = self.state
        if not state.limiter.ip_check(rec.ip, int(rec.time_ms)):
            rec.fault = "ip_ban"
            return web.Response(status=403, text="403 Forbidden: IP rate limit breached")
        fault = state.faults.decide(route.name)
        if fault is not None:
            if fault.delay_s > 0:
                await asyncio.sleep(fault.delay_s)
            early = await self._transport_fault(fault, request, rec)
            if early is not None:
                return early
        body = await request.read()
        if route.business is None:
            now = state.server_ms()
            return json_response(envelope(state, endpoints.ok(endpoints.server_time(now))))
        payload = body if route.method == "POST" else _raw_query(request)
        rec.body = payload.decode("utf-8", "replace")
        checked = authenticate(request.headers, payload, state.accounts, state.server_ms())
        if isinstance(checked, AuthFailure):
            rec.ret_code = checked.ret_code
            reply = Reply(checked.ret_code, checked.ret_msg)
            return json_response(envelope(state, reply), checked.http_status)
        rec.uid = checked.uid
        return self._private(
            route, request=request, rec=rec, account=checked, payload=payload, fault=fault
        )

    async def _transport_fault(
        self, fault: FaultDecision, request: web.Request, rec: RequestRecord
    ) -> web.StreamResponse | None:
        kind = fault.kind
        if kind is FaultKind.RESET or kind is FaultKind.HANG:
            rec.fault = str(kind)
            if kind is FaultKind.HANG:
                await _hang(request, self.state.config.hang_max_s)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        if kind is FaultKind.HTTP_5XX or kind is FaultKind.HTTP_429:
            rec.fault = str(kind)
            text = "Too Many Requests" if fault.http_status == 429 else "Bad Gateway"
            return web.Response(status=fault.http_status, text=text)
        return None

    def _private(
        self,
        route: Route,
        *,
        request: web.Request,
        rec: RequestRecord,
        account: Account,
        payload: bytes,
        fault: FaultDecision | None,
    ) -> web.Response:
        state = self.state
        params = _params(route, request, payload)
        if params is None:
            return self._answer(rec, endpoints.params_error("invalid request body"), None)
        rec.category = str(params.get("category") or "")
        units = _units(route, params, state.batch_counts_items, rec)
        if fault is not None and fault.kind is FaultKind.RET_10016:
            rec.fault = str(fault.kind)
            reply = Reply(retcodes.SYSTEM_ERROR, retcodes.MSG_SYSTEM_ERROR)
            return self._answer(rec, reply, None)
        decision = None
        if units > 0:
            decision = state.limiter.check(
                account.uid, route.name, rec.category, units, int(rec.time_ms)
            )
        if fault is not None and fault.kind is FaultKind.RET_10006:
            rec.fault = str(fault.kind)
            return self._answer(rec, _too_many(), decision)
        if decision is not None and not decision.allowed:
            return self._answer(rec, _too_many(), decision)
        assert route.business is not None
        reply = route.business(state, account, params, state.server_ms())
        rec.ids = reply.ids
        return self._answer(rec, reply, decision)

    def _answer(self, rec: RequestRecord, reply: Reply, decision: Decision | None) -> web.Response:
        rec.ret_code = reply.ret_code
        headers = limit_headers(decision) if decision is not None else None
        return json_response(envelope(self.state, reply), 200, headers)


def _too_many() -> Reply:
    return Reply(retcodes.TOO_MANY_VISITS, retcodes.MSG_TOO_MANY_VISITS)


def _raw_query(request: web.Request) -> bytes:
    _, _, query = request.raw_path.partition("?")
    return query.encode()


def _params(route: Route, request: web.Request, payload: bytes) -> dict[str, Any] | None:
    if route.method == "GET":
        return dict(request.query)
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _units(route: Route, params: dict[str, Any], per_item: bool, rec: RequestRecord) -> int:
    """Rate-limit units this request spends (0: malformed, the endpoint will refuse it)."""
    if rec.category not in endpoints.BATCH_MAX:
        return 0
    if not route.batch:
        return 1
    items = endpoints.batch_items(params)
    if not items or len(items) > endpoints.BATCH_MAX[rec.category]:
        return 0
    rec.items = len(items)
    return len(items) if per_item else 1


async def _hang(request: web.Request, max_s: float) -> None:
    """Answer nothing until the client gives up (or ``max_s`` passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    transport = request.transport
    while transport is not None and not transport.is_closing() and loop.time() < deadline:
        await asyncio.sleep(0.05)
