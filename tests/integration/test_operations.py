"""What operators and producers touch besides the Python API: CLI, /metrics, health, secrets."""

from __future__ import annotations

import json

import pytest
import requests

from cancelq.outcomes import Status
from tests.support import Stack, cancel, cli, scan_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_enqueue_one_and_read_its_status(stack: Stack) -> None:
    order_id = stack.place(order_link_id="cli-1")
    done = cli(
        stack,
        "enqueue",
        "--account",
        "main",
        "--category",
        "spot",
        "--symbol",
        "BTCUSDT",
        "--order-link-id",
        "cli-1",
        "--wait",
        "15",
    )
    assert done.returncode == 0, done.stderr
    request_id, outcome_line = done.stdout.strip().splitlines()
    assert json.loads(outcome_line)["status"] == "cancelled"
    status = cli(stack, "status", request_id)
    assert status.returncode == 0
    assert json.loads(status.stdout)["orderId"] == order_id


def test_enqueue_many_from_stdin_and_pending_status_exit_code(stack: Stack) -> None:
    lines = "\n".join(
        json.dumps(cancel(orderId=stack.place(order_link_id=f"jl-{i}"))) for i in range(5)
    )
    done = cli(stack, "enqueue", "--file", "-", "--wait", "15", stdin=lines + "\n")
    assert done.returncode == 0, done.stderr
    statuses = [json.loads(line)["status"] for line in done.stdout.splitlines()[5:]]
    assert statuses == ["cancelled"] * 5
    pending = cli(stack, "status", "no-such-request")
    assert pending.returncode == 3
    assert json.loads(pending.stdout) == {"requestId": "no-such-request", "status": "pending"}


def test_invalid_input_is_refused_with_the_field_and_rule(stack: Stack) -> None:
    done = cli(
        stack,
        "enqueue",
        "--account",
        "main",
        "--category",
        "spot",
        "--symbol",
        "BTCUSDT",
        "--order-link-id",
        "bad link id",
    )
    assert done.returncode == 1
    assert "orderLinkId: at most 36 characters of [A-Za-z0-9_-]" in done.stderr
    bad_line = cli(stack, "enqueue", "--file", "-", stdin="{not json\n")
    assert bad_line.returncode == 1
    assert "line 1: not JSON" in bad_line.stderr


def test_metrics_count_responses_by_ret_code_and_outcomes(stack: Stack) -> None:
    ids = stack.producer.enqueue_many(
        [cancel(orderId=stack.place()), cancel(orderLinkId="metrics-missing")]
    )
    stack.producer.wait_many(ids, 15)
    port = stack.workers[0].env["CANCELQ_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert (
        'cancelq_exchange_responses_total{account="main",category="spot",endpoint="cancel",ret_code="0"}'
        in text
    )
    assert 'ret_code="170213"' in text
    assert 'cancelq_outcomes_total{account="main",status="cancelled"}' in text
    assert "cancelq_end_to_end_seconds_bucket" in text


def test_health_command_reads_the_worker_heartbeat(stack: Stack) -> None:
    health_file = stack.workers[0].env["CANCELQ_HEALTH_FILE"]
    alive = cli(stack, "health", CANCELQ_HEALTH_FILE=health_file)
    assert alive.returncode == 0, alive.stderr
    assert "ready" in alive.stdout
    dead = cli(stack, "health", CANCELQ_HEALTH_FILE=health_file + ".missing")
    assert dead.returncode == 1


def test_no_secret_reaches_redis_logs_or_outcomes(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sim.admin.set_dialect("v5")
    ids = stack.producer.enqueue_many(
        [
            cancel(orderId=stack.place()),
            cancel("rsa", orderLinkId="s-1"),
            cancel("page", orderLinkId="s-2"),
            cancel("nobody", orderLinkId="s-3"),
        ]
    )
    outcomes = stack.producer.wait_many(ids, 20)
    assert {o.status for o in outcomes.values()} >= {Status.CANCELLED, Status.REJECTED}
    haystacks = [f"{key}\n{value}" for key, value in scan_redis(stack.redis)]
    haystacks.append(stack.logs())
    haystacks.append(capsys.readouterr().out + capsys.readouterr().err)
    assert len(haystacks) > 3
    for secret in stack.secrets:
        for line in secret.strip().splitlines():  # every line of an RSA key too
            if len(line) >= 16:
                assert not any(line in hay for hay in haystacks)
