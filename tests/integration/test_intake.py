"""Intake in one round trip, pipelined claims and outcomes, and a backlog sent in batches."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import redis

from cancelq.keys import Keys
from cancelq.outcomes import Outcome, Status
from cancelq.signals import AUTH_FAILED, RATE_LIMITED, SENT, SignalCounts
from cancelq.worker.claims import ClaimEntry, ClaimStore, parse_claim
from cancelq.worker.delivery import running
from cancelq.worker.intake import Intake, IntakeResult
from cancelq.worker.ratelimit.lanes import COALESCE_BUSY_MS, Budget, Lanes
from cancelq.worker.scripted_pipeline import run_pipeline
from tests.support import Stack, cancel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
KEYS = Keys()
SPOT = Budget(limit=5, window_ms=1000, batch=10, per_item=True)
IDENTITY = "spot:link:L1"


@pytest.fixture
def claims(client: redis.Redis) -> ClaimStore:
    return ClaimStore(client, KEYS, lease_s=30, dedup_ttl_s=60, outcome_ttl_s=60)


@pytest.fixture
def lanes(client: redis.Redis) -> Lanes:
    return Lanes(client, KEYS, park_ttl_s=60, lease_ms=30_000)


def busy(lanes: Lanes) -> None:
    """A unit spent on the lane just now: it is busy (``COALESCE_BUSY_MS``)."""
    admission = lanes.admit(
        account="acct",
        category="spot",
        budget=SPOT,
        request_id="hot",
        item_json=json.dumps({"requestId": "hot"}),
        delay_ms=0,
        claim_key=KEYS.claim("acct", "spot:link:hot"),
    )
    assert admission.admitted


def take(
    client: redis.Redis,
    claims: ClaimStore,
    lanes: Lanes,
    rid: str,
    *,
    coalesce: bool = False,
    record_index: str = "",
) -> IntakeResult:
    return Intake(client).run(
        claims.claim_call(
            ClaimEntry("acct", IDENTITY, rid, int(time.time() * 1000), attempt=False)
        ),
        lanes.admit_call(
            account="acct",
            category="spot",
            budget=SPOT,
            request_id=rid,
            item_json=json.dumps({"requestId": rid}),
            delay_ms=0,
            claim_key=KEYS.claim("acct", IDENTITY),
            coalesce=coalesce,
        ),
        record_index,
    )


def test_the_owner_is_admitted_in_the_same_round_trip(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    first = take(client, claims, lanes, "r1")
    assert first.claim.verdict == "own"
    assert first.admission is not None
    assert first.admission.admitted
    assert first.admission.wait_ms == 1  # the attempt counted on the claim
    assert first.admission.unit is not None
    log = client.zrange(f"{KEYS.lane('acct:spot')}:log", 0, -1)
    assert log == [first.admission.unit.encode()]
    assert client.hget(KEYS.claim("acct", IDENTITY), "state") == b"inflight"
    assert client.zcard(f"{KEYS.lane('acct:spot')}:log") == 1


def test_a_duplicate_is_not_admitted_and_spends_nothing(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    take(client, claims, lanes, "r1")
    second = take(client, claims, lanes, "r2")
    assert (second.claim.verdict, second.claim.owner) == ("duplicate", "r1")
    assert second.admission is None
    assert client.zcard(f"{KEYS.lane('acct:spot')}:log") == 1


def test_coalesce_on_an_idle_lane_sends_at_once(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    result = take(client, claims, lanes, "r1", coalesce=True)
    assert result.admission is not None
    assert result.admission.admitted  # nothing to batch with: a batch of one costs more


def test_coalesce_on_a_busy_lane_parks_it_although_the_budget_allows(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    busy(lanes)
    result = take(client, claims, lanes, "r1", coalesce=True)
    assert result.admission is not None
    assert not result.admission.admitted
    assert client.zcard(KEYS.lane("acct:spot")) == 1
    assert client.zcard(f"{KEYS.lane('acct:spot')}:log") == 1  # the busy lane's own unit
    assert client.hget(KEYS.claim("acct", IDENTITY), "state") == b"parked"


def test_a_kill_marker_leaves_the_admission_to_the_caller(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    client.hset(KEYS.kill_marker("acct", "spot"), "category", 1)
    result = take(client, claims, lanes, "r1")
    assert result.claim.verdict == "own"
    assert result.claim.kills == {"category": 1}
    assert result.admission is None
    assert client.zcard(f"{KEYS.lane('acct:spot')}:log") == 0


def test_pipelined_claims_and_outcomes_survive_a_flushed_script_cache(
    client: redis.Redis, claims: ClaimStore
) -> None:
    now = int(time.time() * 1000)
    entries = [ClaimEntry("acct", f"spot:link:{i}", f"r{i}", now, attempt=True) for i in range(5)]
    client.script_flush()

    def claim_all(pipe: redis.client.Pipeline) -> None:
        for entry in entries:
            claims.queue_claim(pipe, entry)

    got = [parse_claim(raw) for raw in run_pipeline(client, claim_all, claims.scripts)]
    assert [(c.verdict, c.attempts) for c in got] == [("own", 1)] * 5

    client.script_flush()
    outcomes = [Outcome(requestId=f"r{i}", status=Status.CANCELLED) for i in range(5)]

    def fill(pipe: redis.client.Pipeline) -> None:
        for i, outcome in enumerate(outcomes):
            claims.finish(
                outcome, account="acct", identity=f"spot:link:{i}", keep=True, client=pipe
            )

    assert run_pipeline(client, fill, claims.scripts) == [1] * 5
    assert all(client.exists(KEYS.outcome(f"r{i}")) for i in range(5))
    assert {client.hget(KEYS.claim("acct", f"spot:link:{i}"), "state") for i in range(5)} == {
        b"done"
    }


def test_a_backlog_leaves_in_batches_and_every_cancel_is_answered(stack: Stack) -> None:
    """Cancels that already waited in the queue (enqueuedAt 2 s ago) are coalesced: the
    exchange sees cancel-batch requests, each order is cancelled once, each request answered."""
    links = [f"backlog-{i}" for i in range(30)]
    for link in links:
        stack.place(order_link_id=link)
    behind = int(time.time() * 1000) - 2000
    since = time.time() * 1000
    rids = stack.producer.enqueue_many(
        [cancel(orderLinkId=link, enqueuedAt=behind) for link in links]
    )
    outcomes = [stack.producer.wait(rid, 20) for rid in rids]
    assert Counter(o.status for o in outcomes) == {Status.CANCELLED: 30}
    records = stack.sim.admin.records(since_ms=since)
    endpoints = Counter(r["endpoint"] for r in records)
    assert endpoints["order/cancel-batch"] >= 1
    assert endpoints["order/cancel"] + endpoints["order/cancel-batch"] < 30
    counts = stack.sim.admin.cancel_counts(since_ms=since)["orderLinkId"]
    assert {link: counts.get(link) for link in links} == dict.fromkeys(links, 1)


def test_a_dispatched_batch_counts_its_units_from_its_reply(
    client: redis.Redis, lanes: Lanes
) -> None:
    """dispatch.lua spends a batch's units when it queues the message and names them in it;
    restamp.lua moves them to the reply, so the lane's window covers the exchange's."""
    busy(lanes)
    for i in range(3):
        admission = lanes.admit(
            account="acct",
            category="spot",
            budget=SPOT,
            request_id=f"r{i}",
            item_json=json.dumps({"requestId": f"r{i}"}),
            delay_ms=0,
            claim_key=KEYS.claim("acct", f"spot:link:{i}"),
            coalesce=True,
        )
        assert not admission.admitted
    time.sleep(COALESCE_BUSY_MS / 1000 + 0.005)  # parked to batch: due after the window
    assert lanes.dispatch("q").dispatched == 3
    message = json.loads(client.rpop("q") or b"{}")
    kwargs = json.loads(message["body"])[1]
    assert (kwargs["lane"], kwargs["units"], len(kwargs["items"])) == ("acct:spot", 3, 3)
    log = f"{KEYS.lane('acct:spot')}:log"
    prefix = kwargs["spent"].encode()
    spent = {m: t for m, t in client.zrange(log, 0, -1, withscores=True) if m.startswith(prefix)}
    assert len(spent) == 3
    time.sleep(0.05)

    def restamp(pipe: redis.client.Pipeline) -> None:
        units = [f"{kwargs['spent']}:{k}" for k in range(1, kwargs["units"] + 1)]
        lanes.queue_restamp(pipe, "acct:spot", units, SPOT.window_ms)

    assert run_pipeline(client, restamp, lanes.scripts) == [3]
    assert run_pipeline(client, restamp, lanes.scripts) == [3]  # safe to run twice
    moved = {m: t for m, t in client.zrange(log, 0, -1, withscores=True) if m.startswith(prefix)}
    assert moved.keys() == spent.keys()
    assert all(moved[m] >= spent[m] + 40 for m in spent)
    assert 0 < client.pttl(log) <= 2 * SPOT.window_ms


def test_the_reply_script_counts_signals_in_an_expiring_bucket(
    client: redis.Redis, lanes: Lanes
) -> None:
    """restamp.lua counts what the exchange said in the same call (cancelq top reads it): the
    bucket's fields add up, and the bucket expires (its ttl set when a field is first counted)."""
    now = int(time.time() * 1000)
    signals = SignalCounts.of(KEYS, "acct:spot", {SENT: 2, RATE_LIMITED: 1, AUTH_FAILED: 0}, now)

    def count(pipe: redis.client.Pipeline) -> None:
        lanes.queue_restamp(pipe, "acct:spot", [], SPOT.window_ms, signals)

    assert run_pipeline(client, count, lanes.scripts) == [0]  # no units to restamp
    assert run_pipeline(client, count, lanes.scripts) == [0]
    assert client.hgetall(signals.key) == {b"acct:spot|sent": b"4", b"acct:spot|rate_limited": b"2"}
    assert 0 < client.ttl(signals.key) <= signals.ttl_s


def test_claim_and_admission_share_one_reading_of_the_clock(
    client: redis.Redis, claims: ClaimStore, lanes: Lanes
) -> None:
    """The lease and the budget unit are stamped with the same ms (one TIME in the script)."""
    take(client, claims, lanes, "r0")  # loads the script: MONITOR below sees one call
    client.delete(KEYS.claim("acct", IDENTITY))
    with client.monitor() as monitor:
        result = take(client, claims, lanes, "r1")
        calls = []
        for event in monitor.listen():
            calls.append(str(event["command"]).split(" ")[0])
            if calls[-1] == "PEXPIRE" and calls.count("PEXPIRE") == 2:  # claim's, then log's
                break
    assert result.admission is not None
    assert result.admission.admitted
    assert calls.count("TIME") == 1
    unit = result.admission.unit
    assert unit is not None
    lease = int(client.hget(KEYS.claim("acct", IDENTITY), "lease") or 0)
    assert lease - 30_000 == int(unit.rsplit("@", 1)[1])


def test_a_pod_whose_own_beat_is_stale_spends_no_budget(client: redis.Redis, lanes: Lanes) -> None:
    """The intake's claim refuses a pod with a stale beat ("stale", worker/own_beat.py) before
    the admission runs: no unit of the lane is spent, nothing is parked."""
    stale = ClaimStore(
        client, KEYS, lease_s=30, dedup_ttl_s=60, outcome_ttl_s=60, pod_id="p1", own_beat_within_s=1
    )
    client.hset(KEYS.pod_unacked("p1"), "t1", "m")
    seconds, micros = client.time()
    client.zadd(KEYS.pods(), {"p1": int(seconds) * 1000 + micros // 1000 - 5_000})
    with running("t1"):
        result = take(client, stale, lanes, "r1")
    assert result.claim.verdict == "stale"
    assert result.admission is None
    assert not client.exists(f"{KEYS.lane('acct:spot')}:log", KEYS.claim("acct", IDENTITY))
