"""Issue 4, scenario 4: batching.

One spot key at 20/s, a backlog of cancels offered at once; confirmed cancels (retCode 0) per
second while the backlog lasts, with CANCELQ_BATCHING=1 vs 0, under the two ways of counting a
batch: the spec's (simulator default, per item; account ``batch_counts_items = true``) and per
request (simulator ``batch_counts_items=false`` = ``--batch-per-request``; account
``batch_counts_items = false``).
"""

from __future__ import annotations

from bench import load
from bench.context import THREADS_POOL, Context
from bench.measure import Figure, Spread
from bench.scenarios.never_over import steady_rate

PROCESSES = 2
LIMIT = 20
BATCH = 10  # spot


def one(ctx: Context, per_item: bool, batching: bool) -> tuple[float, int, int]:
    stack = ctx.stack
    key = ctx.keys.limited["items" if per_item else "requests"]
    per_window = LIMIT * (BATCH if batching and not per_item else 1)
    n = max(ctx.sizes.batch_n, 3 * per_window)  # at least 3 windows of backlog
    stack.reset(rate_limits=True, batch_counts_items=per_item)
    with stack.workers(
        "cancelq", PROCESSES, THREADS_POOL, CANCELQ_BATCHING="1" if batching else "0"
    ):
        links = load.place_orders(stack, key, n)
        offered = load.burst(stack, [(key, link) for link in links])
        load.wait_outcomes(stack, offered, timeout_s=n / LIMIT * 1.6 + 15)
    records = load.sim_records(stack, key)
    return (
        steady_rate(records),
        sum(1 for r in records if r["ret_code"] == 10006),
        len(records),
    )


def run(ctx: Context) -> None:
    for per_item in (True, False):
        label = "per item (spec)" if per_item else "per request"
        rates: dict[bool, list[float]] = {True: [], False: []}
        info: dict[bool, tuple[int, int]] = {}
        for rep in range(ctx.sizes.repeats):
            for batching in (True, False):
                ctx.say(f"batching: limit counted {label}, batching={batching}, rep {rep + 1}")
                rate, n10006, requests = one(ctx, per_item, batching)
                rates[batching].append(rate)
                info[batching] = (n10006, requests)
        ratio = Spread.of_repeats([a / b for a, b in zip(rates[True], rates[False], strict=True)])
        ctx.results.add(
            Figure(
                "issue 4",
                f"4. confirmed/s batched, limit counted {label}",
                Spread.of_repeats(rates[True]),
                "cancels/s",
                Spread.of_repeats(rates[False]),
                "CANCELQ_BATCHING=0",
                "≥ 8x",
                ratio.median >= 8,
                f"ratio {ratio.median:.2f}x; HTTP requests batched/unbatched "
                f"{info[True][1]}/{info[False][1]}; 10006: {info[True][0]}/{info[False][0]}",
            )
        )
