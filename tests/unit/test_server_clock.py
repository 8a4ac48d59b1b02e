"""The exchange's clock as this process sees it, fed fake replies and fake local clocks."""

from __future__ import annotations

from typing import Any

from cancelq.bybit.client import ExchangeReply
from cancelq.bybit.clock import SAFETY_LAG_MS, ServerClock


class Clocks:
    """A local wall clock (seconds) and monotonic clock the test moves by hand."""

    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.wall = wall
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def server_time(
    time_nano: str | None = None, time_ms: int | None = None, **result: Any
) -> ExchangeReply:
    if time_nano is not None:
        result["timeNano"] = time_nano
    return ExchangeReply(
        http_status=200, ret_code=0, ret_msg="OK", result=result, server_time_ms=time_ms
    )


def clock_with(clocks: Clocks, refresh_every_s: float = 30.0) -> ServerClock:
    return ServerClock(refresh_every_s, wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)


def test_the_offset_is_measured_against_the_round_trips_midpoint() -> None:
    clocks = Clocks()
    clock = clock_with(clocks)

    def fetch() -> ExchangeReply:
        clocks.advance(0.2)  # a 200 ms round trip; the server read its clock at the midpoint
        server_ms = int((clocks.wall - 0.1) * 1000) + 1500  # the exchange runs 1.5 s ahead
        return server_time(time_nano=str(server_ms * 1_000_000))

    assert clock.sync(fetch)
    assert clock.offset_ms == 1500
    assert clock.now_ms() == int(clocks.wall * 1000) + 1500 - SAFETY_LAG_MS


def test_without_time_nano_the_envelopes_time_is_used() -> None:
    clocks = Clocks()
    clock = clock_with(clocks)
    assert clock.sync(lambda: server_time(time_ms=int(clocks.wall * 1000) - 2000))
    assert clock.offset_ms == -2000


def test_a_failed_refresh_keeps_the_last_offset_and_stays_stale() -> None:
    clocks = Clocks()
    clock = clock_with(clocks)
    assert clock.sync(lambda: server_time(time_ms=int(clocks.wall * 1000) + 700))
    clock.invalidate()  # a 10002: refresh before the next request
    unreachable = ExchangeReply(http_status=0, ret_code=None, ret_msg="unreachable")
    assert not clock.sync(lambda: unreachable)
    assert clock.offset_ms == 700
    assert clock.is_stale()
    assert not clock.sync(lambda: server_time(time_nano="not-a-number"))


def test_a_fresh_clock_is_not_synced_again_until_its_refresh_time() -> None:
    clocks = Clocks()
    clock = clock_with(clocks, refresh_every_s=30.0)
    assert clock.is_stale()  # never synced
    calls: list[int] = []

    def fetch() -> ExchangeReply:
        calls.append(1)
        return server_time(time_ms=int(clocks.wall * 1000))

    assert clock.sync(fetch)
    clocks.advance(29.0)
    assert not clock.is_stale()
    assert clock.sync(fetch)  # fresh: no request
    assert len(calls) == 1
    clocks.advance(2.0)
    assert clock.is_stale()
    assert clock.sync(fetch)
    assert len(calls) == 2


def test_before_any_sync_the_local_clock_is_used_a_little_behind() -> None:
    clocks = Clocks(wall=1_700_000_000.5)
    assert clock_with(clocks).now_ms() == 1_700_000_000_500 - SAFETY_LAG_MS
