"""Progress where CLI work is long: ``enqueue --file`` and ``status --wait`` draw a bar on
stderr while it is a terminal (here: rich's ``FORCE_COLOR``, and a real pseudo-terminal) and a
summary, while stdout stays exactly what scripts parse."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from cancelq.outcomes import Status
from tests.support import Stack, cancel, cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

LINES = 2000
BAD = {7: "{not json", 1500: json.dumps(cancel(orderLinkId="has space"))}
TERMINAL = {"FORCE_COLOR": "1", "TERM": "xterm", "COLUMNS": "120"}


def jsonl() -> tuple[str, list[str]]:
    """2,000 lines (two of them refused), and the request ids of the valid ones, in order.
    The account is not in the accounts file: the worker answers each at once, no exchange."""
    lines, ids = [], []
    for number in range(1, LINES + 1):
        if number in BAD:
            lines.append(BAD[number])
            continue
        rid = f"p-{number}"
        lines.append(json.dumps(cancel("nobody", orderLinkId=f"o-{number}", requestId=rid)))
        ids.append(rid)
    return "\n".join(lines) + "\n", ids


def test_enqueue_file_draws_a_bar_and_a_summary_on_stderr_and_only_ids_on_stdout(
    stack: Stack,
) -> None:
    text, ids = jsonl()
    done = cli(stack, "enqueue", "--file", "-", stdin=text, **TERMINAL)
    assert done.returncode == 1  # two lines were refused
    assert done.stdout.splitlines() == ids
    assert "enqueueing" in done.stderr
    assert f"{LINES}/{LINES}" in done.stderr  # the bar, completed
    assert "━" in done.stderr
    assert "1998 enqueued, 2 refused, in " in done.stderr
    print(f"\n[enqueue --file] {done.stderr[done.stderr.index('1998 enqueued') :].splitlines()[0]}")
    assert "line 7: not JSON" in done.stderr
    assert "line 1500: orderLinkId: at most 36 characters" in done.stderr
    outcomes = stack.producer.wait_many(ids, 30)  # every printed id was enqueued
    assert {o.status for o in outcomes.values()} == {Status.REJECTED}
    quiet = cli(stack, "enqueue", "--file", "-", stdin=text)  # not a terminal: no bar
    assert quiet.stdout.splitlines() == ids
    assert "━" not in quiet.stderr
    assert "enqueueing" not in quiet.stderr
    assert "1998 enqueued, 2 refused" in quiet.stderr


def test_status_wait_shows_final_over_total_until_all_final_then_the_outcomes(
    stack: Stack,
) -> None:
    ids = stack.producer.enqueue_many([cancel("nobody", orderLinkId=f"w-{i}") for i in range(50)])
    done = cli(stack, "status", "-", "--wait", "20", stdin="\n".join(ids), **TERMINAL)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["requestId"] for line in done.stdout.splitlines()] == ids
    assert {json.loads(line)["status"] for line in done.stdout.splitlines()} == {"rejected"}
    assert "final" in done.stderr
    assert "50/50" in done.stderr
    started = time.monotonic()
    late = cli(stack, "status", ids[0], "never-enqueued", "--wait", "1", **TERMINAL)
    assert late.returncode == 3  # a request still pending when the time is up
    assert 1 <= time.monotonic() - started < 15
    assert json.loads(late.stdout.splitlines()[1]) == {
        "requestId": "never-enqueued",
        "status": "pending",
    }
    assert "1/2" in late.stderr


def test_a_real_terminal_on_stderr_gets_the_bar_and_stdout_keeps_the_ids(stack: Stack) -> None:
    text, ids = jsonl()
    leader, follower = pty.openpty()
    seen: list[bytes] = []

    def drain() -> None:  # a terminal that is not read would block the writer
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cancelq", "enqueue", "--file", "-"],
            env={**env, "CANCELQ_REDIS_URL": stack.redis_server.url, "TERM": "xterm"},
            input=text.encode(),
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
    reader.join(10)
    os.close(leader)
    terminal = b"".join(seen).decode("utf-8", "replace")
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == ids
    assert f"{LINES}/{LINES}" in terminal
    assert "1998 enqueued, 2 refused" in terminal
