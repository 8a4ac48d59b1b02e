"""The admin API's access rule and routes, the CLI, and the subprocess helper."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sim_helpers import HMAC_KEY, HMAC_SECRET, HMAC_UID

from cancelq.harness.accounts import AccountSpec, write_accounts
from cancelq.simulator.admin import STATE_KEY, admin_allowed, guard
from cancelq.simulator.admin_client import AdminClientError
from cancelq.simulator.cli import config_from_args
from cancelq.simulator.config import SimulatorConfig
from cancelq.simulator.retcodes import Dialect
from cancelq.simulator.state import SimulatorState
from cancelq.simulator.testing import (
    InProcessSimulator,
    SimulatorProcess,
    SimulatorStartError,
    free_port,
    signed_headers,
)


@pytest.mark.parametrize(
    ("remote", "sent", "token", "allowed"),
    [
        ("127.0.0.1", None, None, True),
        ("::1", None, "t", True),
        ("10.0.0.5", None, None, False),
        ("10.0.0.5", "t", None, False),
        ("10.0.0.5", "wrong", "t", False),
        ("10.0.0.5", "t", "t", True),
        (None, None, None, False),
    ],
)
def test_admin_access_rule(
    remote: str | None, sent: str | None, token: str | None, allowed: bool
) -> None:
    assert admin_allowed(remote, sent, token) is allowed


def test_guard_middleware_refuses_remote_without_token() -> None:
    app = web.Application()
    app[STATE_KEY] = SimulatorState.from_config(SimulatorConfig(admin_token="tok"))

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def run(headers: dict[str, str]) -> int:
        req = make_mocked_request("GET", "/__admin/health", headers=headers, app=app)
        req = req.clone(remote="192.0.2.10")
        resp = await guard(req, ok)
        return resp.status

    assert asyncio.run(run({})) == 403
    assert asyncio.run(run({"X-Admin-Token": "tok"})) == 200


def test_admin_routes_accounts_orders_errors(sim: InProcessSimulator) -> None:
    admin = sim.admin
    assert {a["alias"] for a in admin.accounts()} >= {"main", "rsa", "other"}
    added = admin.add_account("tmp", "TMPKEY", api_secret="x")
    assert added["uid"] > 0
    admin.remove_account("TMPKEY")
    with pytest.raises(AdminClientError) as err:
        admin.remove_account("TMPKEY")
    assert err.value.status == 404
    with pytest.raises(AdminClientError):
        admin.add_account("bad", "BAD")  # no credential
    rows = admin.place_orders(
        [{"orderLinkId": "p1"}, {"orderLinkId": "p1"}, {"orderLinkId": "p2", "side": "Sell"}],
        category="spot",
        symbol="BTCUSDT",
        price="1",
        qty="1",
        account="main",
    )
    assert "error" in rows[1]
    assert [r.get("orderStatus") for r in (rows[0], rows[2])] == ["New", "New"]
    assert len(admin.orders(uid=HMAC_UID, category="spot", open_only=True)) == 2
    with pytest.raises(AdminClientError) as missing:
        admin.order("nope")
    assert missing.value.status == 404
    with pytest.raises(AdminClientError):
        admin.set_dialect("klingon")
    with pytest.raises(AdminClientError):
        admin.place_order(category="spot", symbol="BTCUSDT", price="1", api_key="UNKNOWN")
    stop = admin.place_order(
        category="spot", symbol="BTCUSDT", price="1", uid=HMAC_UID, order_filter="StopOrder"
    )
    assert admin.trigger(stop)["orderStatus"] == "New"
    admin.fill(stop)
    with pytest.raises(AdminClientError) as conflict:
        admin.fill(stop)
    assert conflict.value.status == 409
    health = admin.health()
    assert health["ok"] is True
    assert health["dialect"] == "v5"


def test_cli_parsing() -> None:
    cfg = config_from_args(
        [
            "--port",
            "0",
            "--dialect",
            "page",
            "--admin-token",
            "T",
            "--latency-ms",
            "2",
            "--p-5xx",
            "0.1",
            "--rate-limit",
            "order/cancel:spot=5",
            "--rate-limit",
            "order/cancel-all=2",
            "--batch-per-request",
            "--ip-ban-ms",
            "1000",
            "--fault-endpoint",
            "order/cancel",
            "--clock-skew-ms",
            "-50",
            "--seed",
            "9",
        ]
    )
    assert cfg.port == 0
    assert cfg.dialect is Dialect.PAGE
    assert cfg.admin_token == "T"
    assert cfg.rate_limits == {("order/cancel", "spot"): 5, ("order/cancel-all", "*"): 2}
    assert cfg.batch_counts_items is False
    assert cfg.faults.p_http_5xx == 0.1
    assert cfg.faults.endpoints == ("order/cancel",)
    assert cfg.faults.clock_skew_ms == -50
    with pytest.raises(SystemExit):
        config_from_args(["--rate-limit", "nonsense"])


@pytest.mark.timeout(90)
def test_simulator_process_end_to_end(tmp_path: Path) -> None:
    accounts = write_accounts(
        tmp_path / "accounts.toml",
        [AccountSpec("main", HMAC_KEY, HMAC_UID, HMAC_SECRET, rate_limit_per_s=10)],
    )
    with SimulatorProcess(accounts_file=accounts, extra_args=["--dialect", "page"]) as sim:
        assert sim.port > 0
        assert sim.admin.dialect() == "page"
        oid = sim.admin.place_order(category="spot", symbol="BTCUSDT", price="1", uid=HMAC_UID)
        body = json.dumps({"category": "spot", "symbol": "BTCUSDT", "orderId": oid})
        with requests.Session() as http:
            reply = http.post(
                f"{sim.base_url}/v5/order/cancel",
                data=body,
                headers=signed_headers(HMAC_KEY, HMAC_SECRET, body),
                timeout=5,
            )
        assert reply.json()["retCode"] == 0
        assert sim.admin.cancel_counts()["orderId"] == {oid: 1}
    assert sim.proc is not None
    assert sim.proc.returncode == 0


@pytest.mark.timeout(60)
def test_simulator_process_reports_stderr_when_it_dies(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[accounts.x]\napi_key = 'K'\n")  # no credential
    with pytest.raises(SimulatorStartError, match="api_secret"):
        SimulatorProcess(accounts_file=bad, startup_timeout=30).start()


@pytest.mark.timeout(60)
def test_in_process_with_config_and_fixed_port() -> None:
    port = free_port()
    assert port > 0
    with InProcessSimulator(SimulatorConfig(dialect=Dialect.PAGE)) as sim:
        assert sim.admin.dialect() == "page"
