"""Pool choice (issue 3): cancelq's throughput and latency with prefork (2 processes), threads
(8) and gevent (64), against a simulator answering at once and one adding 20 ms (closer to a
real exchange round trip). Limits not binding."""

from __future__ import annotations

import time

from bench import load
from bench.context import Context
from bench.measure import Figure, Spread, percentile

POOLS = {
    "prefork 2": ("--pool", "prefork", "--concurrency", "2"),
    "threads 8": ("--pool", "threads", "--concurrency", "8"),
    "gevent 64": ("--pool", "gevent", "--concurrency", "64"),
}
DRAIN_TIMEOUT_S = 30.0  # bounded: a pool that cannot drain this is reported, not awaited
LATENCY_RATE = 60.0  # offered load of the latency test: below prefork's capacity at 20 ms
SIM_LATENCIES_MS = (0, 20)


def phase(ctx: Context, latency_ms: int) -> tuple[float, list[float]]:
    """Throughput then latency through a running set, the simulator adding ``latency_ms``."""
    stack, key = ctx.stack, ctx.keys.free
    n = ctx.sizes.pool_throughput_n
    count = int(ctx.sizes.pool_latency_s * LATENCY_RATE)
    stack.reset_sim(rate_limits=False)
    stack.sim.admin.set_faults(latency_ms=latency_ms)
    links = load.place_orders(stack, key, n + count + 50)
    load.wait_outcomes(stack, load.burst(stack, [(key, ln) for ln in links[:50]]), 30)
    t0 = time.time()
    load.burst(stack, [(key, ln) for ln in links[50 : 50 + n]])
    t1, _ = load.wait_drained(stack, DRAIN_TIMEOUT_S)
    offered = load.paced(stack, [(key, ln) for ln in links[50 + n :]], LATENCY_RATE)
    outcomes = load.wait_outcomes(stack, offered, 30)
    lat = [float(o["finishedAt"]) - offered.enqueued_ms[r] for r, o in outcomes.items()]
    lat += [60_000.0] * (len(offered.ids) - len(outcomes))
    return n / (t1 - t0), lat


def one_pool(
    ctx: Context, name: str, pool: tuple[str, ...]
) -> dict[int, tuple[list[float], list[float]]]:
    """Every simulator latency in one worker set per repeat (the latency is the simulator's,
    set between phases): one start-up per pool, not one per pool and latency.

    Returns latency_ms -> (rate per repeat, every latency sample) for the latencies measured;
    a phase that fails is noted and ends the set (its backlog would spill into the next).
    """
    got: dict[int, tuple[list[float], list[float]]] = {}
    latency_ms = SIM_LATENCIES_MS[0]
    try:
        for _ in range(ctx.sizes.repeats):
            ctx.stack.reset(rate_limits=False)
            with ctx.stack.workers("cancelq", 1, pool):
                for latency_ms in SIM_LATENCIES_MS:
                    ctx.say(f"pools: {name}, simulator latency {latency_ms} ms")
                    rate, lat = phase(ctx, latency_ms)
                    rates, samples = got.setdefault(latency_ms, ([], []))
                    rates.append(rate)
                    samples.extend(lat)
    except (RuntimeError, TimeoutError) as exc:
        ctx.results.notes.append(f"pool {name} at {latency_ms} ms skipped: {exc!s:.200}")
    return got


def run(ctx: Context) -> None:
    got: dict[int, dict[str, tuple[list[float], list[float]]]] = {ms: {} for ms in SIM_LATENCIES_MS}
    for name, pool in POOLS.items():
        if ctx.sizes.name == "quick" and "gevent" in name:
            ctx.results.notes.append(f"pool {name} skipped in quick mode (run --full)")
            continue
        for latency_ms, measured in one_pool(ctx, name, pool).items():
            got[latency_ms][name] = measured
    for latency_ms, by_pool in got.items():
        add_figures(ctx, latency_ms, by_pool)


def add_figures(
    ctx: Context, latency_ms: int, got: dict[str, tuple[list[float], list[float]]]
) -> None:
    base = got.get("prefork 2")
    for name, (rates, lat) in got.items():
        if name == "prefork 2" or base is None:
            continue
        ctx.results.add(
            Figure(
                "pool",
                f"{name} cancels/s, sim +{latency_ms} ms",
                Spread.of_repeats(rates),
                "/s",
                Spread.of_repeats(base[0]),
                "prefork 2",
                "",
                None,
                f"p50/p99 {percentile(lat, 50):.1f}/{percentile(lat, 99):.1f} ms vs prefork "
                f"{percentile(base[1], 50):.1f}/{percentile(base[1], 99):.1f} ms "
                f"at {LATENCY_RATE:.0f}/s offered",
            )
        )
