"""``cancelq dead-letters`` against a real stack: messages pushed with plain Redis commands are
dead-lettered by a real worker, listed and shown by the command (never a secret, never the
body), and replayed through the contract: a valid cancel refused only for its transport
(a wrong content type) reaches the simulator and gets its outcome; an invalid one is reported
with its rule and stays."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from typing import Any

import pytest

from cancelq.keys import Keys
from cancelq.outcomes import Status
from tests import support
from tests.support import Stack, cancel, scan_redis, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DEAD_LETTERS = Keys().dead_letters()
FAKE_SECRET = "fake-api-secret-7f3a9c21e0"
POD_ID_RE = re.compile(r"[A-Za-z0-9_.-]+-[0-9]+-[0-9a-f]{6}")


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return support.cli(stack, "dead-letters", *args, COLUMNS="200")


def push(stack: Stack, kwargs: dict[str, Any], content_type: str = "text/plain") -> str:
    """A protocol-v2 cancel whose body is valid JSON, sent with another content type (kombu
    refuses to decode it: ``content_disallowed``), pushed with a plain LPUSH."""
    rid = f"dl-{uuid.uuid4().hex[:12]}"
    body = json.dumps([[], {**kwargs, "requestId": rid}, {"callbacks": None}]).encode()
    message = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {"lang": "py", "task": "cancelq.cancel_order", "id": rid, "root_id": rid},
        "properties": {
            "correlation_id": rid,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "cancelq"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    stack.redis.lpush("cancelq", json.dumps(message))
    return rid


def listed(stack: Stack) -> list[dict[str, Any]]:
    done = cli(stack, "list", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_never_shown_nor_stored(stack: Stack, *outputs: str) -> None:
    stored = "\n".join(f"{key}\n{value}" for key, value in scan_redis(stack.redis))
    for hay in (stored, *outputs):
        assert FAKE_SECRET not in hay
        assert "apiSecret" not in hay
        for secret in stack.secrets:
            assert secret not in hay


def test_list_and_show_name_reason_time_and_worker_never_a_secret(stack: Stack) -> None:
    rid = push(stack, cancel(orderLinkId="dl-show", apiSecret=FAKE_SECRET))
    leaked = push(stack, cancel(orderLinkId="dl-leak", note=stack.secrets[0]))
    assert wait_until(lambda: stack.redis.xlen(DEAD_LETTERS) == 2, 15)
    letters = {d["requestId"]: d for d in listed(stack)}
    shown = letters[rid]
    assert shown["reason"] == "content_disallowed"
    assert shown["contentType"] == "text/plain"
    assert POD_ID_RE.fullmatch(shown["pod"]), shown["pod"]
    assert f"-{stack.workers[0].pid}-" in shown["pod"]  # the worker process that read it
    assert shown["replay"] == "replayable"
    assert letters[leaked]["replay"] == "not_replayable"
    one = cli(stack, "show", shown["id"], "--json")
    assert one.returncode == 0, one.stderr
    record = json.loads(one.stdout)
    assert record["cancel"] == {
        "account": "main",
        "category": "spot",
        "symbol": "BTCUSDT",
        "orderLinkId": "dl-show",
    }
    assert record["when"].endswith("Z")
    assert "body" not in record
    why = json.loads(cli(stack, "show", letters[leaked]["id"], "--json").stdout)["why"]
    assert why == "holds a configured secret: not kept"
    table = cli(stack, "list")
    assert table.returncode == 0, table.stderr
    assert shown["id"] in table.stdout
    assert "content_disallowed" in table.stdout
    assert "2 of 2 dead letters shown" in table.stderr
    human = cli(stack, "show", shown["id"])
    assert "dl-show" in human.stdout
    assert_never_shown_nor_stored(stack, one.stdout, table.stdout, human.stdout, human.stderr)
    assert cli(stack, "show", "0-1").returncode == 2


def test_replay_sends_what_now_passes_and_reports_the_rule_of_what_does_not(
    stack: Stack,
) -> None:
    order_id = stack.place(order_link_id="dl-replay")
    good = push(stack, cancel(orderLinkId="dl-replay", apiSecret=FAKE_SECRET))
    bad = push(stack, {"account": "main", "category": "spot", "orderLinkId": "dl-bad"})
    stack.redis.lpush("cancelq", b"\x80\x05garbage, not a message")
    assert wait_until(lambda: stack.redis.xlen(DEAD_LETTERS) == 3, 15)
    ids = {d["requestId"] or d["reason"]: d["id"] for d in listed(stack)}
    # the producer waiting on the original id was answered: rejected, naming the reason
    original = stack.producer.outcome(good)
    assert original is not None
    assert original.status is Status.REJECTED

    dry = cli(stack, "replay", "--all", "--dry-run", "--json")
    assert dry.returncode == 1  # some would not replay
    assert [json.loads(line)["result"] for line in dry.stdout.splitlines()] == [
        "would replay",
        "still invalid",
        "not replayable",
    ]
    assert "3 dead letters: 1 would replay, 1 still invalid, 1 not replayable" in dry.stderr
    assert stack.redis.xlen(DEAD_LETTERS) == 3

    one = cli(stack, "replay", ids[good], "--json")
    assert one.returncode == 0, one.stderr
    row = json.loads(one.stdout)
    assert row["result"] == "replayed"
    assert row["was"] == good
    assert row["requestId"] not in ("", good)
    outcome = stack.producer.wait(row["requestId"], 15)
    assert outcome.status is Status.CANCELLED
    assert outcome.orderLinkId == "dl-replay"
    assert stack.order_status(order_id) == "Cancelled"
    assert stack.redis.xlen(DEAD_LETTERS) == 2  # the replayed record is removed

    rest = cli(stack, "replay", "--all")
    assert rest.returncode == 1
    assert "still invalid" in rest.stdout
    assert "symbol: missing" in rest.stdout
    assert "not JSON: the queue item" in rest.stdout
    assert "2 dead letters: 0 replayed, 1 still invalid, 1 not replayable" in rest.stderr
    assert stack.redis.xlen(DEAD_LETTERS) == 2
    invalid = cli(stack, "replay", ids[bad], "--json")
    assert json.loads(invalid.stdout)["why"].startswith("symbol: missing")
    assert_never_shown_nor_stored(stack, dry.stdout, one.stdout, rest.stdout, rest.stderr)


def test_an_item_nested_too_deeply_for_the_json_parser_is_a_dead_letter_not_a_crash(
    stack: Stack,
) -> None:
    worker = stack.workers[0]
    stack.redis.lpush("cancelq", "[" * 100_000)  # 100 KB: under the size limit, read in full
    assert wait_until(lambda: stack.redis.xlen(DEAD_LETTERS) == 1, 15)
    (letter,) = listed(stack)
    assert (letter["reason"], letter["detail"], letter["replay"]) == (
        "not_json",
        "RecursionError",
        "not_replayable",
    )
    after = stack.producer.enqueue(**cancel(orderId=stack.place()))
    assert stack.producer.wait(after, 15).status is Status.CANCELLED
    assert worker.alive()
    assert "Unrecoverable error" not in worker.log_text()
