"""worker/own_beat.py: stale claims are claimed again until they are not, and once more
without the check after the wait (a clock and a sleep of the test's own; no Redis)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cancelq.worker.own_beat import POLL_S, OwnBeatWait, wait_for_takeover_s

pytestmark = pytest.mark.timeout(10)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def waiter(wait_s: float = 9.0) -> tuple[OwnBeatWait, FakeTime]:
    clock = FakeTime()
    return OwnBeatWait(wait_s, sleep=clock.sleep, monotonic=clock.monotonic), clock


def test_a_fresh_claim_is_made_once() -> None:
    wait, clock = waiter()
    calls: list[tuple[list[int], bool]] = []

    def run(indices: Sequence[int], check: bool) -> list[str]:
        calls.append((list(indices), check))
        return ["own" for _ in indices]

    assert wait.settle(3, run, lambda v: v == "stale") == ["own", "own", "own"]
    assert calls == [([0, 1, 2], True)]
    assert clock.now == 0.0


def test_only_the_stale_claims_are_made_again_until_the_pod_has_beaten() -> None:
    """Claim 1 was stale twice (the beat landed between), 0 and 2 are never claimed twice:
    a claim counts its attempt."""
    wait, clock = waiter()
    replies = {1: iter(["stale", "stale", "own"])}
    calls: list[list[int]] = []

    def run(indices: Sequence[int], check: bool) -> list[str]:
        calls.append(list(indices))
        return [next(replies[i]) if i in replies else "own" for i in indices]

    assert wait.settle(3, run, lambda v: v == "stale") == ["own", "own", "own"]
    assert calls == [[0, 1, 2], [1], [1]]
    assert clock.now == pytest.approx(2 * POLL_S)


def test_after_the_wait_the_claim_is_made_without_the_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wait, clock = waiter(wait_s=1.0)
    checks: list[bool] = []

    def run(indices: Sequence[int], check: bool) -> list[str]:
        checks.append(check)
        return ["stale" if check else "own" for _ in indices]

    assert wait.settle(1, run, lambda v: v == "stale") == ["own"]
    assert checks[-1] is False
    assert all(checks[:-1])
    assert 1.0 <= clock.now < 1.0 + 2 * POLL_S
    assert "claiming without it" in caplog.text


def test_the_wait_outlasts_a_takeover_with_the_shipped_timings() -> None:
    """Others hand a dead pod's deliveries back a TTL after its last beat, at their next sweep
    (a beat later): the wait is twice that."""
    assert wait_for_takeover_s(2.0, 0.5) == 5.0
