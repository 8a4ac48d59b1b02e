"""The console's order (the lane in trouble on top) and its drain arithmetic, without Redis."""

from __future__ import annotations

import pytest

from cancelq.console.order import in_trouble_first
from cancelq.console.snapshot import LaneView
from cancelq.halts import Halt

pytestmark = pytest.mark.timeout(10)
NOW = 1_800_000_000_000
HALT = Halt("h", "ops@host", "compromised key", NOW - 5_000)


def names(lanes: list[LaneView]) -> list[str]:
    return [lane.name for lane in in_trouble_first(lanes, NOW)]


def test_halted_then_paused_then_the_longest_drain_then_the_biggest_backlog() -> None:
    lanes = [
        LaneView("quiet", "spot", limit=10),
        LaneView("small", "spot", parked=5, limit=10),
        LaneView("slow", "spot", parked=40, limit=2),  # 20 s to drain
        LaneView("big", "spot", parked=100, limit=10),  # 10 s: more parked, less ETA
        LaneView("paused", "spot", limit=10, paused_until_ms=NOW + 800, pause_reason="10006"),
        LaneView("h", "linear", halt=HALT),
    ]
    assert names(lanes) == [
        "h:linear",
        "paused:spot",
        "slow:spot",
        "big:spot",
        "small:spot",
        "quiet:spot",
    ]


def test_a_halted_backlog_never_drains_and_ranks_above_a_paused_one() -> None:
    halted = LaneView("h", "spot", parked=3, limit=10, halt=HALT)
    paused = LaneView("p", "spot", parked=500, limit=1, paused_until_ms=NOW + 60_000)
    assert halted.eta_s(NOW) is None
    assert names([paused, halted]) == ["h:spot", "p:spot"]


def test_an_expired_pause_is_no_trouble_and_exchange_complaints_break_ties() -> None:
    over = LaneView("over", "spot", limit=10, paused_until_ms=NOW - 1)
    auth = LaneView("auth", "spot", limit=10, auth_failed_1m=3)
    assert not over.paused(NOW)
    assert names([over, auth]) == ["auth:spot", "over:spot"]


def test_drain_eta_counts_the_pause_and_batches_of_a_per_request_budget() -> None:
    per_item = LaneView("a", "spot", parked=30, limit=10, window_ms=1000)
    assert per_item.eta_s(NOW) == pytest.approx(3.0)
    per_request = LaneView("a", "spot", parked=30, limit=1, batch=10, per_item=False)
    assert per_request.eta_s(NOW) == pytest.approx(3.0)
    paused = LaneView("a", "spot", parked=10, limit=10, paused_until_ms=NOW + 1500)
    assert paused.eta_s(NOW) == pytest.approx(2.5)
    assert LaneView("a", "spot", parked=1).eta_s(NOW) is None  # no budget recorded


def test_budget_used_over_the_minute_is_a_share_of_sixty_windows() -> None:
    lane = LaneView("a", "spot", limit=10, window_ms=1000, sent_1m=150)
    assert lane.used_1m_share() == pytest.approx(0.25)
