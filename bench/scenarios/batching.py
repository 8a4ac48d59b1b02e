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


def phase(ctx: Context, per_item: bool, batching: bool) -> tuple[float, int, int]:
    """One backlog through a running set; the simulator counts a batch ``per_item`` or not."""
    stack = ctx.stack
    key = ctx.keys.limited["items" if per_item else "requests"]
    per_window = LIMIT * (BATCH if batching and not per_item else 1)
    n = max(ctx.sizes.batch_n, 3 * per_window)  # at least 3 windows of backlog
    stack.reset_sim(rate_limits=True, batch_counts_items=per_item)
    links = load.place_orders(stack, key, n)
    offered = load.burst(stack, [(key, link) for link in links])
    load.wait_outcomes(stack, offered, timeout_s=n / LIMIT * 1.6 + 15)
    records = load.sim_records(stack, key)
    return (
        steady_rate(records),
        sum(1 for r in records if r["ret_code"] == 10006),
        len(records),
    )


def both_countings(ctx: Context, batching: bool) -> dict[bool, tuple[float, int, int]]:
    """Both ways of counting in one worker set (CANCELQ_BATCHING is read at start, the
    counting is the simulator's and each way has its own key): one start-up, not two."""
    ctx.stack.reset(rate_limits=True)
    flag = "1" if batching else "0"
    with ctx.stack.workers("cancelq", PROCESSES, THREADS_POOL, CANCELQ_BATCHING=flag):
        return {per_item: phase(ctx, per_item, batching) for per_item in (True, False)}


def run(ctx: Context) -> None:
    # rates[per_item][batching]: one value per repeat
    rates: dict[bool, dict[bool, list[float]]] = {p: {True: [], False: []} for p in (True, False)}
    info: dict[bool, dict[bool, tuple[int, int]]] = {True: {}, False: {}}
    for rep in range(ctx.sizes.repeats):
        for batching in (True, False):
            ctx.say(f"batching: batching={batching}, both ways of counting, rep {rep + 1}")
            for per_item, (rate, n10006, requests) in both_countings(ctx, batching).items():
                rates[per_item][batching].append(rate)
                info[per_item][batching] = (n10006, requests)
    for per_item in (True, False):
        label = "per item (spec)" if per_item else "per request"
        add_figure(ctx, label, rates[per_item], info[per_item])


def add_figure(
    ctx: Context, label: str, rates: dict[bool, list[float]], info: dict[bool, tuple[int, int]]
) -> None:
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
