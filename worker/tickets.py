"""A ticket: a validated cancel this request owns (its dedup claim), on its way to the exchange."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from cancelq.contract import CancelRequest
from cancelq.worker.runtime import AccountRuntime


@dataclass(frozen=True)
class Ticket:
    request: CancelRequest
    request_id: str
    account: AccountRuntime
    attempts: int  # exchange attempts counted so far (the one being sent included)
    started_ms: int  # when the request was first taken (worker wall clock)

    @property
    def alias(self) -> str:
        return self.request.account

    @property
    def category(self) -> str:
        return self.request.category

    def parked_json(self) -> str:
        """What waits in a lane and travels in the dispatcher's message."""
        fields = self.request.model_dump(exclude_none=True)
        return json.dumps(
            {"requestId": self.request_id, "parkedAt": now_ms(), "fields": fields},
            separators=(",", ":"),
        )


def parked_fields(item: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(requestId, parkedAt, cancel fields) of a parked item; KeyError/TypeError if malformed."""
    return str(item["requestId"]), int(item["parkedAt"]), dict(item["fields"])


def now_ms() -> int:
    return int(time.time() * 1000)
