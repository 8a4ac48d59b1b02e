"""Producers nobody here wrote, from Node.js: the npm packages ``celery-node`` and ``ioredis``
(installed by ``scripts/bootstrap`` into ``tests/node/node_modules``, pinned by its lock file),
against real Redis, real workers and the simulator over HTTP.

* ``celery_node_facts.js``: what celery-node publishes (protocol, encoding) and that
  ``applyAsync`` does not await its push: the documented limits, checked on the library itself.
* ``cancel_with_celery_node.js``: the README snippet; its cancels end ``cancelled``.
* ``cancel_with_outbox.js``: the guarantee path, the message built by hand and pushed in one
  MULTI with its outbox entry; a message the broker then loses is pushed again by the workers.

Without ``node`` these tests skip; with ``node`` but without the npm packages they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cancelq.outcomes import Status
from tests.support import Stack, cancel, wait_until

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NODE = shutil.which("node")
PACKAGES = ("celery-node", "ioredis")
README = ROOT / "README.md"
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (Node.js 20 needed)")
pytestmark = pytest.mark.integration


def run_node(script: str, *args: str, timeout_s: float = 30) -> Any:
    """``node tests/node/<script> args``: its stdout as JSON (it must exit 0)."""
    assert NODE is not None
    missing = [p for p in PACKAGES if not (NODE_DIR / "node_modules" / p / "package.json").exists()]
    assert missing == [], f"npm packages {missing} missing in tests/node: run ./scripts/bootstrap"
    completed = subprocess.run(
        [NODE, str(NODE_DIR / script), *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert completed.returncode == 0, f"{script} failed:\n{completed.stderr[-2000:]}"
    return json.loads(completed.stdout)


def locked_version(package: str) -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def decoded_body(message: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(message["body"]))


def dead_letters(stack: Stack) -> list[dict[str, str]]:
    return [fields for _, fields in stack.redis.xrange("cancelq:dead-letters")]


def doc_block(marker: str) -> str:
    """The code block after ``<!-- marker -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)\n```", text, re.DOTALL)
    assert match, f"no <!-- {marker} --> code block in README.md"
    return match.group(1)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("marker", "script"),
    [
        ("celery-node-snippet", "cancel_with_celery_node.js"),
        ("node-outbox", "cancel_with_outbox.js"),
    ],
)
def test_the_documented_node_code_is_the_code_these_tests_run(marker: str, script: str) -> None:
    block = doc_block(marker)
    assert len(block.splitlines()) >= 10
    assert block in (NODE_DIR / script).read_text(encoding="utf-8")


@needs_node
@pytest.mark.timeout(60)
def test_celery_node_publishes_protocol_v2_json_and_does_not_await_its_push(stack: Stack) -> None:
    facts = run_node("celery_node_facts.js", stack.redis_server.url)
    assert facts["version"] == locked_version("celery-node") == "0.5.9"
    v2 = facts["v2"]
    assert v2["defaultProtocol"] == 2
    # protocol v2: task and id in the headers (nothing else), body base64 of JSON [args, kwargs, {}]
    message = v2["message"]
    assert v2["key"] == "facts-v2"
    assert message["headers"] == {"lang": "js", "task": "cancelq.cancel_order", "id": v2["taskId"]}
    assert (message["content-type"], message["content-encoding"]) == ("application/json", "utf-8")
    assert message["properties"]["body_encoding"] == "base64"
    assert message["properties"]["correlationId"] == v2["taskId"]  # camelCase: Celery ignores it
    assert decoded_body(message) == [[], cancel(orderLinkId="facts-1"), {}]
    # applyAsync returns a plain AsyncResult before its LPUSH has even been issued
    assert (v2["returned"], v2["returnedThenable"], v2["pushIssuedBeforeReturn"]) == (
        "AsyncResult",
        False,
        False,
    )
    # so a script that disconnects at once loses the cancel: silently, or with an error that
    # only reaches an unhandled-rejection handler (by default it ends the process)
    lost = facts["disconnectAtOnce"]
    assert lost["whileConnecting"] == {"pushed": 0, "errors": []}
    assert lost["whenConnected"] == {"pushed": 0, "errors": ["Connection is closed."]}


@needs_node
@pytest.mark.timeout(60)
def test_celery_node_protocol_v1_is_a_dead_letter_never_sent(stack: Stack) -> None:
    order_id = stack.place(order_link_id="facts-1")
    facts = run_node("celery_node_facts.js", stack.redis_server.url)
    v1 = facts["v1"]
    assert (v1["key"], v1["message"]["headers"]) == ("cancelq", {})
    body = decoded_body(v1["message"])
    assert body == {
        "task": "cancelq.cancel_order",
        "id": v1["taskId"],
        "args": [],
        "kwargs": cancel(orderLinkId="facts-1"),
    }
    outcome = stack.producer.wait(v1["taskId"], 15)
    assert outcome.status is Status.REJECTED
    assert outcome.reason == "message: protocol_v1"
    assert [(d["reason"], d["requestId"]) for d in dead_letters(stack)] == [
        ("protocol_v1", v1["taskId"])
    ]
    assert stack.order_status(order_id) == "New"


@needs_node
@pytest.mark.timeout(60)
def test_cancels_sent_with_celery_node_are_cancelled_at_the_exchange(stack: Stack) -> None:
    links = ["node-1", "node-2", "node-3"]
    orders = [stack.place(order_link_id=link) for link in links]
    cancels = [cancel(orderLinkId=link, requestId=f"node-req-{n}") for n, link in enumerate(links)]
    cancels[2].pop("requestId")  # the celery-node task id is the request id then
    started_ms = int(time.time() * 1000)
    outcomes = run_node("cancel_with_celery_node.js", stack.redis_server.url, json.dumps(cancels))
    assert [o["status"] for o in outcomes] == ["cancelled"] * 3
    assert [o["orderId"] for o in outcomes] == orders
    assert [o["requestId"] for o in outcomes[:2]] == ["node-req-0", "node-req-1"]
    assert re.fullmatch(r"[0-9a-f-]{36}", outcomes[2]["requestId"])
    assert all(started_ms <= o["enqueuedAt"] <= int(time.time() * 1000) for o in outcomes)
    assert [stack.order_status(order_id) for order_id in orders] == ["Cancelled"] * 3


@needs_node
@pytest.mark.timeout(60)
def test_node_outbox_multi_is_cancelled_and_clears_its_entry(stack: Stack) -> None:
    order_id = stack.place(order_link_id="node-outbox-1")
    cancels = [cancel(orderLinkId="node-outbox-1", requestId="node-outbox-req-1")]
    replies = run_node("cancel_with_outbox.js", stack.redis_server.url, json.dumps(cancels))
    assert [r[1:] for r in replies] == [[1, 1]]  # ZADD and HSET each added the entry
    assert stack.producer.wait("node-outbox-req-1", 15).status is Status.CANCELLED
    assert stack.order_status(order_id) == "Cancelled"
    assert stack.redis.zscore("cancelq:outbox", "node-outbox-req-1") is None
    assert stack.redis.hget("cancelq:outbox:msg", "node-outbox-req-1") is None


@contextmanager
def consumers_stopped(stack: Stack) -> Iterator[None]:
    """Every worker SIGSTOPped, none blocked in BRPOP (so a push stays queued), then SIGCONT."""
    groups = [w.pid for w in stack.workers if w.alive()]
    try:
        for group in groups:
            os.killpg(group, signal.SIGSTOP)
        assert wait_until(lambda: not any("b" in c["flags"] for c in stack.redis.client_list()), 5)
        yield
    finally:
        for group in groups:
            os.killpg(group, signal.SIGCONT)


@needs_node
@pytest.mark.timeout(90)
def test_a_node_outbox_message_the_broker_lost_is_pushed_again(stack: Stack) -> None:
    order_id = stack.place(order_link_id="node-lost-1")
    cancels = [cancel(orderLinkId="node-lost-1", requestId="node-lost-req-1")]
    with consumers_stopped(stack):
        run_node("cancel_with_outbox.js", stack.redis_server.url, json.dumps(cancels))
        # the broker loses the message (as a Redis restart right after a worker's BRPOP does)
        assert stack.redis.delete("cancelq") == 1
        # and the visibility timeout (300 s) passes: the outbox entry is older than that
        aged_ms = int(time.time() * 1000) - 301_000
        stack.redis.zadd("cancelq:outbox", {"node-lost-req-1": aged_ms}, xx=True)
    outcome = stack.producer.wait("node-lost-req-1", 30)  # the next heartbeat's sweep (5 s)
    assert outcome.status is Status.CANCELLED
    assert stack.order_status(order_id) == "Cancelled"
    assert "lost cancels again" in stack.logs()
