"""``cancelq halt ACCOUNT`` / ``cancelq resume ACCOUNT``: stop and restart every send of one
account, across every pod (``cancelq/halts.py``), with who and why audited."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import Annotated

import redis
import typer
from rich.console import Console

from cancelq import halts
from cancelq.contract import ACCOUNT_RE
from cancelq.errors import CancelqError
from cancelq.keys import Keys
from cancelq.logs import configure_logging
from cancelq.settings import load_settings

Reason = Annotated[str, typer.Option(help="Why (audited and logged); required.")]


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


By = Annotated[str, typer.Option(help="Who (default: user@host).", default_factory=_operator)]


def halt(account: Annotated[str, typer.Argument()], reason: Reason, by: By) -> None:
    """Stop every send of ACCOUNT now, in every pod: its cancels wait parked until resume."""
    client, keys = _connect(account, reason)
    try:
        record = halts.halt(client, keys, account, by=by, reason=reason)
    except CancelqError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    at = datetime.fromtimestamp(record.at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    typer.echo(f"halted {account} at {at} by {by}: {reason}")


def resume(account: Annotated[str, typer.Argument()], reason: Reason, by: By) -> None:
    """Lift the halt of ACCOUNT: its parked cancels drain within its budget."""
    client, keys = _connect(account, reason)
    try:
        was = halts.resume(client, keys, account, by=by, reason=reason)
    except CancelqError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"resumed {account} by {by}: {reason}" + ("" if was else " (it was not halted)"))


def _connect(account: str, reason: str) -> tuple[redis.Redis, Keys]:
    err = Console(stderr=True)
    if not ACCOUNT_RE.fullmatch(account):
        err.print("[red]error:[/] account: 1 to 64 characters of [A-Za-z0-9_.-]")
        raise typer.Exit(2)
    if not reason.strip():
        err.print("[red]error:[/] --reason must say why")
        raise typer.Exit(2)
    try:
        settings = load_settings()
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if settings.redis_url is None:
        err.print("[red]error:[/] CANCELQ_REDIS_URL is not set")
        raise typer.Exit(2)
    configure_logging(settings.log_format, settings.log_level)
    client = redis.Redis.from_url(settings.redis_url)
    return client, Keys(prefix=settings.key_prefix, queue=settings.queue)
