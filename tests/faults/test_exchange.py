"""Issue 5, proof 3: the exchange misbehaves (timeouts, resets, HTTP 5xx, 10016, 10006 storms,
clock skew beyond recv_window): every request still reaches a final outcome, with the right
status: ``cancelled`` while retries can win, ``failed`` once they cannot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
    assert_no_secrets,
    assert_none_lost_none_stuck,
    cancels,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.support import Stack

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

PER_CASE = 40
#: Faults hit the cancel endpoints only (market/time stays healthy for clock sync).
CANCEL_ENDPOINTS = ["order/cancel", "order/cancel-batch"]
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("timeouts", {"p_hang": 0.3}, "cancelled"),
    ("resets", {"p_reset": 0.3}, "cancelled"),
    ("http-5xx", {"p_http_5xx": 0.3}, "cancelled"),
    ("retcode-10016", {"p_10016": 0.4}, "cancelled"),
    ("10006-storm", {"p_10006": 0.6}, "cancelled"),
    ("http-429", {"p_http_429": 0.4}, "cancelled"),
    ("5xx-forever", {"p_http_5xx": 1.0}, "failed"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("exchange")) as stack:
        stack.start_worker(
            **FAULT_ENV,
            CANCELQ_HTTP_READ_TIMEOUT_S="1",  # a hung request is abandoned after 1 s
            CANCELQ_BACKOFF_MAX_S="0.5",
            CANCELQ_MAX_ATTEMPTS="25",  # a seeded 60% storm can feed one batch 15 failures in a row
            CANCELQ_REQUEST_DEADLINE_S="30",
        )
        yield stack
        assert_no_secrets(stack, stack.secrets)


@pytest.fixture
def clean(stack: Stack) -> Iterator[Stack]:
    stack.sim.admin.reset(faults=True)
    yield stack
    stack.sim.admin.reset(faults=True)


def run_case(stack: Stack, name: str, expected: str) -> None:
    links = place(stack, "load", name, PER_CASE)
    ids = stack.producer.enqueue_many(cancels("load", links))
    outcomes = wait_final(stack, ids, 80)
    result = tally(stack, name, ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert result.statuses == {expected: PER_CASE}
    if expected == "failed":
        assert all("transient" in (o.reason or "") for o in outcomes.values())


@pytest.mark.parametrize(("name", "faults", "expected"), CASES, ids=[c[0] for c in CASES])
def test_exchange_faults_end_in_the_right_final_outcome(
    clean: Stack, name: str, faults: dict[str, Any], expected: str
) -> None:
    clean.sim.admin.set_faults(**faults, endpoints=CANCEL_ENDPOINTS, seed=5)
    run_case(clean, name, expected)


def test_clock_skew_beyond_recv_window_is_resynced(clean: Stack) -> None:
    clean.sim.admin.set_clock_skew(20_000)  # recv_window is 5 s: every old timestamp is 10002
    run_case(clean, "clock-skew", "cancelled")
    clean.sim.admin.set_clock_skew(-20_000)
    run_case(clean, "clock-skew-back", "cancelled")
