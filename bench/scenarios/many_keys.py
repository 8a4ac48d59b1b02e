"""Issue 4, scenario 5: 1,000 keys active at once.

The same number of cancels spread over 10 keys, then over 1,000 keys (limits not binding),
offered at once, through one worker set warmed up on another key first. The limiter's cost per
cancel: Redis commands (``INFO commandstats`` deltas on the private Redis, Lua-internal commands
included, harness commands excluded), scripts (EVALSHA) per cancel, and worker CPU time per
cancel (/proc, all worker processes).
"""

from __future__ import annotations

from bench import load
from bench.context import COMPARE_POOL, Context
from bench.measure import Cost, Figure, Spread, measure_cost
from bench.stack import WorkerSet

PROCESSES = 1
WARMUP = 100  # cancels on another key first, so neither measured run pays the worker's start


def one(ctx: Context, ws: WorkerSet, nkeys: int) -> Cost:
    """The scenario's cancels spread over ``nkeys`` keys, through a running, warm set."""
    stack = ctx.stack
    keys = ctx.keys.many[:nkeys]
    total = ctx.sizes.many_total
    plan = [keys[i % nkeys] for i in range(total)]
    links = load.place_orders_for(stack, plan)
    pairs = list(zip(plan, links, strict=True))

    def work() -> int:
        offered = load.burst(stack, pairs)
        load.wait_drained(stack, timeout_s=120)
        return len(offered.ids)

    cost, _ = measure_cost(stack.redis, ws.cpu_s, work)
    return cost


def all_counts(ctx: Context, rep: int) -> dict[int, Cost]:
    """Every key count in one worker set, after a warm-up: one start-up per repeat, and the
    runs compare the limiter's cost, not who paid the first cancels' lazy set-up."""
    stack, warm = ctx.stack, ctx.keys.free
    stack.reset(rate_limits=False)
    every_key = {"CANCELQ_ACCOUNTS_FILE": str(stack.accounts_file)}
    with stack.workers("cancelq", PROCESSES, COMPARE_POOL, **every_key) as ws:
        links = load.place_orders(stack, warm, WARMUP)
        load.burst(stack, [(warm, link) for link in links])
        load.wait_drained(stack, timeout_s=60)
        out = {}
        for nkeys in ctx.sizes.many_keys:
            ctx.say(f"many keys: {ctx.sizes.many_total} cancels over {nkeys} keys, rep {rep + 1}")
            out[nkeys] = one(ctx, ws, nkeys)
        return out


def run(ctx: Context) -> None:
    costs: dict[int, list[Cost]] = {}
    for rep in range(ctx.sizes.repeats):
        for nkeys, cost in all_counts(ctx, rep).items():
            costs.setdefault(nkeys, []).append(cost)
    lo, hi = min(costs), max(costs)
    for attr, unit, label in (
        ("redis_calls", "cmds/cancel", "Redis commands per cancel"),
        ("redis_scripts", "scripts/cancel", "Redis scripts per cancel"),
        ("cpu_ms", "ms/cancel", "worker CPU per cancel"),
    ):
        value = Spread.of_repeats([getattr(c, attr) for c in costs[hi]])
        base = Spread.of_repeats([getattr(c, attr) for c in costs[lo]])
        ratio = value.median / base.median if base.median else float("nan")
        middle = ", ".join(
            f"{k} keys {Spread.of_repeats([getattr(c, attr) for c in v]).median:.2f}"
            for k, v in sorted(costs.items())
        )
        ctx.results.add(
            Figure(
                "issue 4",
                f"5. {label}, {hi} keys",
                value,
                unit,
                base,
                f"{lo} keys",
                "≤ 1.15x",
                ratio <= 1.15,
                middle,
                "{:.2f}",
            )
        )
