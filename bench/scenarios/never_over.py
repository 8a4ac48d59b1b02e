"""Issue 4, scenarios 1 and 2: never over the limit, and close to it.

4 worker processes, one key limited to 20/s, N cancels offered at once. Read from the
simulator's request log of the same run: 10006 replies, the most cancels any 1 s window held,
and the rate achieved while the backlog lasted. Baseline: a naive task with Celery's own
``rate_limit="20/s"`` on the same 4 processes. Scenario 2 repeats this for several window pads.
"""

from __future__ import annotations

from typing import Any

from bench import load
from bench.context import THREADS_POOL, Context
from bench.measure import Figure, Spread
from cancelq.harness.accounts import AccountSpec

PROCESSES = 4
LIMIT = 20
DEFAULT_PAD_MS = 10  # CANCELQ_RATELIMIT_WINDOW_PAD_MS's default


def steady_rate(records: list[dict[str, Any]]) -> float:
    """Accepted cancels per second while a backlog lasts: the first window's burst is left out,
    ``(n - first_window) / (t_last - t_first)``, which is ``limit / window`` for a full lane."""
    points = sorted(
        (float(r["time_ms"]), int(r.get("items") or 1)) for r in records if r["ret_code"] == 0
    )
    if len(points) < 2:
        return float("nan")
    t0, t1 = points[0][0], points[-1][0]
    first = sum(w for t, w in points if t < t0 + 1000)
    total = sum(w for _, w in points)
    return (total - first) / ((t1 - t0) / 1000) if t1 > t0 + 1000 else float("nan")


def one_run(ctx: Context, system: str, key: AccountSpec, env: dict[str, str]) -> dict[str, Any]:
    stack, n = ctx.stack, ctx.sizes.never_over_n
    stack.reset(rate_limits=True)
    with stack.workers(system, PROCESSES, THREADS_POOL, **env):
        links = load.place_orders(stack, key, n)
        offered = load.burst(stack, [(key, link) for link in links])
        outcomes = load.wait_outcomes(stack, offered, timeout_s=n / LIMIT * 1.6 + 15)
    records = load.sim_records(stack, key)
    sim_max = stack.sim.admin.max_requests_in_window(api_key=key.api_key)["max"]
    return {
        "n10006": sum(1 for r in records if r["ret_code"] == 10006),
        "max_window": max(load.max_in_window(records), int(sim_max)),
        "rate": steady_rate(records),
        "done": len(outcomes),
        "ok": sum(1 for o in outcomes.values() if o.get("retCode") == 0),
        "times": [float(r["time_ms"]) for r in records],
    }


def run(ctx: Context) -> None:
    res, sizes = ctx.results, ctx.sizes
    never, celeryrl = ctx.keys.limited["never"], ctx.keys.limited["celeryrl"]
    base_runs: list[dict[str, Any]] = []
    runs_by_pad: dict[int, list[dict[str, Any]]] = {}
    for rep in range(sizes.repeats):
        ctx.say(f"never-over: Celery rate_limit baseline, repeat {rep + 1}")
        base_runs.append(one_run(ctx, "naive", celeryrl, {"BENCH_RATE_LIMIT": f"{LIMIT}/s"}))
        for pad in sizes.pads:
            if rep > 0 and pad != DEFAULT_PAD_MS:
                continue  # repeats for the default pad; the others once (100 s each in --full)
            ctx.say(f"never-over: cancelq, pad {pad} ms, repeat {rep + 1}")
            env = {"CANCELQ_RATELIMIT_WINDOW_PAD_MS": str(pad)}
            runs_by_pad.setdefault(pad, []).append(one_run(ctx, "cancelq", never, env))
    default = runs_by_pad.get(DEFAULT_PAD_MS) or next(iter(runs_by_pad.values()))
    res.series["never_over"] = {
        "cancelq": default[0]["times"],
        "celery rate_limit": base_runs[0]["times"],
    }
    note = f"{sizes.never_over_n} cancels at once, {PROCESSES} processes ({' '.join(THREADS_POOL)})"
    res.add(
        Figure(
            "issue 4",
            "1. most cancels in any 1 s window (limit 20)",
            Spread.of_repeats([r["max_window"] for r in default]),
            "cancels",
            Spread.of_repeats([r["max_window"] for r in base_runs]),
            "Celery rate_limit=20/s",
            "≤ 20",
            all(r["max_window"] <= LIMIT for r in default),
            note,
            "{:.0f}",
        )
    )
    res.add(
        Figure(
            "issue 4",
            "1. 10006 replies",
            Spread.of_repeats([r["n10006"] for r in default]),
            "replies",
            Spread.of_repeats([r["n10006"] for r in base_runs]),
            "Celery rate_limit=20/s",
            "0",
            all(r["n10006"] == 0 for r in default),
            f"outcomes {default[0]['done']}/{sizes.never_over_n}, accepted {default[0]['ok']}",
            "{:.0f}",
        )
    )
    for pad, runs in sorted(runs_by_pad.items()):
        share = Spread.of_repeats([100 * r["rate"] / LIMIT for r in runs])
        over = max(r["max_window"] for r in runs)
        res.add(
            Figure(
                "issue 4",
                f"2. achieved rate / budget, pad {pad} ms",
                share,
                "% of 20/s",
                None,
                "",
                "≥ 95 %",
                share.median >= 95,
                f"max window {over}, 10006: {max(r['n10006'] for r in runs)}"
                + (
                    ""
                    if pad == DEFAULT_PAD_MS
                    else f" (default pad is {DEFAULT_PAD_MS} ms; one run)"
                ),
            )
        )
