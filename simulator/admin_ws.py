"""Admin routes of the private WebSocket (``/__admin/ws``): its state and its faults.

| route | body | reply |
|---|---|---|
| ``GET /ws`` | | ``{silent, refuse, pushed, connections:[{conn_id, uid, topics}]}`` |
| ``POST /ws`` | ``{silent?, refuse?}`` | as GET |
| ``POST /ws/drop`` | ``{uid?}`` (absent: every connection) | ``{dropped}`` |
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cancelq.simulator.ws import PrivateStreams


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes")


async def _body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return body


def ws_routes(streams: PrivateStreams) -> list[web.RouteDef]:
    async def get_state(_: web.Request) -> web.Response:
        return web.json_response(streams.snapshot())

    async def set_faults(request: web.Request) -> web.Response:
        body = await _body(request)
        if "silent" in body:
            streams.faults.silent = _flag(body["silent"])
        if "refuse" in body:
            streams.faults.refuse = _flag(body["refuse"])
        return web.json_response(streams.snapshot())

    async def drop(request: web.Request) -> web.Response:
        body = await _body(request)
        uid = None if body.get("uid") is None else int(body["uid"])
        return web.json_response({"dropped": streams.drop(uid)})

    return [web.get("/ws", get_state), web.post("/ws", set_faults), web.post("/ws/drop", drop)]
