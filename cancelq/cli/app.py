"""The ``cancelq`` command line (typer): demo, worker, enqueue, status, dead-letters, simulator,
health, bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cancelq.cli.dead_letters import dead_letters_app
from cancelq.errors import CancelqError
from cancelq.settings import Settings, load_settings

if TYPE_CHECKING:
    from cancelq.producers.client import CancelProducer

app = typer.Typer(
    name="cancelq",
    no_args_is_help=True,
    add_completion=False,
    help="Cancel orders on Bybit V5 through Redis and Celery.",
)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
err = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _producer(settings: Settings) -> CancelProducer:
    from cancelq.producers.client import CancelProducer

    if settings.redis_url is None:
        err.print("[red]error:[/] CANCELQ_REDIS_URL is not set")
        raise typer.Exit(2)
    return CancelProducer.from_url(
        settings.redis_url,
        queue=settings.queue,
        key_prefix=settings.key_prefix,
        kill_queue=settings.kill_queue,
        min_replicas=settings.enqueue_min_replicas,
        replica_timeout_ms=settings.enqueue_replica_timeout_ms,
        sentinel=settings.redis_sentinel(),
    )


@app.command()
def demo(
    cancels: Annotated[int, typer.Option(help="Orders placed and cancelled.")] = 300,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """The main job: embedded Redis + simulator + workers + producers, ending with a summary."""
    from cancelq.cli.demo import run_demo

    raise typer.Exit(run_demo(_settings(), orders=cancels, workers=workers))


@app.command(context_settings=PASS_THROUGH)
def worker(ctx: typer.Context) -> None:
    """Run a worker pod; extra options go to ``celery worker`` (e.g. --concurrency 16)."""
    from cancelq.worker.host.main import run_worker

    try:
        run_worker(_settings(), ctx.args)
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def enqueue(
    account: Annotated[str | None, typer.Option(help="Account alias.")] = None,
    category: Annotated[str | None, typer.Option(help="spot, linear, inverse or option.")] = None,
    symbol: Annotated[str | None, typer.Option(help="e.g. BTCUSDT.")] = None,
    order_id: Annotated[str | None, typer.Option("--order-id")] = None,
    order_link_id: Annotated[str | None, typer.Option("--order-link-id")] = None,
    order_filter: Annotated[str | None, typer.Option("--order-filter")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id")] = None,
    file: Annotated[
        Path | None, typer.Option(help="JSONL file of cancels (one JSON object a line); - = stdin.")
    ] = None,
    wait: Annotated[float, typer.Option(help="Wait this many seconds for outcomes.")] = 0.0,
    chunk: Annotated[int, typer.Option(help="Cancels per round trip from a file.")] = 500,
) -> None:
    """Enqueue one cancel from options, or many from a JSONL file or stdin (a progress bar
    and a summary on stderr; refused lines are named there and make the exit code 1)."""
    from cancelq.cli.bulk import await_outcomes, enqueue_file

    producer = _producer(_settings())
    refused = False
    try:
        if file is None:
            fields = _one_cancel(
                account=account,
                category=category,
                symbol=symbol,
                orderId=order_id,
                orderLinkId=order_link_id,
                orderFilter=order_filter,
                requestId=request_id,
            )
            ids = producer.enqueue_many([fields])
        else:
            done = enqueue_file(producer, file, max(chunk, 1), err)
            ids, refused = done.ids, bool(done.refused)
            for line in done.summary():
                err.print(line, markup=False, highlight=False)
        for rid in ids:
            typer.echo(rid)
        if wait > 0:
            outcomes = await_outcomes(producer, ids, wait, err)
            if len(outcomes) < len(set(ids)):
                missing = len(set(ids)) - len(outcomes)
                raise TimeoutError(f"{missing} of {len(ids)} requests have no outcome")
            for rid in dict.fromkeys(ids):
                typer.echo(outcomes[rid].to_json())
    except (CancelqError, TimeoutError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if refused:
        raise typer.Exit(1)


def _one_cancel(**fields: str | None) -> dict[str, str]:
    return {name: value for name, value in fields.items() if value is not None}


@app.command()
def kill(
    account: Annotated[str, typer.Option(help="Account alias.")],
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    base_coin: Annotated[str | None, typer.Option("--base-coin")] = None,
    settle_coin: Annotated[str | None, typer.Option("--settle-coin")] = None,
    wait: Annotated[float, typer.Option(help="Wait this many seconds for the result.")] = 10.0,
) -> None:
    """Kill switch: cancel every open order of an account now, ahead of queued cancels."""
    producer = _producer(_settings())
    try:
        rid = producer.kill(
            account, category, symbol=symbol, base_coin=base_coin, settle_coin=settle_coin
        )
        typer.echo(rid)
        if wait > 0:
            outcome = producer.wait(rid, wait)
            typer.echo(outcome.to_json())
            if outcome.status.value != "killed":
                raise typer.Exit(1)
    except (CancelqError, TimeoutError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def status(
    request_ids: Annotated[list[str], typer.Argument(help="requestId(s); - = stdin, one a line.")],
    wait: Annotated[
        float, typer.Option(help="Wait up to this many seconds until every request is final.")
    ] = 0.0,
) -> None:
    """Print the outcome of each request (exit 3 when any is still pending)."""
    from cancelq.cli.bulk import await_outcomes

    if request_ids == ["-"]:
        request_ids = [line.strip() for line in sys.stdin if line.strip()]
    producer = _producer(_settings())
    try:
        outcomes = await_outcomes(producer, request_ids, wait, err)
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for rid in request_ids:
        found = outcomes.get(rid)
        typer.echo(
            found.to_json() if found else json.dumps({"requestId": rid, "status": "pending"})
        )
    if len(outcomes) < len(set(request_ids)):
        raise typer.Exit(3)


app.add_typer(dead_letters_app)


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def simulator(ctx: typer.Context) -> None:
    """Run the Bybit V5 simulator (``cancelq simulator --help`` lists its options)."""
    from cancelq.simulator.cli import main

    raise typer.Exit(main(list(ctx.args)))


@app.command()
def loadgen(
    rate: Annotated[float, typer.Option(help="Cancels per second.")] = 20.0,
    category: Annotated[str, typer.Option(help="Category of the orders.")] = "spot",
    symbol: Annotated[str, typer.Option(help="Symbol of the orders.")] = "BTCUSDT",
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Load for the simulator only: place orders on it and enqueue their cancels at a rate."""
    from cancelq.cli.loadgen import LoadPlan, run_loadgen

    plan = LoadPlan(rate_per_s=rate, category=category, symbol=symbol, duration_s=duration)
    try:
        run_loadgen(_settings(), plan, echo=typer.echo)
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks from a checkout (``--quick`` under 2 minutes; ``--help``)."""
    from cancelq.cli.checkout import import_checkout_tool

    try:
        main = import_checkout_tool("bench.main", "main")
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(main(list(ctx.args)))


@app.command()
def confirmer() -> None:
    """Run a confirmer: follow each account's private order stream and confirm cancels."""
    from cancelq.confirmer.main import run_confirmer

    try:
        run_confirmer(_settings())
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def health(
    max_age_s: Annotated[float | None, typer.Option(help="Default: 3 heartbeats.")] = None,
) -> None:
    """Exit 0 while this pod's worker is alive (fresh heartbeat), 1 otherwise."""
    from cancelq.heartbeat import read_heartbeat

    settings = _settings()
    beat = read_heartbeat(settings.health_file)
    limit = max_age_s if max_age_s is not None else 3 * settings.heartbeat_s
    if beat is None or beat[0] > limit:
        err.print(f"unhealthy: heartbeat {'missing' if beat is None else f'{beat[0]:.1f}s old'}")
        raise typer.Exit(1)
    typer.echo(f"ok: heartbeat {beat[0]:.1f}s old, {'ready' if beat[1] else 'starting'}")


def _operator_console() -> None:
    """`top`, `halt` and `resume`: the operator's console, in their own modules."""
    from cancelq.cli import halt, top

    app.command()(top.top)
    app.command()(halt.halt)
    app.command()(halt.resume)


_operator_console()
