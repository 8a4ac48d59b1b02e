"""``cancelq dead-letters``: list, show and replay the messages the workers could not read.

Records come from the bounded stream ``cancelq:dead-letters`` (``worker/dead_letters.py``).
Nothing here prints a message body: ``show`` prints the record's masked preview and the fields
the contract reads from the kept body (``cancelq/cli/replay.py``). Tables go to stdout, or one
JSON object a line with ``--json``; a replay's one-line summary goes to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from cancelq.cli.replay import Verdict
    from cancelq.worker.dead_letter_log import DeadLetter, DeadLetterLog

dead_letters_app = typer.Typer(
    name="dead-letters",
    no_args_is_help=True,
    help="List, show and replay dead letters (messages the workers could not read).",
)
err = Console(stderr=True)
AS_JSON = typer.Option("--json", help="One JSON object a line instead of a table.")
T = TypeVar("T")
RESULT = {"replayable": "replayed", "invalid": "still invalid", "not_replayable": "not replayable"}


def _log() -> DeadLetterLog:
    import redis

    from cancelq.cli.app import _settings
    from cancelq.keys import Keys
    from cancelq.worker.dead_letter_log import DeadLetterLog

    settings = _settings()
    if settings.redis_url is None:
        err.print("[red]error:[/] CANCELQ_REDIS_URL is not set")
        raise typer.Exit(2)
    keys = Keys(prefix=settings.key_prefix, queue=settings.queue)
    return DeadLetterLog(redis.Redis.from_url(settings.redis_url), keys)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _record(letter: DeadLetter) -> dict[str, Any]:
    """The printable facts of a record (never its body)."""
    return {
        "id": letter.id,
        "time": letter.time,
        "when": _when(letter.time),
        "reason": letter.reason,
        "detail": letter.detail,
        "pod": letter.pod,
        "task": letter.task,
        "requestId": letter.request_id,
        "contentType": letter.content_type,
        "size": letter.size,
        "preview": letter.preview,
    }


@dead_letters_app.command("list")
def list_letters(
    limit: Annotated[int, typer.Option(help="Newest this many.", min=1)] = 50,
    as_json: Annotated[bool, AS_JSON] = False,
) -> None:
    """The newest dead letters, newest first: when, why, which worker, replayable or not."""
    from cancelq.cli.replay import judge

    log = _log()
    letters = _checked(lambda: log.newest(limit))
    total = _checked(log.count)
    verdicts = [judge(letter) for letter in letters]
    if as_json:
        for v in verdicts:
            typer.echo(json.dumps({**_record(v.letter), "replay": v.kind}))
        return
    table = Table("id", "when (UTC)", "reason", "worker", "requestId", "replay", box=None)
    for v in verdicts:
        letter = v.letter
        replay = {"replayable": "yes", "invalid": "invalid", "not_replayable": "no"}[v.kind]
        table.add_row(
            letter.id, _when(letter.time), letter.reason, letter.pod, letter.request_id, replay
        )
    Console().print(table)
    err.print(f"{len(letters)} of {total} dead letters shown")


@dead_letters_app.command()
def show(
    entry_id: Annotated[str, typer.Argument(help="Stream id, as `list` prints it.")],
    as_json: Annotated[bool, AS_JSON] = False,
) -> None:
    """One dead letter: its record, the masked preview and what the contract reads from it."""
    from cancelq.cli.replay import judge

    log = _log()
    letter = _checked(lambda: log.get(entry_id))
    if letter is None:
        err.print(f"[red]error:[/] no dead letter {entry_id}")
        raise typer.Exit(2)
    shown = {**_record(letter), **_reading(judge(letter))}
    if as_json:
        typer.echo(json.dumps(shown))
        return
    table = Table(box=None, show_header=False)
    for name, value in shown.items():
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    Console().print(table)


def _reading(verdict: Verdict) -> dict[str, Any]:
    """What replaying the record would do, and the fields it would send or that were refused."""
    if verdict.kind == "replayable":
        return {"replay": verdict.kind, "cancel": dict(verdict.cancel)}
    if verdict.kind == "invalid":
        return {"replay": verdict.kind, "rules": list(verdict.rules), "fields": dict(verdict.seen)}
    return {"replay": verdict.kind, "why": verdict.why}


@dead_letters_app.command("replay")
def replay_letters(
    entry_ids: Annotated[
        list[str] | None, typer.Argument(help="Stream ids, as `list` prints them.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter in the stream.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")
    ] = False,
    as_json: Annotated[bool, AS_JSON] = False,
) -> None:
    """Read dead letters through the contract again; enqueue (new requestId) those that pass,
    remove them from the stream, and report the rest (exit 1 when any is left)."""
    from cancelq.cli.replay import judge, replay

    if all_ == bool(entry_ids):
        err.print("[red]error:[/] name stream ids or --all (not both)")
        raise typer.Exit(2)
    log = _log()
    named = dict.fromkeys(entry_ids or [])
    letters = _checked(log.newest)[::-1] if all_ else [_one(log, i) for i in named]
    verdicts = [judge(letter) for letter in letters]
    done: dict[str, str] = {}
    if not dry_run:
        from cancelq.cli.app import _producer, _settings

        producer = _producer(_settings())
        replayed = _checked(lambda: replay(verdicts, producer, log))
        done = {r.verdict.letter.id: r.request_id for r in replayed}
    _report(verdicts, done, dry_run=dry_run, as_json=as_json)
    if any(v.kind != "replayable" for v in verdicts):
        raise typer.Exit(1)


def _one(log: DeadLetterLog, entry_id: str) -> DeadLetter:
    letter = _checked(lambda: log.get(entry_id))
    if letter is None:
        err.print(f"[red]error:[/] no dead letter {entry_id}")
        raise typer.Exit(2)
    return letter


def _report(verdicts: list[Verdict], done: dict[str, str], *, dry_run: bool, as_json: bool) -> None:
    rows = []
    for v in verdicts:
        result = "would replay" if dry_run and v.kind == "replayable" else RESULT[v.kind]
        note = "; ".join(v.rules) if v.kind == "invalid" else v.why
        rows.append(
            {
                "id": v.letter.id,
                "result": result,
                "requestId": done.get(v.letter.id, ""),
                "was": v.was,
                "why": note,
            }
        )
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
    elif rows:
        table = Table("id", "result", "requestId", "was", "rule / why", box=None)
        for row in rows:
            table.add_row(*row.values())
        Console().print(table)
    counts = {name: sum(1 for r in rows if r["result"] == name) for name in _results(dry_run)}
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    err.print(f"{len(rows)} dead letters: {summary}" if rows else "no dead letters to replay")


def _results(dry_run: bool) -> list[str]:
    return ["would replay" if dry_run else "replayed", "still invalid", "not replayable"]


def _checked(read: Callable[[], T]) -> T:
    """``read()``, with a Redis failure as a short error and exit 1."""
    from cancelq.errors import CancelqError

    try:
        return read()
    except CancelqError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
