"""What one Redis spends on cancelq: Redis CPU per cancel (``INFO cpu`` before and after a
burst across 10 keys, one worker pod, the idle cost of the same time subtracted), the
single-Redis ceiling it implies, Redis commands per cancel (``INFO commandstats``, Lua's inner
calls included, named by command), Redis round trips per cancel (``INFO stats``
``total_reads_processed``: a pipeline arrives in one read), how often Redis was woken per
cancel (its voluntary context switches) and how long it spent inside commands, what an idle
worker pod costs, and one cancel's round trips named one by one on the fast and on the parked
path (``MONITOR``, :mod:`bench.round_trips`).

The harness's own polling (LLEN, HLEN, ZREVRANGE every 50 ms while it waits for the drain)
and its enqueue (LPUSH) are in the CPU figure, a small overstatement; they are left out of
the command count (bench.measure.HARNESS_COMMANDS).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import load
from bench.context import THREADS_POOL, Context
from bench.measure import (
    READING_COMMANDS,
    Figure,
    Spread,
    command_delta,
    command_usec,
    commandstats,
)
from bench.round_trips import Monitor, cancel_round_trips, describe
from bench.stack import Stack
from cancelq.harness.accounts import AccountSpec

KEYS_USED = 10
IDLE_S = 10.0  # five of the dispatcher's idle looks, 20 pod beats
#: An idle fleet's cost per pod: what each pod reads of the others (the registry, their
#: unacked records) grows with the fleet.
FLEET_PODS = 6
#: A new pod judges the others (its takeover sweep) once it has beaten for a pod TTL (2 s).
FLEET_SETTLE_S = 3.0
DRAIN_POLL_S = 0.05


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def wakeups(client: redis.Redis) -> int | None:
    """How often the Redis server has gone to sleep and been woken (its voluntary context
    switches, from /proc: the server runs on this machine), or None where /proc cannot say."""
    pid = client.info("server")["process_id"]
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == "voluntary_ctxt_switches":
            return int(value)
    return None


def reads(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


def idle_rates(ctx: Context) -> tuple[float, float, Counter[str]]:
    """(commands/s, Redis CPU µs/s, commands/s by name) of one idle worker pod: every command
    counted (the harness sends only its INFO readings meanwhile)."""
    client = ctx.stack.redis
    calls0, cpu0, t0 = commandstats(client), redis_cpu_s(client), time.monotonic()
    time.sleep(IDLE_S)
    calls1, cpu1, t1 = commandstats(client), redis_cpu_s(client), time.monotonic()
    elapsed = t1 - t0
    calls = command_delta(calls0, calls1, READING_COMMANDS)
    by_name = Counter({name: n / elapsed for name, n in calls.items()})
    return sum(calls.values()) / elapsed, (cpu1 - cpu0) * 1e6 / elapsed, by_name


@dataclass(frozen=True)
class BurstCost:
    """One burst's cost to Redis, per cancel."""

    cpu_us: float  # Redis CPU, the idle cost subtracted
    commands: Counter[str]  # calls by command, Lua's inner calls included
    command_us: Counter[str]  # wall time inside each command (a script's: its inner calls too)
    round_trips: float
    wakeups: float | None  # the Redis server woken from its event loop's sleep


def burst_cost(ctx: Context, idle_cpu_us_s: float) -> BurstCost:
    """What a burst of cancels across :data:`KEYS_USED` keys costs Redis, per cancel."""
    stack, client = ctx.stack, ctx.stack.redis
    n = ctx.sizes.throughput_n * 5
    plan = [ctx.keys.many[i % KEYS_USED] for i in range(n)]
    links = load.place_orders_for(stack, plan)
    calls0, usec0, cpu0, reads0, woken0, t0 = (
        commandstats(client),
        command_usec(client),
        redis_cpu_s(client),
        reads(client),
        wakeups(client),
        time.monotonic(),
    )
    load.burst(stack, list(zip(plan, links, strict=True)))
    _, harness_trips = load.wait_drained(stack, 600, poll_s=DRAIN_POLL_S)
    calls1, usec1, cpu1, reads1, woken1, t1 = (
        commandstats(client),
        command_usec(client),
        redis_cpu_s(client),
        reads(client),
        wakeups(client),
        time.monotonic(),
    )
    busy_us = (cpu1 - cpu0) * 1e6 - idle_cpu_us_s * (t1 - t0)
    return BurstCost(
        cpu_us=busy_us / n,
        commands=Counter({k: v / n for k, v in command_delta(calls0, calls1).items()}),
        command_us=Counter({k: v / n for k, v in command_delta(usec0, usec1).items()}),
        round_trips=(reads1 - reads0 - harness_trips) / n,
        wakeups=None if woken0 is None or woken1 is None else (woken1 - woken0) / n,
    )


def trace_one(stack: Stack, key: AccountSpec, *, parked: bool) -> str:
    """One cancel of ``key`` with nothing else in flight, its round trips named."""
    link = load.place_orders(stack, key, 1)[0]
    monitor = Monitor(redis.Redis.from_url(stack.redis_server.url)).start()
    try:
        mark = monitor.mark()
        offered = load.burst(stack, [(key, link)])
        if not load.wait_outcomes(stack, offered, 30, poll_s=DRAIN_POLL_S):
            raise TimeoutError("the traced cancel did not finish in 30 s")
        time.sleep(0.3)  # its acknowledgement
    finally:
        monitor.stop()
    trips = cancel_round_trips(monitor.entries[mark:], parked=parked)
    calls = sum(len(t.commands) + t.inner for t in trips)
    return f"{len(trips)} round trips, {calls} commands: {describe(trips)}"


def spend_budget(stack: Stack, key: AccountSpec) -> None:
    """Spend ``key``'s whole window (20 at once) so its next cancel parks."""
    links = load.place_orders(stack, key, int(key.rate_limit_per_s or 20))
    load.burst(stack, [(key, link) for link in links])
    load.wait_drained(stack, 30)


def run(ctx: Context) -> None:
    cpu: list[float] = []
    cmds: list[float] = []
    trips: list[float] = []
    idle_cmds: list[float] = []
    fleet_cmds: list[float] = []
    by_name: Counter[str] = Counter()
    us_by_name: Counter[str] = Counter()
    woken: list[float] = []
    idle_by_name: Counter[str] = Counter()
    for rep in range(ctx.sizes.repeats):
        ctx.say(f"redis cost: rep {rep + 1}")
        ctx.stack.reset(rate_limits=False)
        every_key = {"CANCELQ_ACCOUNTS_FILE": str(ctx.stack.accounts_file)}
        with ctx.stack.workers("cancelq", 1, THREADS_POOL, **every_key):
            time.sleep(1.0)  # the first beats and sweeps of a new pod
            idle_calls_s, idle_cpu_us_s, idle_named = idle_rates(ctx)
            idle_by_name.update(idle_named)
            cost = burst_cost(ctx, idle_cpu_us_s)
            if rep == 0:
                ctx.say("redis cost: one cancel traced, fast and parked path")
                fast = trace_one(ctx.stack, ctx.keys.free, parked=False)
                spend_budget(ctx.stack, ctx.keys.limited["hot"])
                parked = trace_one(ctx.stack, ctx.keys.limited["hot"], parked=True)
        with ctx.stack.workers("cancelq", FLEET_PODS, THREADS_POOL):
            time.sleep(FLEET_SETTLE_S)
            fleet_calls_s, _, _ = idle_rates(ctx)
        fleet_cmds.append(fleet_calls_s / FLEET_PODS)
        cpu.append(cost.cpu_us)
        cmds.append(sum(cost.commands.values()))
        trips.append(cost.round_trips)
        idle_cmds.append(idle_calls_s)
        by_name.update(cost.commands)
        us_by_name.update(cost.command_us)
        if cost.wakeups is not None:
            woken.append(cost.wakeups)
    _report(
        ctx,
        cpu=cpu,
        cmds=cmds,
        trips=trips,
        idle_cmds=idle_cmds,
        fleet_cmds=fleet_cmds,
        by_name=by_name,
        us_by_name=us_by_name,
        woken=woken,
        idle_by_name=idle_by_name,
        fast=fast,
        parked=parked,
    )


def _report(
    ctx: Context,
    *,
    cpu: list[float],
    cmds: list[float],
    trips: list[float],
    idle_cmds: list[float],
    fleet_cmds: list[float],
    by_name: Counter[str],
    us_by_name: Counter[str],
    woken: list[float],
    idle_by_name: Counter[str],
    fast: str,
    parked: str,
) -> None:
    cpu_spread = Spread.of_repeats(cpu)
    ceiling = 1e6 / cpu_spread.median
    n = ctx.sizes.throughput_n * 5
    repeats = ctx.sizes.repeats
    named = ", ".join(
        f"{name} {count / repeats:.1f}" for name, count in by_name.most_common() if count >= 0.05
    )
    ctx.results.add(
        Figure(
            "redis",
            f"Redis CPU per cancel, {KEYS_USED} keys, 1 pod",
            cpu_spread,
            "µs",
            note=f"one Redis core saturates near {ceiling:,.0f} cancels/s; {n} cancels a run, "
            "idle cost subtracted; " + _inside_commands(us_by_name, repeats),
            fmt="{:.0f}",
        )
    )
    ctx.results.add(
        Figure(
            "redis",
            "Redis commands per cancel (Lua inner calls included)",
            Spread.of_repeats(cmds),
            "cmds",
            note=f"by command: {named}",
        )
    )
    ctx.results.add(
        Figure(
            "redis",
            "Redis round trips per cancel (reads Redis processed)",
            Spread.of_repeats(trips),
            "round trips",
            note="the drain's polling subtracted; the producer's pipelined enqueue: "
            "one read per 1,000",
        )
    )
    if woken:
        ctx.results.add(
            Figure(
                "redis",
                "Redis wakeups per cancel (the server's voluntary context switches)",
                Spread.of_repeats(woken),
                "wakeups",
                note="each is an event-loop sleep ended by a client's read: what a round trip "
                "costs Redis beyond its commands; the drain's polling included",
            )
        )
    ctx.results.add(
        Figure(
            "redis",
            "idle worker pod: Redis commands per second",
            Spread.of_repeats(idle_cmds),
            "cmds/s",
            note=f"measured over {IDLE_S:g} s with nothing queued, every command counted: "
            + ", ".join(
                f"{name} {count / repeats:.2f}"
                for name, count in idle_by_name.most_common()
                if count >= 0.01
            ),
        )
    )
    ctx.results.add(
        Figure(
            "redis",
            f"idle fleet of {FLEET_PODS} worker pods: Redis commands per second a pod",
            Spread.of_repeats(fleet_cmds),
            "cmds/s",
            note=f"measured over {IDLE_S:g} s with nothing queued, every command counted, "
            f"divided by {FLEET_PODS}: flat in the fleet's size when no pod reads every other",
        )
    )
    ctx.results.notes.append(f"one cancel on the fast path (an idle lane): {fast}")
    ctx.results.notes.append(f"one cancel on the parked path (its lane's budget spent): {parked}")


#: The commands that run a script: their time includes the script's inner calls.
SCRIPT_COMMANDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})


def _inside_commands(us_by_name: Counter[str], repeats: int) -> str:
    """The wall time Redis spent inside commands per cancel, scripts apart: an upper bound on
    their CPU (a server preempted mid-command counts the wait), and a command a script calls
    is counted under its own name too."""
    scripts = sum(us_by_name[name] for name in SCRIPT_COMMANDS) / repeats
    others = sum(v for k, v in us_by_name.items() if k not in SCRIPT_COMMANDS) / repeats
    return (
        f"inside commands (commandstats usec, wall clock): scripts {scripts:.0f} µs, "
        f"the others at most {others:.0f} µs"
    )
