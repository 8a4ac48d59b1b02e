"""The limiter's scripts against a real Redis: budgets, parking, fair batched dispatch, pauses."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis

from cancelq import halts
from cancelq.keys import Keys
from cancelq.worker.ratelimit.lanes import COALESCE_BUSY_MS, Budget, Lanes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]
KEYS = Keys()
SPOT = Budget(limit=5, window_ms=1000, batch=10, per_item=True)


@pytest.fixture
def lanes(client: redis.Redis) -> Lanes:
    return Lanes(client, KEYS, park_ttl_s=60, lease_ms=60_000)


def admit(  # type: ignore[no-untyped-def]
    lanes: Lanes,
    rid: str,
    *,
    account: str = "a",
    budget: Budget = SPOT,
    delay_ms: int = 0,
    coalesce: bool = False,
):
    item = json.dumps({"requestId": rid, "parkedAt": 0, "fields": {"account": account}})
    return lanes.admit(
        account=account,
        category="spot",
        budget=budget,
        request_id=rid,
        item_json=item,
        delay_ms=delay_ms,
        claim_key=KEYS.claim(account, f"spot:link:{rid}"),
        coalesce=coalesce,
    )


def messages(client: redis.Redis) -> list[dict[str, object]]:
    """The dispatched Celery messages' kwargs, in consumer order (RPUSH end first)."""
    raw = client.lrange("cancelq", 0, -1)
    bodies = []
    for entry in reversed(raw):
        envelope = json.loads(entry)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        bodies.append(json.loads(body)[1])
    return bodies


def test_fast_path_admits_up_to_the_limit_then_parks(lanes: Lanes, client: redis.Redis) -> None:
    results = [admit(lanes, f"r{i}") for i in range(8)]
    assert [r.admitted for r in results] == [True] * 5 + [False] * 3
    assert client.zcard(KEYS.lane("a:spot")) == 3
    assert lanes.parked() == 3


def test_a_parked_lane_keeps_new_cancels_behind_it_fifo(lanes: Lanes) -> None:
    for i in range(6):
        admit(lanes, f"r{i}")
    time.sleep(1.05)  # budget free again, but r5 is parked: r6 must not overtake it
    assert not admit(lanes, "r6").admitted


def test_dispatch_sends_due_cancels_as_batches_within_the_budget(
    lanes: Lanes, client: redis.Redis
) -> None:
    for i in range(12):
        admit(lanes, f"r{i}")
    assert lanes.dispatch("cancelq").dispatched == 0  # the 5 sent used the whole window
    time.sleep(1.05)
    result = lanes.dispatch("cancelq")
    assert result.dispatched == 5
    [batch] = messages(client)
    assert [item["requestId"] for item in batch["items"]] == ["r5", "r6", "r7", "r8", "r9"]  # type: ignore[index]
    assert batch["lane"] == "a:spot"
    assert 900 <= result.next_ms <= 1100  # the lane is due again when the window frees


def test_per_request_budgets_pack_full_batches(lanes: Lanes, client: redis.Redis) -> None:
    budget = Budget(limit=2, window_ms=1000, batch=10, per_item=False)
    for i in range(27):
        admit(lanes, f"r{i}", budget=budget)
    time.sleep(1.05)
    assert lanes.dispatch("cancelq").dispatched == 20  # 2 requests x 10 items
    assert [len(m["items"]) for m in messages(client)] == [10, 10]  # type: ignore[arg-type]


def test_lanes_are_served_in_turn(lanes: Lanes, client: redis.Redis) -> None:
    one = Budget(limit=1, window_ms=1000, batch=1, per_item=True)
    for i in range(3):
        admit(lanes, f"h{i}", account="hot", budget=one)
    admit(lanes, "c0", account="cold", budget=one)
    admit(lanes, "c1", account="cold", budget=one)  # parked behind c0
    time.sleep(1.05)
    lanes.dispatch("cancelq", max_lanes=8)
    lanes_served = [m["lane"] for m in messages(client)]
    assert sorted(lanes_served) == ["cold:spot", "hot:spot"]  # one each, not hot's backlog first


def test_a_pause_stops_fast_path_and_dispatch(lanes: Lanes) -> None:
    lanes.pause("a", "spot", 400)
    assert not admit(lanes, "r0").admitted
    assert lanes.dispatch("cancelq").dispatched == 0
    time.sleep(0.45)
    assert lanes.dispatch("cancelq").dispatched == 1


def test_a_lower_exchange_limit_is_obeyed(lanes: Lanes) -> None:
    lanes.observe_limit("a", "spot", 2)
    assert [admit(lanes, f"r{i}").admitted for i in range(4)] == [True, True, False, False]


def test_a_retry_with_a_delay_waits_for_its_not_before_time(lanes: Lanes) -> None:
    assert not admit(lanes, "r0", delay_ms=300).admitted
    assert lanes.dispatch("cancelq").dispatched == 0
    time.sleep(0.35)
    assert lanes.dispatch("cancelq").dispatched == 1


def test_parking_extends_the_owners_claim_lease(lanes: Lanes, client: redis.Redis) -> None:
    claim = KEYS.claim("a", "spot:link:r9")
    client.hset(claim, mapping={"owner": "r9", "state": "inflight", "lease": 1})
    for i in range(5):
        admit(lanes, f"r{i}")
    assert not admit(lanes, "r9").admitted
    lease = int(client.hget(claim, "lease") or 0)
    assert lease > time.time() * 1000 + 30_000
    assert client.hget(claim, "state") == b"parked"


def test_a_halted_account_parks_and_is_not_dispatched_until_resumed(
    lanes: Lanes, client: redis.Redis
) -> None:
    halts.halt(client, KEYS, "a", by="ops@test", reason="compromised key")
    assert [admit(lanes, f"r{i}").admitted for i in range(3)] == [False] * 3  # budget free
    assert admit(lanes, "b0", account="b").admitted  # another account is not held
    assert lanes.dispatch("cancelq").dispatched == 0
    assert client.zcard(KEYS.lane("a:spot")) == 3
    halts.resume(client, KEYS, "a", by="ops@test", reason="key rotated")
    assert lanes.dispatch("cancelq").dispatched == 3  # resume made the lane due at once
    [batch] = messages(client)
    assert [item["requestId"] for item in batch["items"]] == ["r0", "r1", "r2"]  # type: ignore[index]


def test_a_halted_lane_keeps_its_cancels_past_their_park_ttl(client: redis.Redis) -> None:
    short = Lanes(client, KEYS, park_ttl_s=2, lease_ms=60_000)
    admit(short, "r0", delay_ms=0)
    halts.halt(client, KEYS, "a", by="ops@test", reason="runaway strategy")
    admit(short, "r1")
    deadline = time.monotonic() + 3.5  # beyond the 2 s ttl: dispatch renews it while halted
    while time.monotonic() < deadline:
        short.dispatch("cancelq")
        time.sleep(0.2)
    assert client.zcard(KEYS.lane("a:spot")) == 1  # r0 went before the halt, r1 waits
    assert client.exists(KEYS.parked_item("r1")) == 1
    halts.resume(client, KEYS, "a", by="ops@test", reason="fixed")
    assert short.dispatch("cancelq").dispatched == 1


def test_halt_and_resume_are_audited(client: redis.Redis) -> None:
    halts.halt(client, KEYS, "a", by="ops@test", reason="why not")
    assert halts.halted(client, KEYS)["a"].reason == "why not"
    assert not halts.resume(client, KEYS, "b", by="ops@test", reason="never halted")
    assert halts.resume(client, KEYS, "a", by="ops@test", reason="done")
    assert halts.halted(client, KEYS) == {}
    entries = halts.audit(client, KEYS)
    assert [(e["action"], e["account"], e["reason"]) for e in entries] == [
        ("resume", "a", "done"),
        ("resume", "b", "never halted"),
        ("halt", "a", "why not"),
    ]
    assert all(e["by"] == "ops@test" for e in entries)


def test_a_pause_keeps_its_reason(lanes: Lanes, client: redis.Redis) -> None:
    lanes.pause("a", "spot", 400, "10006")
    assert client.get(KEYS.lane_pause_reason("a:spot")) == b"10006"


def test_the_lane_config_is_written_when_it_changes_and_keeps_the_exchanges_limit(
    lanes: Lanes, client: redis.Redis
) -> None:
    """admit.lua reads the lane's config and writes it only when the budget changed (one call
    from Lua instead of three a cancel); it has no ttl, so the exchange's limit stays."""
    cfg = f"{KEYS.lane('a:spot')}:cfg"
    admit(lanes, "r0")
    lanes.observe_limit("a", "spot", 3)
    written = client.hgetall(cfg)
    assert written == {
        b"limit": b"5",
        b"window": b"1000",
        b"batch": b"10",
        b"per_item": b"1",
        b"exchange_limit": b"3",
    }
    assert client.pttl(cfg) == -1
    admit(lanes, "r1")
    assert client.hgetall(cfg) == written
    assert [admit(lanes, f"r{i}").admitted for i in range(2, 4)] == [True, False]  # 3 in all
    wider = Budget(limit=8, window_ms=2000, batch=20, per_item=False)
    admit(lanes, "r9", budget=wider)
    assert client.hmget(cfg, "limit", "window", "batch", "per_item", "exchange_limit") == [
        b"8",
        b"2000",
        b"20",
        b"0",
        b"3",
    ]


def test_cancels_parked_to_batch_are_due_when_a_batch_is_parked_or_after_the_window(
    lanes: Lanes, client: redis.Redis
) -> None:
    """A backlog on a busy lane is parked to leave in batches (coalesce): the lane is due once
    a batch is parked, or COALESCE_BUSY_MS after the first (what came meanwhile goes with it).
    Due at once, a dispatcher woken by the parking sent batches of one."""
    free = Budget(limit=1000, window_ms=1000, batch=10, per_item=True)

    def redis_ms() -> int:
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def park(rid: str) -> bool:
        return bool(admit(lanes, rid, budget=free, coalesce=True).admitted)

    # busy: a unit in the lane's log that stays "recent" however slow this machine is
    client.zadd(f"{KEYS.lane('a:spot')}:log", {"recent": redis_ms() + 60_000})
    before = redis_ms()
    assert [park(f"r{i}") for i in range(3)] == [False] * 3
    assert (client.zscore(KEYS.lanes_ready(), "a:spot") or 0) >= before + COALESCE_BUSY_MS
    time.sleep(COALESCE_BUSY_MS / 1000 + 0.005)
    assert lanes.dispatch("cancelq").dispatched == 3
    assert [len(m["items"]) for m in messages(client)] == [3]  # type: ignore[arg-type]
    client.delete("cancelq")
    assert [park(f"b{i}") for i in range(10)] == [False] * 10
    assert (client.zscore(KEYS.lanes_ready(), "a:spot") or 0) <= redis_ms()  # due at once
    assert lanes.dispatch("cancelq").dispatched == 10
    assert [len(m["items"]) for m in messages(client)] == [10]  # type: ignore[arg-type]
