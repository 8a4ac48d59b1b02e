"""The limiter adapts to what the exchange says: a lower X-Bapi-Limit, and HTTP 403 IP bans."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from cancelq.outcomes import Status
from tests.support import KEYS, UIDS, Stack, cancel, suite_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_lower_limit_announced_by_the_exchange_is_obeyed(stack: Stack) -> None:
    admin = stack.sim.admin
    for endpoint in ("order/cancel", "order/cancel-batch"):
        admin.set_rate_limit(endpoint, 5, category="spot", uid=UIDS["main"])
    try:
        orders = admin.place_orders(
            [{"orderLinkId": f"lim-{i}", "price": "100"} for i in range(30)],
            account="main",
            category="spot",
            symbol="BTCUSDT",
        )
        ids = stack.producer.enqueue_many([cancel(orderId=o["orderId"]) for o in orders])
        outcomes = stack.producer.wait_many(ids, 60)
        settled_ms = int(time.time() * 1000) - 3000  # the last ~3 s are well past the learning
        late = admin.max_requests_in_window(api_key=KEYS["main"], since_ms=settled_ms)["list"]
    finally:
        for endpoint in ("order/cancel", "order/cancel-batch"):
            admin.set_rate_limit(endpoint, 20, category="spot", uid=UIDS["main"])
    assert {o.status for o in outcomes.values()} == {Status.CANCELLED}
    assert late
    assert max(w["max"] for w in late) <= 5, late


@pytest.fixture
def banning_stack(stack: Stack) -> Iterator[Stack]:
    """A second stack (own Redis and worker) whose worker pauses 2 s after a 403."""
    workdir = stack.workdir / "ban"
    workdir.mkdir(exist_ok=True)
    try:
        with suite_stack(workdir, stack.accounts, simulator=stack.sim) as own:
            own.start_worker(CANCELQ_IP_BAN_PAUSE_S="2")
            yield own
    finally:
        stack.sim.admin.configure_rate_limits(ip_limit=600, ip_window_ms=5000, ip_ban_ms=600_000)


def test_an_ip_ban_stops_the_pod_and_loses_nothing(banning_stack: Stack) -> None:
    stack = banning_stack
    admin = stack.sim.admin
    orders = admin.place_orders(
        [{"orderLinkId": f"ban-{i}", "price": "100"} for i in range(12)],
        account="main",
        category="spot",
        symbol="BTCUSDT",
    )
    admin.configure_rate_limits(ip_limit=4, ip_window_ms=5000, ip_ban_ms=1500)
    ids = stack.producer.enqueue_many([cancel(orderId=o["orderId"]) for o in orders])
    port = stack.workers[0].env["CANCELQ_METRICS_PORT"]
    metrics = f"http://127.0.0.1:{port}/metrics"
    assert wait_until(
        lambda: "cancelq_ip_banned 1.0" in requests.get(metrics, timeout=5).text, timeout_s=15
    )
    admin.configure_rate_limits(ip_limit=600)
    outcomes = stack.producer.wait_many(ids, 60)
    assert {o.status for o in outcomes.values()} == {Status.CANCELLED}
    forbidden = [r for r in admin.records(api_key=KEYS["main"]) if r.get("http_status") == 403]
    assert forbidden  # the ban really happened
    assert "cancelq_ip_banned 0.0" in requests.get(metrics, timeout=5).text
