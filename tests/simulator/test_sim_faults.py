"""Each fault, switched on live through the admin API."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from sim_helpers import V5

from cancelq.simulator.testing import InProcessSimulator

pytestmark = pytest.mark.timeout(60)
BODY = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "f1"}


def test_added_latency_fixed(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(latency_ms=150, endpoints=["order/cancel"])
    started = time.monotonic()
    assert v5.cancel("spot", orderLinkId="f1")["retCode"] == 170213
    assert time.monotonic() - started >= 0.14
    started = time.monotonic()
    v5.sim.admin.health()
    sim_time = time.monotonic() - started
    assert sim_time < 5  # admin routes are never delayed


def test_latency_distribution_applies(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(latency_ms=30, latency_dist="uniform", latency_max_ms=60, seed=3)
    started = time.monotonic()
    for _ in range(3):
        v5.cancel("spot", orderLinkId="f1")
    assert time.monotonic() - started >= 0.09


def test_ret_10016(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(p_10016=1.0)
    reply = v5.cancel("spot", orderLinkId="f1")
    assert reply["retCode"] == 10016
    assert sim.admin.records()[-1]["fault"] == "ret_10016"


def test_ret_10006_with_headers(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(p_10006=1.0)
    resp = v5.post_raw("/v5/order/cancel", BODY)
    assert resp.json()["retCode"] == 10006
    assert "X-Bapi-Limit" in resp.headers


@pytest.mark.parametrize(
    ("knob", "statuses"), [("p_http_5xx", {500, 502, 503}), ("p_http_429", {429})]
)
def test_http_status_faults(v5: V5, sim: InProcessSimulator, knob: str, statuses: set[int]) -> None:
    sim.admin.set_faults(**{knob: 1.0, "seed": 7})
    seen = {v5.post_raw("/v5/order/cancel", BODY).status_code for _ in range(12)}
    assert seen <= statuses
    assert seen


def test_share_of_faults_is_roughly_the_probability(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(p_10016=0.5, seed=11)
    codes = [v5.cancel("spot", orderLinkId="f1")["retCode"] for _ in range(60)]
    share = codes.count(10016) / len(codes)
    assert 0.2 < share < 0.8


def test_connection_reset(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(p_reset=1.0)
    with pytest.raises(requests.ConnectionError):
        v5.post_raw("/v5/order/cancel", BODY)
    sim.admin.clear_faults()
    assert v5.cancel("spot", orderLinkId="f1")["retCode"] == 170213


def test_hang_until_client_gives_up(sim: InProcessSimulator, http: requests.Session) -> None:
    sim.admin.set_faults(p_hang=1.0, endpoints=["market/time"])
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        http.get(f"{sim.base_url}/v5/market/time", timeout=0.5)
    assert time.monotonic() - started >= 0.45
    sim.admin.clear_faults()
    deadline = time.monotonic() + 10
    while not [r for r in sim.admin.records(endpoint="market/time") if r["fault"] == "hang"]:
        assert time.monotonic() < deadline  # the server notices the client left
        time.sleep(0.05)


def test_clock_skew_makes_client_stale(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_clock_skew(10_000)
    assert v5.cancel("spot", orderLinkId="f1")["retCode"] == 10002
    skewed_now = int(time.time() * 1000) + 10_000
    resp = v5.post_raw("/v5/order/cancel", BODY, timestamp_ms=skewed_now)
    assert resp.json()["retCode"] == 170213
    sim.admin.set_clock_skew(-10_000)
    assert v5.cancel("spot", orderLinkId="f1")["retCode"] == 10002  # from the future


def test_faults_scoped_to_endpoint(v5: V5, sim: InProcessSimulator) -> None:
    sim.admin.set_faults(p_10016=1.0, endpoints=["order/cancel-all"])
    assert v5.cancel("spot", orderLinkId="f1")["retCode"] == 170213
    assert v5.post("/v5/order/cancel-all", {"category": "spot"})["retCode"] == 10016


def test_faults_via_admin_roundtrip_and_validation(sim: InProcessSimulator) -> None:
    from cancelq.simulator.admin_client import AdminClientError

    settings: dict[str, Any] = sim.admin.set_faults(p_http_5xx=0.25, http_5xx_statuses=[502])
    assert settings["p_http_5xx"] == 0.25
    assert sim.admin.faults()["http_5xx_statuses"] == [502]
    with pytest.raises(AdminClientError) as err:
        sim.admin.set_faults(p_reset=3)
    assert err.value.status == 400
    assert sim.admin.clear_faults()["p_http_5xx"] == 0.0
