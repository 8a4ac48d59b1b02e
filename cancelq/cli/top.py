"""``cancelq top``: a live view of every lane, straight from Redis (read-only), in rich.

The reading is ``cancelq.console`` (a snapshot with read commands only); this module draws it:
a header with the queue, outbox, dead letters and workers, then one row per (account,
category), the one in trouble on top.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cancelq.console.order import in_trouble_first
from cancelq.console.snapshot import LaneView, Snapshot, read_snapshot
from cancelq.errors import CancelqError
from cancelq.keys import Keys
from cancelq.settings import load_settings


def top(
    redis_url: Annotated[
        str | None, typer.Option(help="Default: CANCELQ_REDIS_URL (a read-only user is enough).")
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option(help="Print one snapshot and exit.")] = False,
) -> None:
    """Live view of lanes, halts, queues and workers, from Redis with read commands only."""
    import redis

    err = Console(stderr=True)
    try:
        settings = load_settings()
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    url = redis_url or settings.redis_url
    if not url:
        err.print("[red]error:[/] CANCELQ_REDIS_URL is not set (or pass --redis-url)")
        raise typer.Exit(2)
    # redis-py's CLIENT SETINFO on connect may be refused (NOPERM): it ignores that
    client = redis.Redis.from_url(url)
    keys = Keys(prefix=settings.key_prefix, queue=settings.queue)
    where = _where(url)

    def frame() -> Group | Text:
        try:
            return render(read_snapshot(client, keys), where, settings.pod_ttl_s)
        except CancelqError as exc:
            return Text(f"{where}: {exc}", style="red")

    console = Console()
    if once:
        console.print(frame())
        return
    with Live(frame(), console=console, auto_refresh=False, screen=True) as live:
        try:
            while True:
                time.sleep(min(max(interval, 0.1), 1.0))
                live.update(frame(), refresh=True)
        except KeyboardInterrupt:
            pass


def _where(url: str) -> str:
    """The Redis address without user or password."""
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}{parts.path or ''}"


def render(snap: Snapshot, where: str, pod_ttl_s: float) -> Group:
    clock = datetime.fromtimestamp(snap.now_ms / 1000, UTC).strftime("%H:%M:%S")
    alive = snap.alive(pod_ttl_s)
    beats = ", ".join(f"{w.beat_age_s:.1f}s" for w in sorted(snap.workers, key=lambda w: w.pod))
    oldest = f", oldest {snap.outbox_oldest_s:.1f}s" if snap.outbox_oldest_s is not None else ""
    header = Text.assemble(
        ("cancelq top", "bold"),
        f"  {where}  {clock} UTC\n",
        f"queue {snap.queue_depth}   outbox {snap.outbox}{oldest}   ",
        ("dead letters ", ""),
        (str(snap.dead_letters), "red" if snap.dead_letters else ""),
        f"   workers alive {len(alive)}/{len(snap.workers)}",
        f" (heartbeats {beats})" if beats else "",
    )
    return Group(header, lanes_table(snap), halts_lines(snap))


def lanes_table(snap: Snapshot) -> Table:
    table = Table(expand=False, pad_edge=False, box=None, header_style="bold")
    for column in (
        "account",
        "category",
        "state",
        "parked",
        "used 1s",
        "used 1m",
        "drain ETA",
        "in flight",
        "10006 1m",
        "auth fail 1m",
    ):
        left = column in ("account", "state")
        table.add_column(
            column, justify="left" if left else "right", no_wrap=True, min_width=len(column)
        )
    for lane in in_trouble_first(snap.lanes, snap.now_ms):
        table.add_row(
            lane.account,
            lane.category,
            _state(lane, snap.now_ms),
            str(lane.parked),
            f"{lane.used_1s}/{lane.limit}" if lane.limit else str(lane.used_1s),
            _share(lane.used_1m_share()),
            _eta(lane, snap.now_ms),
            str(lane.in_flight),
            str(lane.rate_limited_1m),
            str(lane.auth_failed_1m),
        )
    if not snap.lanes:
        table.add_row("(no lane with a backlog or traffic in the last minute)")
    return table


def _state(lane: LaneView, now_ms: int) -> Text:
    if lane.halt is not None:
        return Text("HALTED", style="bold white on red")
    if lane.paused(now_ms):
        left_s = (lane.paused_until_ms - now_ms) / 1000
        why = lane.pause_reason or "rate limit"
        return Text(f"PAUSED {left_s:.1f}s ({why})", style="bold yellow")
    return Text("ok", style="green")


def halts_lines(snap: Snapshot) -> Text:
    """Who halted which account, when and why."""
    lines = Text()
    for account, halt in sorted(snap.halts.items()):
        since = datetime.fromtimestamp(halt.at_ms / 1000, UTC).strftime("%H:%M:%S")
        lines.append(f"halted {account} by {halt.by} at {since} UTC: {halt.reason}\n", "red")
    return lines


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _eta(lane: LaneView, now_ms: int) -> str:
    eta = lane.eta_s(now_ms)
    if eta is None:
        return "never" if lane.halt is not None else "?"
    return "-" if eta == 0 else f"{eta:.1f}s"
