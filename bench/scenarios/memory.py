"""Issue 7d: worker memory (RSS of the worker and its pool children) after a small and a large
number of cancels, limits not binding; naive measured the same way in the same run."""

from __future__ import annotations

import time

from bench import load
from bench.context import COMPARE_POOL, Context
from bench.measure import Figure, Spread
from bench.stack import SetSpec

CHUNK = 5000
SETTLE_S = 0.2  # after the drain, before reading RSS: the last acks and outcome writes


def every_key(ctx: Context) -> dict[str, str]:
    """Every account, as in earlier runs: 1,000 accounts are ~70 MiB of a set's RSS."""
    return {"CANCELQ_ACCOUNTS_FILE": str(ctx.stack.accounts_file)}


def counts(ctx: Context, system: str) -> tuple[int, int]:
    """cancelq runs the issue's counts; naive, a reference only, at most 4x the small count
    (at its ~220 cancels/s over HTTPS, 200,000 would add a quarter of an hour to --full)."""
    small, large = ctx.sizes.memory_counts
    return (small, large) if system == "cancelq" else (small, min(large, 4 * small))


def rss_after(ctx: Context, system: str) -> tuple[float, float]:
    stack, key = ctx.stack, ctx.keys.free
    small, large = counts(ctx, system)
    stack.reset(rate_limits=False)
    rss = []
    with stack.workers(system, 1, COMPARE_POOL, **every_key(ctx)) as ws:
        done = 0
        for target in (small, large):
            while done < target:
                n = min(CHUNK, target - done)
                links = load.place_orders(stack, key, n)
                load.burst(stack, [(key, link) for link in links])
                load.wait_drained(stack, 600)
                stack.redis.flushdb()  # outcomes/claims are Redis's memory, not the worker's
                stack.sim.admin.reset()  # keep the simulator's book and log small
                done += n
                ctx.say(f"memory: {system} {done}/{large} cancels")
            time.sleep(SETTLE_S)
            rss.append(ws.rss_mb())
    return rss[0], rss[1]


def run(ctx: Context) -> None:
    small, large = ctx.sizes.memory_counts
    # naive starts alongside cancelq and waits frozen on its own database (Stack.standby)
    with ctx.stack.standby([SetSpec.of("naive", 1, COMPARE_POOL, **every_key(ctx))]):
        got = {s: rss_after(ctx, s) for s in ("cancelq", "naive")}
    a, b = got["cancelq"]
    na, nb = got["naive"]
    ctx.results.add(
        Figure(
            "issue 7d",
            f"cancelq RSS after {large:,} cancels",
            Spread(b, b, b, "one run", 1),
            "MiB",
            Spread(a, a, a, "one run", 1),
            f"after {small:,}",
            "growth ≤ 5 %",
            b <= a * 1.05,
            f"naive {na:.0f} → {nb:.0f} MiB after {counts(ctx, 'naive')[0]:,} → "
            f"{counts(ctx, 'naive')[1]:,}; worker + pool children ({' '.join(COMPARE_POOL)})"
            + (" (quick: scaled down from 10,000 / 200,000)" if ctx.sizes.name == "quick" else ""),
            "{:.1f}",
        )
    )
