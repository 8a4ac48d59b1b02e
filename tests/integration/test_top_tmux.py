"""``cancelq top`` as an operator sees it: run in a real terminal (tmux, 200x50) against the
real stack with a backlog and a halted account, and read the screen."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cancelq import halts
from cancelq.keys import Keys
from tests.support import Stack, cancel, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
TMUX = "/usr/bin/tmux"


@pytest.fixture
def tmux() -> Iterator[list[str]]:
    if not os.path.exists(TMUX):
        pytest.skip("tmux is not installed")
    socket = ["-L", f"cancelq-top-{os.getpid()}"]  # a server of our own
    yield [TMUX, *socket]
    subprocess.run([TMUX, *socket, "kill-server"], capture_output=True, check=False, timeout=10)


def screen(tmux: list[str]) -> str:
    done = subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "top"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout


def place(stack: Stack, account: str, prefix: str, n: int) -> list[str]:
    orders = [{"orderLinkId": f"{prefix}-{i}"} for i in range(n)]
    stack.sim.admin.place_orders(
        orders, account=account, category="spot", symbol="BTCUSDT", side="Buy", qty="1",
        price="100", orderType="Limit",
    )  # fmt: skip
    return [o["orderLinkId"] for o in orders]


def test_top_shows_the_halted_account_first_then_the_backlog(stack: Stack, tmux: list[str]) -> None:
    halts.halt(stack.redis, Keys(), "rsa", by="oncall@desk", reason="runaway strategy")
    producer = stack.producer
    producer.enqueue_many([cancel("rsa", orderLinkId=x) for x in place(stack, "rsa", "r", 4)])
    producer.enqueue_many([cancel(orderLinkId=x) for x in place(stack, "main", "m", 160)])
    assert wait_until(lambda: stack.redis.zcard(Keys().lane("main:spot")) > 60, 10)
    command = shlex.join([sys.executable, "-m", "cancelq", "top"])
    # the pane's size, said explicitly: under pytest rich read 80 columns from the pane
    env = f"COLUMNS=200 LINES=50 CANCELQ_REDIS_URL={shlex.quote(stack.redis_server.url)}"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50", f"env {env} {command}"],
        check=True,
        timeout=10,
    )
    alive = re.compile(r"workers alive [1-9]\d*/[1-9]")
    assert wait_until(lambda: "main" in screen(tmux) and alive.search(screen(tmux)), 15), screen(
        tmux
    )
    first = screen(tmux)
    rows = [line for line in first.splitlines() if re.match(r"^(rsa|main)\s", line)]
    assert [row.split()[0] for row in rows] == ["rsa", "main"], first
    halted, backlog = rows
    assert "HALTED" in halted, first
    assert "never" in halted  # its drain ETA
    assert re.search(r"^halted rsa by oncall@desk at .* UTC: runaway strategy", first, re.M)
    assert re.search(r"\s4\s", halted), halted  # its 4 cancels wait parked
    parked = int(backlog.split()[3])
    assert parked > 20, backlog
    assert re.search(r"\d+/20", backlog), backlog  # budget used of the limit, last second
    assert re.search(r"\d+\.\ds", backlog), backlog  # a drain ETA
    assert re.search(r"queue \d+ +outbox \d+", first), first
    time.sleep(1.3)  # refreshed at least once a second: the clock and the backlog move
    second = screen(tmux)
    clock = re.compile(r"\d\d:\d\d:\d\d UTC")
    assert clock.search(first)
    assert clock.search(second)
    assert clock.search(first).group() != clock.search(second).group(), second  # type: ignore[union-attr]
    later = [line for line in second.splitlines() if line.startswith("main ")]
    assert later
    assert int(later[0].split()[3]) < parked, second
    halts.resume(stack.redis, Keys(), "rsa", by="oncall@desk", reason="done")
