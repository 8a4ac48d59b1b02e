"""What one Redis spends on cancelq: Redis CPU per cancel (``INFO cpu`` before and after a
burst across 10 keys, one worker pod, the idle cost of the same time subtracted), the
single-Redis ceiling it implies, Redis commands per cancel (``INFO commandstats``, Lua's inner
calls included) and what an idle worker pod costs (commands and CPU per second).

The harness's own polling (LLEN, HLEN, ZREVRANGE every few ms while it waits for the drain)
and its enqueue (LPUSH) are in the CPU figure, a small overstatement; they are left out of
the command count (bench.measure.HARNESS_COMMANDS).
"""

from __future__ import annotations

import time

import redis

from bench import load
from bench.context import THREADS_POOL, Context
from bench.measure import Figure, Spread, command_delta, commandstats

KEYS_USED = 10
IDLE_S = 5.0


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def idle_rates(ctx: Context) -> tuple[float, float]:
    """(commands/s, Redis CPU µs/s) of one idle worker pod."""
    client = ctx.stack.redis
    calls0, cpu0, t0 = commandstats(client), redis_cpu_s(client), time.monotonic()
    time.sleep(IDLE_S)
    calls1, cpu1, t1 = commandstats(client), redis_cpu_s(client), time.monotonic()
    elapsed = t1 - t0
    return sum(command_delta(calls0, calls1).values()) / elapsed, (cpu1 - cpu0) * 1e6 / elapsed


def burst_cost(ctx: Context, idle_cpu_us_s: float) -> tuple[float, float]:
    """(Redis CPU µs per cancel with the idle cost subtracted, commands per cancel)."""
    stack, client = ctx.stack, ctx.stack.redis
    n = ctx.sizes.throughput_n * 5
    plan = [ctx.keys.many[i % KEYS_USED] for i in range(n)]
    links = load.place_orders_for(stack, plan)
    calls0, cpu0, t0 = commandstats(client), redis_cpu_s(client), time.monotonic()
    load.burst(stack, list(zip(plan, links, strict=True)))
    load.wait_drained(stack, 600)
    calls1, cpu1, t1 = commandstats(client), redis_cpu_s(client), time.monotonic()
    busy_us = (cpu1 - cpu0) * 1e6 - idle_cpu_us_s * (t1 - t0)
    return busy_us / n, sum(command_delta(calls0, calls1).values()) / n


def run(ctx: Context) -> None:
    cpu: list[float] = []
    cmds: list[float] = []
    idle_cmds: list[float] = []
    for rep in range(ctx.sizes.repeats):
        ctx.say(f"redis cost: rep {rep + 1}")
        ctx.stack.reset(rate_limits=False)
        every_key = {"CANCELQ_ACCOUNTS_FILE": str(ctx.stack.accounts_file)}
        with ctx.stack.workers("cancelq", 1, THREADS_POOL, **every_key):
            time.sleep(1.0)  # the first beats and sweeps of a new pod
            idle_calls_s, idle_cpu_us_s = idle_rates(ctx)
            per_cancel_us, per_cancel_cmds = burst_cost(ctx, idle_cpu_us_s)
        cpu.append(per_cancel_us)
        cmds.append(per_cancel_cmds)
        idle_cmds.append(idle_calls_s)
    cpu_spread = Spread.of_repeats(cpu)
    ceiling = 1e6 / cpu_spread.median
    n = ctx.sizes.throughput_n * 5
    ctx.results.add(
        Figure(
            "redis",
            f"Redis CPU per cancel, {KEYS_USED} keys, 1 pod",
            cpu_spread,
            "µs",
            note=f"one Redis core saturates near {ceiling:,.0f} cancels/s; {n} cancels a run, "
            "idle cost subtracted",
            fmt="{:.0f}",
        )
    )
    ctx.results.add(
        Figure(
            "redis",
            "Redis commands per cancel (Lua inner calls included)",
            Spread.of_repeats(cmds),
            "cmds",
        )
    )
    ctx.results.add(
        Figure(
            "redis",
            "idle worker pod: Redis commands per second",
            Spread.of_repeats(idle_cmds),
            "cmds/s",
            note=f"measured over {IDLE_S:g} s with nothing queued",
        )
    )
