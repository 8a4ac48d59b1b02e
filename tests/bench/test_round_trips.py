"""bench.round_trips: MONITOR entries grouped into round trips and named, without a Redis."""

from __future__ import annotations

from typing import Any

from bench.round_trips import cancel_round_trips, describe, round_trips, script_names


def entry(t_us: float, command: str, client: str = "127.0.0.1:5001") -> dict[str, Any]:
    lua = client == "lua"
    return {
        "time": t_us / 1e6,
        "command": command,
        "client_type": "lua" if lua else "tcp",
        "client_address": "lua" if lua else client,
    }


def test_pipelines_transactions_scripts_and_blocking_reads_are_told_apart() -> None:
    intake = next(sha for sha, name in script_names().items() if name == "intake")
    finish = next(sha for sha, name in script_names().items() if name == "finish")
    entries = [
        entry(0, "MULTI"),
        entry(200, "ZADD cancelq:unacked_index:p 1 tag"),  # slow, but inside MULTI/EXEC
        entry(210, "HSET cancelq:unacked:p tag m"),
        entry(220, "EXEC"),
        entry(230, "BRPOP cancelq 1"),  # a blocking read: alone
        entry(240, f"EVALSHA {intake} 11 k"),
        entry(250, "EXISTS k", "lua"),
        entry(400, "TIME", "lua"),
        entry(420, "LLEN cancelq", "127.0.0.1:6000"),  # the harness polling: dropped
        entry(900, f"EVALSHA {finish} 4 k"),  # 480 µs after the script's last call: a new trip
        entry(905, "SET k v", "lua"),
        entry(915, "HDEL cancelq:unacked:p tag"),  # 10 µs later: the same pipeline
        entry(5000, "ZRANGEBYSCORE cancelq:pods (1 (2 WITHSCORES"),  # the sweep: dropped
        entry(6000, "HKEYS cancelq:halts"),  # the observer: dropped
        entry(9000, "EVALSHA 0000 2 cancelq:pod:p cancelq:pods"),
    ]
    trips = list(round_trips(entries, script_names()))
    assert [t.name() for t in trips] == [
        "MULTI ZADD HSET EXEC",
        "BRPOP",
        "intake",
        "finish HDEL",
        "script",
    ]
    assert [t.inner for t in trips] == [0, 0, 2, 1, 0]
    assert describe(trips[2:4]) == "1 intake (2 calls inside); 2 finish HDEL (1 call inside)"


def test_the_pods_own_beat_and_an_idle_dispatch_are_not_the_cancels() -> None:
    names = {name: sha for sha, name in script_names().items()}
    entries = [
        entry(0, "ZADD cancelq:pods 1796328055853 p"),
        entry(500, "ZRANGEBYSCORE cancelq:pods (1796328048853 (1796328053853 WITHSCORES"),
        entry(700, "TIME"),
        entry(1000, f"EVALSHA {names['dispatch']} 3 cancelq:lanes:ready"),
        entry(2000, f"EVALSHA {names['intake']} 11 k"),
    ]
    assert [t.name() for t in cancel_round_trips(entries, parked=False)] == ["intake"]
    assert [t.name() for t in cancel_round_trips(entries, parked=True)] == ["dispatch", "intake"]
