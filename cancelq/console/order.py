"""The order ``cancelq top`` shows lanes in: the one in trouble on top.

Halted first, then paused by the exchange, then the longest drain (a lane whose drain cannot be
computed, halted or without a recorded budget, counts as endless), then the biggest backlog,
then the most rate-limit and authentication answers in the last minute; ties by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cancelq.console.snapshot import LaneView


def trouble_key(lane: LaneView, now_ms: int) -> tuple[bool, bool, float, int, int, str]:
    eta = lane.eta_s(now_ms)
    return (
        lane.halt is None,
        not lane.paused(now_ms),
        -(math.inf if eta is None else eta),
        -lane.parked,
        -(lane.rate_limited_1m + lane.auth_failed_1m),
        lane.name,
    )


def in_trouble_first(lanes: Iterable[LaneView], now_ms: int) -> list[LaneView]:
    return sorted(lanes, key=lambda lane: trouble_key(lane, now_ms))
