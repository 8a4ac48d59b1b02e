"""The retry policy: what a classified reply means for one ticket (no Redis, no Celery)."""

from __future__ import annotations

import pytest

from cancelq.bybit.client import ExchangeReply
from cancelq.outcomes import Status
from cancelq.settings import Settings
from cancelq.worker.decisions import FINAL, NETWORK, Again, Final, RetryPolicy
from cancelq.worker.retcodes import Action
from tests.unit.factories import ticket

NOW_MS = 1_000_000


class Ceiling:
    """An rng whose ``uniform`` always picks the top of the range: the backoff's ceiling."""

    def uniform(self, _low: float, high: float) -> float:
        return high


def settings(**overrides: float) -> Settings:
    values = {
        "max_attempts": 5,
        "request_deadline_s": 60.0,
        "backoff_base_s": 0.1,
        "backoff_max_s": 5.0,
        "not_found_recheck_s": 2.0,
        "not_found_retry_s": 0.25,
        **overrides,
    }
    return Settings(**values)


def policy(**overrides: float) -> RetryPolicy:
    return RetryPolicy(settings(**overrides), Ceiling())


def reply(ret_code: int | None = 0) -> ExchangeReply:
    return ExchangeReply(http_status=200, ret_code=ret_code, ret_msg="")


@pytest.mark.parametrize(("action", "expected"), list(FINAL.items()))
def test_final_actions_end_in_their_status(action: Action, expected: tuple[Status, bool]) -> None:
    started = NOW_MS - 10_000  # past the not-found re-check window
    decision = policy().decide(ticket(started_ms=started), action, reply(), NOW_MS)
    assert isinstance(decision, Final)
    assert decision.status is expected[0]
    assert decision.keep is expected[1]


def test_an_unknown_retcode_says_which_one() -> None:
    decision = policy().decide(ticket(), Action.UNKNOWN, reply(123456), NOW_MS)
    assert decision == Final(Status.FAILED, keep=False, reason="unknown retCode 123456")


def test_no_reply_at_all_backs_off_as_network() -> None:
    decision = policy().decide(ticket(attempts=1, started_ms=NOW_MS), None, None, NOW_MS)
    assert decision == Again(0.1, NETWORK)


@pytest.mark.parametrize(
    ("action", "delay_s", "reason"),
    [
        (Action.RETRY_CLOCK, 0.0, "clock"),  # resync, new signature, at once
        (Action.IP_BAN, 5.0, "ip_ban"),  # the longest backoff
        (Action.RETRY_TRANSIENT, 0.4, "transient"),  # backoff: 0.1 x 2^(3-1)
        (Action.RETRY_RATE_LIMIT, 0.4, "rate_limit"),  # the lane waits for the reset
    ],
)
def test_retry_actions_wait_as_their_kind_needs(
    action: Action, delay_s: float, reason: str
) -> None:
    decision = policy().decide(ticket(attempts=3, started_ms=NOW_MS), action, reply(), NOW_MS)
    assert decision == Again(delay_s, reason)


def test_not_found_is_re_checked_inside_its_window_then_final() -> None:
    rules = policy()
    young = ticket(started_ms=NOW_MS - 1_000)
    assert rules.decide(young, Action.NOT_FOUND, reply(), NOW_MS) == Again(
        0.25, "not_found_recheck"
    )
    old = ticket(started_ms=NOW_MS - 2_500)
    assert rules.decide(old, Action.NOT_FOUND, reply(), NOW_MS) == Final(Status.NOT_FOUND, True)


def test_a_re_check_out_of_attempts_is_not_found_not_failed() -> None:
    exhausted = ticket(attempts=5, started_ms=NOW_MS - 1_000)
    decision = policy().decide(exhausted, Action.NOT_FOUND, reply(), NOW_MS)
    assert decision == Final(Status.NOT_FOUND, keep=True)


def test_gives_up_after_max_attempts_and_lets_a_later_request_try() -> None:
    decision = policy().decide(ticket(attempts=5), Action.RETRY_TRANSIENT, reply(), NOW_MS)
    assert decision == Final(
        Status.FAILED, keep=False, reason="gave up after 5 attempts (last: transient)"
    )


def test_gives_up_when_the_wait_would_pass_the_deadline() -> None:
    rules = policy(request_deadline_s=10.0)
    near_deadline = ticket(attempts=1, started_ms=NOW_MS - 9_950)  # 9.95 s + 0.1 s > 10 s
    decision = rules.decide(near_deadline, None, None, NOW_MS)
    assert decision == Final(
        Status.FAILED, keep=False, reason="deadline of 10s reached (last: network)"
    )


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(0, 0.1), (1, 0.1), (2, 0.2), (4, 0.8), (7, 5.0), (30, 5.0)]
)
def test_backoff_doubles_up_to_its_cap(attempts: int, ceiling: float) -> None:
    assert policy().backoff(attempts) == pytest.approx(ceiling)


def test_backoff_is_full_jitter_below_the_ceiling() -> None:
    rules = RetryPolicy(settings())
    waits = [rules.backoff(3) for _ in range(200)]
    assert all(0 <= w <= 0.4 for w in waits)
    assert len(set(waits)) > 100  # jittered, not a fixed step
