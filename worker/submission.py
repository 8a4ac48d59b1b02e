"""Sign and submit: one cancel through ``/v5/order/cancel``, several through ``cancel-batch``.

A batch reply is split into one reply per item (``result.list[i]`` with ``retExtInfo.list[i]``'s
code), so every ticket is classified by its own code. No reply at all is reported per ticket as
``None`` with the reason; the client never raises for an HTTP reply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cancelq.bybit.client import CANCEL, CANCEL_BATCH, BybitClient, ExchangeReply
from cancelq.bybit.clock import ServerClock
from cancelq.errors import ExchangeUnavailableError
from cancelq.worker.tickets import Ticket

Sent = tuple[Ticket, ExchangeReply | None]


class Submitter:
    def __init__(self, client: BybitClient, clock: ServerClock) -> None:
        self._client = client
        self._clock = clock

    def send(self, tickets: Sequence[Ticket]) -> tuple[str, list[Sent]]:
        """Submit the tickets (one lane: same account and category); returns the path used."""
        first = tickets[0]
        path = CANCEL if len(tickets) == 1 else CANCEL_BATCH
        body = first.request.exchange_body() if path == CANCEL else batch_body(tickets)
        try:
            reply = self._client.post(path, body, first.account.credentials, self._clock.now_ms())
        except ExchangeUnavailableError:
            return path, [(ticket, None) for ticket in tickets]
        if path == CANCEL:
            return path, [(first, reply)]
        return path, list(zip(tickets, split_batch_reply(reply, len(tickets)), strict=True))


def batch_body(tickets: Sequence[Ticket]) -> dict[str, Any]:
    items = []
    for ticket in tickets:
        item = ticket.request.exchange_body()
        del item["category"]
        items.append(item)
    return {"category": tickets[0].category, "request": items}


def split_batch_reply(reply: ExchangeReply, count: int) -> list[ExchangeReply]:
    """One reply per item; a batch refused as a whole (HTTP error, retCode != 0) applies to all."""
    if reply.http_status != 200 or reply.ret_code != 0:
        return [reply] * count
    results = _list(reply.result)
    infos = _list(reply.ret_ext_info)
    return [
        dataclasses.replace(
            reply,
            ret_code=_code(infos[i]) if i < len(infos) else None,
            ret_msg=str(infos[i].get("msg", "")) if i < len(infos) else "missing item reply",
            result=results[i] if i < len(results) else {},
            ret_ext_info={},
        )
        for i in range(count)
    ]


def _list(section: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = section.get("list")
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, dict) else {} for item in items]


def _code(info: Mapping[str, Any]) -> int | None:
    code = info.get("code")
    return code if isinstance(code, int) else None
