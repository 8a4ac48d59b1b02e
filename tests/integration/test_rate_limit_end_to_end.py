"""The shared budget against the simulator's own per-window record."""

from __future__ import annotations

import pytest

from cancelq.outcomes import Status
from tests.support import KEYS, Stack, cancel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_a_backlog_never_exceeds_the_key_limit_and_goes_out_in_batches(stack: Stack) -> None:
    orders = stack.sim.admin.place_orders(
        [{"orderLinkId": f"burst-{i}", "price": "100"} for i in range(70)],
        account="main",
        category="spot",
        symbol="BTCUSDT",
    )
    second = stack.start_worker()  # two pods share one budget
    try:
        ids = stack.producer.enqueue_many([cancel(orderId=o["orderId"]) for o in orders])
        outcomes = stack.producer.wait_many(ids, 60)
    finally:
        second.stop()
        stack.workers.remove(second)
    assert {o.status for o in outcomes.values()} == {Status.CANCELLED}
    records = stack.sim.admin.records(api_key=KEYS["main"])
    assert records
    assert not [r for r in records if r["ret_code"] == 10006]
    windows = stack.sim.admin.max_requests_in_window(api_key=KEYS["main"])["list"]
    assert windows
    assert max(w["max"] for w in windows) <= 20, windows  # main: rate_limit_per_s = 20
    assert any(r["endpoint"] == "order/cancel-batch" for r in records)
