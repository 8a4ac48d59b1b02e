"""Takeover's parts against a real Redis: pod heartbeats, the hand-back of a dead pod's
messages (kombu's own consumer records them in the pod's unacked hash), races and fencing of a
pod that comes back. The end-to-end guarantee, with the default timings, is in tests/faults."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from cancelq.harness.embedded_redis import RedisServer
from cancelq.keys import Keys
from cancelq.settings import Settings
from cancelq.worker.claims import ClaimEntry, ClaimStore, own_beat_window_s
from cancelq.worker.delivery import running
from cancelq.worker.host.app import _own_unacked as own_unacked
from cancelq.worker.host.kombu_channel import held_delivery_tags
from cancelq.worker.pods import PodBeat, beaten_within, new_pod_id
from cancelq.worker.takeover import ORPHAN_AFTER_S, Takeover, redelivered

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KEYS = Keys()
DEFAULTS = Settings.model_construct()  # the shipped pod timings
QUEUES = ("cancelq", "cancelq.kill")
CANCELQ_TRANSPORT = "cancelq.worker.host.kombu_channel:Transport"
QUEUE = Queue("cancelq", Exchange("cancelq", type="direct"), routing_key="cancelq")


def entry(tag: str, routing_key: str = "cancelq") -> str:
    message = {
        "body": "e30=",
        "headers": {"task": "cancelq.cancel_order", "id": tag},
        "properties": {"delivery_tag": tag, "delivery_info": {"routing_key": routing_key}},
    }
    return json.dumps([message, "", routing_key])


def hold(client: redis.Redis, pod: str, *tags: str, routing_key: str = "cancelq") -> None:
    for tag in tags:
        client.hset(KEYS.pod_unacked(pod), tag, entry(tag, routing_key))
        client.zadd(KEYS.pod_unacked_index(pod), {tag: time.time()})


def beat(client: redis.Redis, pod: str, ttl_s: float = 0.3) -> PodBeat:
    pulse = PodBeat(client, KEYS, pod, every_s=ttl_s / 3, ttl_s=ttl_s)
    assert pulse.beat()
    return pulse


def test_pod_ids_are_unique_and_safe_in_key_names() -> None:
    ids = {new_pod_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(all(c.isalnum() or c in "_.-" for c in pod) for pod in ids)


def test_a_beating_pod_is_alive_and_a_silent_one_expires(client: redis.Redis) -> None:
    pulse = beat(client, "p1")
    pulse.start()
    time.sleep(0.6)
    assert beaten_within(client, KEYS, "p1", 0.3)
    pulse.stop()
    time.sleep(0.5)
    assert not beaten_within(client, KEYS, "p1", 0.3)
    assert client.zscore(KEYS.pods(), "p1") is not None  # the registry remembers it
    assert client.keys("*") == [KEYS.pods().encode()]  # a beat writes nothing else


def test_a_dead_pods_messages_go_back_to_their_queues_marked_redelivered(
    client: redis.Redis,
) -> None:
    client.zadd(KEYS.pods(), {"dead": 1, "me": 1})
    hold(client, "dead", "a", "b")
    hold(client, "dead", "k", routing_key="cancelq.kill")
    client.lpush("cancelq", "waiting-already")
    swept = Takeover(client, KEYS, me="me", queues=QUEUES).sweep()
    assert (swept.dead, swept.restored) == (1, 3)
    assert client.hlen(KEYS.pod_unacked("dead")) == 0
    assert client.zcard(KEYS.pod_unacked_index("dead")) == 0
    queued = [json.loads(m) for m in client.lrange("cancelq", 1, -1)]
    assert client.lindex("cancelq", 0) == b"waiting-already"  # handed back at the consumer end
    assert sorted(m["headers"]["id"] for m in queued) == ["a", "b"]
    assert all(m["properties"]["delivery_info"]["redelivered"] for m in queued)
    (kill,) = client.lrange("cancelq.kill", 0, -1)
    assert json.loads(kill)["headers"]["id"] == "k"


def test_a_live_pod_keeps_what_it_holds(client: redis.Redis) -> None:
    beat(client, "busy", ttl_s=5)
    hold(client, "busy", "x")
    assert Takeover(client, KEYS, me="me", queues=QUEUES).sweep().restored == 0
    assert client.hlen(KEYS.pod_unacked("busy")) == 1
    assert client.llen("cancelq") == 0


def test_a_pod_that_comes_back_before_the_hand_back_keeps_its_messages(
    client: redis.Redis,
) -> None:
    """The script checks liveness in the same step as the hand-back (a frozen pod resumed)."""
    client.zadd(KEYS.pods(), {"frozen": 1})
    hold(client, "frozen", "f")
    takeover = Takeover(client, KEYS, me="me", queues=QUEUES)
    keys = [KEYS.pods(), KEYS.pod_unacked("frozen"), KEYS.pod_unacked_index("frozen")]
    beat(client, "frozen", ttl_s=5)  # back between the sweep's liveness read and the hand-back
    _, message = redelivered(entry("f"))
    args = ["f", message, "frozen", 2000]
    assert takeover._restore(keys=[*keys, "cancelq"], args=args) == 0
    assert client.llen("cancelq") == 0
    assert client.hexists(KEYS.pod_unacked("frozen"), "f")


def test_two_sweepers_racing_hand_each_message_back_once(client: redis.Redis) -> None:
    client.zadd(KEYS.pods(), {"dead": 1})
    hold(client, "dead", *[f"m{i}" for i in range(50)])
    first = Takeover(client, KEYS, me="a", queues=QUEUES)
    second = Takeover(client, KEYS, me="b", queues=QUEUES)
    entries = client.hgetall(KEYS.pod_unacked("dead"))
    restored = first._hand_back("dead", entries) + second._hand_back("dead", entries)
    assert restored == 50
    assert client.llen("cancelq") == 50


def test_a_dead_pod_that_holds_nothing_is_forgotten_after_a_while(client: redis.Redis) -> None:
    client.zadd(KEYS.pods(), {"old": 1, "recent": time.time() * 1000})
    swept = Takeover(client, KEYS, me="me", queues=QUEUES, forget_after_s=60).sweep()
    assert (swept.dead, swept.forgotten) == (0, 1)
    assert client.zrange(KEYS.pods(), 0, -1) == [b"recent"]


def test_kombu_records_a_pods_messages_in_its_own_hash_and_a_takeover_redelivers_them(
    server: RedisServer, client: redis.Redis
) -> None:
    """The per-pod unacked hash is kombu's own bookkeeping, set by transport options."""
    pod = "consumer-1"
    options = own_unacked(KEYS, pod)
    queue = QUEUE
    with Connection(server.url) as producer:
        producer.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key="cancelq", declare=[queue]
        )
    taken: list[object] = []
    with Connection(server.url, transport_options=options) as dying:
        with dying.Consumer(queue, callbacks=[lambda body, _m: taken.append(body)]):
            dying.drain_events(timeout=5)
        assert taken == [{"n": 1}]
        assert client.hlen(KEYS.pod_unacked(pod)) == 1  # held, not acked: the pod "dies" here
        assert client.hlen(KEYS.unacked) == 0
        client.zadd(KEYS.pods(), {pod: 1})
        assert Takeover(client, KEYS, me="other", queues=QUEUES).sweep().restored == 1
    # the "dead" pod closing late (it was only frozen) restores what it still had in memory:
    # kombu finds nothing left in its hash, so nothing is pushed twice
    assert client.llen("cancelq") == 1
    received: list[tuple[object, bool]] = []
    with Connection(server.url) as taker:

        def on_message(body: object, message: object) -> None:
            received.append((body, message.delivery_info.get("redelivered", False)))  # type: ignore[attr-defined]
            message.ack()  # type: ignore[attr-defined]

        with taker.Consumer(queue, callbacks=[on_message]):
            taker.drain_events(timeout=5)
    assert received == [({"n": 1}, True)]


# -- fencing: claims made by a delivery the process no longer holds ------------------------


def claims_of(client: redis.Redis, pod: str) -> ClaimStore:
    return ClaimStore(client, KEYS, lease_s=60, dedup_ttl_s=60, outcome_ttl_s=60, pod_id=pod)


def claim(store: ClaimStore, tag: str, request_id: str = "r1") -> str:
    with running(tag):
        return store.claim(ClaimEntry("main", "linear:link-1", request_id, 0, attempt=True)).verdict


def test_a_delivery_taken_over_while_its_process_was_frozen_is_fenced(
    client: redis.Redis,
) -> None:
    frozen, other = claims_of(client, "frozen"), claims_of(client, "other")
    hold(client, "frozen", "t1")
    assert claim(frozen, "t1") == "own"
    client.zadd(KEYS.pods(), {"frozen": 1})
    assert Takeover(client, KEYS, me="other", queues=QUEUES).sweep().restored == 1
    hold(client, "other", "t1")  # the other process took the handed-back message
    assert claim(other, "t1") == "own"
    assert claim(frozen, "t1") == "taken"  # the frozen one resumes: refused, sends nothing


def test_a_second_delivery_of_a_request_that_is_being_run_is_not_run(
    client: redis.Redis,
) -> None:
    first, second = claims_of(client, "p1"), claims_of(client, "p2")
    hold(client, "p1", "t1")
    hold(client, "p2", "t1")  # the same message twice (the outbox sweep pushed it again)
    assert claim(first, "t1") == "own"
    assert claim(second, "t1") == "held"
    assert claim(first, "t1") == "own"  # the holder itself goes on (a retry of its own)


def test_once_the_holder_acknowledged_another_delivery_may_run_it(client: redis.Redis) -> None:
    """A reschedule: the holder published a new message and acknowledged its own."""
    first, second = claims_of(client, "p1"), claims_of(client, "p2")
    hold(client, "p1", "t1")
    assert claim(first, "t1") == "own"
    client.hdel(KEYS.pod_unacked("p1"), "t1")  # kombu's ack
    hold(client, "p2", "t2")
    assert claim(second, "t2") == "own"


def test_claims_outside_a_task_are_not_fenced(client: redis.Redis) -> None:
    store = ClaimStore(client, KEYS, lease_s=60, dedup_ttl_s=60, outcome_ttl_s=60)
    assert store.claim(ClaimEntry("main", "linear:link-1", "r1", 0, attempt=True)).verdict == "own"


def fresh_claims_of(client: redis.Redis, pod: str) -> ClaimStore:
    """A pod's claims with the shipped own-beat window (defaults: 1 s of a 2 s TTL)."""
    window_s = own_beat_window_s(DEFAULTS.pod_ttl_s, DEFAULTS.pod_beat_s)
    return ClaimStore(
        client,
        KEYS,
        lease_s=60,
        dedup_ttl_s=60,
        outcome_ttl_s=60,
        pod_id=pod,
        own_beat_within_s=window_s,
    )


def test_the_shipped_own_beat_window_is_half_the_pod_ttl() -> None:
    assert own_beat_window_s(DEFAULTS.pod_ttl_s, DEFAULTS.pod_beat_s) == 1.0
    assert own_beat_window_s(1.0, 0.5) == 1.0, "at least two beats, at most the TTL"
    assert own_beat_window_s(60.0, 0.5) == 30.0


@pytest.mark.parametrize("last_beat", ["old", "never"])
def test_a_pod_whose_own_beat_is_stale_claims_nothing(client: redis.Redis, last_beat: str) -> None:
    """Back from a freeze or a cut, before its beat thread has beaten: the claim is refused and
    changes nothing (no owner, no attempt counted); once it has beaten, the same claim owns."""
    store = fresh_claims_of(client, "back")
    hold(client, "back", "t1")
    if last_beat == "old":
        seconds, micros = client.time()
        client.zadd(KEYS.pods(), {"back": int(seconds) * 1000 + micros // 1000 - 1_500})
    assert claim(store, "t1") == "stale"
    assert not client.exists(KEYS.claim("main", "linear:link-1"))
    beat(client, "back")
    with running("t1"):
        owned = store.claim(ClaimEntry("main", "linear:link-1", "r1", 0, attempt=True))
    assert (owned.verdict, owned.attempts) == ("own", 1)


def test_a_claim_without_the_own_beat_check_is_made_while_stale(client: redis.Redis) -> None:
    """What a pod does once it has waited longer than a takeover takes (worker/own_beat.py)."""
    store = fresh_claims_of(client, "alone")
    hold(client, "alone", "t1")
    with running("t1"):
        claimed = store.claim(
            ClaimEntry("main", "linear:link-1", "r1", 0, attempt=True, own_beat=False)
        )
    assert claimed.verdict == "own"


def test_a_stale_pods_delivery_already_taken_over_is_taken_not_stale(client: redis.Redis) -> None:
    """Taken is final (nothing to wait for): the check of the record comes first."""
    store = fresh_claims_of(client, "back")
    assert claim(store, "t9") == "taken"  # no record of t9 in its hash, no beat either


def test_kombus_shared_hash_of_older_workers_is_handed_back_after_the_visibility_timeout(
    client: redis.Redis,
) -> None:
    """A rolling upgrade: workers of an older cancelq still use kombu's shared hash."""
    client.hset(KEYS.unacked, "old", entry("old"))
    client.zadd(KEYS.unacked_index, {"old": time.time() - 400})
    client.hset(KEYS.unacked, "new", entry("new"))
    client.zadd(KEYS.unacked_index, {"new": time.time() - 5})
    swept = Takeover(client, KEYS, me="me", queues=QUEUES, visibility_timeout_s=300).sweep()
    assert swept.legacy == 1
    (message,) = client.lrange("cancelq", 0, -1)
    assert json.loads(message)["headers"]["id"] == "old"
    assert client.hexists(KEYS.unacked, "new")


# -- a live process's own records that it no longer holds ----------------------------------


def test_a_live_process_hands_back_its_own_records_that_it_no_longer_holds(
    client: redis.Redis,
) -> None:
    """An ack the old master took and never replicated, a restore lost with the connection:
    the record outlives the process's hold on it, and nobody else would hand it back before
    the visibility timeout (the process is alive)."""
    client.zadd(KEYS.pods(), {"me": redis_ms(client)})  # alive
    hold(client, "me", "lost", "running", "young")
    old = time.time() - ORPHAN_AFTER_S - 1
    client.zadd(KEYS.pod_unacked_index("me"), {"lost": old, "running": old})
    client.zadd(KEYS.pod_unacked_index("me"), {"ghost": old})  # an index entry, no record
    swept = Takeover(client, KEYS, me="me", queues=QUEUES, held=lambda: {"running"}).sweep()
    assert swept.orphans == 1
    (message,) = client.lrange("cancelq", 0, -1)
    assert json.loads(message)["headers"]["id"] == "lost"
    assert json.loads(message)["headers"]["redelivered"] is True
    assert sorted(client.hkeys(KEYS.pod_unacked("me"))) == [b"running", b"young"]
    assert sorted(client.zrange(KEYS.pod_unacked_index("me"), 0, -1)) == [b"running", b"young"]
    # without ``held`` (a process that cannot tell), nothing of its own is touched
    client.zadd(KEYS.pod_unacked_index("me"), {"young": old})
    assert Takeover(client, KEYS, me="me", queues=QUEUES).sweep().orphans == 0
    assert client.hlen(KEYS.pod_unacked("me")) == 2


def test_kombus_state_tells_what_this_process_holds_and_a_lost_ack_is_handed_back(
    server: RedisServer, client: redis.Redis
) -> None:
    """cancelq's kombu channel, a real consumer: two messages taken, one acked. Its ack then
    "lost" (the record written back, as a failover to a replica that never got the HDEL
    leaves it): the sweep hands back that one, not the one still held."""
    pod = "me"
    options = own_unacked(KEYS, pod)
    queue = QUEUE
    with Connection(server.url) as producer:
        for n in (1, 2):
            producer.Producer().publish(
                {"n": n}, exchange=queue.exchange, routing_key="cancelq", declare=[queue]
            )
    taken: list[Any] = []
    mine = Connection(server.url, transport=CANCELQ_TRANSPORT, transport_options=options)
    with mine, mine.Consumer(queue, callbacks=[lambda _b, m: taken.append(m)]):
        mine.drain_events(timeout=5)
        mine.drain_events(timeout=5)
        assert len(taken) == 2
        acked, kept = taken
        records = client.hgetall(KEYS.pod_unacked(pod))
        acked.ack()
        assert held_delivery_tags() == {kept.delivery_tag}
        tag = acked.delivery_tag
        client.hset(KEYS.pod_unacked(pod), tag, records[tag.encode()])  # the lost ack
        old = time.time() - ORPHAN_AFTER_S - 1
        client.zadd(KEYS.pod_unacked_index(pod), {tag: old, kept.delivery_tag: old})
        swept = Takeover(client, KEYS, me=pod, queues=QUEUES, held=held_delivery_tags).sweep()
        assert swept.orphans == 1
        (message,) = client.lrange("cancelq", 0, -1)
        assert json.loads(message)["properties"]["delivery_tag"] == tag
        assert client.hkeys(KEYS.pod_unacked(pod)) == [kept.delivery_tag.encode()]
        kept.ack()
    assert held_delivery_tags() == frozenset()


def test_an_ack_redis_refused_is_forgotten_and_its_record_handed_back(
    tmp_path: Path,
) -> None:
    """Redis restarted under an ack (Celery logs "Couldn't ack"): kombu would keep the message
    as held until its channel closes, and nobody would hand it back before the visibility
    timeout. cancelq's channel forgets it; the record (Redis kept it, AOF) is then an orphan
    that the process's next full sweep hands back."""
    pod = "me"
    options = own_unacked(KEYS, pod)
    queue = QUEUE
    with RedisServer(appendonly=True, data_dir=tmp_path) as server:
        with Connection(server.url) as producer:
            producer.Producer().publish(
                {"n": 1}, exchange=queue.exchange, routing_key="cancelq", declare=[queue]
            )
        taken: list[Any] = []
        mine = Connection(server.url, transport=CANCELQ_TRANSPORT, transport_options=options)
        with mine, mine.Consumer(queue, callbacks=[lambda _b, m: taken.append(m)]):
            mine.drain_events(timeout=5)
            (message,) = taken
            assert held_delivery_tags() == {message.delivery_tag}
            server.stop()
            with pytest.raises(redis.ConnectionError):
                message.ack()
            assert held_delivery_tags() == frozenset()
            server.start()
            client = redis.Redis.from_url(server.url)
            old = time.time() - ORPHAN_AFTER_S - 1
            client.zadd(KEYS.pod_unacked_index(pod), {message.delivery_tag: old})
            swept = Takeover(client, KEYS, me=pod, queues=QUEUES, held=held_delivery_tags).sweep()
            assert swept.orphans == 1
            assert client.llen("cancelq") == 1
            assert client.hlen(KEYS.pod_unacked(pod)) == 0
            client.close()


# -- the sweep's cost: one registry read per beat, whatever the fleet's size ---------------


def commands_of(client: redis.Redis, run: Callable[[], object]) -> dict[str, int]:
    client.config_resetstat()
    run()
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if name not in ("cmdstat_config|resetstat", "cmdstat_info")
    }


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_beats_sweep_reads_the_registry_once_however_many_pods_are_alive(
    client: redis.Redis,
) -> None:
    for i in range(50):
        beat(client, f"live-{i}", ttl_s=5)
    takeover = Takeover(client, KEYS, me="me", queues=QUEUES)
    takeover.sweep()  # the first sweep of a process is a full one
    now = redis_ms(client)
    assert commands_of(client, lambda: takeover.sweep(now)) == {"zrangebyscore": 1}


def test_a_pod_that_just_died_is_taken_over_by_the_next_beats_sweep(
    client: redis.Redis,
) -> None:
    takeover = Takeover(client, KEYS, me="me", queues=QUEUES, pod_ttl_s=0.3)
    assert takeover.sweep().restored == 0  # the full sweep, before the death
    beat(client, "dying", ttl_s=0.3)
    hold(client, "dying", "d1", "d2")
    time.sleep(0.4)  # its key expires
    swept = takeover.sweep()
    assert (swept.dead, swept.restored, swept.legacy) == (1, 2, 0)
    assert client.llen("cancelq") == 2
