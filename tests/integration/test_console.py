"""The console's snapshot against a real Redis, and ``cancelq top`` under a read-only ACL user."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis

from cancelq import halts
from cancelq.console.snapshot import COMMANDS, read_snapshot
from cancelq.harness.embedded_redis import RedisServer
from cancelq.keys import Keys
from cancelq.signals import AUTH_FAILED, RATE_LIMITED, SENT, SignalCounts
from cancelq.worker.ratelimit.lanes import Budget, Lanes
from cancelq.worker.scripted_pipeline import run_pipeline
from tests.support import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]
KEYS = Keys()
SPOT = Budget(limit=4, window_ms=1000, batch=10, per_item=True)


def park(lanes: Lanes, account: str, n: int) -> None:
    for i in range(n):
        rid = f"{account}-{i}"
        item = json.dumps({"requestId": rid, "parkedAt": 0, "fields": {"account": account}})
        lanes.admit(
            account=account,
            category="spot",
            budget=SPOT,
            request_id=rid,
            item_json=item,
            delay_ms=0,
            claim_key=KEYS.claim(account, f"spot:link:{rid}"),
        )


def held_cancel(account: str) -> str:
    """A kombu unacked value: a cancel a worker process has taken."""
    body = json.dumps([[], {"account": account, "category": "spot"}, {}])
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "headers": {"task": "cancelq.cancel_order"},
        "properties": {"body_encoding": "base64"},
    }
    return json.dumps([message, "", "cancelq"])


def build(client: redis.Redis) -> None:
    lanes = Lanes(client, KEYS, park_ttl_s=60, lease_ms=60_000)
    park(lanes, "busy", 10)  # 4 sent at once (the budget), 6 parked
    park(lanes, "stop", 3)
    halts.halt(client, KEYS, "stop", by="ops@test", reason="runaway strategy")
    park(lanes, "stop", 2)  # halted: parked although budget is left
    lanes.pause("busy", "spot", 5_000, "10006")
    now = int(time.time() * 1000)
    counted = [
        ("busy:spot", SignalCounts.of(KEYS, "busy:spot", {SENT: 4, RATE_LIMITED: 1}, now)),
        ("auth:spot", SignalCounts.of(KEYS, "auth:spot", {SENT: 1, AUTH_FAILED: 1}, now - 20_000)),
    ]

    def count(pipe: redis.client.Pipeline) -> None:  # as a worker does after a reply
        for lane, signals in counted:
            lanes.queue_restamp(pipe, lane, [], 1000, signals)

    run_pipeline(client, count, lanes.scripts)
    client.zadd(KEYS.pods(), {"pod-a": 0})
    client.hset(KEYS.pod_unacked("pod-a"), "tag-1", held_cancel("busy"))
    client.lpush(KEYS.queue, "m1", "m2")
    client.xadd(KEYS.dead_letters(), {"reason": "protocol_v1"})


def test_the_snapshot_shows_backlog_budget_pause_halt_signals_and_what_workers_hold(
    client: redis.Redis,
) -> None:
    build(client)
    snap = read_snapshot(client, KEYS)
    lanes = {lane.name: lane for lane in snap.lanes}
    assert set(lanes) == {"busy:spot", "stop:spot", "auth:spot"}
    busy, stop, auth = lanes["busy:spot"], lanes["stop:spot"], lanes["auth:spot"]
    assert (busy.parked, busy.limit, busy.used_1s) == (6, 4, 4)
    assert busy.paused(snap.now_ms)
    assert busy.pause_reason == "10006"
    assert (busy.sent_1m, busy.rate_limited_1m, busy.in_flight) == (4, 1, 1)
    assert stop.halt is not None
    assert stop.halt.reason == "runaway strategy"
    assert stop.parked == 2
    assert stop.used_1s == 3
    assert stop.eta_s(snap.now_ms) is None
    assert auth.auth_failed_1m == 1  # 20 s ago: inside the minute
    assert (snap.queue_depth, snap.dead_letters) == (2, 1)
    assert [w.pod for w in snap.workers] == ["pod-a"]
    assert snap.workers[0].beat_age_s > 1_000_000  # beat at 0: long dead


def test_a_halted_account_without_a_lane_still_shows(client: redis.Redis) -> None:
    halts.halt(client, KEYS, "idle", by="ops@test", reason="precaution")
    [lane] = read_snapshot(client, KEYS).lanes
    assert (lane.account, lane.category, lane.halt is not None) == ("idle", "-", True)


def test_top_runs_with_a_read_only_acl_user(server: RedisServer, client: redis.Redis) -> None:
    build(client)
    grants = " ".join(f"+{c.lower()}" for c in COMMANDS)
    client.execute_command(
        "ACL", "SETUSER", "operator", "reset", "on", ">op-pw-77", "~cancelq", "~cancelq:*",
        *grants.split(),
    )  # fmt: skip
    url = f"redis://operator:op-pw-77@127.0.0.1:{server.port}/0"
    ro = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        ro.set("cancelq:probe", "1")  # the user really cannot write
    done = run_cli("top", "--once", env={"COLUMNS": "200", "CANCELQ_REDIS_URL": url}, timeout_s=20)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "op-pw-77" not in done.stdout + done.stderr
    assert "NOPERM" not in done.stdout, done.stdout
    rows = [line for line in lines if line.startswith(("stop ", "busy ", "auth "))]
    assert [row.split()[0] for row in rows] == ["stop", "busy", "auth"], done.stdout
    assert "HALTED" in rows[0]
    assert "halted stop by ops@test at " in done.stdout
    assert "runaway strategy" in done.stdout
    assert "PAUSED " in rows[1]
    assert "(10006)" in rows[1]
    assert "queue 2" in done.stdout
    assert "dead letters 1" in done.stdout
    assert "workers alive 0/1" in done.stdout
