"""The request log: every request that reached the simulator, in a bounded ring buffer.

Tests and benchmarks read it through the admin API: the records themselves, how many cancel
requests named each ``orderLinkId`` / ``orderId`` (batch items counted one by one), and the
highest number of requests (batch: items) any API key spent in any rolling window.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

CANCEL_ENDPOINTS = frozenset({"order/cancel", "order/cancel-batch"})

Identity = tuple[str, str]  # ("orderLinkId" | "orderId", value)


@dataclass(slots=True)
class RequestRecord:
    seq: int
    time_ms: float  # arrival, wall clock (not skewed)
    ip: str
    method: str
    endpoint: str  # "order/cancel", "market/time", ...
    api_key: str
    uid: int | None
    category: str
    body: str
    items: int
    ids: tuple[Identity, ...]
    ret_code: int | None = None
    http_status: int = 200
    fault: str = ""
    handler_us: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time_ms": self.time_ms,
            "ip": self.ip,
            "method": self.method,
            "endpoint": self.endpoint,
            "api_key": self.api_key,
            "uid": self.uid,
            "category": self.category,
            "body": self.body,
            "items": self.items,
            "ids": [list(i) for i in self.ids],
            "ret_code": self.ret_code,
            "http_status": self.http_status,
            "fault": self.fault,
            "handler_us": self.handler_us,
        }


class Recorder:
    """Ring buffer of :class:`RequestRecord` plus the queries tests need."""

    def __init__(self, size: int = 200_000) -> None:
        self._buf: deque[RequestRecord] = deque(maxlen=max(1, size))
        self._seq = 0
        self.dropped = 0

    @property
    def size(self) -> int:
        return self._buf.maxlen or 0

    def add(self, record: RequestRecord) -> None:
        if len(self._buf) == self._buf.maxlen:
            self.dropped += 1
        self._buf.append(record)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def reset(self) -> None:
        self._buf.clear()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buf)

    def select(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        since_ms: float | None = None,
    ) -> Iterator[RequestRecord]:
        for rec in list(self._buf):
            if endpoint is not None and rec.endpoint != endpoint:
                continue
            if api_key is not None and rec.api_key != api_key:
                continue
            if since_ms is not None and rec.time_ms < since_ms:
                continue
            yield rec


def cancel_counts(records: Iterable[RequestRecord]) -> dict[str, dict[str, int]]:
    """Cancel requests per identity: ``{"orderLinkId": {id: n}, "orderId": {id: n}}``."""
    counts: dict[str, Counter[str]] = {"orderLinkId": Counter(), "orderId": Counter()}
    for rec in records:
        if rec.endpoint not in CANCEL_ENDPOINTS:
            continue
        for field_name, value in rec.ids:
            counts[field_name][value] += 1
    return {name: dict(c) for name, c in counts.items()}


def _max_in_window(points: list[tuple[float, int]], window_ms: float) -> tuple[int, float]:
    """Largest sum of weights inside any half-open window ``[t, t + window_ms)``."""
    points.sort()
    best, best_at, total, lo = 0, 0.0, 0, 0
    for t, weight in points:
        total += weight
        while points[lo][0] <= t - window_ms:
            total -= points[lo][1]
            lo += 1
        if total > best:
            best, best_at = total, points[lo][0]
    return best, best_at


def max_window_counts(
    records: Iterable[RequestRecord], window_ms: float = 1000.0, by: str = "api_key"
) -> list[dict[str, Any]]:
    """Per ``(api_key or uid, endpoint, category)``: the most requests/items in any window.

    ``by`` is ``"api_key"`` or ``"uid"``. Sorted highest first. Only requests that named an
    API key (``by="api_key"``) or authenticated (``by="uid"``) are counted.
    """
    groups: dict[tuple[str, str, str], list[tuple[float, int]]] = defaultdict(list)
    uids: dict[str, int | None] = {}
    for rec in records:
        who = rec.api_key if by == "api_key" else ("" if rec.uid is None else str(rec.uid))
        if not who:
            continue
        groups[(who, rec.endpoint, rec.category)].append((rec.time_ms, rec.items))
        uids[who] = rec.uid
    rows: list[dict[str, Any]] = []
    for (who, endpoint, category), points in sorted(
        groups.items(), key=lambda kv: (-_max_in_window(kv[1], window_ms)[0], kv[0])
    ):
        best, at = _max_in_window(points, window_ms)
        rows.append(
            {
                "api_key": who if by == "api_key" else "",
                "uid": uids.get(who),
                "endpoint": endpoint,
                "category": category,
                "max": best,
                "window_start_ms": at,
                "total": sum(w for _, w in points),
            }
        )
    return rows
