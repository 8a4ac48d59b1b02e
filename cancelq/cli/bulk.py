"""Long work on the command line: enqueue a JSONL file, wait for many outcomes.

Both show a progress bar on stderr while stderr is a terminal (rich's detection: a TTY, or
``FORCE_COLOR`` / ``TTY_COMPATIBLE=1``), and nothing of it otherwise; stdout stays what scripts
parse (request ids, outcome lines). A file's lines are read first and checked one by one with
the producer's rules: a line that is not a JSON object or breaks the contract is refused
(its number and reason in the summary on stderr), every other line is enqueued, ``chunk`` per
round trip (each with its outbox entries, as ``CancelProducer.enqueue_many`` does).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cancelq.errors import ContractError
from cancelq.outcomes import Outcome
from cancelq.producers.client import CancelProducer, prepare

#: Refused lines named one by one in the summary; the rest are counted.
SHOWN_REFUSALS: Final = 20
POLL_START_S: Final = 0.02
POLL_MAX_S: Final = 0.25


@dataclass(frozen=True)
class Refused:
    line: int
    why: str


@dataclass
class FileEnqueued:
    """What ``enqueue --file`` did: the ids enqueued (in file order), the lines refused."""

    ids: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    elapsed_s: float = 0.0

    def summary(self) -> list[str]:
        lines = [
            f"{len(self.ids)} enqueued, {len(self.refused)} refused, in {self.elapsed_s:.2f} s"
        ]
        lines += [f"line {r.line}: {r.why}" for r in self.refused[:SHOWN_REFUSALS]]
        if len(self.refused) > SHOWN_REFUSALS:
            lines.append(f"... and {len(self.refused) - SHOWN_REFUSALS} more refused lines")
        return lines


def progress(console: Console) -> Progress:
    """A bar on ``console`` (stderr) while it is a terminal; silent otherwise."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def enqueue_file(
    producer: CancelProducer, file: Path, chunk: int, console: Console
) -> FileEnqueued:
    """Enqueue every valid line of a JSONL file (``-``: stdin), ``chunk`` per round trip."""
    started = time.monotonic()
    lines = list(_jsonl(file))
    done = FileEnqueued()
    batch: list[dict[str, Any]] = []
    with progress(console) as bar:
        task = bar.add_task("enqueueing", total=len(lines))
        for number, item in lines:
            ready = _checked(number, item)
            if isinstance(ready, Refused):
                done.refused.append(ready)
            else:
                batch.append(ready)
            if len(batch) >= chunk:
                done.ids += producer.enqueue_many(batch)
                batch = []
            bar.advance(task)
        done.ids += producer.enqueue_many(batch)
    done.elapsed_s = time.monotonic() - started
    return done


def _checked(number: int, item: object) -> dict[str, Any] | Refused:
    """The line ready to enqueue (ids and time filled, validated), or why it is refused."""
    if isinstance(item, Refused):
        return item
    if not isinstance(item, dict):
        return Refused(number, "expected a JSON object")
    try:
        return prepare(item)
    except ContractError as exc:
        return Refused(number, str(exc))


def _jsonl(file: Path) -> Iterator[tuple[int, object]]:
    """(line number, its JSON value or a :class:`Refused`) for each non-blank line."""
    stream = sys.stdin if str(file) == "-" else file.open(encoding="utf-8")
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except (ValueError, RecursionError) as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                yield number, Refused(number, f"not JSON ({why})")


def await_outcomes(
    producer: CancelProducer, request_ids: Sequence[str], timeout_s: float, console: Console
) -> dict[str, Outcome]:
    """The outcomes found within ``timeout_s``: polls until every request is final (or the
    time is up), with a bar of final/total on ``console``."""
    wanted = list(dict.fromkeys(request_ids))
    if timeout_s <= 0:
        return producer.outcomes(wanted)
    deadline = time.monotonic() + timeout_s
    done: dict[str, Outcome] = {}
    pause = POLL_START_S
    with progress(console) as bar:
        task = bar.add_task("final", total=len(wanted))
        while True:
            pending = [rid for rid in wanted if rid not in done]
            done.update(producer.outcomes(pending))
            bar.update(task, completed=len(done))
            left = deadline - time.monotonic()
            if len(done) == len(wanted) or left <= 0:
                return done
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX_S)
