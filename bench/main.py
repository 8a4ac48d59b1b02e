"""``cancelq bench [--quick | --full] [--only NAME ...]``: every scenario in one run.

Starts a private Redis, the simulator and workers; runs the scenarios; prints one table
(figure, baseline from the same run, ratio, target, met?) and writes it to ``bench/RESULTS.md``
with the machine and the command; draws plots into ``bench/out/``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import plots, report
from bench.capacity import model
from bench.context import FULL, QUICK, Context, make_bench_keys
from bench.measure import Results
from bench.scenarios import (
    batching,
    durable_enqueue,
    hol,
    many_keys,
    memory,
    never_over,
    pools,
    redis_cost,
    systems,
    takeover,
)
from bench.stack import Stack

HERE = Path(__file__).resolve().parent
SCENARIOS: dict[str, Callable[[Context], None]] = {
    "never_over": never_over.run,
    "hol": hol.run,
    "batching": batching.run,
    "many_keys": many_keys.run,
    "systems": systems.run,
    "memory": memory.run,
    "pools": pools.run,
    "takeover": takeover.run,
    "redis_cost": redis_cost.run,
    "durable_enqueue": durable_enqueue.run,
}


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cancelq bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="scaled-down run (default)")
    size.add_argument("--full", action="store_true", help="the sizes the issues name")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), default=None)
    parser.add_argument("--repeats", type=int, default=None, help="override repeats")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="simulator over plain HTTP (default HTTPS, as Bybit: a client without keep-alive "
        "pays a TLS handshake per request)",
    )
    parser.add_argument("--many-keys", type=int, default=1000, help=argparse.SUPPRESS)
    return parser.parse_args(list(argv))


def draw(results: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    series = results.series
    if "latency" in series:
        plots.cdf(
            series["latency"],
            out / "latency_cdf.png",
            f"enqueue → outcome recorded, {systems.OFFERED_RATE:.0f}/s offered",
        )
    if "hol" in series:
        plots.cdf(
            series["hol"],
            out / "hol_cold_cdf.png",
            "cold key, enqueue → outcome, with/without hot backlog",
        )
    if "never_over" in series:
        plots.rate_over_time(series["never_over"], out / "rate_per_key.png", 20)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    sizes = FULL if args.full else QUICK
    if args.repeats:
        sizes = type(sizes)(**{**sizes.__dict__, "repeats": args.repeats})
    names = args.only or list(SCENARIOS)
    console = Console(width=220)
    results = Results()
    started = time.monotonic()
    keys = make_bench_keys(args.many_keys)
    with (
        tempfile.TemporaryDirectory(prefix="cancelq-bench-") as tmp,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        overall = progress.add_task("starting Redis and the simulator", total=len(names))
        step = progress.add_task("", total=None)
        with Stack(Path(tmp), keys.all(), worker_keys=keys.few(), tls=not args.plain_http) as stack:
            ctx = Context(
                stack, sizes, results, keys, lambda text: progress.update(step, description=text)
            )
            redis_version = str(stack.redis.info("server")["redis_version"])
            for name in names:
                progress.update(overall, description=f"scenario {name}")
                scenario_started = time.monotonic()
                try:
                    SCENARIOS[name](ctx)
                except Exception as exc:  # one broken scenario must not lose the others
                    results.notes.append(f"scenario {name} failed: {exc!r}")
                    console.print(traceback.format_exc())
                results.notes.append(
                    f"scenario {name} took {time.monotonic() - scenario_started:.0f} s"
                )
                progress.advance(overall)
    elapsed = time.monotonic() - started
    results.notes.append(
        "simulator over plain HTTP (--plain-http)"
        if args.plain_http
        else "simulator over HTTPS (TLS 1.3, private CA), as Bybit's API: keep-alive clients "
        "shake hands once per connection, the naive baseline once per cancel"
    )
    if sizes.name == "quick":
        results.notes.append(
            "quick run: counts scaled down (see bench/context.py QUICK), one repeat, so spreads "
            "are over samples only; run --full for the issue's sizes"
        )
    capacity = model(results)
    if capacity is not None:
        results.sections["Capacity model (from this run's figures)"] = capacity.lines()
    report.print_table(results, console)
    command = ["cancelq", "bench", *argv]
    report.write_markdown(results, args.results, command, report.machine(redis_version), elapsed)
    draw(results, args.out)
    console.print(f"wrote {args.results} and plots in {args.out} ({elapsed:.0f} s)")
    # exit 1 only when the machinery broke; a missed target is a finding, shown in the table
    return 1 if any(n.startswith("scenario") for n in results.notes) else 0
